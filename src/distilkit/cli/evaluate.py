"""``distilkit evaluate``: score a model on a data file (or the GLUE tasks of a folder) into metrics.json.

A local model directory also keeps the results: merged into its own ``metrics.json`` and its
``README.md`` card's results table (``distilkit.evaluation.results``); ``--no-update-model-dir`` opts out.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from distilkit.cli.options import CALIBRATION_HELP, DTYPE_HELP
from distilkit.config import glue_task_option
from distilkit.errors import UserError

GLUE = "glue"


def _progress_bar(console: Any, description: str):
    """A rich progress bar and its ``(advance, total)`` callback for the evaluation library."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   console=console, transient=True)
    task_id = bar.add_task(description, total=None)

    def advance(n: int, total: int) -> None:
        bar.update(task_id, advance=n, total=total)

    return bar, advance


def _print_metrics(console: Any, title: str, summary: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in _flat(summary["metrics"]):
        table.add_row(name, f"{value:.4f}" if isinstance(value, float) else str(value))
    table.add_row("examples", str(summary["examples"]))
    table.add_row("examples/s", str(summary["examples_per_second"]))
    console.print(table)


def _flat(metrics: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for key, value in metrics.items():
        if isinstance(value, dict):
            rows.extend(_flat(value, f"{prefix}{key}."))
        else:
            rows.append((prefix + key, value))
    return rows


def _write_json(path: Path, payload: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")


def write_predictions(path: Path, task: str, records: list[dict[str, Any]]) -> None:
    """``--predictions``: a ``.json`` path gets one JSON document (question-answering: the official SQuAD
    evaluation script's ``{question_id: answer_text}`` object, ``""`` for no answer; other tasks: the
    list of records); any other extension gets one JSON line per example."""
    if path.suffix.lower() != ".json":
        _write_jsonl(path, records)
    elif task == "question-answering":
        _write_json(path, {r["id"]: r["prediction"] for r in records})
    else:
        _write_json(path, records)


def evaluate(
    task: str = typer.Argument(
        ..., help="question-answering | token-classification | text-classification | fill-mask | glue"
    ),
    model: str = typer.Option(
        ...,
        "--model",
        "-m",
        envvar="DISTILKIT_MODEL",
        help="Model directory or hub id (glue: or a folder of per-task models).",
    ),
    data: Path = typer.Option(
        None,
        "--data",
        "-d",
        help="SQuAD JSON | CoNLL columns | labelled text (.jsonl/.csv/.tsv/.parquet, "
        "text;label .txt) | plain text.",
    ),
    data_dir: Path = typer.Option(None, "--data-dir", help="glue: folder holding GLUE task TSVs."),
    glue_task: str = typer.Option(
        None,
        "--glue-task",
        help="text-classification: read --data as this GLUE task's TSV and report its metrics "
             "(e.g. MRPC, sst2; any case).",
    ),
    split: str = typer.Option("dev", "--split", help="glue: which split's files to evaluate."),
    limit: int = typer.Option(None, "--limit", help="Evaluate the first N examples only."),
    output: Path = typer.Option(Path("metrics.json"), "--output", "-o", help="Where to write the metrics."),
    predictions: Path = typer.Option(
        None,
        "--predictions",
        help="Also write the predictions: one JSON line per example, or for a .json path one document "
        "(question-answering: the official SQuAD script's {id: answer} object).",
    ),
    top_k: int = typer.Option(5, "--top-k", help="fill-mask: k of the top-k gold-word accuracy."),
    dummy_weights: bool = typer.Option(False, "--dummy-weights", help="Random weights, real architecture."),
    dtype: str = typer.Option("auto", "--dtype", help=DTYPE_HELP),
    calibration: str = typer.Option(None, "--calibration", help=CALIBRATION_HELP),
    device: str = typer.Option(None, "--device", help="cpu | cuda | cuda:N (default: cuda if present)."),
    register: str = typer.Option(
        None,
        "--register",
        help="Register the --model directory as NAME with these metrics attached (a new version).",
    ),
    register_alias: str = typer.Option(
        None, "--register-alias", help="Alias to point at the registered version."
    ),
    update_model_dir: bool = typer.Option(
        True,
        "--update-model-dir/--no-update-model-dir",
        help="Also merge the results into a local --model directory's "
        "metrics.json and README.md card (not registry references, "
        "hub ids or --dummy-weights runs).",
    ),
) -> None:
    """Evaluate --model on --data for TASK (or every GLUE task in --data-dir), write metrics.json."""
    from rich.console import Console

    from distilkit import cards
    from distilkit.evaluation import evaluate as ev
    from distilkit.evaluation import glue, results
    from distilkit.inference.predictor import Predictor
    from distilkit.models import canonical_task
    from distilkit.registry.record import check_register, register_run

    check_register(register, register_alias)
    if register is not None and not (Path(model).expanduser() / "config.json").is_file():
        raise UserError(
            f"--register needs --model to be a local model directory (with config.json), got {model!r}"
            + (" (a registry reference is already registered)" if "@" in model or ":" in model else "")
        )
    if limit is not None and limit < 1:
        raise UserError(f"--limit must be >= 1, got {limit}")
    if top_k < 1:
        raise UserError(f"--top-k must be >= 1, got {top_k}")
    console = Console(stderr=True)  # progress and notes; the summary tables go to stdout
    out = Console()

    def load(ref: str, name: str) -> Predictor:
        return Predictor.from_ref(ref, name, dummy_weights=dummy_weights, dtype=dtype, device=device,
                                  calibration=calibration)

    if task == GLUE:
        if data_dir is None or data is not None:
            raise UserError("evaluate glue takes --data-dir DIR (not --data)")
        bar, advance = _progress_bar(console, "GLUE")
        with bar:
            done, failed = glue.evaluate_glue(
                lambda t: load(glue.glue_model(model, t), "text-classification"), data_dir, split=split,
                limit=limit, progress=advance)
        scores = {t: r.metrics["score"] for t, r in done.items()}
        names, row = cards.glue_table(scores)
        per_task = {t: r.summary() for t, r in done.items()}
        recorded = []
        if update_model_dir:
            recorded = _record_glue(console, model, data_dir, split, dummy_weights, per_task, failed)
        if output.resolve() not in recorded:  # --output MODEL/metrics.json: the merged file is the output
            _write_json(output, {"model": model, "split": split, "glue": per_task,
                                 "table": dict(zip(names, row, strict=True)), "errors": failed})
        if predictions is not None:
            write_predictions(predictions, "text-classification",
                              [{"glue_task": t, **p} for t, r in done.items() for p in r.predictions])
        _print_glue(out, names, row, failed)
        console.print(f"metrics written to {output}")
        if register:
            ref = register_run(
                model,
                register,
                command="evaluate",
                datasets=[str(data_dir)],
                alias=register_alias,
                metrics=json.loads(output.read_text(encoding="utf-8")),
            )
            typer.echo(f"registered {ref}")
        return

    task = canonical_task(task)
    if data is None or data_dir is not None:
        raise UserError(f"evaluate {task} takes --data PATH (--data-dir is for glue)")
    if glue_task is not None:
        if task != "text-classification":
            raise UserError("--glue-task is for text-classification")
        glue_task = glue_task_option(glue_task)
    predictor = load(model, task)
    bar, advance = _progress_bar(console, f"{task} {data.name}")
    with bar:
        result = ev.evaluate(predictor, data, limit=limit, glue_task=glue_task, top_k=top_k, progress=advance)
    summary = {"model": model, "data": str(data), **({"glue_task": glue_task} if glue_task else {}),
               **result.summary()}
    recorded = None
    if update_model_dir:
        recorded = _record(console, model, results.evaluation_key(data), task, dummy_weights, summary)
    if output.resolve() != recorded:  # --output MODEL/metrics.json: the merged file is the output
        _write_json(output, summary)
    if predictions is not None:
        write_predictions(predictions, task, result.predictions)
    _print_metrics(out, f"{task} on {data.name}", summary)
    console.print(f"metrics written to {output}" + (f", predictions to {predictions}" if predictions else ""))
    if register:
        ref = register_run(
            model,
            register,
            command="evaluate",
            task=task,
            datasets=[str(data)],
            metrics=summary,
            alias=register_alias,
        )
        typer.echo(f"registered {ref}")


def _print_glue(console: Any, names: list[str], row: list[str], failed: dict[str, str]) -> None:
    from rich.table import Table

    table = Table(title="GLUE")
    for name in ["Task", *names]:
        table.add_column(name, justify="right")
    table.add_row("score", *row)
    console.print(table)
    for task, message in failed.items():
        console.print(f"[yellow]{task} not evaluated:[/] {message}")


def _record_glue(console: Any, model: str, data_dir: Path, split: str, dummy_weights: bool,
                 per_task: dict[str, Any], failed: dict[str, str]) -> list[Path]:
    """Record a GLUE run in each model directory it used: MODEL, or each MODEL/<task> of a folder of
    per-task models with its own tasks. Returns the metrics.json files written."""
    from distilkit.evaluation.glue import glue_model
    from distilkit.evaluation.results import glue_key

    by_model: dict[str, list[str]] = {}
    for task in [*per_task, *failed]:
        by_model.setdefault(glue_model(model, task), []).append(task)
    written = []
    for ref, tasks in by_model.items():
        if not any(t in per_task for t in tasks):  # every task of this model failed: nothing to record
            continue
        entry = {"model": ref, "data_dir": str(data_dir), "split": split,
                 "glue": {t: per_task[t] for t in tasks if t in per_task},
                 "errors": {t: failed[t] for t in tasks if t in failed}}
        path = _record(console, ref, glue_key(split), "text-classification", dummy_weights, entry)
        if path is not None:
            written.append(path)
    return written


def _record(console: Any, ref: str, key: str, task: str, dummy_weights: bool, summary: dict[str, Any]
            ) -> Path | None:
    """Merge ``summary`` into the model directory's metrics.json and card (returns the metrics.json
    path), or say in one line why not (returns None)."""
    from distilkit.evaluation import results

    directory, why = results.local_model_dir(ref)
    if dummy_weights:
        directory, why = None, "--dummy-weights scores random weights, not this model's"
    if directory is not None:
        try:
            metrics_path, card_path = results.record_evaluation(directory, key, summary, task)
        except (OSError, UserError) as err:
            why = str(err)
        else:
            console.print(f"results added to {metrics_path} and {card_path}", soft_wrap=True)
            return metrics_path
    console.print(f"[dim]{ref}: its metrics.json and README.md are left as they are ({why})[/]",
                  soft_wrap=True)
    return None
