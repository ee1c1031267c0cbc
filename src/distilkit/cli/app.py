"""The ``distilkit`` typer app: registers the commands, turns user errors into exit code 2."""

from __future__ import annotations

import sys

import typer

from distilkit import __version__
from distilkit.cli.predict import predict

app = typer.Typer(
    name="distilkit",
    help="Distil, fine-tune, evaluate, register and serve the DistilBERT model family.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command(no_args_is_help=True)(predict)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"distilkit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """Distil, fine-tune, evaluate, register and serve the DistilBERT model family."""


def main() -> None:
    """Console entry point: user errors (ValueError) print one line and exit with code 2."""
    try:
        app(standalone_mode=False)
    except ValueError as err:
        typer.echo(f"error: {err}", err=True)
        sys.exit(2)
    except typer.Exit as done:
        sys.exit(done.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except Exception as err:  # click usage errors carry their own exit code and message
        import click

        if isinstance(err, click.ClickException):
            err.show()
            sys.exit(err.exit_code)
        raise
