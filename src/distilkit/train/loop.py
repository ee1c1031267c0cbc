"""What the distillation and fine-tuning loops share: precision, schedule, the optimizer step, checkpoints
on time, the run's logs and progress bars, and the one-sync-per-step bookkeeping of losses.

Each loop (``train/distill.py``, ``train/finetune.py``) stays one readable setup -> fit -> finish with
these pieces. Losses stay on the device: a micro-batch adds its terms to device sums, each optimizer
step checks them for NaN/inf with one synchronisation, and a logged step reads the sums with one more.
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Self

import torch

from distilkit.errors import UserError
from distilkit.train.checkpoint import save_checkpoint

# accelerate's mixed_precision per --precision value (auto is resolved by ``mixed_precision``).
ACCELERATE_PRECISION = {"float32": "no", "bfloat16": "bf16", "float16": "fp16"}


class NonFiniteLossError(UserError):
    """The loss became NaN/inf; the message names the step, the micro-batch and what to do."""


def mixed_precision(precision: str, cpu: bool) -> str:
    """accelerate's ``mixed_precision`` for ``--precision`` (auto: bfloat16 where it is fast, else none)."""
    from distilkit.inference.runtime import cpu_has_fast_bf16

    if precision != "auto":
        return ACCELERATE_PRECISION[precision]
    if torch.cuda.is_available() and not cpu:
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_fast_bf16() else "no"


def get_lr_factor(step: int, warmup_steps: int, total_steps: int) -> float:
    """Linear warmup to 1 over ``warmup_steps``, then linear decay to 0 at ``total_steps``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))


def linear_schedule(optimizer: torch.optim.Optimizer, warmup: float, total_steps: int) -> Any:
    """The learning-rate schedule of both loops: ``warmup`` (a fraction of the steps), then linear decay.

    It stays out of ``accelerator.prepare``: accelerate would step it once per process.
    """
    warmup_steps = math.ceil(warmup * total_steps)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: get_lr_factor(s, warmup_steps, total_steps))


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


def step_plan(per_epoch: int, accumulation: int, world: int, batch_size: int, unit: str) -> str:
    """The start line's account of one optimizer step: micro-batches, sequences and steps per epoch."""
    per_step = accumulation * world * batch_size
    return (f"{per_epoch} micro-batches/epoch/process, {accumulation} per step x {world} process(es) = "
            f"up to {per_step} {unit} per step, {per_epoch / accumulation:.3g} steps per epoch")


def step_warning(per_epoch: int, accumulation: int, flags: str) -> str | None:
    """A warning when one optimizer step takes more micro-batches than an epoch of the data holds."""
    if accumulation <= per_epoch:
        return None
    return (f"warning: one optimizer step is {accumulation} micro-batches per process, more than an epoch of "
            f"the data ({per_epoch}): each step sees the same examples {accumulation / per_epoch:.1f} times. "
            f"Lower {flags}")


def optimizer_step(accelerator: Any, model: torch.nn.Module, optimizer: Any, scheduler: Any,
                   max_grad_norm: float) -> tuple[torch.Tensor | float, float]:
    """Clip (when ``max_grad_norm`` > 0), step optimizer and scheduler, zero grads.

    Returns:
        (the gradient norm before clipping, a device scalar left unread, or NaN when not clipped;
        the learning rate this step used)
    """
    grad_norm = math.nan
    if max_grad_norm > 0:
        grad_norm = accelerator.clip_grad_norm_(model.parameters(), max_grad_norm)
    lr = scheduler.get_last_lr()[0]
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return grad_norm, lr


def save_if_due(accelerator: Any, checkpoints: Path, model: torch.nn.Module, optimizer: Any, scheduler: Any,
                state: dict[str, Any], save_every: int, keep: int, done: bool, main: bool) -> None:
    """Checkpoint every ``save_every`` optimizer steps and at the last one (0 = never); rank 0 writes."""
    if not save_every or (state["step"] % save_every and not done):
        return
    accelerator.wait_for_everyone()
    if main:
        save_checkpoint(checkpoints, accelerator.unwrap_model(model), optimizer, scheduler, dict(state), keep)


@dataclass
class MicroOutcome:
    """What one micro-batch's forward gave the loop: its weighted loss and terms (device tensors), how
    many tokens/examples it held on this process, and the epoch it came from."""

    loss: torch.Tensor
    terms: dict[str, torch.Tensor]
    count: int
    epoch: int


