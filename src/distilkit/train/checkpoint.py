"""Training checkpoints that resume exactly: weights, optimizer, scheduler, RNG states, data position.

A checkpoint is a directory ``checkpoints/step-000100/`` holding exactly:

    model.safetensors     the student's weights
    training_state.pt     optimizer + scheduler state dicts, RNG states (python, numpy, torch, cuda)
    trainer_state.json    step, epoch, micro-batch position, tokens seen (human-readable)
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from distilkit.errors import UserError

CHECKPOINT_FILES = ("model.safetensors", "trainer_state.json", "training_state.pt")


def rng_states() -> dict[str, Any]:
    """Every global RNG state a training step draws from."""
    states = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore what ``rng_states`` captured."""
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save_checkpoint(
    directory: Path, model: torch.nn.Module, optimizer, scheduler, state: dict[str, Any], keep: int
) -> Path:
    """Write ``directory/step-{step:06d}`` and delete all but the ``keep`` most recent checkpoints."""
    from safetensors.torch import save_model

    path = directory / f"step-{state['step']:06d}"
    tmp = path.with_name(path.name + ".tmp")  # written aside, renamed at the end: no half checkpoints
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_model(model, str(tmp / "model.safetensors"))
    torch.save(
        {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng_states()},
        tmp / "training_state.pt",
    )
    (tmp / "trainer_state.json").write_text(json.dumps(state, indent=2) + "\n")
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)
    for old in list_checkpoints(directory)[:-keep]:
        shutil.rmtree(old)
    return path


def list_checkpoints(directory: Path) -> list[Path]:
    """Complete checkpoints under ``directory``, oldest first."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.glob("step-*") if p.is_dir() and not p.name.endswith(".tmp"))


def resolve_resume(resume: str | None, checkpoints: Path) -> Path | None:
    """'auto' -> the latest checkpoint under ``checkpoints`` (None if there is none); a path -> itself.

    Raises:
        UserError: a named checkpoint directory that is missing or incomplete.
    """
    if resume is None:
        return None
    if resume == "auto":
        found = list_checkpoints(checkpoints)
        return found[-1] if found else None
    path = Path(resume)
    missing = [name for name in CHECKPOINT_FILES if not (path / name).is_file()]
    if missing:
        raise UserError(f"--resume {path} is not a complete checkpoint (missing {missing})")
    return path


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer, scheduler) -> dict[str, Any]:
    """Restore weights, optimizer, scheduler and RNG states in place; return the trainer state."""
    from safetensors.torch import load_model

    load_model(model, str(path / "model.safetensors"))
    blob = torch.load(path / "training_state.pt", weights_only=False)
    optimizer.load_state_dict(blob["optimizer"])
    scheduler.load_state_dict(blob["scheduler"])
    set_rng_states(blob["rng"])
    return json.loads((path / "trainer_state.json").read_text())
