"""The peers' fill-mask model: transformers' masked LM, batched, the way their docs write a handler.

Used by the LitServe and Ray Serve peers of ``benchmarks/serve.py`` (not by distilkit). Their best
reasonable CPU setup: the weights in bf16 (this CPU multiplies bf16 natively), every core for
PyTorch, ``torch.inference_mode``, the tokenizer in batch mode with dynamic padding. Results have
the fill-mask pipeline's shape: top-5 ``{"score", "token", "token_str", "sequence"}`` per text.
"""

from __future__ import annotations

import os

import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer


class FillMask:
    """``FillMask(model_dir)(texts)`` -> one top-k candidate list per text (one mask per text)."""

    def __init__(self, model_dir: str, dtype: torch.dtype = torch.bfloat16, top_k: int = 5):
        torch.set_num_threads(len(os.sched_getaffinity(0)))
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModelForMaskedLM.from_pretrained(model_dir, dtype=dtype).eval()
        self.top_k = top_k

    def __call__(self, texts: list[str]) -> list[list[dict]]:
        enc = self.tokenizer(texts, padding=True, return_tensors="pt")
        with torch.inference_mode():
            logits = self.model(**enc).logits  # (B, T, V)
            rows, cols = (enc["input_ids"] == self.tokenizer.mask_token_id).nonzero(as_tuple=True)
            values, ids = logits[rows, cols].float().softmax(-1).topk(self.top_k)  # (M, k)
        out: list[list[dict]] = [[] for _ in texts]
        found = zip(rows.tolist(), cols.tolist(), values.tolist(), ids.tolist(), strict=True)
        for row, col, scores, tokens in found:
            if out[row]:  # one list per text: the first mask
                continue
            sequence = enc["input_ids"][row][enc["attention_mask"][row].bool()].clone()
            for score, token in zip(scores, tokens, strict=True):
                sequence[col] = token
                out[row].append({"score": score, "token": token, "token_str": self.tokenizer.decode([token]),
                                 "sequence": self.tokenizer.decode(sequence, skip_special_tokens=True)})
        return out
