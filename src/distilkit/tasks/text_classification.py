"""text-classification: one score per label (softmax, sigmoid or raw), ``top_k``, text pairs.

Outputs follow transformers' ``TextClassificationPipeline``, including its legacy shapes: with no
``top_k`` an input gives its best label as one ``{"label", "score"}`` dict (a single string input
is wrapped in a list); with ``top_k=k`` it gives the k best labels, sorted; ``top_k=None`` gives
every label, sorted.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, ClassVar

import numpy as np
import torch

from distilkit.errors import UserError
from distilkit.inference.selective import only_at
from distilkit.tasks.base import (
    Feature,
    TaskHandler,
    check_int,
    check_text,
    input_error,
    show,
    sigmoid,
    softmax,
)

# ``top_k`` value meaning "not given": the pipeline's legacy best-label-only output.
LEGACY_TOP_K = "legacy"
FUNCTIONS = ("softmax", "sigmoid", "none")
TRUNCATION = {True: True, False: False, "longest_first": True, "do_not_truncate": False}
PAIR_HINT = 'send a text pair as {"text": "My text", "text_pair": "My pair"}'
# Sequence-classification heads that read the last hidden state at the first token only.
FIRST_TOKEN_HEADS = frozenset({
    "DistilBertForSequenceClassification", "BertForSequenceClassification",
    "RobertaForSequenceClassification", "XLMRobertaForSequenceClassification",
    "CamembertForSequenceClassification",
})


def first_token_positions(model: torch.nn.Module, input_ids: torch.Tensor) -> torch.Tensor | None:
    """(B, T) bool, True at each row's first token, for a model whose head reads only that; else None."""
    if type(model).__name__ not in FIRST_TOKEN_HEADS:
        return None
    first = torch.zeros(input_ids.shape, dtype=torch.bool, device=input_ids.device)
    first[:, 0] = True  # the [CLS] / <s> position
    return first


def default_function(config: Any) -> str:
    """The score function the reference applies when none is asked for (from the model config)."""
    problem = getattr(config, "problem_type", None)
    if problem == "regression":
        return "none"
    if problem == "multi_label_classification" or config.num_labels == 1:
        return "sigmoid"
    return "softmax"


def apply_function(logits: np.ndarray, function: str) -> np.ndarray:
    """Scores from one row of logits (L,) with ``softmax`` | ``sigmoid`` | ``none``, in float32."""
    if function == "softmax":
        return softmax(logits)
    if function == "sigmoid":
        return sigmoid(logits)
    return np.asarray(logits, dtype=np.float32)


def rank_labels(scores: np.ndarray, labels: list[str], top_k: int | str | None) -> dict | list[dict]:
    """Turn scores (L,) into the pipeline's output: best label (legacy) or the top_k labels, sorted.

    Ties keep label order (a stable sort), as the reference's ``list.sort`` does.
    """
    if top_k == LEGACY_TOP_K:
        best = int(scores.argmax())
        return {"label": labels[best], "score": float(scores[best])}
    order = np.argsort(-scores, kind="stable")
    if top_k is not None:
        order = order[:top_k]
    return [{"label": labels[i], "score": float(scores[i])} for i in order]


def normalize_item(index: int, item: Any) -> tuple[str, str | None]:
    """One input as ``(text, text_pair or None)``.

    Accepted: a string, ``{"text", "text_pair"}`` or ``[[text, pair]]``.
    """
    if isinstance(item, str):
        return check_text(index, item), None
    if isinstance(item, dict):
        extra = sorted(set(item) - {"text", "text_pair"})
        if extra or "text" not in item:
            what = f"unexpected key {show(extra[0])}" if extra else "missing key 'text'"
            raise input_error(index, f"{what}; {PAIR_HINT}")
        pair = item.get("text_pair")
        return check_text(index, item["text"]), None if pair is None else check_text(index, pair, "text_pair")
    if isinstance(item, list):
        # The reference still accepts the old [[text, pair]] form for one pair.
        if len(item) == 1 and isinstance(item[0], list) and len(item[0]) == 2:
            return check_text(index, item[0][0]), check_text(index, item[0][1], "text_pair")
        raise input_error(index, f"a list is not a text; {PAIR_HINT}")
    raise input_error(index, f"expected a string or a text pair, got {type(item).__name__}; {PAIR_HINT}")


