"""Flags derived from config dataclasses: one field is one flag, its docstring the help."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest
import typer
import yaml
from typer.testing import CliRunner

from distilkit.cli.distill import distill
from distilkit.cli.finetune import finetune
from distilkit.cli.options import config_command, config_options, flag
from distilkit.cli.predict import predict
from distilkit.config import DistillConfig, FinetuneConfig
from distilkit.errors import UserError


@dataclass(frozen=True)
class Toy:
    """A config of every kind of field."""

    name: str
    """Who to greet."""
    times: int = 2
    """How many ``times``."""
    loud: bool = False
    """Shout."""
    polite: bool = True
    """Say please."""
    ratio: float | None = None
    """An optional ratio."""

    def __post_init__(self) -> None:
        if self.times < 1:
            raise UserError(f"--times must be >= 1, got {self.times}")


def run(function, *args: str) -> tuple[int, str]:
    app = typer.Typer()
    app.command()(function)
    app.command("other")(lambda: None)  # two commands: the first word names the command
    out = CliRunner().invoke(app, [function.__name__, *args])
    if out.exception and not isinstance(out.exception, SystemExit):
        raise out.exception
    return out.exit_code, out.output


def test_a_field_is_a_flag_typed_by_its_annotation_with_its_docstring_as_help():
    @config_command(Toy, arguments=("name",), required=("name",))
    def greet(flags: dict, extra: int = typer.Option(0, "--extra")) -> None:
        print(sorted(flags.items()), extra)

    code, output = run(
        greet, "ann", "--times", "3", "--loud", "--no-polite", "--ratio", "0.5", "--extra", "1"
    )
    assert code == 0, output
    assert (
        output.strip()
        == "[('loud', True), ('name', 'ann'), ('polite', False), ('ratio', 0.5), ('times', 3)] 1"
    )
    code, output = run(greet, "ann")
    assert (
        output.strip()
        == "[('loud', False), ('name', 'ann'), ('polite', True), ('ratio', None), ('times', 2)] 0"
    )
    code, output = run(greet, "--help")
    assert "How many times." in output and "Say please." in output and "--no-polite" in output
    assert "--no-loud" not in output  # a flag that defaults to off needs no off switch
    assert run(greet, "ann", "--times", "x")[0] == 2  # typed: a usage error


def test_yaml_configs_take_a_config_file_that_flags_override(tmp_path):
    @config_command(Toy, yaml=True)
    def greet(cfg: Toy) -> None:
        print(cfg)

    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump({"name": "bo", "times": 5, "polite": False}))
    code, output = run(greet, "--config", str(path), "--times", "4")
    assert code == 0, output
    assert output.strip() == "Toy(name='bo', times=4, loud=False, polite=False, ratio=None)"
    with pytest.raises(UserError, match="--times must be >= 1"):
        run(greet, "--name", "x", "--times", "0")
    help_text = run(greet, "--help")[1]
    assert "(default: 2)" in help_text and "--config" in help_text


def test_a_field_without_a_flag_type_must_be_skipped():
    @dataclass(frozen=True)
    class Bad:
        """A field the command line cannot spell."""

        values: dict = dataclasses.field(default_factory=dict)
        """Some mapping."""

    with pytest.raises(TypeError, match="Bad.values"):
        config_options(Bad)
    assert config_options(Bad, skip=("values",)) == []


@pytest.mark.parametrize(("command", "cls", "own"), [
    (distill, DistillConfig, {"config", "register", "register_alias"}),
    (finetune, FinetuneConfig, {"config", "register", "register_alias"}),
])
def test_training_commands_have_one_flag_per_config_field(command, cls, own):
    import inspect

    params = inspect.signature(command).parameters
    assert set(params) == {f.name for f in dataclasses.fields(cls)} | own
    for field in dataclasses.fields(cls):
        info = params[field.name].default
        names = " ".join(getattr(info, "param_decls", ()) or ())
        assert field.name == "task" or flag(field.name) in names, field.name


def test_predict_takes_every_batch_flag_including_backend():
    import inspect

    params = inspect.signature(predict).parameters
    for name in (
        "model",
        "input",
        "output",
        "backend",
        "dtype",
        "engine",
        "batch_size",
        "max_errors",
        "progress",
    ):
        assert name in params, name
    assert "params" not in params and "filesystem" not in params