class TrainRun(Protocol):
    """What ``run_steps`` reads from a loop's ``Run`` (distillation's and fine-tuning's have these)."""

    cfg: Any  # max_grad_norm, log_every, save_every, keep_checkpoints, progress, output
    accelerator: Any
    student: torch.nn.Module
    optimizer: Any
    scheduler: Any
    total_steps: int
    state: dict[str, Any]
    logs: TrainLogs

    @property
    def main(self) -> bool: ...


def run_steps(run: TrainRun, name: str, accumulation: int, count_key: str,
              micro_batch: Callable[[int], MicroOutcome],
              on_nonfinite: Callable[[int, int, StepLosses, int], None]) -> None:
    """The optimizer steps from ``run.state["step"]`` to ``run.total_steps``: per step ``accumulation``
    micro-batches (``micro_batch(micro_step)`` runs the forward; the loop scales and backpropagates its
    loss, all-reducing gradients on the last one only), one NaN/inf check, the optimizer step, a log row
    when due (throughput in ``count_key`` per second) and a checkpoint when due. ``on_nonfinite(step,
    micro_step, losses, index)`` must raise.
    """
    cfg, accelerator, state = run.cfg, run.accelerator, run.state
    world = accelerator.num_processes
    progress = Progress(name, run.total_steps, state["step"], accumulation, run.main and cfg.progress)
    window = LogWindow(f"{count_key}_per_s", cfg.log_every, run.logs, progress)
    for step in range(state["step"], run.total_steps):
        step_count, first_micro, step_losses = 0, state["micro_step"], StepLosses()
        for micro in range(accumulation):
            sync = micro == accumulation - 1  # gradients are all-reduced on the last micro-batch only
            with contextlib.nullcontext() if sync else accelerator.no_sync(run.student):
                outcome = micro_batch(state["micro_step"])
                accelerator.backward(outcome.loss / accumulation)
            step_losses.add(outcome.loss, outcome.terms)
            window.add({"loss": outcome.loss, **outcome.terms}, accumulation)
            step_count += outcome.count * world
            state["micro_step"] += 1
            state["epoch"] = outcome.epoch
            progress.micro_batch()
        bad = step_losses.first_nonfinite()  # the step's one synchronisation
        if bad is not None:
            on_nonfinite(step, first_micro + bad, step_losses, bad)
        grad_norm, lr = optimizer_step(accelerator, run.student, run.optimizer, run.scheduler,
                                       cfg.max_grad_norm)
        state["step"] = step + 1
        state[count_key] += step_count
        progress.step()
        done = state["step"] == run.total_steps
        window.step(state["step"], state["epoch"], lr, grad_norm, step_count, done, run.main)
        save_if_due(accelerator, Path(cfg.output) / "checkpoints", run.student, run.optimizer, run.scheduler,
                    state, cfg.save_every, cfg.keep_checkpoints, done, run.main)
    progress.close()


class StepLosses:
    """One optimizer step's loss terms, kept on the device: the NaN/inf check reads them once per step."""

    def __init__(self) -> None:
        self.totals: list[torch.Tensor] = []
        self.terms: list[dict[str, torch.Tensor]] = []

    def add(self, total: torch.Tensor, terms: dict[str, torch.Tensor]) -> None:
        """A micro-batch's total loss and its terms (detached; no synchronisation)."""
        self.totals.append(total.detach())
        self.terms.append({k: v.detach() for k, v in terms.items()})

    def first_nonfinite(self) -> int | None:
        """Index of the step's first micro-batch whose loss is NaN/inf, or None (one synchronisation)."""
        finite = torch.isfinite(torch.stack(self.totals))  # (accumulation,)
        if bool(finite.all()):
            return None
        return int((~finite).nonzero()[0, 0])

    def values(self, index: int) -> dict[str, float]:
        """Micro-batch ``index``'s total (``loss``) and terms as numbers."""
        return {"loss": float(self.totals[index]), **{k: float(v) for k, v in self.terms[index].items()}}

    def describe(self, index: int) -> str:
        """``loss nan (ce=0.1, mlm=nan)`` of micro-batch ``index`` of the step."""
        values = self.values(index)
        parts = ", ".join(f"{k}={v:.4g}" for k, v in values.items() if k != "loss")
        return f"loss {values['loss']} ({parts})"


