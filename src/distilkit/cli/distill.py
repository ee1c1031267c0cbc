"""``distilkit prepare-data``, ``init-student`` and ``distill``: parse flags, call one library function."""

from __future__ import annotations

from pathlib import Path

import typer

from distilkit.cli.options import config_command
from distilkit.config import DistillConfig


def prepare_data(
    tokenizer: str = typer.Option(
        ..., "--tokenizer", help="Model directory or hub id whose tokenizer to use."
    ),
    input: list[Path] = typer.Option(
        ..., "--input", "-i", help="Text file(s), one line per document (repeatable)."
    ),
    output: Path = typer.Option(..., "--output", "-o", help="New shard directory."),
    pairs: bool = typer.Option(
        False, "--pairs", help="Sentence pairs [CLS] A [SEP] B [SEP], 50% consecutive."
    ),
    max_length: int = typer.Option(
        512, "--max-length", help="Longest sequence incl. specials (512 -> 510 tokens)."
    ),
    min_tokens: int = typer.Option(
        10, "--min-tokens", help="Drop lines (and last chunks) with fewer text tokens."
    ),
    shard_tokens: int = typer.Option(50_000_000, "--shard-tokens", help="Tokens per shard file."),
    seed: int = typer.Option(0, "--seed", help="Seed of the --pairs draw."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Tokenize raw text into shards for `distilkit distill` (token counts and manifest.json included)."""
    from distilkit.train.data import prepare_data as run

    stats = run(
        tokenizer,
        list(input),
        output,
        max_length=max_length,
        min_tokens=min_tokens,
        pairs=pairs,
        shard_tokens=shard_tokens,
        seed=seed,
        progress=progress,
    )
    typer.echo(
        f"prepare-data: {stats.sequences} sequences, {stats.tokens} tokens in {stats.shards} shard(s), "
        f"{stats.dropped_short} short dropped -> {stats.output}"
    )


def init_student(
    teacher: str = typer.Option(
        ...,
        "--teacher",
        help="Teacher model directory or hub id: a masked LM, a task model (the student gets its head and "
        "labels) or a bare encoder (BertModel).",
    ),
    output: Path = typer.Option(..., "--output", "-o", help="New student model directory."),
    layers: str = typer.Option(
        None,
        "--layers",
        help="Teacher layers to copy, e.g. 0,2,4,7,9,11 "
        "(default: every other layer, the published pattern scaled to the teacher).",
    ),
    dummy_weights: bool = typer.Option(
        False, "--dummy-weights", help="Give the teacher seeded random weights (its architecture and "
        "tokenizer only: for speed and pipeline checks where the weights are not available)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of --dummy-weights."),
) -> None:
    """Build a student of the teacher's width from some of its layers (BERT->DistilBERT, RoBERTa->RoBERTa),
    with the teacher's head: masked LM, text/token classification, question answering, or none."""
    from distilkit.train.student_init import init_student as run
    from distilkit.train.student_init import parse_layers

    path = run(
        teacher, output, parse_layers(layers) if layers else None, dummy_weights=dummy_weights, seed=seed
    )
    typer.echo(f"init-student: student saved to {path}")


REGISTER_HELP = "After the run, register the output model as NAME (with its config, datasets and metrics)."
ALIAS_HELP = "Alias to point at the registered version."


@config_command(DistillConfig, yaml=True, aliases={"output": ("-o",)})
def distill(
    cfg: DistillConfig,
    register: str = typer.Option(None, "--register", help=REGISTER_HELP),
    register_alias: str = typer.Option(None, "--register-alias", help=ALIAS_HELP),
) -> None:
    """Distil a student from a teacher with the DistilBERT loss (α_ce·KL + α_mlm·MLM + α_cos·cosine)."""
    from distilkit.registry.record import check_register, is_main_process, register_run
    from distilkit.train.distill import distill as run

    check_register(register, register_alias)
    output = run(cfg)
    if register and is_main_process():
        ref = register_run(output, register, command="distill", datasets=[cfg.data], alias=register_alias)
        typer.echo(f"registered {ref}")
