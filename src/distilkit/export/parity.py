"""Parity of an exported graph with its PyTorch model on generated inputs.

Inputs are random non-special tokens framed by the model's start/end tokens, several batch sizes
and lengths, rows of unequal length padded (so attention masks matter); graphs with
``token_type_ids`` (BERT) get a second segment of type 1 on each row (so token types matter
too). fp32 is compared on raw logits (max absolute difference over real tokens); int8 on
decisions: top-1 agreement for fill-mask and the classification tasks, best-span agreement for
question-answering.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

# (batch size, longest row) of the generated inputs; odd lengths catch shape specialisation.
DEFAULT_SHAPES = ((1, 7), (2, 16), (4, 33), (3, 128))
MAX_ANSWER_LEN = 15


@dataclass
class ParityBatch:
    """One generated batch: named int64 inputs (B, T), the real-token mask and fill-mask positions."""

    inputs: dict[str, np.ndarray]
    valid: np.ndarray  # (B, T) bool: real (non-pad) tokens
    mask_positions: np.ndarray | None  # (M,) flat indices into B*T (fill-mask only)


def generate_batches(
    tokenizer: Any, input_names: list[str], task: str, max_length: int,
    shapes: tuple[tuple[int, int], ...] = DEFAULT_SHAPES, seed: int = 0,
) -> list[ParityBatch]:
    """Random batches of ``shapes`` (lengths clipped to ``max_length``) for the graph's ``input_names``."""
    rng = np.random.default_rng(seed)
    special = set(tokenizer.all_special_ids)
    pool = np.array([i for i in range(len(tokenizer)) if i not in special], dtype=np.int64)
    first = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    last = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    batches = []
    for size, longest in shapes:
        longest = max(3, min(longest, max_length))
        lengths = [longest] + [int(rng.integers(3, longest + 1)) for _ in range(size - 1)]
        ids = np.full((size, longest), pad, dtype=np.int64)
        valid = np.zeros((size, longest), dtype=bool)
        for r, n in enumerate(lengths):
            ids[r, :n] = rng.choice(pool, n)
            ids[r, 0], ids[r, n - 1] = first, last
            valid[r, :n] = True
        positions = None
        if task == "fill-mask":  # ~15% of the inner tokens of each row, at least one
            chosen = []
            for r, n in enumerate(lengths):
                picks = rng.choice(np.arange(1, n - 1), max(1, (n - 2) * 15 // 100), replace=False)
                ids[r, picks] = tokenizer.mask_token_id
                chosen.extend(r * longest + np.sort(picks))
            positions = np.array(chosen, dtype=np.int64)
        inputs = {"input_ids": ids, "attention_mask": valid.astype(np.int64)}
        if "token_type_ids" in input_names:  # segment B (type 1) on each row's second half, as in a pair
            types = np.zeros_like(ids)
            for r, n in enumerate(lengths):
                types[r, n // 2 : n] = 1
            inputs["token_type_ids"] = types
        batches.append(ParityBatch(inputs, valid, positions))
    return batches


def torch_outputs(model: torch.nn.Module, task: str, batch: ParityBatch) -> list[np.ndarray]:
    """The PyTorch model's fp32 outputs in the graph's output order (fill-mask: logits at the masks)."""
    feeds = {k: torch.from_numpy(v) for k, v in batch.inputs.items()}
    with torch.inference_mode():
        out = model(**feeds)
    if task == "question-answering":
        return [out.start_logits.float().numpy(), out.end_logits.float().numpy()]
    logits = out.logits.float()
    if task == "fill-mask":
        # (M, V): the logits at the mask positions
        return [logits.reshape(-1, logits.shape[-1])[torch.from_numpy(batch.mask_positions)].numpy()]
    return [logits.numpy()]


def onnx_outputs(session: Any, batch: ParityBatch) -> list[np.ndarray]:
    """The ONNX session's outputs for ``batch`` (only the inputs the graph declares)."""
    names = {i.name for i in session.get_inputs()}
    feeds = {k: v for k, v in batch.inputs.items() if k in names}
    if "mask_positions" in names:
        feeds["mask_positions"] = batch.mask_positions
    return session.run(None, feeds)


def _real(task: str, batch: ParityBatch, out: np.ndarray) -> np.ndarray:
    """The entries of one output that belong to real tokens (pad positions are not compared)."""
    if task in ("question-answering", "token-classification"):
        return out[batch.valid]  # (N,) or (N, L)
    return out  # fill-mask (M, V) is already at real masks; text-classification (B, L)


def max_abs_diff(task: str, batch: ParityBatch, ref: list[np.ndarray], got: list[np.ndarray]) -> float:
    """Largest |ONNX - PyTorch| over every output's real-token entries."""
    return max(
        float(np.abs(_real(task, batch, r) - _real(task, batch, g)).max())
        for r, g in zip(ref, got, strict=True)
    )


def best_span(start: np.ndarray, end: np.ndarray, max_len: int = MAX_ANSWER_LEN) -> tuple[int, int]:
    """(start, end) maximising start+end logits with start <= end < start + max_len."""
    scores = start[:, None] + end[None, :]  # (T, T)
    allowed = np.triu(np.ones_like(scores, dtype=bool)) & ~np.triu(np.ones_like(scores, dtype=bool), max_len)
    flat = int(np.argmax(np.where(allowed, scores, -np.inf)))
    return divmod(flat, scores.shape[1])


def decisions(task: str, batch: ParityBatch, outputs: list[np.ndarray]) -> list[Any]:
    """What the task decides from the outputs: top-1 ids (per mask / row / real token) or QA spans."""
    if task == "question-answering":
        start, end = outputs
        spans = []
        for r in range(start.shape[0]):
            n = int(batch.valid[r].sum())
            spans.append(best_span(start[r, :n], end[r, :n]))
        return spans
    return _real(task, batch, outputs[0]).argmax(-1).tolist()


def agreement(task: str, batches: list[ParityBatch], ref: list[list[np.ndarray]],
              got: list[list[np.ndarray]]) -> dict[str, Any]:
    """Share of decisions the quantized graph shares with PyTorch (``top1_agreement`` or
    ``span_agreement``)."""
    same = total = 0
    for batch, r, g in zip(batches, ref, got, strict=True):
        a, b = decisions(task, batch, r), decisions(task, batch, g)
        same += sum(x == y for x, y in zip(a, b, strict=True))
        total += len(a)
    key = "span_agreement" if task == "question-answering" else "top1_agreement"
    return {key: same / total, "compared": total}