class TextClassificationHandler(TaskHandler):
    """text-classification with ``top_k``, ``function_to_apply`` and ``truncation``; text pairs."""

    task = "text-classification"
    defaults: ClassVar[dict[str, Any]] = {"top_k": LEGACY_TOP_K, "function_to_apply": "default",
                                          "truncation": False}
    param_types: ClassVar[dict[str, Any]] = {"top_k": "integer", "function_to_apply": ("default", *FUNCTIONS),
                                             "truncation": "boolean"}

    def __init__(self, tokenizer: Any, config: Any):
        super().__init__(tokenizer, config)
        self.labels = [config.id2label[i] for i in range(config.num_labels)]
        self.default_function = default_function(config)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "labels": list(self.labels)}

    def public_default(self, name: str, default: Any) -> Any:
        # Not sending top_k gives the best label only; the sentinel that marks it is internal.
        return None if default == LEGACY_TOP_K else default

    def validate_params(self, params: dict[str, Any]) -> dict[str, Any]:
        top_k = params["top_k"]
        if top_k is not None and top_k != LEGACY_TOP_K:
            params["top_k"] = check_int("top_k", top_k, 1)
        function = params["function_to_apply"]
        function = function.value if isinstance(function, Enum) else function
        if function is None or (isinstance(function, str) and function.lower() == "default"):
            function = self.default_function
        if not isinstance(function, str) or function.lower() not in FUNCTIONS:
            raise UserError(
                f"function_to_apply must be one of {['default', *FUNCTIONS]}, got {show(function)}")
        params["function_to_apply"] = function.lower()
        truncation = params["truncation"]
        if isinstance(truncation, (bool, str)) and truncation in TRUNCATION:
            params["truncation"] = TRUNCATION[truncation]
        else:
            raise UserError(
                "truncation must be true, false, 'longest_first' or 'do_not_truncate', "
                f"got {show(truncation)}"
            )
        return params

    def check_inputs(self, items: list[Any]) -> list[tuple[str, str | None]]:
        return [normalize_item(i, item) for i, item in enumerate(items)]

    def encode(self, items: list[tuple[str, str | None]], params: dict[str, Any]) -> list[Feature]:
        features: list[Feature | None] = [None] * len(items)
        singles = [i for i, (_, pair) in enumerate(items) if pair is None]
        pairs = [i for i, (_, pair) in enumerate(items) if pair is not None]
        limit = {"truncation": True, "max_length": self.max_length} if params["truncation"] else {}
        for group, with_pair in ((singles, False), (pairs, True)):
            if not group:
                continue
            texts = [items[i][0] for i in group]
            second = [items[i][1] for i in group] if with_pair else None
            # token_type_ids come back only when the tokenizer's model inputs include them (BERT).
            encoded = self.tokenizer(texts, second, return_attention_mask=False, **limit)
            types = encoded.get("token_type_ids")
            for row, i in enumerate(group):
                ids = encoded["input_ids"][row]
                self.tokenize_error_check(i, len(ids))
                segments = None if types is None else types[row]
                features[i] = Feature(item=i, input_ids=ids, token_type_ids=segments)
        return features  # type: ignore[return-value]

    def forward(
        self, model: torch.nn.Module, batch: dict[str, torch.Tensor], features: list[Feature]
    ) -> list[Any]:
        first = first_token_positions(model, batch["input_ids"])
        if first is None:
            return super().forward(model, batch, features)
        with only_at(model, first, batch.get("attention_mask")):
            return super().forward(model, batch, features)

    def decode(self, item: Any, features: list[Feature], outputs: list[Any], params: dict[str, Any]) -> Any:
        (logits,) = outputs
        scores = apply_function(logits, params["function_to_apply"])
        return rank_labels(scores, self.labels, params["top_k"])

    def split_call(self, args: tuple, kwargs: dict[str, Any]) -> tuple[list[Any], dict[str, Any], Any]:
        items, params, shape = super().split_call(args, kwargs)
        # The reference wraps a bare string's result in a list unless top_k was given in this call.
        wrap = shape == "single" and isinstance(args[0], str) and "top_k" not in kwargs
        return items, params, "wrapped" if wrap else shape

    def join_call(self, results: list[Any], shape: Any, params: dict[str, Any]) -> Any:
        if shape == "wrapped":
            return [results[0]]
        return super().join_call(results, shape, params)
