"""Resolve a model reference (local directory | hub id) into a loaded model, tokenizer and task."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

# Suffix of `config.architectures[0]` -> pipeline tag.
ARCHITECTURE_TASKS = {
    "ForMaskedLM": "fill-mask",
    "ForQuestionAnswering": "question-answering",
    "ForSequenceClassification": "text-classification",
    "ForTokenClassification": "token-classification",
}

# Pipeline tag -> transformers auto class name.
TASK_AUTO_CLASSES = {
    "fill-mask": "AutoModelForMaskedLM",
    "question-answering": "AutoModelForQuestionAnswering",
    "text-classification": "AutoModelForSequenceClassification",
    "token-classification": "AutoModelForTokenClassification",
}

TASK_ALIASES = {"sentiment-analysis": "text-classification", "ner": "token-classification"}


class ModelNotFoundError(ValueError):
    """A model reference that names neither a local model directory nor a reachable hub model."""


@dataclass
class LoadedModel:
    """A model ready for inference: weights in eval mode, its tokenizer, config and task."""

    model: torch.nn.Module
    tokenizer: Any
    config: Any
    task: str
    source: str


def canonical_task(task: str) -> str:
    """Map aliases (``ner``, ``sentiment-analysis``) to pipeline tags and reject unknown tasks."""
    task = TASK_ALIASES.get(task, task)
    if task not in TASK_AUTO_CLASSES:
        raise ValueError(f"unknown task {task!r}; expected one of {sorted(TASK_AUTO_CLASSES)}")
    return task


def infer_task(config: Any) -> str:
    """Read the pipeline tag from ``config.architectures`` (e.g. DistilBertForMaskedLM -> fill-mask)."""
    for arch in getattr(config, "architectures", None) or []:
        for suffix, task in ARCHITECTURE_TASKS.items():
            if arch.endswith(suffix):
                return task
    raise ValueError(
        f"cannot infer the task from config.architectures={getattr(config, 'architectures', None)!r}; "
        f"name it explicitly (one of {sorted(TASK_AUTO_CLASSES)})"
    )


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes", "on"}


def _registry_source(text: str) -> str | None:
    """The verified artifact directory of a registry reference (``N@V``, ``N:alias``, or ``N`` when registered).

    A bare name that the registry does not hold returns None, so hub ids keep working.
    """
    from distilkit.registry.refs import parse_ref

    ref = parse_ref(text)
    if ref is None:
        return None
    from distilkit.registry.store import Registry

    registry = Registry()
    if not ref.explicit and not (registry.exists() and registry.list(ref.name)):
        return None
    return registry.resolve(ref).path


def resolve_source(ref: str | os.PathLike) -> str:
    """Return a local directory for ``ref``: the directory itself, a registry artifact, or the hub snapshot.

    Raises:
        ModelNotFoundError: when ``ref`` is neither a model directory nor downloadable/cached.
    """
    path = Path(ref).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(f"{path} is a directory but has no config.json; is it a model directory?")
        return str(path)
    text = str(ref)
    registered = _registry_source(text)
    if registered is not None:
        return registered
    if text.startswith((".", "/", "~")) or text.count("/") > 1:
        raise ModelNotFoundError(f"model directory {text!r} does not exist")
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(text, local_files_only=_offline())
    except Exception as err:  # hub errors come in many classes (offline, 404, gated, network)
        first_line = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        why = "the hub is offline (HF_HUB_OFFLINE=1) and it is not in the cache" if _offline() else first_line
        raise ModelNotFoundError(
            f"cannot load model {text!r}: {why}. Pass a local model directory with --model DIR "
            "(config.json, tokenizer files, weights), or add --dummy-weights to a directory that has "
            "only config.json and tokenizer files."
        ) from err


def _has_weights(directory: str) -> bool:
    names = os.listdir(directory)
    return any(n.endswith((".safetensors", ".bin")) or n.endswith(".safetensors.index.json") for n in names)


def _quiet_from_pretrained(auto_cls: Any, source: str) -> torch.nn.Module:
    """``from_pretrained`` without transformers' per-load progress bar (it would litter CLI output)."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        return auto_cls.from_pretrained(source)
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def load_model(
    ref: str | os.PathLike,
    task: str | None = None,
    *,
    dummy_weights: bool = False,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    backend: str | None = None,
) -> LoadedModel:
    """Load model + tokenizer for ``task`` (inferred from the config when None).

    Args:
        ref: local model directory or hub id.
        task: pipeline tag; None reads it from ``config.architectures``.
        dummy_weights: build the architecture from its config with seeded random weights.
        seed: seed for dummy weights (same seed -> same weights).
        dtype: parameter dtype after loading.
        device: where the weights live.
        backend: ``torch`` | ``onnx`` | None (detected: ``onnx`` for a ``distilkit export onnx``
            directory, which runs on the CPU in its exported precision; dtype and dummy_weights
            do not apply to it).

    Raises:
        ModelNotFoundError: unknown/unreachable reference or missing weights.
        ValueError: unknown task, or a task the config cannot tell.
    """
    import transformers
    from transformers import AutoConfig, AutoTokenizer

    source = resolve_source(ref)
    if backend not in (None, "torch", "onnx"):
        raise ValueError(f"backend must be torch or onnx, got {backend!r}")
    from distilkit.inference.onnx_backend import is_exported_dir, load_exported

    if backend == "onnx" or (backend is None and is_exported_dir(source)):
        return load_exported(source, task, str(ref))
    config = AutoConfig.from_pretrained(source)
    task = canonical_task(task) if task else infer_task(config)
    auto_cls = getattr(transformers, TASK_AUTO_CLASSES[task])
    tokenizer = AutoTokenizer.from_pretrained(source)
    if not getattr(tokenizer, "is_fast", True):
        raise ValueError(f"{source} has no fast tokenizer (tokenizer.json); distilkit needs offsets")
    if dummy_weights:
        torch.manual_seed(seed)
        model = auto_cls.from_config(config)
    else:
        if not _has_weights(source):
            raise ModelNotFoundError(
                f"{source} has no weights (*.safetensors / *.bin); add --dummy-weights to run its "
                "architecture with random weights"
            )
        model = _quiet_from_pretrained(auto_cls, source)
    model = model.to(device=device, dtype=dtype).eval()
    return LoadedModel(model=model, tokenizer=tokenizer, config=model.config, task=task, source=str(ref))
