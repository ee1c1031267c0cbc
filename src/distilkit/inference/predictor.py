"""The Predictor: the only inference path (task handler encode -> batched model -> decode).

Serving, batch prediction and evaluation all call ``Predictor.predict`` (or its three stages
``prepare`` / ``run`` / ``finish`` when they batch features of several requests together).
"""

from __future__ import annotations

import inspect
import os
import threading
from dataclasses import dataclass
from typing import Any

import torch

from distilkit.inference import runtime
from distilkit.inference.batching import collate, padded_length, plan_batches
from distilkit.model_info import LoadedModel
from distilkit.models import load_model
from distilkit.tasks import Feature, get_handler_class

DEFAULT_MAX_BATCH_TOKENS = 2048
DEFAULT_MAX_BATCH_SIZE = 64


@dataclass
class Prepared:
    """Validated items, resolved parameters and their encoded features, ready for ``run``."""

    items: list[Any]
    params: dict[str, Any]
    features: list[Feature]


class Predictor:
    """Runs one model for one task over lists of inputs with length-aware, token-budgeted batches.

    Args:
        loaded: model, tokenizer, config and task from ``distilkit.models.load_model``.
        max_batch_tokens: padded tokens per forward pass (rows x padded length).
        max_batch_size: rows per forward pass.
        pad_to_multiple_of: round each batch's length up to this (8 suits bf16 kernels).
        compile: compile the encoder with torch.compile (faster batches after a ~20 s warm-up;
            for long-lived processes such as servers).
    """

    def __init__(
        self,
        loaded: LoadedModel,
        *,
        max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        pad_to_multiple_of: int = 8,
        compile: bool = False,
    ):
        if max_batch_tokens < 1 or max_batch_size < 1 or pad_to_multiple_of < 1:
            raise ValueError("max_batch_tokens, max_batch_size and pad_to_multiple_of must be >= 1")
        self.loaded = loaded
        self.model = loaded.model
        self.tokenizer = loaded.tokenizer
        self.task = loaded.task
        self.handler = get_handler_class(loaded.task)(loaded.tokenizer, loaded.config)
        self.max_batch_tokens = max_batch_tokens
        self.max_batch_size = max_batch_size
        self.pad_to_multiple_of = pad_to_multiple_of
        accepted = inspect.signature(self.model.forward).parameters
        self._uses_token_types = "token_type_ids" in accepted
        self._pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        first = next(self.model.parameters(), None)  # None: an ONNX Runtime model (weights in its session)
        self.device = first.device if first is not None else getattr(self.model, "device", torch.device("cpu"))
        self.dtype = first.dtype if first is not None else getattr(self.model, "dtype", torch.float32)
        # Fast tokenizers are not safe to call from several threads at once (truncation state is
        # shared): servers encode/decode requests concurrently, so those stages take this lock.
        self._tokenizer_lock = threading.Lock()
        if compile:
            if first is None:
                raise ValueError("--compile needs the torch backend; an ONNX model is already a compiled graph")
            runtime.compile_encoder(self.model)

    @classmethod
    def from_ref(
        cls,
        model: str | os.PathLike,
        task: str | None = None,
        *,
        dummy_weights: bool = False,
        seed: int = 0,
        dtype: str | torch.dtype = "auto",
        device: str | int | torch.device | None = None,
        num_threads: int | None = None,
        backend: str | None = None,
        **batching: Any,
    ) -> Predictor:
        """Load ``model`` (directory or hub id) and build a Predictor with the precision policy applied.

        ``backend`` is ``torch``, ``onnx`` or None (``onnx`` for a ``distilkit export onnx`` directory).
        """
        dev = runtime.resolve_device(device)
        torch_dtype = runtime.resolve_dtype(dtype, dev)
        if dev.type == "cpu":
            runtime.set_threads(num_threads)
        loaded = load_model(model, task, dummy_weights=dummy_weights, seed=seed, dtype=torch_dtype, device=dev,
                            backend=backend)
        return cls(loaded, **batching)

    # --- the three stages ------------------------------------------------------------------------
    def prepare(self, items: list[Any], params: dict[str, Any] | None = None) -> Prepared:
        """Validate params and items and encode them into features (no model call)."""
        resolved = self.handler.check_params(params)
        checked = self.handler.check_inputs(list(items))
        with self._tokenizer_lock:
            features = self.handler.encode(checked, resolved)
        return Prepared(checked, resolved, features)

    def run(self, features: list[Feature]) -> list[Any]:
        """Forward ``features`` in length-grouped batches; return one output per feature, in order."""
        lengths = [len(f) for f in features]
        batches = plan_batches(
            lengths, self.max_batch_tokens, self.max_batch_size, self.pad_to_multiple_of, self.handler.max_length
        )
        outputs: list[Any] = [None] * len(features)
        with torch.inference_mode():
            for idx in batches:
                rows = [features[i] for i in idx]
                width = padded_length(max(lengths[i] for i in idx), self.pad_to_multiple_of, self.handler.max_length)
                types = [f.token_type_ids or [0] * len(f) for f in rows] if self._uses_token_types else None
                batch = collate([f.input_ids for f in rows], self._pad_id, width, types)
                batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
                for i, out in zip(idx, self.handler.forward(self.model, batch, rows), strict=True):
                    outputs[i] = out
        return outputs

    def finish(self, prepared: Prepared, outputs: list[Any]) -> list[Any]:
        """Decode each item from its features' outputs."""
        per_item: list[list[int]] = [[] for _ in prepared.items]
        for i, f in enumerate(prepared.features):
            per_item[f.item].append(i)
        with self._tokenizer_lock:
            return [
                self.handler.decode(
                    item, [prepared.features[i] for i in fidx], [outputs[i] for i in fidx], prepared.params
                )
                for item, fidx in zip(prepared.items, per_item, strict=True)
            ]

    def predict(self, items: list[Any], params: dict[str, Any] | None = None) -> list[Any]:
        """Predict a list of items; returns one result per item, in the task's pipeline shape.

        Raises:
            ValueError: an unknown parameter, a value out of range, or a bad input (named by index).
        """
        prepared = self.prepare(items, params)
        return self.finish(prepared, self.run(prepared.features))
