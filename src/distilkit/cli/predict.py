"""``distilkit predict``: run a task on texts given on the command line, or over a file (``--input``)."""

from __future__ import annotations

import json
from typing import Any

import typer

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
    backend: str = typer.Option(None, "--backend", help="torch | onnx (default: onnx for an exported directory)."),
    input: str = typer.Option(None, "--input", "-i", help="Predict every row of this JSONL/CSV/Parquet file: a path "
                              "or a URI (s3://bucket/in.jsonl, gs://..., hdfs://..., file:///abs/in.csv)."),
    output: str = typer.Option(None, "--output", "-o", help="Output file, a path or a URI like --input (format from "
                               "its extension); written chunk by chunk, each chunk whole or absent."),
    input_format: str = typer.Option(None, "--input-format", help="jsonl | csv | parquet (default: extension)."),
    text_column: str = typer.Option(None, "--text-column", help="Text column (default: text, else input_string)."),
    question_column: str = typer.Option("question", "--question-column", help="QA question column."),
    context_column: str = typer.Option("context", "--context-column", help="QA context column."),
    id_column: str = typer.Option("id", "--id-column", help="Id column copied to the output (else row number)."),
    batch_size: int = typer.Option(256, "--batch-size", help="Rows predicted and written per chunk."),
    max_errors: int = typer.Option(None, "--max-errors", help="Stop with exit 1 once more rows than this failed."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted --output after its last complete "
                                "chunk (either engine); the result equals an uninterrupted run."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --output."),
    engine: str = typer.Option("local", "--engine", help="local | ray (Ray Data actor pool; every Ray node must "
                               "read --input: a URI or a shared path). Both write the same output."),
    num_workers: int = typer.Option(2, "--num-workers", help="Ray actors, one model each (--engine ray)."),
) -> None:
    """Predict TASK on TEXT... (prints a JSON list) or on every row of --input into --output."""
    from distilkit.models import canonical_task

    task = canonical_task(task)
    if input is not None or output is not None:
        if texts or question or context:
            raise UserError("give TEXT... (or --question/--context) or --input FILE, not both")
        if input is None or output is None:
            raise UserError("--input and --output go together")
        predict_file_command(
            task=task, model=model, input=input, output=output, input_format=input_format, text_column=text_column,
            question_column=question_column, context_column=context_column, id_column=id_column,
            params=parse_params(param), batch_size=batch_size, max_errors=max_errors, resume=resume,
            overwrite=overwrite, engine=engine, num_workers=num_workers, dummy_weights=dummy_weights, dtype=dtype,
            device=device, compile=compile,
        )
        return
    items: list[Any]
    if task == "question-answering":
        if texts:
            raise UserError("question-answering takes --question Q --context C, not positional texts")
        if not question or len(question) != len(context):
            raise UserError(
                f"question-answering needs as many --context as --question (got {len(question)} and {len(context)})"
            )
        items = [{"question": q, "context": c} for q, c in zip(question, context, strict=True)]
    else:
        if question or context:
            raise UserError("--question/--context are for question-answering only")
        if not texts:
            raise UserError(f"{task} needs at least one input text")
        items = list(texts)
    params = parse_params(param)

    from distilkit.inference.predictor import Predictor

    predictor = Predictor.from_ref(model, task, dummy_weights=dummy_weights, dtype=dtype, device=device, compile=compile,
                                 backend=backend)
    results = predictor.predict(items, params)
    typer.echo(json.dumps(results, indent=2, ensure_ascii=False))


def predict_file_command(**flags: Any) -> None:
    """Run ``distilkit.batch.predict_file`` and print its one-line JSON summary on stdout (exit 1 past --max-errors)."""
    from distilkit.batch import BatchConfig, MaxErrorsExceeded, predict_file

    try:
        summary = predict_file(BatchConfig(**flags))
    except MaxErrorsExceeded as err:
        typer.echo(json.dumps(err.summary.as_dict()))
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from None
    typer.echo(json.dumps(summary.as_dict()))
