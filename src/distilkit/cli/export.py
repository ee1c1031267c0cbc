"""``distilkit export onnx``: export a model to an ONNX Runtime directory (fp32 or int8),
parity-checked."""

from __future__ import annotations

import json

import typer

app = typer.Typer(help="Export models for other runtimes.", no_args_is_help=True)


# The help is given here rather than as the docstring: a line break in it would show in `export --help`.
@app.command(
    "onnx",
    no_args_is_help=True,
    help="Export MODEL to ONNX in --output; fails (exit 2) when fp32 logits differ from PyTorch by more "
    "than --atol.",
)
def onnx(
    model: str = typer.Option(..., "--model", "-m", help="Model directory, hub id or registry reference."),
    output: str = typer.Option(
        ..., "--output", "-o", help="Directory to create (model.onnx, tokenizer, config, report)."
    ),
    task: str = typer.Option(None, "--task", help="Pipeline tag (default: from config.architectures)."),
    quantize: str = typer.Option(None, "--quantize", help="int8: dynamic int8 quantization (~4x smaller)."),
    opset: int = typer.Option(18, "--opset", help="ONNX opset (>= 18)."),
    dummy_weights: bool = typer.Option(
        False, "--dummy-weights", help="Random weights of the real architecture."
    ),
    atol: float = typer.Option(
        1e-4, "--atol", help="Largest allowed |ONNX fp32 - PyTorch| logit difference."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --output."),
) -> None:
    """Parse the ``export onnx`` flags, run ``export_onnx`` and print its report's summary as JSON."""
    from distilkit.export import export_onnx
    from distilkit.model_info import TaskNotFoundError

    try:
        report = export_onnx(model, output, task=task, quantize=quantize, opset=opset,
                             dummy_weights=dummy_weights, atol=atol, overwrite=overwrite)
    except TaskNotFoundError as err:
        raise err.naming("--task TASK") from None
    summary = {k: report[k] for k in ("task", "precision", "sizes", "parity", "seconds")}
    typer.echo(json.dumps({"output": output, **summary}, indent=2))
