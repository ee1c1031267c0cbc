"""``distilkit registry ...`` as a user runs it, and registry references wherever --model goes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import distilkit
from distilkit.models import ModelNotFoundError, resolve_source
from distilkit.registry.store import Registry


def run(home: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "distilkit", *args], capture_output=True, text=True,
                          timeout=120, check=False,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
                               "DISTILKIT_HOME": str(home), **(env or {})})


@pytest.fixture(scope="module")
def filled_home(tmp_path_factory, tiny_model) -> Path:
    """A store with tiny@1 (alias prod) and tiny@2."""
    home = tmp_path_factory.mktemp("home")
    registry = Registry(home)
    registry.register(tiny_model("fill-mask"), "tiny", aliases=["prod"], license="apache-2.0")
    registry.register(tiny_model("fill-mask", family="roberta"), "tiny")
    return home


def test_register_list_show_card_alias_delete(tmp_path, tiny_model):
    home = tmp_path / "home"
    out = run(home, "registry", "register", str(tiny_model("fill-mask")), "--name", "mymodel",
              "--license", "mit", "--dataset", "wikitext", "--dataset", "bookcorpus",
              "--description", "Tiny.", "--alias", "prod")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("registered mymodel@1 (fill-mask, sha256 ")
    listed = run(home, "registry", "list")
    assert listed.returncode == 0 and "mymodel@1  fill-mask  latest,prod" in listed.stdout
    shown = json.loads(run(home, "registry", "show", "mymodel:prod").stdout)
    assert (shown["version"], shown["license"], shown["datasets"]) == ("1", "mit", ["wikitext", "bookcorpus"])
    card = run(home, "registry", "card", "mymodel@1").stdout
    assert card.startswith("# mymodel@1\n\nTiny.") and "- wikitext" in card and '"input_data"' in card
    assert run(home, "registry", "verify", "mymodel").returncode == 0
    aliased = run(home, "registry", "alias", "mymodel@1", "staging")
    assert aliased.stdout.strip() == "mymodel:staging -> mymodel@1"
    deleted = run(home, "registry", "delete", "mymodel@1", "--force")
    assert deleted.returncode == 0 and run(home, "registry", "list", "--json").stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("args", "message"),
    [(["register", "{model}", "--name", "tiny", "--version", "1"], "tiny@1 is already registered"),
     (["register", "{home}", "--name", "tiny"], "is not a model directory (no config.json)"),
     (["register", "{model}", "--name", "a/b"], "--name 'a/b' is invalid"),
     (["delete", "tiny@1"], "tiny@1 is the target of alias prod"),
     (["delete", "tiny:prod"], "expected NAME@VERSION"),
     (["show", "tiny@9"], "tiny has no version '9' (versions: 1, 2)"),
     (["card", "other"], "no model named 'other'"),
     (["alias", "tiny@2", "latest"], "'latest' is implicit"),
     (["import", "distilbert-base-cased-not-cached"],
      "the hub is offline (HF_HUB_OFFLINE=1) and it is not in the cache")],
)
def test_user_errors_exit_2_with_one_line(filled_home, tiny_model, args, message):
    args = [a.format(model=tiny_model("fill-mask"), home=filled_home) for a in args]
    out = run(filled_home, "registry", *args)
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().count("\n") == 0 and message in out.stderr


def test_import_registers_a_cached_hub_model_offline(tmp_path, tiny_model):
    cache, commit = tmp_path / "hub", "0123456789abcdef0123456789abcdef01234567"
    repo = cache / "models--acme--tiny-bert"
    shutil.copytree(tiny_model("fill-mask"), repo / "snapshots" / commit)
    (repo / "snapshots" / commit / "README.md").write_text(
        "---\nlicense: apache-2.0\ndatasets:\n- wikipedia\n---\n# x\n")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    out = run(tmp_path / "home", "registry", "import", "acme/tiny-bert", env={"HF_HUB_CACHE": str(cache)})
    assert out.returncode == 0, out.stderr
    entry = Registry(tmp_path / "home").get("tiny-bert@1")
    assert (entry.meta["hub_id"], entry.meta["license"], entry.meta["datasets"]) == \
        ("acme/tiny-bert", "apache-2.0", ["wikipedia"])


def test_predict_accepts_a_registry_alias(filled_home):
    out = run(filled_home, "predict", "fill-mask", "--model", "tiny:prod", "--dtype", "float32",
              "--param", "top_k=2", "the [MASK] of France")
    assert out.returncode == 0, out.stderr
    assert len(json.loads(out.stdout)[0]) == 2


def test_pipeline_by_registry_reference_equals_the_directory(filled_home, tiny_model, monkeypatch):
    monkeypatch.setenv("DISTILKIT_HOME", str(filled_home))
    text = "Paris is the [MASK] of France."
    by_ref = distilkit.pipeline("fill-mask", model="tiny@1", dtype="float32")(text, top_k=3)
    directory = str(tiny_model("fill-mask"))
    by_dir = distilkit.pipeline("fill-mask", model=directory, dtype="float32")(text, top_k=3)
    assert by_ref == by_dir
    # bare name = latest
    assert distilkit.pipeline(model="tiny", dtype="float32").tokenizer.mask_token == "<mask>"


def test_tampered_registry_model_is_refused_when_loading(tmp_path, tiny_model):
    home = tmp_path / "home"
    entry = Registry(home).register(tiny_model("fill-mask"), "tiny")
    weights = Path(entry.path) / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\x00")
    out = run(home, "predict", "fill-mask", "--model", "tiny@1", "a [MASK]")
    assert out.returncode == 2 and out.stderr.strip().count("\n") == 0
    assert "tiny@1 failed SHA-256 verification: model.safetensors was modified" in out.stderr


def test_unregistered_bare_name_is_still_a_hub_id(filled_home, monkeypatch):
    monkeypatch.setenv("DISTILKIT_HOME", str(filled_home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match="--model DIR"):
        resolve_source("distilbert-base-cased-not-cached")