class TrainLogs:
    """metrics.csv (and TensorBoard events) of a run, written by the main process; a context manager
    that closes them however the loop ends. On other processes every method does nothing."""

    def __init__(
        self, output: Path, fields: tuple[str, ...], resumed_step: int, tensorboard: bool, main: bool
    ):
        self.csv_file = self.csv_writer = self.tb = None
        if not main:
            return
        self.csv_file, self.csv_writer = open_csv(output / "metrics.csv", fields, resumed_step)
        self.tb = open_tensorboard(output) if tensorboard else None

    def write(self, row: dict[str, Any], step: int) -> None:
        """One metrics row: the CSV (flushed) and TensorBoard's ``train/*`` scalars."""
        if self.csv_writer is None:
            return
        self.csv_writer.writerow(row)
        self.csv_file.flush()  # type: ignore[union-attr]
        tb_write(self.tb, row, step)

    def close(self) -> None:
        for handle in (self.csv_file, self.tb):
            if handle is not None:
                handle.close()
        self.csv_file = self.csv_writer = self.tb = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_csv(path: Path, fields: tuple[str, ...], resumed_step: int) -> tuple[Any, Any]:
    """metrics.csv for appending; on resume, rows past the checkpoint (a crashed tail) are dropped."""
    rows = []
    if resumed_step and path.is_file():
        with open(path, newline="") as f:
            rows = [r for r in csv.DictReader(f) if int(r["step"]) <= resumed_step]
    f = open(path, "w", newline="")  # noqa: SIM115  (TrainLogs closes it)
    writer = csv.DictWriter(f, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    return f, writer


def open_tensorboard(output: Path) -> Any:
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


class Progress:
    """The run's bars on stderr: optimizer steps, and the micro-batches of the current step when a step
    has several (a step of 512 micro-batches must not look stuck). Disabled: nothing is shown."""

    def __init__(self, desc: str, total_steps: int, done_steps: int, accumulation: int, enabled: bool,
                 file: Any = None):
        from tqdm.auto import tqdm

        file = file or sys.stderr
        self.steps = tqdm(total=total_steps, initial=done_steps, disable=not enabled, desc=desc, file=file)
        self.micro = tqdm(total=accumulation, disable=not enabled or accumulation == 1, desc="micro-batches",
                          unit="mb", leave=False, position=1, file=file)

    def micro_batch(self) -> None:
        """One micro-batch of the current step done."""
        self.micro.update(1)

    def step(self) -> None:
        """One optimizer step done: advance the steps, start the micro-batch count again."""
        self.steps.update(1)
        self.micro.reset()

    def write(self, line: str) -> None:
        """A log line on stdout that the bars do not overwrite."""
        self.steps.write(line, file=sys.stdout)

    def close(self) -> None:
        self.micro.close()
        self.steps.close()


class LogWindow:
    """Loss sums and a throughput count since the last log row; every ``log_every`` optimizer steps
    (and at the last one) one row goes to the logs and the console (main process).

    The sums are device tensors: adding a micro-batch costs no synchronisation; a logged step reads
    all of them, and the gradient norm, in one.
    """

    def __init__(self, rate_name: str, log_every: int, logs: TrainLogs, progress: Progress):
        self.rate_name, self.log_every, self.logs, self.progress = rate_name, log_every, logs, progress
        self.start = self.t_log = time.perf_counter()
        self.count = 0
        self.sums: dict[str, torch.Tensor] = {}

    def add(self, terms: dict[str, torch.Tensor], accumulation: int) -> None:
        """One micro-batch's loss terms (each weighs 1/accumulation of its step)."""
        for name, value in terms.items():
            value = value.detach().float() / accumulation
            self.sums[name] = self.sums[name] + value if name in self.sums else value

    def step(self, step: int, epoch: int, lr: float, grad_norm: torch.Tensor | float, count: int, done: bool,
             main: bool) -> None:
        """After optimizer step ``step``: ``count`` tokens/examples it processed; write a row when due."""
        self.count += count
        if step % self.log_every and not done:
            return
        if main:
            now = time.perf_counter()
            values = torch.stack([*self.sums.values(), torch.as_tensor(grad_norm, dtype=torch.float32,
                                                                       device=self._device())]).tolist()
            sums, norm = dict(zip(self.sums, values[:-1], strict=True)), values[-1]
            row = log_row(step, epoch, lr, norm, self.rate_name, self.count / (now - self.t_log),
                          now - self.start, sums, step % self.log_every or self.log_every)
            self.logs.write(row, step)
            self.progress.write(" ".join(f"{k}={v}" for k, v in row.items()))
            self.t_log = now
        self.count, self.sums = 0, {}

    def _device(self) -> torch.device:
        return next(iter(self.sums.values())).device if self.sums else torch.device("cpu")


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
