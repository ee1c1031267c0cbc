"""``distilkit predict``: run a task on texts given on the command line and print JSON."""

from __future__ import annotations

import json
from typing import Any

import typer


def parse_params(pairs: list[str]) -> dict[str, Any]:
    """Parse ``k=v`` pairs; values are JSON when they parse (3, true, ["a","b"]), else strings."""
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--param expects key=value, got {pair!r}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        params[key.strip().replace("-", "_")] = value
    return params


def predict(
    task: str = typer.Argument(..., help="fill-mask | question-answering | text-classification | token-classification"),
    texts: list[str] = typer.Argument(None, help="Input texts (for question-answering use --question/--context)."),
    model: str = typer.Option(..., "--model", "-m", help="Model directory or hub id.", envvar="DISTILKIT_MODEL"),
    dummy_weights: bool = typer.Option(False, "--dummy-weights", help="Random weights of the real architecture."),
    param: list[str] = typer.Option([], "--param", "-p", help="Task parameter key=value (repeatable), e.g. top_k=3."),
    question: list[str] = typer.Option([], "--question", "-q", help="QA question (repeatable, pairs with --context)."),
    context: list[str] = typer.Option([], "--context", "-c", help="QA context (repeatable, pairs with --question)."),
    dtype: str = typer.Option("auto", "--dtype", help="auto (bf16 where fast) | float32 | bfloat16."),
    device: str = typer.Option(None, "--device", help="cpu | cuda | cuda:N (default: cuda if present)."),
    compile: bool = typer.Option(False, "--compile", help="torch.compile the encoder (pays off on large inputs)."),
) -> None:
    """Predict TASK on TEXT... with --model and print the results as a JSON list (one entry per input)."""
    from distilkit.models import canonical_task

    task = canonical_task(task)
    items: list[Any]
    if task == "question-answering":
        if texts:
            raise ValueError("question-answering takes --question Q --context C, not positional texts")
        if not question or len(question) != len(context):
            raise ValueError(
                f"question-answering needs as many --context as --question (got {len(question)} and {len(context)})"
            )
        items = [{"question": q, "context": c} for q, c in zip(question, context, strict=True)]
    else:
        if question or context:
            raise ValueError("--question/--context are for question-answering only")
        if not texts:
            raise ValueError(f"{task} needs at least one input text")
        items = list(texts)
    params = parse_params(param)

    from distilkit.inference.predictor import Predictor

    predictor = Predictor.from_ref(model, task, dummy_weights=dummy_weights, dtype=dtype, device=device, compile=compile)
    results = predictor.predict(items, params)
    typer.echo(json.dumps(results, indent=2, ensure_ascii=False))
