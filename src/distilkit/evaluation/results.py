"""A model directory's evaluation results: a ``metrics.json`` that accumulates, and its card kept in step.

``metrics.json`` of a run directory holds what ``distilkit finetune`` measured on ``--validation`` (a
summary: task, data, examples, metrics) and, under ``"evaluations"``, one summary per ``distilkit
evaluate`` run keyed by its data (``squad/dev-v1.1.json``, ``glue/dev``). Evaluating the same data
again replaces that entry and moves it last; other entries are kept. The ``## Evaluation results``
section of ``README.md`` is rendered from the whole file by ``distilkit.cards`` (the layout of every
card) and replaces the card's previous section.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from distilkit import cards
from distilkit.cards import EVALUATIONS
from distilkit.errors import UserError


def evaluation_key(data: str | Path) -> str:
    """The key of an evaluation of the file ``data`` in ``metrics.json``: its folder and name."""
    path = Path(data).resolve()  # dev.jsonl and ../run/dev.jsonl are the same data
    return f"{path.parent.name}/{path.name}" if path.parent.name else path.name


def glue_key(split: str) -> str:
    """The key of an ``evaluate glue`` run in ``metrics.json``."""
    return f"glue/{split}"


def local_model_dir(ref: str | os.PathLike) -> tuple[Path | None, str]:
    """(the model directory that ``ref`` names and evaluate may write into, "") or (None, why not).

    Registry artifacts are immutable versions and the Hugging Face cache belongs to the hub client,
    so neither is written even when reached by a path.
    """
    from huggingface_hub import constants

    from distilkit.registry.store import default_home

    path = Path(ref).expanduser()
    if not (path / "config.json").is_file():
        return None, "not a local model directory: a hub id or registry reference"
    path = path.resolve()
    if path.is_relative_to((default_home() / "artifacts").resolve()):
        return None, "a registry artifact: registered versions are immutable"
    if path.is_relative_to(Path(constants.HF_HUB_CACHE).expanduser().resolve()):
        return None, "in the Hugging Face cache"
    targets = (path, path / "metrics.json", path / "README.md")
    if not all(os.access(p, os.W_OK) for p in targets if p.exists()):
        return None, "not writable"
    return path, ""


def merge(existing: dict[str, Any], key: str, summary: dict[str, Any]) -> dict[str, Any]:
    """``existing`` metrics.json with ``summary`` as its newest evaluation under ``key``.

    Raises:
        UserError: ``existing["evaluations"]`` is not an object (a file this module did not write).
    """
    evaluations = existing.get(EVALUATIONS, {})
    if not isinstance(evaluations, dict):
        raise UserError(f'metrics.json has an "{EVALUATIONS}" entry that is not an object')
    kept = {k: v for k, v in evaluations.items() if k != key}
    return {**existing, EVALUATIONS: {**kept, key: summary}}


def new_card(directory: Path, task: str) -> str:
    """A card for a model directory that has none: what it is, its results, how to load it."""
    try:
        config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        config = {}
    arch = (config.get("architectures") or ["unknown architecture"])[0]
    return cards.render(directory.name, f"A {task} model ({arch}).", [],
                        [cards.results_section({}), cards.usage_section(task, directory)])


def record_evaluation(directory: Path, key: str, summary: dict[str, Any], task: str) -> tuple[Path, Path]:
    """Merge ``summary`` into ``directory/metrics.json`` under ``key``; rewrite ``README.md``'s results.

    Returns:
        (the metrics.json path, the README.md path).

    Raises:
        OSError: a file cannot be written (each file is replaced whole or not at all).
        UserError: the existing metrics.json is not a JSON object.
    """
    metrics_path, card_path = directory / "metrics.json", directory / "README.md"
    existing: Any = {}
    if metrics_path.is_file():
        try:
            existing = json.loads(metrics_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            existing = None
        if not isinstance(existing, dict):
            raise UserError(f"{metrics_path} is not a JSON object")
    merged = merge(existing, key, summary)
    card = card_path.read_text(encoding="utf-8") if card_path.is_file() else new_card(directory, task)
    _write_atomic(metrics_path, json.dumps(merged, indent=2, ensure_ascii=False) + "\n")
    _write_atomic(card_path, cards.replace_section(card, cards.results_section(merged)))
    return metrics_path, card_path


def _write_atomic(path: Path, text: str) -> None:
    """Write through a temporary file in the same folder and rename: readers never see half a file."""
    umask = os.umask(0)
    os.umask(umask)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o666 & ~umask
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, mode)  # mkstemp's 0600 would make the card private
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
