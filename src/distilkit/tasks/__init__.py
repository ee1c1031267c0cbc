"""Task handlers by pipeline tag. Adding a task = one module here and one line in HANDLERS."""

from __future__ import annotations

import importlib

from distilkit.model_info import canonical_task
from distilkit.tasks.base import Feature, TaskHandler

HANDLERS = {
    "fill-mask": "distilkit.tasks.fill_mask:FillMaskHandler",
    "question-answering": "distilkit.tasks.question_answering:QuestionAnsweringHandler",
    "text-classification": "distilkit.tasks.text_classification:TextClassificationHandler",
    "token-classification": "distilkit.tasks.token_classification:TokenClassificationHandler",
}


def get_handler_class(task: str) -> type[TaskHandler]:
    """Return the handler class for a pipeline tag (aliases like ``ner`` accepted)."""
    module, name = HANDLERS[canonical_task(task)].split(":")
    return getattr(importlib.import_module(module), name)


__all__ = ["HANDLERS", "Feature", "TaskHandler", "get_handler_class"]
