"""Batch prediction over files (JSONL, CSV, Parquet): resumable, row-exact, locally or on Ray."""

from __future__ import annotations

from typing import Any

from distilkit.batch.config import BatchConfig
from distilkit.batch.local import BatchSummary, MaxErrorsExceeded, run_local

__all__ = ["BatchConfig", "BatchSummary", "MaxErrorsExceeded", "predict_file"]


def predict_file(config: BatchConfig, predictor: Any = None) -> BatchSummary:
    """Predict every row of ``config.input`` into ``config.output`` with the engine ``config.engine``.

    Args:
        config: the run's settings (one per ``distilkit predict`` flag).
        predictor: an already loaded Predictor to reuse (local engine only); None loads ``config.model``.

    Returns:
        The run's summary (rows, errors, seconds, rows/s).

    Raises:
        UserError: a bad flag, parameter, column, existing output, or Ray missing for ``--engine ray``.
        MaxErrorsExceeded: more rows failed than ``config.max_errors``; the output so far is valid.
    """
    if config.engine == "ray":
        from distilkit.batch.ray_engine import run_ray

        return run_ray(config)
    return run_local(config, predictor)
