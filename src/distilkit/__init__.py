"""distilkit: distil, fine-tune, evaluate, register and serve the DistilBERT model family."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from distilkit.inference.pipeline import Pipeline


def pipeline(task: str | None = None, model: Any = None, **kwargs: Any) -> Pipeline:
    """Drop-in for ``transformers.pipeline``; see ``distilkit.inference.pipeline.pipeline`` for arguments."""
    from distilkit.inference.pipeline import pipeline as build

    return build(task, model, **kwargs)


__all__ = ["__version__", "pipeline"]
