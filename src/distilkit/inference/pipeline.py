"""``distilkit.pipeline``: a drop-in for ``transformers.pipeline`` on the Predictor."""

from __future__ import annotations

import os
from typing import Any

import torch

from distilkit.errors import UserError
from distilkit.inference.predictor import Predictor

# Call-time keywords of transformers pipelines that concern batching, not results.
_BATCHING_KWARGS = {"batch_size", "num_workers"}


class Pipeline:
    """Callable like the transformers pipeline of the same task, with the same outputs.

    Attributes:
        predictor: the Predictor that does the work (shared with serve, predict, evaluate).
        task, model, tokenizer: as on a transformers pipeline.
    """

    def __init__(self, predictor: Predictor, default_params: dict[str, Any] | None = None):
        self.predictor = predictor
        self.task = predictor.task
        self.model = predictor.model
        self.tokenizer = predictor.tokenizer
        self.default_params = dict(default_params or {})
        predictor.handler.check_params(self.default_params)  # fail at construction, not at first call

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        for name in _BATCHING_KWARGS & kwargs.keys():
            if name == "batch_size" and kwargs[name] is not None:
                self.predictor.max_batch_size = int(kwargs[name])
            kwargs.pop(name)
        handler = self.predictor.handler
        items, params, shape = handler.split_call(args, kwargs)
        params = {**self.default_params, **params}
        results = self.predictor.predict(items, params)
        return handler.join_call(results, shape, handler.check_params(params))

    def __repr__(self) -> str:
        p = self.predictor
        return (f"distilkit.Pipeline(task={self.task!r}, model={p.loaded.source!r}, dtype={p.dtype}, "
                f"device={p.device})")


def pipeline(
    task: str | None = None,
    model: str | os.PathLike | None = None,
    *,
    dummy_weights: bool = False,
    dtype: str | torch.dtype = "auto",
    device: str | int | torch.device | None = None,
    num_threads: int | None = None,
    max_batch_tokens: int | None = None,
    max_batch_size: int | None = None,
    compile: bool = False,
    seed: int = 0,
    backend: str | None = None,
    **params: Any,
) -> Pipeline:
    """Build a pipeline for ``task`` on ``model`` (a model directory or hub id).

    Args:
        task: ``fill-mask``, ``question-answering``, ``text-classification``,
            ``token-classification`` (aliases ``ner``, ``sentiment-analysis``); None infers it
            from ``config.architectures``.
        model: local model directory or hub id.
        dummy_weights: random weights of the real architecture (load tests, benchmarks).
        dtype: ``auto`` (bf16 on AMX/AVX512-BF16 CPUs and CUDA, else fp32), ``float32``, ``bfloat16``.
        device: ``cpu``, ``cuda``, ``cuda:N`` or an index (-1 = CPU); None picks CUDA if present.
        num_threads: CPU threads (default: all this process may use).
        max_batch_tokens, max_batch_size: the length-aware batching budget.
        compile: torch.compile the encoder (a ~20 s first batch; measure before relying on it).
        seed: seed of dummy weights.
        backend: ``torch`` | ``onnx`` | None (``onnx`` when ``model`` is a ``distilkit export onnx``
            directory).
        **params: default call parameters (e.g. ``top_k=3``), validated now.

    Raises:
        UserError: unknown task or parameter, bad value.
        distilkit.models.ModelNotFoundError: the model cannot be found (offline hub id, bad path).
    """
    if model is None:
        raise UserError("model is required: a local model directory or a hub id")
    batching: dict[str, Any] = {"compile": compile}
    if max_batch_tokens is not None:
        batching["max_batch_tokens"] = max_batch_tokens
    if max_batch_size is not None:
        batching["max_batch_size"] = max_batch_size
    from distilkit.model_info import TaskNotFoundError

    try:
        predictor = Predictor.from_ref(
            model, task, dummy_weights=dummy_weights, seed=seed, dtype=dtype, device=device,
            num_threads=num_threads, backend=backend, **batching,
        )
    except TaskNotFoundError as err:
        raise err.naming("pipeline(TASK, model=...)") from None
    return Pipeline(predictor, params)
