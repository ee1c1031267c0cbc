"""Resolve a model reference (local directory | registry reference | hub id) into a loaded model,
tokenizer and task; write a model directory back (``save_model_dir``).

What a model is without loading it (task names, ``infer_task``, ``has_weights``, ``LoadedModel``)
lives in the leaf module ``distilkit.model_info`` and is re-exported here.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from distilkit.errors import UserError
from distilkit.model_info import (  # re-exported: the loader's public names
    ARCHITECTURE_TASKS,
    TASK_ALIASES,
    TASK_AUTO_CLASSES,
    LoadedModel,
    TaskNotFoundError,
    canonical_task,
    has_weights,
    infer_task,
)

__all__ = [
    "ARCHITECTURE_TASKS", "TASK_ALIASES", "TASK_AUTO_CLASSES", "LoadedModel", "MissingHeadError",
    "ModelNotFoundError", "TaskNotFoundError", "canonical_task", "has_weights", "infer_task", "load_model",
    "quiet_from_pretrained", "resolve_source", "save_model_dir",
]


class ModelNotFoundError(UserError):
    """A model reference that names neither a local model directory nor a reachable hub model."""


class MissingHeadError(ModelNotFoundError):
    """The checkpoint has no weights for the task head a command asked for (it would run untrained)."""


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes", "on"}


def _registry_source(text: str) -> str | None:
    """The verified artifact directory of a registry reference (``N@V``, ``N:alias``, or a registered ``N``).

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
            raise ModelNotFoundError(
                f"{path} is a directory but has no config.json; is it a model directory?")
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


@contextmanager
def _no_progress_bars() -> Iterator[None]:
    """Silence transformers' per-file progress bars and load reports (they would litter CLI output and
    logs; the callers that care check missing weights themselves)."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    verbosity = hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if was_enabled:
            hf_logging.enable_progress_bar()


def quiet_from_pretrained(auto_cls: Any, source: str, **kwargs: Any) -> Any:
    """``auto_cls.from_pretrained(source, **kwargs)`` without progress bars or load report."""
    with _no_progress_bars():
        return auto_cls.from_pretrained(source, **kwargs)


def _load_trained(auto_cls: Any, source: str, ref: str, task: str) -> torch.nn.Module:
    """The checkpoint's weights for ``task``; a task head the checkpoint lacks is an error, not a
    silently random head (a ``BertModel`` encoder asked for text-classification, say).

    Raises:
        MissingHeadError: naming the missing weights and how to get a model that has them.
    """
    model, info = quiet_from_pretrained(auto_cls, source, output_loading_info=True)
    missing = sorted(info.get("missing_keys") or ())
    if missing:
        shown = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
        archs = getattr(model.config, "architectures", None)
        how = (
            "Fill-mask needs a checkpoint with its masked-LM head (a *ForMaskedLM model)"
            if task == "fill-mask"
            else f"Fine-tune it first: distilkit finetune {task} --model {ref} --train FILE --output DIR"
        )
        raise MissingHeadError(
            f"{ref} has no weights for the {task} head ({shown}; config.architectures={archs!r}), so its "
            f"answers would come from random weights. {how} (or add --dummy-weights to run random weights on "
            "purpose)"
        )
    return model


def save_model_dir(model: torch.nn.Module, tokenizer: Any, output: str | os.PathLike) -> None:
    """Write a model directory in Hugging Face layout (config.json, model.safetensors, tokenizer files)
    that ``load_model`` reads back: what distill, finetune and init-student leave in ``--output``."""
    with _no_progress_bars():
        model.save_pretrained(output)
        tokenizer.save_pretrained(output)


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
        ModelNotFoundError: unknown/unreachable reference or missing weights (``MissingHeadError``:
            the checkpoint has no weights for the task's head, e.g. a ``BertModel`` encoder).
        UserError: unknown task or backend, a task the config cannot tell (``TaskNotFoundError``),
            no fast tokenizer.
    """
    import transformers
    from transformers import AutoConfig, AutoTokenizer

    source = resolve_source(ref)
    if backend not in (None, "torch", "onnx"):
        raise UserError(f"--backend must be torch or onnx, got {backend!r}")
    from distilkit.inference.onnx_backend import is_exported_dir, load_exported

    if backend == "onnx" or (backend is None and is_exported_dir(source)):
        return load_exported(source, task, str(ref))
    config = AutoConfig.from_pretrained(source)
    task = canonical_task(task) if task else infer_task(config)
    auto_cls = getattr(transformers, TASK_AUTO_CLASSES[task])
    tokenizer = AutoTokenizer.from_pretrained(source)
    if not getattr(tokenizer, "is_fast", True):
        raise UserError(f"{source} has no fast tokenizer (tokenizer.json); distilkit needs offsets")
    if dummy_weights:
        torch.manual_seed(seed)
        model = auto_cls.from_config(config)
    else:
        if not has_weights(source):
            raise ModelNotFoundError(
                f"{source} has no weights (*.safetensors / *.bin); add --dummy-weights to run its "
                "architecture with random weights"
            )
        model = _load_trained(auto_cls, source, str(ref), task)
    model = model.to(device=device, dtype=dtype).eval()
    return LoadedModel(model=model, tokenizer=tokenizer, config=model.config, task=task, source=str(ref))
