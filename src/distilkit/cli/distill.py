"""``distilkit prepare-data``, ``init-student`` and ``distill``: parse flags, call one library function."""

from __future__ import annotations

from pathlib import Path

import typer

from distilkit.config import DistillConfig, field_help


def _help(name: str) -> str:
    default = DistillConfig.__dataclass_fields__[name].default
    shown = "" if default in ("", None) else f" [default: {default}]"
    return field_help(DistillConfig, name) + shown


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
    teacher: str = typer.Option(..., "--teacher", help="Teacher model directory or hub id: a masked LM, a task "
                                "model (the student gets its head and labels) or a bare encoder (BertModel)."),
    output: Path = typer.Option(..., "--output", "-o", help="New student model directory."),
    layers: str = typer.Option(
        None,
        "--layers",
        help="Teacher layers to copy, e.g. 0,2,4,7,9,11 "
        "[default: every other layer, the published pattern scaled to the teacher].",
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

    path = run(teacher, output, parse_layers(layers) if layers else None, dummy_weights=dummy_weights, seed=seed)
    typer.echo(f"init-student: student saved to {path}")


def distill(
    teacher: str = typer.Option(None, "--teacher", help=_help("teacher")),
    student: str = typer.Option(None, "--student", help=_help("student")),
    data: str = typer.Option(None, "--data", help=_help("data")),
    output: str = typer.Option(None, "--output", "-o", help=_help("output")),
    config: Path = typer.Option(
        None, "--config", help="YAML file of options (keys as below, snake_case); flags win."
    ),
    alpha_ce: float = typer.Option(None, "--alpha-ce", help=_help("alpha_ce")),
    alpha_mlm: float = typer.Option(None, "--alpha-mlm", help=_help("alpha_mlm")),
    alpha_cos: float = typer.Option(None, "--alpha-cos", help=_help("alpha_cos")),
    alpha_mse: float = typer.Option(None, "--alpha-mse", help=_help("alpha_mse")),
    alpha_clm: float = typer.Option(None, "--alpha-clm", help=_help("alpha_clm")),
    temperature: float = typer.Option(None, "--temperature", help=_help("temperature")),
    restrict_ce_to_mask: bool = typer.Option(
        None, "--restrict-ce-to-mask/--no-restrict-ce-to-mask", help=_help("restrict_ce_to_mask")
    ),
    mlm_probability: float = typer.Option(None, "--mlm-probability", help=_help("mlm_probability")),
    mask_replace: float = typer.Option(None, "--mask-replace", help=_help("mask_replace")),
    random_replace: float = typer.Option(None, "--random-replace", help=_help("random_replace")),
    mlm_smoothing: float = typer.Option(None, "--mlm-smoothing", help=_help("mlm_smoothing")),
    lr: float = typer.Option(None, "--lr", help=_help("lr")),
    warmup: float = typer.Option(None, "--warmup", help=_help("warmup")),
    weight_decay: float = typer.Option(None, "--weight-decay", help=_help("weight_decay")),
    beta1: float = typer.Option(None, "--beta1", help=_help("beta1")),
    beta2: float = typer.Option(None, "--beta2", help=_help("beta2")),
    adam_eps: float = typer.Option(None, "--adam-eps", help=_help("adam_eps")),
    max_grad_norm: float = typer.Option(None, "--max-grad-norm", help=_help("max_grad_norm")),
    batch_size: int = typer.Option(None, "--batch-size", help=_help("batch_size")),
    effective_batch_size: int = typer.Option(
        None, "--effective-batch-size", help=_help("effective_batch_size")
    ),
    grad_accumulation: int = typer.Option(None, "--grad-accumulation", help=_help("grad_accumulation")),
    epochs: int = typer.Option(None, "--epochs", help=_help("epochs")),
    max_steps: int = typer.Option(None, "--max-steps", help=_help("max_steps")),
    seed: int = typer.Option(None, "--seed", help=_help("seed")),
    precision: str = typer.Option(None, "--precision", help=_help("precision")),
    teacher_dtype: str = typer.Option(None, "--teacher-dtype", help=_help("teacher_dtype")),
    cpu: bool = typer.Option(None, "--cpu/--no-cpu", help=_help("cpu")),
    log_every: int = typer.Option(None, "--log-every", help=_help("log_every")),
    save_every: int = typer.Option(None, "--save-every", help=_help("save_every")),
    keep_checkpoints: int = typer.Option(None, "--keep-checkpoints", help=_help("keep_checkpoints")),
    resume: str = typer.Option(None, "--resume", help=_help("resume")),
    tensorboard: bool = typer.Option(None, "--tensorboard/--no-tensorboard", help=_help("tensorboard")),
    progress: bool = typer.Option(None, "--progress/--no-progress", help=_help("progress")),
    register: str = typer.Option(None, "--register", help="After the run, register the output model as NAME "
                                 "(with its config, datasets and metrics)."),
    register_alias: str = typer.Option(None, "--register-alias", help="Alias to point at the registered version."),
) -> None:
    """Distil a student from a teacher with the DistilBERT loss (α_ce·KL + α_mlm·MLM + α_cos·cosine)."""
    flags = {k: v for k, v in locals().items() if k not in ("config", "register", "register_alias")}
    from distilkit.config import load_config
    from distilkit.registry.record import check_register, is_main_process, register_run
    from distilkit.train.distill import distill as run

    check_register(register, register_alias)
    cfg = load_config(DistillConfig, config, flags)
    output = run(cfg)
    if register and is_main_process():
        ref = register_run(output, register, command="distill", datasets=[cfg.data], alias=register_alias)
        typer.echo(f"registered {ref}")
