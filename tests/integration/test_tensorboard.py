"""``distill --tensorboard``: event files under output/tensorboard, left out when the run is registered.

(``finetune --tensorboard`` is tested with the other fine-tuning runs in test_finetune.py.)
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest
from tiny_models import WORDS

from distilkit.cli.app import main
from distilkit.registry.record import register_run
from distilkit.registry.store import Registry
from distilkit.train.data import prepare_data
from distilkit.train.student_init import init_student

pytest.importorskip("tensorboard", reason="pip install 'distilkit[tensorboard]'")


def scalars(logdir) -> dict[str, list[int]]:
    """Tag -> the steps it was logged at, read back with TensorBoard's own reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(logdir))
    events.Reload()
    return {tag: [e.step for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_distill_tensorboard_writes_events_that_registration_leaves_out(tiny_model, tmp_path, monkeypatch):
    teacher = tiny_model("fill-mask", "bert", layers=4)
    r = random.Random(0)
    corpus = tmp_path / "corpus.txt"
    lines = [" ".join(r.choice(WORDS) for _ in range(r.randint(4, 30))) for _ in range(40)]
    corpus.write_text("\n".join(lines) + "\n")
    prepare_data(str(teacher), [corpus], tmp_path / "data", max_length=48, min_tokens=3, progress=False)
    student = init_student(str(teacher), tmp_path / "student")
    args = ["distill", "--teacher", teacher, "--student", student, "--data", tmp_path / "data",
            "--output", tmp_path / "run", "--max-steps", 3, "--batch-size", 4, "--grad-accumulation", 1,
            "--log-every", 1, "--precision", "float32", "--no-progress", "--tensorboard"]
    monkeypatch.setattr(sys, "argv", ["distilkit", *map(str, args)])
    with pytest.raises(SystemExit) as done:
        main()
    assert done.value.code == 0

    logdir = tmp_path / "run" / "tensorboard"
    assert len(list(logdir.glob("events.out.tfevents.*"))) == 1
    logged = scalars(logdir)
    assert {"train/loss", "train/loss_ce", "train/lr", "train/grad_norm", "train/tokens_per_s"} <= set(logged)
    assert logged["train/loss"] == [1, 2, 3]

    monkeypatch.setenv("DISTILKIT_HOME", str(tmp_path / "home"))
    ref = register_run(tmp_path / "run", "student", command="distill")
    entry = Registry().get(ref)
    assert "model.safetensors" in entry.meta["files"]
    assert not any(f.startswith("tensorboard/") for f in entry.meta["files"])
    assert not (Path(entry.path) / "tensorboard").exists()
