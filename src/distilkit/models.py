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


class TaskNotFoundError(ValueError):
    """``config.architectures`` names no task head (e.g. a bare ``BertModel`` encoder) and none was given.

    Commands re-raise it with ``naming(flag)`` so the message says which of their flags names the task.
    """

    def __init__(self, architectures: Any, flag: str = "name it explicitly"):
        self.architectures = architectures
        base = bool(architectures) and all(
            not any(a.endswith(s) for s in ARCHITECTURE_TASKS) and a.endswith("Model") for a in architectures
        )
        what = (
            " (an encoder without a task head: fine-tune it first with `distilkit finetune TASK --model DIR "
            "--train FILE --output OUT`)" if base else ""
        )
        super().__init__(
            f"cannot infer the task from config.architectures={architectures!r}{what}; {flag} "
            f"(one of {sorted(TASK_AUTO_CLASSES)})"
        )

    def naming(self, flag: str) -> TaskNotFoundError:
        """The same error, saying which flag (or argument) supplies the task."""
        return TaskNotFoundError(self.architectures, f"name the task with {flag}")


class MissingHeadError(ModelNotFoundError):
    """The checkpoint has no weights for the task head a command asked for (it would run untrained)."""


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
    raise TaskNotFoundError(getattr(config, "architectures", None))


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
    return any(n.endswith((".safetensors", ".bin", ".safetensors.index.json")) for n in names)


def quiet_from_pretrained(auto_cls: Any, source: str, **kwargs: Any) -> Any:
    """``from_pretrained`` without transformers' per-load progress bar and load report (they would
    litter CLI output; missing weights are checked by the callers that care)."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    verbosity = hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        return auto_cls.from_pretrained(source, **kwargs)
    finally:
        hf_logging.set_verbosity(verbosity)
        if was_enabled:
            hf_logging.enable_progress_bar()


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
        ValueError: unknown task, or a task the config cannot tell (``TaskNotFoundError``).
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
        model = _load_trained(auto_cls, source, str(ref), task)
    model = model.to(device=device, dtype=dtype).eval()
    return LoadedModel(model=model, tokenizer=tokenizer, config=model.config, task=task, source=str(ref))
