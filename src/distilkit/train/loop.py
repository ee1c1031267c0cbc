"""Pieces shared by the distillation and fine-tuning loops (each loop stays readable on its own)."""

from __future__ import annotations

import os
import time
from typing import Any

import torch

from distilkit.errors import UserError
from distilkit.train.checkpoint import save_checkpoint


def make_accelerator(cpu: bool, mixed_precision: str) -> Any:
    """An ``accelerate.Accelerator`` for one run, data parallel when launched by torchrun/accelerate launch.

    accelerate keeps one global precision per process; its state is reset (not the process group) so
    that several runs in one process (tests, notebooks, the wikitext example) may differ. Without
    CUDA, accelerate forms a CPU process group only when told ``cpu=True``: several launched processes
    would otherwise each train alone into the same directory, so that is set here, and a group that
    still does not match ``WORLD_SIZE`` is an error.

    Raises:
        UserError: the launcher's WORLD_SIZE differs from the process group accelerate formed.
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    accelerator = Accelerator(cpu=cpu or (world > 1 and not torch.cuda.is_available()),
                              mixed_precision=mixed_precision)
    if accelerator.num_processes != world:
        raise UserError(
            f"launched as {world} processes (WORLD_SIZE) but accelerate formed a group of "
            f"{accelerator.num_processes}; launch with `accelerate launch` or `torchrun` and check the setup"
        )
    return accelerator


def optimizer_step(accelerator: Any, model: torch.nn.Module, optimizer: Any, scheduler: Any,
                   max_grad_norm: float) -> tuple[float, float]:
    """Clip (when ``max_grad_norm`` > 0), step optimizer and scheduler, zero grads.

    Returns:
        (grad norm before clipping or NaN when not clipped, learning rate used for this step)
    """
    grad_norm = (accelerator.clip_grad_norm_(model.parameters(), max_grad_norm) if max_grad_norm > 0
                 else torch.tensor(float("nan")))
    lr = scheduler.get_last_lr()[0]
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return float(grad_norm), lr


def log_row(step: int, epoch: int, lr: float, grad_norm: float, rate_name: str, rate: float, elapsed: float,
            sums: dict[str, float], n: int) -> dict[str, Any]:
    """One metrics.csv row: step, lr, grad norm, throughput and each loss term averaged over ``n`` steps."""
    return {
        "step": step,
        "epoch": epoch,
        "lr": f"{lr:.6g}",
        "grad_norm": f"{grad_norm:.4g}",
        rate_name: f"{rate:.1f}",
        "elapsed_s": f"{elapsed:.3f}",
        **{("loss" if k == "loss" else f"loss_{k}"): f"{v / n:.6g}" for k, v in sums.items()},
    }


def save_if_due(accelerator: Any, checkpoints: Any, model: torch.nn.Module, optimizer: Any, scheduler: Any,
                state: dict[str, Any], save_every: int, keep: int, done: bool, main: bool) -> None:
    """Checkpoint every ``save_every`` optimizer steps and at the last one (0 = never); rank 0 writes."""
    if not save_every or (state["step"] % save_every and not done):
        return
    accelerator.wait_for_everyone()
    if main:
        save_checkpoint(checkpoints, accelerator.unwrap_model(model), optimizer, scheduler, dict(state), keep)


def open_tensorboard(output: Any) -> Any:
    """A SummaryWriter logging into ``output/tensorboard``.

    Raises:
        UserError: the tensorboard package is not installed (names the extra to install).
    """
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise UserError(
            "--tensorboard needs the tensorboard package: pip install 'distilkit[tensorboard]'"
        ) from None
    return SummaryWriter(log_dir=str(output / "tensorboard"))


def tb_write(tb: Any, row: dict[str, Any], step: int, prefix: str = "train") -> None:
    """Every numeric field of a metrics row as a scalar at ``step`` (no-op when ``tb`` is None)."""
    if tb is None:
        return
    for key, value in row.items():
        if key not in ("step", "epoch") and value != "":
            tb.add_scalar(f"{prefix}/{key}", float(value), step)


class LogWindow:
    """Loss sums and a throughput count since the last log row; every ``log_every`` optimizer steps
    (and at the last one) one row goes to metrics.csv, TensorBoard and the console (main process)."""

    def __init__(self, rate_name: str, log_every: int, csv_file: Any, csv_writer: Any, tb: Any, bar: Any):
        self.rate_name, self.log_every = rate_name, log_every
        self.csv_file, self.csv_writer, self.tb, self.bar = csv_file, csv_writer, tb, bar
        self.start = self.t_log = time.perf_counter()
        self.count, self.sums = 0, {}

    def add(self, terms: dict[str, torch.Tensor], accumulation: int) -> None:
        """One micro-batch's loss terms (each weighs 1/accumulation of its step)."""
        for name, value in terms.items():
            self.sums[name] = self.sums.get(name, 0.0) + float(value.detach()) / accumulation

    def step(self, step: int, epoch: int, lr: float, grad_norm: float, count: int, done: bool, main: bool) -> None:
        """After optimizer step ``step``: ``count`` tokens/examples it processed; write a row when due."""
        self.count += count
        if not main or (step % self.log_every and not done):
            return
        now = time.perf_counter()
        n = step % self.log_every or self.log_every
        row = log_row(step, epoch, lr, grad_norm, self.rate_name, self.count / (now - self.t_log), now - self.start,
                      self.sums, n)
        self.csv_writer.writerow(row)
        self.csv_file.flush()
        tb_write(self.tb, row, step)
        self.bar.write(" ".join(f"{k}={v}" for k, v in row.items()))
        self.t_log, self.count, self.sums = now, 0, {}
