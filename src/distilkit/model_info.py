"""What a model is, told without loading it: its task (pipeline tag), whether it has weights, and
``LoadedModel``, what loading gives.

A leaf module (no torch, no other ``distilkit`` module): the registry, the configs, the task
handlers and the ONNX backend read these facts without depending on the loader (``models.py``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from distilkit.errors import UserError

if TYPE_CHECKING:
    import torch

# The four tasks (Hugging Face pipeline tags) -> the transformers auto class that loads them.
TASK_AUTO_CLASSES = {
    "fill-mask": "AutoModelForMaskedLM",
    "question-answering": "AutoModelForQuestionAnswering",
    "text-classification": "AutoModelForSequenceClassification",
    "token-classification": "AutoModelForTokenClassification",
}
TASKS = tuple(TASK_AUTO_CLASSES)

TASK_ALIASES = {"sentiment-analysis": "text-classification", "ner": "token-classification"}

# Suffix of `config.architectures[0]` -> pipeline tag.
ARCHITECTURE_TASKS = {
    "ForMaskedLM": "fill-mask",
    "ForQuestionAnswering": "question-answering",
    "ForSequenceClassification": "text-classification",
    "ForTokenClassification": "token-classification",
}

# Files that hold weights in a Hugging Face model directory (sharded checkpoints add an index file).
WEIGHT_SUFFIXES = (".safetensors", ".bin")
WEIGHT_INDEX_SUFFIX = ".safetensors.index.json"


@dataclass
class LoadedModel:
    """A model ready for inference: weights in eval mode, its tokenizer, config and task."""

    model: torch.nn.Module
    tokenizer: Any
    config: Any
    task: str
    source: str


def canonical_task(task: str) -> str:
    """Map aliases (``ner``, ``sentiment-analysis``) to pipeline tags and reject unknown tasks.

    Raises:
        UserError: a task that is neither a pipeline tag distilkit serves nor an alias of one.
    """
    task = TASK_ALIASES.get(task, task)
    if task not in TASK_AUTO_CLASSES:
        raise UserError(f"unknown task {task!r}; expected one of {sorted(TASK_AUTO_CLASSES)}")
    return task


class TaskNotFoundError(UserError):
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


def infer_task(config: Any) -> str:
    """Read the pipeline tag from ``config.architectures`` (e.g. DistilBertForMaskedLM -> fill-mask).

    Raises:
        TaskNotFoundError: the architectures name no task head (a bare ``BertModel``, say): name the task.
    """
    for arch in getattr(config, "architectures", None) or []:
        for suffix, task in ARCHITECTURE_TASKS.items():
            if arch.endswith(suffix):
                return task
    raise TaskNotFoundError(getattr(config, "architectures", None))


def hidden_size(config: Any) -> int:
    """Width of a transformers config's hidden states (DistilBERT calls it ``dim``)."""
    return getattr(config, "dim", None) or config.hidden_size


def is_weight_file(name: str) -> bool:
    """Whether a file name of a model directory holds weights (or indexes sharded ones)."""
    return name.endswith(WEIGHT_SUFFIXES) or name.endswith(WEIGHT_INDEX_SUFFIX)


def has_weights(directory: str | os.PathLike) -> bool:
    """Whether a model directory holds weights; one without them can run only with dummy weights."""
    return os.path.isdir(directory) and any(is_weight_file(name) for name in os.listdir(directory))
