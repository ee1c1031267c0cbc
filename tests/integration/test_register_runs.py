"""``--register NAME`` on finetune and evaluate: the output lands in the registry with its config and data."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

TEXTS = [("the good day", "joy"), ("not the river", "sadness"), ("a great game today", "joy"),
         ("she had not won", "sadness")]


def run(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "DISTILKIT_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "distilkit", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )


def write_texts(path: Path) -> Path:
    path.write_text("".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in TEXTS))
    return path


def test_finetune_register_carries_config_datasets_and_metrics(tiny_model, tmp_path):
    home, train, dev = (
        tmp_path / "home",
        write_texts(tmp_path / "train.jsonl"),
        write_texts(tmp_path / "dev.jsonl"),
    )
    out = run(home, "finetune", "text-classification", "--model", str(tiny_model("fill-mask")),
              "--train", str(train), "--validation", str(dev), "--output", str(tmp_path / "o"),
              "--max-steps", "2", "--save-every", "1", "--no-progress", "--precision", "float32",
              "--register", "sentiment", "--register-alias", "candidate")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "registered sentiment@1"
    shown = run(home, "registry", "show", "sentiment:candidate")
    assert shown.returncode == 0, shown.stderr
    entry = json.loads(shown.stdout)
    assert entry["version"] == "1" and entry["task"] == "text-classification"
    assert entry["registered_by"] == "finetune" and entry["source"] == str((tmp_path / "o").resolve())
    assert entry["datasets"] == [str(train.resolve()), str(dev.resolve())]
    assert entry["config"]["max_steps"] == 2 and entry["config"]["train"] == str(train)
    assert entry["metrics"]["examples"] == 4 and "accuracy" in entry["metrics"]["metrics"]
    assert (
        not any(f.startswith("checkpoints/") for f in entry["files"])
        and "model.safetensors" in entry["files"]
    )


def test_evaluate_register_attaches_its_metrics(tiny_model, tmp_path):
    home, data = tmp_path / "home", write_texts(tmp_path / "dev.jsonl")
    model = shutil.copytree(
        tiny_model("text-classification", id2label=["sadness", "joy"]), tmp_path / "model"
    )
    out = run(home, "evaluate", "text-classification", "--model", str(model), "--data", str(data),
              "--dtype", "float32", "--output", str(tmp_path / "m.json"), "--register", "scored")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "registered scored@1"
    entry = json.loads(run(home, "registry", "show", "scored@1").stdout)
    assert entry["registered_by"] == "evaluate" and entry["datasets"] == [str(data.resolve())]
    assert entry["metrics"] == json.loads((tmp_path / "m.json").read_text())
    assert entry["metrics"]["examples"] == 4
    assert {"README.md", "metrics.json"} <= set(entry["files"])  # the evaluated dir's card went in with it


def test_register_bad_use_exits_2_with_one_line(tiny_model, tmp_path):
    home, data = tmp_path / "home", write_texts(tmp_path / "dev.jsonl")
    for model, register, message in [
        ("distilbert-base-uncased", "x", "--register needs --model to be a local model directory"),
        ("scored@1", "x", "a registry reference is already registered"),
        (str(tiny_model("text-classification")), "a/b", "--register 'a/b' is invalid"),
    ]:
        out = run(home, "evaluate", "text-classification", "--model", model, "--data", str(data),
                  "--output", str(tmp_path / "m.json"), "--register", register)
        assert out.returncode == 2, out.stderr
        assert message in out.stderr and out.stderr.strip().count("\n") == 0, out.stderr
    assert not (tmp_path / "m.json").exists()
