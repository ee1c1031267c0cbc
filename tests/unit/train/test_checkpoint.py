"""Checkpoints: the exact file set, rotation, resume resolution and an exact restore of every state."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from distilkit.errors import UserError
from distilkit.train import checkpoint


def _training(seed: int = 0):
    torch.manual_seed(seed)
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0 / (s + 1))
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    scheduler.step()
    return model, optimizer, scheduler


def _save(directory, step, keep=2, seed=0):
    model, optimizer, scheduler = _training(seed)
    state = {"step": step, "epoch": 0, "micro_step": 2 * step, "tokens": 100 * step}
    return checkpoint.save_checkpoint(directory, model, optimizer, scheduler, state, keep)


def test_a_checkpoint_holds_exactly_its_three_files(tmp_path):
    path = _save(tmp_path, 7)
    assert path == tmp_path / "step-000007"
    assert sorted(p.name for p in path.iterdir()) == sorted(checkpoint.CHECKPOINT_FILES)
    assert json.loads((path / "trainer_state.json").read_text()) == {"step": 7, "epoch": 0, "micro_step": 14,
                                                                      "tokens": 700}
    assert not list(tmp_path.glob("*.tmp"))


def test_only_the_most_recent_checkpoints_are_kept(tmp_path):
    for step in (1, 2, 3):
        _save(tmp_path, step, keep=2)
    (tmp_path / "step-000009.tmp").mkdir()  # a half-written one from a crash
    assert [p.name for p in checkpoint.list_checkpoints(tmp_path)] == ["step-000002", "step-000003"]


def test_resume_auto_takes_the_latest_and_a_named_one_must_be_complete(tmp_path):
    assert checkpoint.resolve_resume(None, tmp_path) is None
    assert checkpoint.resolve_resume("auto", tmp_path) is None  # nothing yet: start from scratch
    _save(tmp_path, 1)
    latest = _save(tmp_path, 2)
    assert checkpoint.resolve_resume("auto", tmp_path) == latest
    assert checkpoint.resolve_resume(str(latest), tmp_path) == latest
    (latest / "training_state.pt").unlink()
    with pytest.raises(
        UserError, match=r"--resume .*step-000002 is not a complete checkpoint .*training_state.pt"
    ):
        checkpoint.resolve_resume(str(latest), tmp_path)


def test_load_restores_weights_optimizer_schedule_and_random_states(tmp_path):
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    path = _save(tmp_path, 3, seed=0)
    draws = (random.random(), np.random.rand(), torch.rand(1).item())
    saved_model, saved_optimizer, saved_scheduler = _training(seed=0)

    model, optimizer, scheduler = _training(seed=5)  # other weights and states
    state = checkpoint.load_checkpoint(path, model, optimizer, scheduler)
    assert state["step"] == 3 and state["tokens"] == 300
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                 saved_model.state_dict().values(), strict=True))
    assert torch.equal(optimizer.state_dict()["state"][0]["exp_avg"],
                       saved_optimizer.state_dict()["state"][0]["exp_avg"])
    assert scheduler.state_dict()["last_epoch"] == saved_scheduler.state_dict()["last_epoch"] == 1
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == draws  # the same next draws
