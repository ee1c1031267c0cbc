"""Model cards: the one Markdown layout of every card distilkit writes, and their results section.

Three cards share it: a registered version's (``registry.card.render_card``), a fine-tuning run
directory's README.md (``train.finetune_report.render_card``) and the one ``distilkit evaluate`` starts
for a model directory without a card (``evaluation.results.record_evaluation``). Each builds its title,
summary, field table and sections; ``render`` lays them out. The ``## Evaluation results`` section is
rendered from a metrics.json (``results_section``) and swapped in place when results are added
(``replace_section``), so all three show results the same way.

A metrics.json holds either a flat or nested mapping of metric -> number (``| dataset | metric |
value |`` rows), or what ``distilkit finetune`` measured on ``--validation`` (a summary: task, data,
examples, metrics) plus, under ``"evaluations"``, one summary per ``distilkit evaluate`` run keyed by
its data (``squad/dev-v1.1.json``, ``glue/dev``). GLUE evaluations add the cards' one-row GLUE table.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from distilkit.evaluation.metrics import GLUE_TASKS

SECTION = "## Evaluation results"
USAGE = "## How to use"
EVALUATIONS = "evaluations"
NOT_EVALUATED = ("Not evaluated: fine-tune with `--validation FILE` or run "
                 "`distilkit evaluate TASK --model DIR --data FILE` to add results here.")


def render(title: str, summary: str, fields: list[tuple[str, Any]], sections: list[list[str]]) -> str:
    """The card: ``# title``, the summary, a ``| field | value |`` table (when ``fields``), then each
    section (its lines, from its ``## heading``; see ``section``)."""
    out = [f"# {title}", "", summary, ""]
    if fields:
        out += ["| field | value |", "|---|---|", *(f"| {name} | {value} |" for name, value in fields), ""]
    for lines in sections:
        out += lines
    return "\n".join(out).rstrip("\n") + "\n"


def section(heading: str, *lines: str) -> list[str]:
    """A card section: ``## heading``, a blank line, its lines, a blank line."""
    return [f"## {heading}", "", *lines, ""]


def usage_section(task: str, model: str | Path) -> list[str]:
    """``## How to use``: the ``distilkit.pipeline`` call that loads the model."""
    return section("How to use", "```python", "import distilkit", "",
                   f'model = distilkit.pipeline("{task}", model="{model}")', "```")


def metric_rows(metrics: dict[str, Any], prefix: str = "") -> list[tuple[str, str, str]]:
    """The results rows, ``(dataset/split, metric, value)``, of a flat or nested metrics mapping.

    Args:
        metrics: metric name -> number or string; a nested dict's key joins the dataset path.
        prefix: dataset path of the top level (``"dev.jsonl/"``); ``-`` when it is empty.

    Returns:
        One row per number or string, floats to 4 decimals without trailing zeros; booleans are left out.
    """
    rows = []
    for key, value in metrics.items():
        if isinstance(value, dict):
            rows += metric_rows(value, f"{prefix}{key}/")
        elif isinstance(value, (int, float, str)) and not isinstance(value, bool):
            shown = f"{value:.4f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)
            rows.append((prefix.rstrip("/") or "-", key, shown))
    return rows


def glue_table(scores: dict[str, float | None]) -> tuple[list[str], list[str]]:
    """The cards' GLUE row: task names in card order and each score (x100, one decimal) or ``-``."""
    names = list(GLUE_TASKS)
    cells = ["-" if scores.get(n) is None or math.isnan(scores[n]) else f"{scores[n]:.1f}" for n in names]
    return names, cells


def _runs(metrics: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(label, summary) of every evaluation in a metrics.json, oldest first: the top-level one, then
    the keyed ones. A top level in another layout becomes one run whose metrics are its numbers."""
    top = {k: v for k, v in metrics.items() if k != EVALUATIONS}
    runs = []
    if isinstance(top.get("metrics"), dict):
        runs.append((Path(str(top.get("data") or "validation")).name, top))
    elif top:
        runs.append(("", {"metrics": top}))
    runs += [(k, v) for k, v in (metrics.get(EVALUATIONS) or {}).items() if isinstance(v, dict)]
    return runs


def _rows(label: str, summary: dict[str, Any]) -> list[tuple[str, str, str]]:
    if isinstance(summary.get("glue"), dict):
        return [row for task, s in summary["glue"].items()
                for row in metric_rows(s["metrics"], f"{label}/{task}/")]
    return metric_rows(summary.get("metrics") or {}, f"{label}/" if label else "")


def _describe(label: str, summary: dict[str, Any]) -> str | None:
    if isinstance(summary.get("glue"), dict):
        done = ", ".join(f"{t} ({s['examples']} examples)" for t, s in summary["glue"].items())
        failed = f"; not evaluated: {', '.join(summary['errors'])}" if summary.get("errors") else ""
        where = f"the GLUE {summary.get('split')} files in `{summary.get('data_dir')}`"
        return f"- `{label}`: {where}: {done}{failed}"
    if "examples" not in summary:
        return None
    glue = f" (GLUE {summary['glue_task']})" if summary.get("glue_task") else ""
    return f"- `{label}`: {summary['examples']} examples of `{summary.get('data')}`{glue}"


def glue_scores(metrics: dict[str, Any]) -> dict[str, float]:
    """GLUE task -> score of every GLUE evaluation in a metrics.json; a later evaluation wins."""
    scores: dict[str, float] = {}
    for _, summary in _runs(metrics):
        glue = summary.get("glue")
        found = glue if isinstance(glue, dict) else {summary.get("glue_task"): summary}
        for task, s in found.items():
            score = (s.get("metrics") or {}).get("score")
            if task and isinstance(score, (int, float)):
                scores[task] = float(score)
    return scores


def results_section(metrics: dict[str, Any], empty: str = NOT_EVALUATED) -> list[str]:
    """The ``## Evaluation results`` lines of a metrics.json (``empty``: what to say without results)."""
    runs = _runs(metrics)
    rows = [row for label, summary in runs for row in _rows(label, summary)]
    if not rows:
        return section("Evaluation results", empty)
    described = [line for label, summary in runs if (line := _describe(label, summary))]
    out = [SECTION, ""]
    if described:
        out += ["Scored through the distilkit Predictor (what `distilkit serve` runs) on:", "",
                *described, ""]
    out += ["| dataset | metric | value |", "|---|---|---|", *(f"| {d} | {m} | {v} |" for d, m, v in rows)]
    scores = glue_scores(metrics)
    if scores:
        names, cells = glue_table(scores)
        out += ["", "GLUE scores (each the mean of the task's metrics x 100, as in the DistilBERT card):", "",
                "| Task | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|",
                "| score | " + " | ".join(cells) + " |"]
    return [*out, ""]


def replace_section(card: str, results: list[str]) -> str:
    """``card`` with its results section replaced by ``results``; a card without one gets it before
    ``## How to use``, or at the end."""
    lines = card.splitlines()
    if SECTION in lines:
        start = lines.index(SECTION)
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    else:
        start = end = lines.index(USAGE) if USAGE in lines else len(lines)
        if start and lines[start - 1].strip():
            results = ["", *results]
    return "\n".join([*lines[:start], *results, *lines[end:]]).rstrip("\n") + "\n"
