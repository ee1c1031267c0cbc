"""Command-line options derived from a config dataclass: the config *is* the CLI.

Each field of a frozen config dataclass (``DistillConfig``, ``FinetuneConfig``, ``BatchConfig``) becomes
the flag of the same name in kebab case, typed by the field's annotation, its help the docstring under
the field. A new option is then one field with one docstring, in one place::

    @config_command(DistillConfig, yaml=True, aliases={"output": ("-o",)})
    def distill(cfg: DistillConfig, register: str = typer.Option(None, "--register", help="...")) -> None:
        ...

The decorated function's own parameters (``register`` above) stay ordinary typer options and follow
the derived ones. With ``yaml=True`` the command also takes ``--config FILE``: every flag defaults to
None, so the YAML file's values hold unless a flag is given (the help shows the dataclass defaults),
and the function receives the built config. Otherwise flags default to the dataclass defaults and the
function receives the field values as a dict (``predict`` builds its config only in file mode).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import typer
from typer.models import ArgumentInfo

from distilkit.batch.config import BatchConfig
from distilkit.config import field_help, flag, load_config

SCALARS = (str, int, float, bool)
CONFIG_HELP = "YAML file of options (keys as below, snake_case); flags win."
# --dtype / --backend of the commands whose config has no such field (evaluate, serve): the batch
# config's fields.
DTYPE_HELP = " ".join(field_help(BatchConfig, "dtype").split())
BACKEND_HELP = " ".join(field_help(BatchConfig, "backend").split())
CALIBRATION_HELP = " ".join(field_help(BatchConfig, "calibration").split())


def _scalar(annotation: Any, where: str) -> type:
    """The click type of a field annotation: ``int | None`` -> int; ``str | Path`` -> str."""
    args = (
        typing.get_args(annotation)
        if typing.get_origin(annotation) in (typing.Union, types.UnionType)
        else ()
    )
    if args:
        options = [a for a in args if a is not type(None)]
        if all(a in (str, Path) for a in options):
            return str
        if len(options) == 1:
            annotation = options[0]
    if annotation in SCALARS:
        return annotation
    raise TypeError(
        f"{where}: a {annotation!r} field has no flag; skip it or give the command its own option"
    )


def _help(cls: type, field: dataclasses.Field, shown_default: bool) -> str:
    """The docstring under ``field`` on one line, ``code`` marks dropped; optionally its default."""
    text = " ".join(field_help(cls, field.name).replace("``", "").split())
    if shown_default and field.default not in ("", None, dataclasses.MISSING):
        text += f" (default: {field.default})"  # not "[...]": rich help would read it as markup
    return text


def config_options(
    cls: type,
    *,
    yaml: bool = False,
    skip: Iterable[str] = (),
    arguments: Iterable[str] = (),
    required: Iterable[str] = (),
    aliases: Mapping[str, tuple[str, ...]] | None = None,
    envvars: Mapping[str, str] | None = None,
) -> list[inspect.Parameter]:
    """One typer parameter per field of ``cls`` (see the module docstring).

    Args:
        cls: the config dataclass; each field needs a docstring and a str/int/float/bool type (optional).
        yaml: flags default to None so that a ``--config`` YAML file fills what they leave out.
        skip: fields without a flag (e.g. ones only the Python API can set).
        arguments: fields taken as positional arguments, in this order, instead of flags.
        required: fields the command line must give (other fields without a default are optional).
        aliases: extra flag names per field (``{"output": ("-o",)}``).
        envvars: an environment variable per field that stands in for its flag.

    Raises:
        TypeError: a field whose type has no flag and that is not skipped.
    """
    aliases, envvars, skipped, required = aliases or {}, envvars or {}, set(skip), set(required)
    hints = typing.get_type_hints(cls)
    order = list(arguments)
    fields = sorted((f for f in dataclasses.fields(cls) if f.name not in skipped),
                    key=lambda f: order.index(f.name) if f.name in order else len(order))
    params = []
    for field in fields:
        kind = _scalar(hints[field.name], f"{cls.__name__}.{field.name}")
        default = None if yaml or field.default is dataclasses.MISSING else field.default
        if field.name in required:
            default = ...
        if field.name in order:
            info = typer.Argument(default, help=_help(cls, field, yaml), show_default=False)
        else:
            names = [flag(field.name)]
            if kind is bool and (yaml or field.default is not False):  # a default that --x cannot change
                names = [f"{flag(field.name)}/--no-{flag(field.name)[2:]}"]
            info = typer.Option(default, *names, *aliases.get(field.name, ()), help=_help(cls, field, yaml),
                                envvar=envvars.get(field.name), show_default=not yaml and default is not None)
        annotation = kind if default is ... or default is not None else kind | None
        params.append(inspect.Parameter(field.name, inspect.Parameter.KEYWORD_ONLY, default=info,
                                        annotation=annotation))
    return params


def config_command(cls: type, *, yaml: bool = False, **derive: Any) -> Callable[[Callable[..., Any]], Any]:
    """Decorate a command function so that its flags are derived from ``cls`` (see the module docstring).

    The function's first parameter receives the config (``yaml=True``: ``load_config(cls, --config,
    flags)``) or else the dict of field values; its other parameters are the command's own options.
    ``derive`` goes to ``config_options``.
    """
    derived = config_options(cls, yaml=yaml, **derive)
    names = [p.name for p in derived]

    def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
        _, *own = inspect.signature(function, eval_str=True).parameters.values()  # first: the config
        extra = [inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, annotation=Path | None,
                                   default=typer.Option(None, "--config", help=CONFIG_HELP))] if yaml else []
        own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own]
        is_argument = [isinstance(p.default, ArgumentInfo) for p in derived + own]
        everything = derived + own
        ordered = [p for p, a in zip(everything, is_argument, strict=True) if a] + extra + [
            p for p, a in zip(everything, is_argument, strict=True) if not a]

        @functools.wraps(function)
        def command(**kwargs: Any) -> Any:
            flags = {name: kwargs.pop(name) for name in names}
            if yaml:
                return function(load_config(cls, kwargs.pop("config"), flags), **kwargs)
            return function(flags, **kwargs)

        del command.__wrapped__  # typer reads the signature below, not the function's own
        command.__signature__ = inspect.Signature(ordered)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in ordered}
        return command

    return decorate
