"""GLUE: evaluate every task of a folder and pick per-task models.

A task's score is the mean of the metrics GLUE reports for it, times 100 (``metrics.glue_metrics``);
the cards show one row of them (``distilkit.cards.glue_table``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from distilkit.errors import UserError
from distilkit.evaluation import datasets
from distilkit.evaluation.evaluate import Evaluation, Progress, evaluate


def glue_model(ref: str | Path, task: str) -> str:
    """The model for one GLUE task: ``REF/<task>`` when REF holds per-task model directories
    (any case and punctuation: ``sst2``, ``SST-2``), else REF itself for every task."""
    root = Path(ref)
    if root.is_dir() and not (root / "config.json").is_file():
        for child in sorted(root.iterdir()):
            if child.is_dir() and datasets.normalize_name(child.name) == datasets.normalize_name(task):
                return str(child)
    return str(ref)


def evaluate_glue(make_predictor: Callable[[str], Any], data_dir: str | Path, *, split: str = "dev",
                  limit: int | None = None, progress: Progress | None = None
                  ) -> tuple[dict[str, Evaluation], dict[str, str]]:
    """Evaluate every GLUE task whose ``split`` TSV is under ``data_dir``.

    Args:
        make_predictor: GLUE task name -> the Predictor to evaluate on it.

    Returns:
        (task -> Evaluation, task -> error message for tasks that could not be evaluated).

    Raises:
        UserError: when no GLUE task file is found, or every task failed.
    """
    files = datasets.find_glue_files(data_dir, split)
    if not files:
        raise UserError(
            f"--data-dir {data_dir}: no GLUE {split} files (e.g. SST-2/{split}.tsv or MRPC_{split}.tsv)"
        )
    done: dict[str, Evaluation] = {}
    failed: dict[str, str] = {}
    for task, path in files.items():
        try:
            done[task] = evaluate(make_predictor(task), path, limit=limit, glue_task=task, progress=progress)
        except UserError as err:  # one task's mismatch (labels, regression head) must not hide the others
            failed[task] = str(err)
    if not done:
        raise UserError("; ".join(f"{t}: {m}" for t, m in failed.items()))
    return done, failed
