"""fill-mask: top-k tokens for every mask position, with the vocabulary projection only at masks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from distilkit.errors import UserError
from distilkit.inference.selective import only_at
from distilkit.tasks.base import (
    CostError,
    CostLimits,
    Feature,
    TaskHandler,
    check_int,
    check_text,
    input_error,
    show,
)
from distilkit.tasks.codec import Codec

# Mask tokens of the model families users mix up; a text holding another family's token is named.
KNOWN_MASK_TOKENS = ("[MASK]", "<mask>")
# JSON bytes of one candidate besides its sequence:
# {"score": .., "token": .., "token_str": .., "sequence": ""}
CANDIDATE_BYTES = 96


def mlm_head(model: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """Return the hidden-state -> vocabulary logits head of a masked-LM model, or None if unknown."""
    if hasattr(model, "vocab_projector"):  # DistilBERT: transform -> act -> norm -> projector
        return lambda h: model.vocab_projector(
            model.vocab_layer_norm(model.activation(model.vocab_transform(h)))
        )
    if hasattr(model, "lm_head"):  # RoBERTa family
        return model.lm_head
    if hasattr(model, "cls"):  # BERT family
        return model.cls
    return None


def top_candidates(
    probs: np.ndarray, top_k: int, target_ids: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k (scores, token ids) per mask row of ``probs`` (n_masks, V), optionally among targets."""
    if target_ids is not None:
        probs = probs[:, target_ids]
    k = min(top_k, probs.shape[-1])
    values = np.empty((len(probs), k), dtype=probs.dtype)
    ids = np.empty((len(probs), k), dtype=np.int64)
    # torch's topk: the same tie order as the reference implementation. One row at a time, because
    # topk over several rows opens an OpenMP team in the calling thread (servers decode on request
    # threads, and a second idle team makes libgomp throttle the model thread's spin-waits).
    for row, p in enumerate(probs):
        top = torch.from_numpy(p).topk(k)
        values[row], ids[row] = top.values.numpy(), top.indices.numpy()
    if target_ids is not None:
        ids = target_ids[ids]
    return values, ids


@dataclass(frozen=True)
class Candidates:
    """One input's top-k (scores, token ids) per mask, (n_masks, k) each: a forward pass's output for
    an input without targets (those with targets get their full (n_masks, V) probabilities)."""

    values: np.ndarray
    ids: np.ndarray


def pick_top_k(probs: torch.Tensor, counts: list[int], top_k: list[int | None]) -> list[Any]:
    """Per input, its ``Candidates`` when it has a ``top_k`` (one batched topk per distinct k, on the
    thread that ran the pass), else its probabilities (n_masks, V) as numpy."""
    rows = probs.split(counts)
    out: list[Any] = [None] * len(counts)
    for k in {k for k in top_k if k is not None}:
        which = [i for i, ki in enumerate(top_k) if ki == k]
        picked = probs if len(which) == len(counts) else torch.cat([rows[i] for i in which])
        top = picked.topk(min(k, probs.shape[-1]))
        for i, values, ids in zip(which, top.values.split([counts[i] for i in which]),
                                  top.indices.split([counts[i] for i in which]), strict=True):
            out[i] = Candidates(values.numpy(), ids.numpy())
    return [rows[i].numpy() if o is None else o for i, o in enumerate(out)]


