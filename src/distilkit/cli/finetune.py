"""``distilkit finetune``: parse flags, call ``distilkit.train.finetune.finetune``."""

from __future__ import annotations

from pathlib import Path

import typer

from distilkit.config import FinetuneConfig, field_help


def _help(name: str) -> str:
    default = FinetuneConfig.__dataclass_fields__[name].default
    shown = "" if default in ("", None) else f" [default: {default}]"
    return field_help(FinetuneConfig, name) + shown


def finetune(
    task: str = typer.Argument(None, help=_help("task"), show_default=False),
    model: str = typer.Option(None, "--model", "-m", help=_help("model")),
    train: str = typer.Option(None, "--train", help=_help("train")),
    validation: str = typer.Option(None, "--validation", help=_help("validation")),
    output: str = typer.Option(None, "--output", "-o", help=_help("output")),
    config: Path = typer.Option(
        None, "--config", help="YAML file of options (keys as below, snake_case); flags win."
    ),
    glue_task: str = typer.Option(None, "--glue-task", help=_help("glue_task")),
    label_names: str = typer.Option(None, "--label-names", help=_help("label_names")),
    problem_type: str = typer.Option(None, "--problem-type", help=_help("problem_type")),
    init: str = typer.Option(None, "--init", help=_help("init")),
    num_layers: int = typer.Option(None, "--num-layers", help=_help("num_layers")),
    hidden_size: int = typer.Option(None, "--hidden-size", help=_help("hidden_size")),
    teacher: str = typer.Option(None, "--teacher", help=_help("teacher")),
    alpha_ce: float = typer.Option(None, "--alpha-ce", help=_help("alpha_ce")),
    alpha_task: float = typer.Option(None, "--alpha-task", help=_help("alpha_task")),
    temperature: float = typer.Option(None, "--temperature", help=_help("temperature")),
    max_seq_len: int = typer.Option(None, "--max-seq-len", help=_help("max_seq_len")),
    doc_stride: int = typer.Option(None, "--doc-stride", help=_help("doc_stride")),
    lr: float = typer.Option(None, "--lr", help=_help("lr")),
    warmup: float = typer.Option(None, "--warmup", help=_help("warmup")),
    weight_decay: float = typer.Option(None, "--weight-decay", help=_help("weight_decay")),
    max_grad_norm: float = typer.Option(None, "--max-grad-norm", help=_help("max_grad_norm")),
    batch_size: int = typer.Option(None, "--batch-size", help=_help("batch_size")),
    grad_accumulation: int = typer.Option(None, "--grad-accumulation", help=_help("grad_accumulation")),
    epochs: int = typer.Option(None, "--epochs", help=_help("epochs")),
    max_steps: int = typer.Option(None, "--max-steps", help=_help("max_steps")),
    seed: int = typer.Option(None, "--seed", help=_help("seed")),
    precision: str = typer.Option(None, "--precision", help=_help("precision")),
    cpu: bool = typer.Option(None, "--cpu/--no-cpu", help=_help("cpu")),
    log_every: int = typer.Option(None, "--log-every", help=_help("log_every")),
    save_every: int = typer.Option(None, "--save-every", help=_help("save_every")),
    keep_checkpoints: int = typer.Option(None, "--keep-checkpoints", help=_help("keep_checkpoints")),
    resume: str = typer.Option(None, "--resume", help=_help("resume")),
    progress: bool = typer.Option(None, "--progress/--no-progress", help=_help("progress")),
    tensorboard: bool = typer.Option(None, "--tensorboard/--no-tensorboard", help=_help("tensorboard")),
    register: str = typer.Option(None, "--register", help="After the run, register the output model as NAME "
                                 "(with its config, datasets and metrics)."),
    register_alias: str = typer.Option(None, "--register-alias", help="Alias to point at the registered version."),
) -> None:
    """Fine-tune a model for TASK on --train (optionally from a --teacher); evaluate it on --validation."""
    flags = {k: v for k, v in locals().items() if k not in ("config", "register", "register_alias")}
    from distilkit.config import load_config
    from distilkit.registry.record import check_register, is_main_process, register_run
    from distilkit.train.finetune import finetune as run

    check_register(register, register_alias)
    cfg = load_config(FinetuneConfig, config, flags)
    output = run(cfg)
    if register and is_main_process():
        ref = register_run(output, register, command="finetune", datasets=[cfg.train, cfg.validation],
                           alias=register_alias)
        typer.echo(f"registered {ref}")
