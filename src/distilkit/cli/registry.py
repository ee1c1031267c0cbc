"""``distilkit registry ...``: register, list, show, card, alias, delete and import models."""

from __future__ import annotations

import json

import typer

app = typer.Typer(
    name="registry",
    help="Versioned models with model cards (SQLite + content-addressed store under $DISTILKIT_HOME).",
    no_args_is_help=True,
)


def _registry():
    from distilkit.registry.store import Registry

    return Registry()


@app.command(no_args_is_help=True)
def register(
    directory: str = typer.Argument(..., help="Model directory (config.json, weights, tokenizer files)."),
    name: str = typer.Option(..., "--name", "-n", help="Model name (letters, digits, . _ -)."),
    version: str = typer.Option(None, "--version", "-v", help="Version (default: the next integer)."),
    task: str = typer.Option(None, "--task", help="Pipeline tag (default: read from config.architectures)."),
    license: str = typer.Option(None, "--license", help="License id, e.g. apache-2.0."),
    dataset: list[str] = typer.Option([], "--dataset", help="Training dataset (repeatable)."),
    language: list[str] = typer.Option([], "--language", help="Language code (repeatable)."),
    hub_id: str = typer.Option(None, "--hub-id", help="Source hub id."),
    description: str = typer.Option(None, "--description", help="Card description."),
    limitations: str = typer.Option(
        None, "--limitations", help="Card limitations (default: a generic text)."
    ),
    alias: list[str] = typer.Option([], "--alias", help="Alias to point at this version (repeatable)."),
) -> None:
    """Register DIRECTORY as --name at --version (default: the next integer), immutable.

    Prints the reference NAME@VERSION, the task and the content SHA-256.
    """
    from distilkit.model_info import TaskNotFoundError

    try:
        entry = _registry().register(directory, name, version=version, task=task, license=license,
                                     datasets=dataset, languages=language, hub_id=hub_id,
                                     description=description, limitations=limitations, aliases=alias)
    except TaskNotFoundError as err:
        raise err.naming("--task TASK") from None
    typer.echo(f"registered {entry.name}@{entry.version} ({entry.task}, sha256 {entry.content_sha256})")


@app.command("list")
def list_(
    name: str = typer.Argument(None, help="Only this model's versions."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON entries instead of a table."),
) -> None:
    """List registered versions: reference, task, aliases, registration time, content SHA-256 prefix."""
    entries = _registry().list(name)
    if as_json:
        typer.echo(json.dumps([e.to_dict() for e in entries], indent=2))
        return
    rows = [(f"{e.name}@{e.version}", e.task, ",".join(e.aliases) or "-", e.created_at, e.content_sha256[:12])
            for e in entries]
    widths = [max(len(r[i]) for r in [("MODEL", "TASK", "ALIASES", "REGISTERED", "SHA256"), *rows])
              for i in range(5)]
    for row in [("MODEL", "TASK", "ALIASES", "REGISTERED", "SHA256"), *rows]:
        typer.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


@app.command(no_args_is_help=True)
def show(ref: str = typer.Argument(..., help="NAME@VERSION, NAME:ALIAS or NAME (latest).")) -> None:
    """Print the entry REF names as JSON (card fields, manifest, metrics, artifact path)."""
    typer.echo(json.dumps(_registry().get(ref).to_dict(), indent=2))


@app.command(no_args_is_help=True)
def card(
    ref: str = typer.Argument(..., help="NAME@VERSION, NAME:ALIAS or NAME (latest)."),
    output: str = typer.Option(None, "--output", "-o", help="Write the card to this file instead of stdout."),
) -> None:
    """Render the Markdown model card of REF."""
    from pathlib import Path

    from distilkit.registry.card import render_card

    text = render_card(_registry().get(ref).to_dict())
    if output:
        Path(output).write_text(text, encoding="utf-8")
    else:
        typer.echo(text, nl=False)


@app.command(no_args_is_help=True)
def alias(
    ref: str = typer.Argument(..., help="NAME@VERSION the alias points at."),
    alias_name: str = typer.Argument(..., metavar="ALIAS", help="Alias, e.g. prod (moves if it exists)."),
) -> None:
    """Point NAME:ALIAS at NAME@VERSION."""
    entry = _registry().set_alias(ref, alias_name)
    typer.echo(f"{entry.name}:{alias_name} -> {entry.name}@{entry.version}")


@app.command(no_args_is_help=True)
def delete(
    ref: str = typer.Argument(..., help="NAME@VERSION to delete (its number is never reused)."),
    force: bool = typer.Option(False, "--force", help="Also drop the aliases that point at it."),
) -> None:
    """Delete NAME@VERSION; refused while an alias points at it unless --force."""
    _registry().delete(ref, force=force)
    typer.echo(f"deleted {ref}")


@app.command(no_args_is_help=True)
def verify(ref: str = typer.Argument(..., help="NAME@VERSION, NAME:ALIAS or NAME (latest).")) -> None:
    """Check every file of REF against its SHA-256 manifest (what loading does)."""
    entry = _registry().resolve(ref)
    typer.echo(f"ok {entry.name}@{entry.version}: {len(entry.meta['files'])} files match "
               f"sha256 {entry.content_sha256}")


@app.command("import", no_args_is_help=True)
def import_(
    hub_id: str = typer.Argument(..., help="Hub id, e.g. distilbert-base-cased."),
    name: str = typer.Option(None, "--name", "-n", help="Model name (default: the hub id's last part)."),
    version: str = typer.Option(None, "--version", "-v", help="Version (default: the next integer)."),
    task: str = typer.Option(None, "--task", help="Pipeline tag (default: read from config.architectures)."),
    description: str = typer.Option(None, "--description", help="Card description."),
    alias: list[str] = typer.Option([], "--alias", help="Alias to point at this version (repeatable)."),
) -> None:
    """Download HUB_ID (or take it from the HF cache when offline) and register it with its card fields."""
    from distilkit.model_info import TaskNotFoundError
    from distilkit.registry.hub import import_from_hub

    try:
        entry = import_from_hub(_registry(), hub_id, name, version=version, task=task,
                                description=description, aliases=alias)
    except TaskNotFoundError as err:
        raise err.naming("--task TASK") from None
    typer.echo(f"registered {entry.name}@{entry.version} ({entry.task}, sha256 {entry.content_sha256}) "
               f"from {hub_id}")
