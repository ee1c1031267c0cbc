"""``distilkit finetune``: flags from ``FinetuneConfig``'s fields; one call to ``train.finetune.finetune``."""

from __future__ import annotations

import typer

from distilkit.cli.distill import ALIAS_HELP, REGISTER_HELP
from distilkit.cli.options import config_command
from distilkit.config import FinetuneConfig


@config_command(FinetuneConfig, yaml=True, arguments=("task",), aliases={"model": ("-m",), "output": ("-o",)})
def finetune(
    cfg: FinetuneConfig,
    register: str = typer.Option(None, "--register", help=REGISTER_HELP),
    register_alias: str = typer.Option(None, "--register-alias", help=ALIAS_HELP),
) -> None:
    """Fine-tune a model for TASK on --train (optionally from a --teacher); evaluate it on --validation."""
    from distilkit.registry.record import check_register, is_main_process, register_run
    from distilkit.train.finetune import finetune as run

    check_register(register, register_alias)
    output = run(cfg)
    if register and is_main_process():
        ref = register_run(output, register, command="finetune", datasets=[cfg.train, cfg.validation],
                           alias=register_alias)
        typer.echo(f"registered {ref}")
