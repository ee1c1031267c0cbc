"""The task-handler contract: check inputs/params -> encode to features -> forward -> decode.

A handler owns everything task-specific and nothing about batching or devices. The Predictor
(``distilkit.inference.predictor``) drives it:

    items    = handler.check_inputs(raw_items)          # validated, normalised items
    params   = handler.check_params(user_params)        # defaults merged, values validated
    features = handler.encode(items, params)            # >= 1 Feature per item, in item order
    outputs  = handler.forward(model, batch, features)  # per batch, one output per feature
    result_i = handler.decode(items[i], feats_i, outs_i, params)

``encode`` and ``decode`` are pure functions of tokenizer output / numpy arrays, so they are
unit-tested with hand-made logits and no model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from distilkit.errors import UserError


@dataclass
class Feature:
    """One model input row: token ids of one item (or one window of it) plus task data."""

    item: int
    input_ids: list[int]
    token_type_ids: list[int] | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.input_ids)


def input_error(index: int, message: str) -> UserError:
    """The one format of per-input errors: ``input 3: <what is wrong and what is expected>``."""
    return UserError(f"input {index}: {message}")


def check_int(name: str, value: Any, minimum: int, maximum: int | None = None) -> int:
    """Validate an integer parameter (bools and floats with fractions are refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) and not (
        isinstance(value, float) and value.is_integer()
    ):
        raise UserError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if value < minimum or (maximum is not None and value > maximum):
        bound = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
        raise UserError(f"{name} must be {bound}, got {value}")
    return value


def check_bool(name: str, value: Any) -> bool:
    """Validate a boolean parameter (true/false; 0/1 accepted from text formats)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, np.integer)) and value in (0, 1):
        return bool(value)
    raise UserError(f"{name} must be true or false, got {value!r}")


def check_text(index: int, value: Any, what: str = "text") -> str:
    """Validate one non-empty string input."""
    if not isinstance(value, str):
        raise input_error(index, f"expected a string ({what}), got {type(value).__name__}")
    if not value.strip():
        raise input_error(index, f"{what} is empty")
    return value


class TaskHandler:
    """Base class of the four task handlers; subclasses fill in the class variables and methods."""

    task: ClassVar[str]
    defaults: ClassVar[dict[str, Any]] = {}
    # Per parameter: "integer" | "boolean" | "string" | "strings" (one or a list), or the tuple of
    # accepted strings; what clients (the playground) need to build a form. Covers every default.
    param_types: ClassVar[dict[str, str | tuple[str, ...]]] = {}

    def __init__(self, tokenizer: Any, config: Any):
        self.tokenizer = tokenizer
        self.config = config
        self.max_length = min(
            int(getattr(config, "max_position_embeddings", 512) or 512),
            int(getattr(tokenizer, "model_max_length", 512) or 512),
        )
        # RoBERTa offsets positions by padding_idx + 1: its usable length is 2 shorter.
        if getattr(config, "model_type", "") in {"roberta", "xlm-roberta", "camembert"}:
            self.max_length = min(self.max_length, int(config.max_position_embeddings) - 2)

    # --- parameters -------------------------------------------------------------------------
    def check_params(self, params: dict[str, Any] | None) -> dict[str, Any]:
        """Merge ``params`` over the defaults; unknown names and bad values raise UserError."""
        params = dict(params or {})
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            raise UserError(
                f"unknown parameter {unknown[0]!r} for {self.task}; expected one of {sorted(self.defaults)}"
            )
        merged = {**self.defaults, **params}
        return self.validate_params(merged)

    def validate_params(self, params: dict[str, Any]) -> dict[str, Any]:
        """Validate/convert merged parameter values (subclasses override)."""
        return params

    def describe(self) -> dict[str, Any]:
        """What a client needs to build a request: every parameter with its type and default.

        ``default`` is the value used when the parameter is not sent; None when the handler
        derives it (``doc_stride`` from ``max_seq_len``, ...). Subclasses add task facts
        (the mask token, the labels).
        """
        described = []
        for name, default in self.defaults.items():
            kind = self.param_types[name]
            entry = {"name": name, "type": "string" if isinstance(kind, tuple) else kind,
                     "default": self.public_default(name, default)}
            if isinstance(kind, tuple):
                entry["choices"] = list(kind)
            described.append(entry)
        return {"parameters": described}

    def public_default(self, name: str, default: Any) -> Any:
        """The default of ``name`` as a client sees it (subclasses hide internal sentinels)."""
        return default

    # --- the four stages ----------------------------------------------------------------------
    def check_inputs(self, items: list[Any]) -> list[Any]:
        """Validate and normalise every item; raise ``input_error(i, ...)`` for the first bad one."""
        raise NotImplementedError

    def encode(self, items: list[Any], params: dict[str, Any]) -> list[Feature]:
        """Tokenize items into features (several per item for windowed tasks), in item order."""
        raise NotImplementedError

    def forward(
        self, model: torch.nn.Module, batch: dict[str, torch.Tensor], features: list[Feature]
    ) -> list[Any]:
        """Run the model on one padded batch; return one fp32 numpy output per feature."""
        logits = model(**batch).logits.float().cpu()  # (B, T, L) or (B, L); one transfer per batch
        if logits.dim() == 3:
            return [logits[i, : len(f)].numpy() for i, f in enumerate(features)]
        return [row.numpy() for row in logits]

    def decode(self, item: Any, features: list[Feature], outputs: list[Any], params: dict[str, Any]) -> Any:
        """Turn an item's feature outputs into its result in the pipeline's output shape."""
        raise NotImplementedError

    # --- transformers-pipeline call conventions ---------------------------------------------------
    def split_call(self, args: tuple, kwargs: dict[str, Any]) -> tuple[list[Any], dict[str, Any], Any]:
        """Split a ``pipeline(...)`` call into (items, params, shape) the way transformers does."""
        if len(args) != 1:
            raise UserError(f"{self.task} takes one positional argument (an input or a list of inputs)")
        inputs = args[0]
        if isinstance(inputs, list):
            return list(inputs), kwargs, "list"
        return [inputs], kwargs, "single"

    def join_call(self, results: list[Any], shape: Any, params: dict[str, Any]) -> Any:
        """Give results back in the shape the transformers pipeline returns for that call."""
        return results[0] if shape == "single" else results

    def tokenize_error_check(self, index: int, n_tokens: int) -> None:
        """Refuse an input longer than the model accepts, naming its length and the limit."""
        if n_tokens > self.max_length:
            raise input_error(
                index,
                f"has {n_tokens} tokens; this model accepts at most {self.max_length} (shorten the text)",
            )


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax in float32."""
    x = np.asarray(x, dtype=np.float32)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function in float32."""
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float32)))
