"""``distilkit predict``: run a task on texts given on the command line, or over a file (``--input``)."""

from __future__ import annotations

import json
from typing import Any

import typer

from distilkit.batch.config import BatchConfig
from distilkit.cli.options import config_command
from distilkit.errors import UserError


def parse_params(pairs: list[str]) -> dict[str, Any]:
    """Parse ``k=v`` pairs; values are JSON when they parse (3, true, ["a","b"]), else strings."""
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--param expects key=value, got {pair!r}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        params[key.strip().replace("-", "_")] = value
    return params


@config_command(BatchConfig, arguments=("task",), required=("task", "model"), skip=("params", "filesystem"),
                aliases={"model": ("-m",), "input": ("-i",), "output": ("-o",)},
                envvars={"model": "DISTILKIT_MODEL"})
def predict(
    flags: dict[str, Any],
    texts: list[str] = typer.Argument(
        None, help="Input texts (for question-answering use --question/--context)."
    ),
    param: list[str] = typer.Option(
        [], "--param", "-p", help="Task parameter key=value (repeatable), e.g. top_k=3."
    ),
    question: list[str] = typer.Option(
        [], "--question", "-q", help="QA question (repeatable, pairs with --context)."
    ),
    context: list[str] = typer.Option(
        [], "--context", "-c", help="QA context (repeatable, pairs with --question)."
    ),
) -> None:
    """Predict TASK on TEXT... (prints a JSON list) or on every row of --input into --output."""
    from distilkit.model_info import canonical_task

    task = canonical_task(flags["task"])
    params = parse_params(param)
    if flags["input"] is not None or flags["output"] is not None:
        if texts or question or context:
            raise UserError("give TEXT... (or --question/--context) or --input FILE, not both")
        if flags["input"] is None or flags["output"] is None:
            raise UserError("--input and --output go together")
        predict_file_command(BatchConfig(**{**flags, "task": task}, params=params))
        return
    items = _command_line_items(task, texts, question, context)

    from distilkit.inference.predictor import Predictor

    predictor = Predictor.from_ref(
        flags["model"],
        task,
        dummy_weights=flags["dummy_weights"],
        dtype=flags["dtype"],
        device=flags["device"],
        compile=flags["compile"],
        backend=flags["backend"],
        calibration=flags["calibration"],
    )
    results = predictor.predict(items, params)
    typer.echo(json.dumps(results, indent=2, ensure_ascii=False))


def _command_line_items(
    task: str, texts: list[str] | None, question: list[str], context: list[str]
) -> list[Any]:
    """The items TEXT... or the --question/--context pairs name (question-answering)."""
    if task == "question-answering":
        if texts:
            raise UserError("question-answering takes --question Q --context C, not positional texts")
        if not question or len(question) != len(context):
            raise UserError(
                "question-answering needs as many --context as --question "
                f"(got {len(question)} and {len(context)})"
            )
        return [{"question": q, "context": c} for q, c in zip(question, context, strict=True)]
    if question or context:
        raise UserError("--question/--context are for question-answering only")
    if not texts:
        raise UserError(f"{task} needs at least one input text")
    return list(texts)


def predict_file_command(config: BatchConfig) -> None:
    """Run ``distilkit.batch.predict_file``; print its one-line JSON summary (exit 1 past --max-errors)."""
    from distilkit.batch import MaxErrorsExceeded, predict_file

    try:
        summary = predict_file(config)
    except MaxErrorsExceeded as err:
        typer.echo(json.dumps(err.summary.as_dict()))
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from None
    typer.echo(json.dumps(summary.as_dict()))