class FillMaskHandler(TaskHandler):
    """fill-mask with ``top_k`` (default 5) and ``targets``; one list per mask when there are several."""

    task = "fill-mask"
    defaults: ClassVar[dict[str, Any]] = {"top_k": 5, "targets": None}
    param_types: ClassVar[dict[str, Any]] = {"top_k": "integer", "targets": "strings"}

    def __init__(self, tokenizer: Any, config: Any):
        super().__init__(tokenizer, config)
        if tokenizer.mask_token is None or tokenizer.mask_token_id is None:
            raise UserError("this tokenizer defines no mask token; fill-mask needs a masked-LM tokenizer")
        self.mask_token = tokenizer.mask_token
        self.mask_id = tokenizer.mask_token_id
        self.pad_id = tokenizer.pad_token_id
        self.codec = Codec(tokenizer)
        self.vocab_size = int(getattr(config, "vocab_size", None) or len(tokenizer))
        self._token_str: dict[int, str] = {}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "mask_token": self.mask_token}

    def validate_params(self, params: dict[str, Any]) -> dict[str, Any]:
        targets = params["targets"]
        params["target_ids"] = None if targets is None else self.target_ids(targets)
        top_k = params["top_k"] = check_int("top_k", params["top_k"], 1)
        # Like the reference: top_k past the vocabulary is an error; past the targets it is cut to them.
        if targets is None and top_k > self.vocab_size:
            raise UserError(f"top_k must be at most {self.vocab_size} (the vocabulary size), got {top_k}")
        return params

    def check_cost(self, items: list[str], params: dict[str, Any], limits: CostLimits) -> None:
        """Masks per input, candidates per input (top_k x masks) and the response size they make
        (every candidate repeats its input's text), then the features."""
        ids = params["target_ids"]
        k = params["top_k"] if ids is None else min(params["top_k"], len(ids))
        masks = [text.count(self.mask_token) for text in items]
        worst = max(range(len(items)), key=masks.__getitem__, default=None)
        if worst is not None and limits.max_masks is not None and masks[worst] > limits.max_masks:
            raise CostError("max_masks", f"input {worst} has {masks[worst]} {self.mask_token} tokens; "
                                         f"at most {limits.max_masks} per input")
        bound = limits.max_candidates
        if worst is not None and bound is not None and masks[worst] * k > bound:
            raise CostError("max_candidates", f"input {worst} asks for {masks[worst] * k} candidates "
                                              f"(top_k {k} x {masks[worst]} masks); at most "
                                              f"{bound} per input: lower top_k")
        if limits.max_response_bytes is not None:
            size = sum(m * k * (len(text.encode()) + CANDIDATE_BYTES)
                       for m, text in zip(masks, items, strict=True))
            if size > limits.max_response_bytes:
                raise CostError("max_response_bytes",
                                f"the response would be about {size} bytes (each of the {sum(masks) * k} "
                                f"candidates repeats its input text); at most {limits.max_response_bytes}: "
                                "lower top_k or send fewer or shorter inputs")
        super().check_cost(items, params, limits)

    def target_ids(self, targets: str | list[str]) -> np.ndarray:
        """Vocabulary ids of ``targets``; a target that is several tokens is an error naming it."""
        if isinstance(targets, str):
            targets = [targets]
        if not isinstance(targets, (list, tuple)) or not all(isinstance(t, str) for t in targets):
            raise UserError(f"targets must be a string or a list of strings, got {show(targets)}")
        vocab = self.tokenizer.get_vocab()
        ids = []
        for target in targets:
            if target in vocab:
                ids.append(vocab[target])
                continue
            pieces = self.tokenizer(target, add_special_tokens=False)["input_ids"]
            if len(pieces) == 0:
                continue  # nothing to score, as the reference implementation ignores it
            if len(pieces) > 1:
                tokens = self.tokenizer.convert_ids_to_tokens(pieces)
                raise UserError(f"target {show(target)} is {len(pieces)} tokens {tokens}; "
                                "targets must be single tokens")
            ids.append(pieces[0])
        if not ids:
            raise UserError("targets: at least one target must be a token of this model's vocabulary")
        return np.array(sorted(set(ids)), dtype=np.int64)

    def check_inputs(self, items: list[Any]) -> list[str]:
        for i, text in enumerate(items):
            check_text(i, text)
            if self.mask_token not in text:
                other = [t for t in KNOWN_MASK_TOKENS if t != self.mask_token and t in text]
                found = f"it has {other[0]}, but " if other else "it has no mask token; "
                raise input_error(i, f"{found}this model's mask token is {self.mask_token}")
        return items

    def encode(self, items: list[str], params: dict[str, Any]) -> list[Feature]:
        encoded = self.codec.encode(items)
        features = []
        for i, ids in enumerate(encoded):
            self.tokenize_error_check(i, len(ids))
            if self.mask_id not in ids:  # e.g. "[MASK]" glued into a word the tokenizer splits
                raise input_error(
                    i, f"no {self.mask_token} token after tokenization; write it as a separate word"
                )
            # Without targets the pass itself picks the top k (``pick_top_k``): batched, beside the model.
            data = {"top_k": params["top_k"]} if params["target_ids"] is None else {}
            features.append(Feature(item=i, input_ids=ids, data=data))
        return features

    def forward(
        self, model: torch.nn.Module, batch: dict[str, torch.Tensor], features: list[Feature]
    ) -> list[Any]:
        head = mlm_head(model)
        mask = batch["input_ids"] == self.mask_id  # (B, T)
        if head is None:
            logits = model(**batch).logits[mask]  # (M, V)
        else:
            with only_at(model, mask, batch.get("attention_mask")):  # last layer at the masks only
                hidden = model.base_model(**batch)[0]  # (B, T, H)
            logits = head(hidden[mask])  # (M, V): the projection only where it is read
        probs = logits.float().softmax(dim=-1).cpu()  # (M, V)
        return pick_top_k(probs, mask.sum(dim=1).tolist(), [f.data.get("top_k") for f in features])

    def decode(self, item: str, features: list[Feature], outputs: list[Any], params: dict[str, Any]) -> Any:
        (feature,), (output,) = features, outputs
        if isinstance(output, Candidates):
            values, ids = output.values, output.ids
        else:
            values, ids = top_candidates(output, params["top_k"], params["target_ids"])
        # Plain lists: a request's few short sequences cost less than numpy's per-call overhead.
        tokens, pad_id = feature.input_ids, self.pad_id
        positions = [i for i, token in enumerate(tokens) if token == self.mask_id]
        single = len(positions) == 1
        scores, ids = values.tolist(), ids.tolist()
        sequences = []
        for pos, row in zip(positions, ids, strict=True):
            for token in row:
                filled = list(tokens)
                filled[pos] = token
                if pad_id is not None and pad_id in filled:
                    filled = [t for t in filled if t != pad_id]
                sequences.append(filled)
        texts = iter(self.codec.decode(sequences, skip_special_tokens=single))
        result = [
            [
                {"score": v, "token": t, "token_str": self.token_str(t), "sequence": next(texts)}
                for v, t in zip(vrow, trow, strict=True)
            ]
            for vrow, trow in zip(scores, ids, strict=True)
        ]
        return result[0] if single else result

    def token_str(self, token: int) -> str:
        """Decoded text of one token id (cached: the same few thousand ids recur)."""
        text = self._token_str.get(token)
        if text is None:
            text = self._token_str[token] = self.tokenizer.decode([token])
        return text

    def join_call(self, results: list[Any], shape: Any, params: dict[str, Any]) -> Any:
        # The reference returns the bare result for a one-element list as well.
        return results[0] if shape == "single" or len(results) == 1 else results

