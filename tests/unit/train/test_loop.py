"""The loops' shared pieces: precision, schedule, step plan, NaN check, logs, progress, optimizer step."""

from __future__ import annotations

import csv
import io
import math
from types import SimpleNamespace

import pytest
import torch

from distilkit.inference import runtime
from distilkit.train import loop


def test_lr_factor_warms_up_linearly_then_decays_to_zero():
    factors = [loop.get_lr_factor(s, warmup_steps=2, total_steps=6) for s in range(7)]
    assert factors == pytest.approx([0.5, 1.0, 1.0, 0.75, 0.5, 0.25, 0.0])
    assert loop.get_lr_factor(0, 0, 4) == 1.0  # no warmup


def test_linear_schedule_rounds_the_warmup_up_and_reaches_zero():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = loop.linear_schedule(optimizer, warmup=0.1, total_steps=5)  # ceil(0.5) = 1 warmup step
    lrs = []
    for _ in range(5):
        lrs.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    assert lrs == pytest.approx([1.0, 1.0, 0.75, 0.5, 0.25])


@pytest.mark.parametrize(
    ("precision", "expected"), [("float32", "no"), ("bfloat16", "bf16"), ("float16", "fp16")]
)
def test_precision_names_map_to_accelerate(precision, expected):
    assert loop.mixed_precision(precision, cpu=True) == expected


def test_auto_precision_on_cpu_follows_fast_bf16(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for fast, expected in ((True, "bf16"), (False, "no")):
        monkeypatch.setattr(runtime, "cpu_has_fast_bf16", lambda fast=fast: fast)
        assert loop.mixed_precision("auto", cpu=False) == expected


def test_step_plan_and_a_warning_when_a_step_is_more_than_an_epoch():
    plan = loop.step_plan(per_epoch=152, accumulation=4, world=2, batch_size=8, unit="sequences")
    assert plan == (
        "152 micro-batches/epoch/process, 4 per step x 2 process(es) = up to 64 sequences per step, "
        "38 steps per epoch"
    )
    assert loop.step_warning(per_epoch=152, accumulation=152, flags="--x") is None
    warning = loop.step_warning(per_epoch=152, accumulation=512, flags="--effective-batch-size")
    assert warning.startswith(
        "warning: one optimizer step is 512 micro-batches per process, more than an epoch"
    )
    assert "3.4 times" in warning and warning.endswith("Lower --effective-batch-size")


def test_step_losses_find_the_first_nonfinite_micro_batch():
    step = loop.StepLosses()
    for value in (1.0, float("nan"), float("inf")):
        step.add(torch.tensor(value), {"ce": torch.tensor(value / 2), "mlm": torch.tensor(0.5)})
    assert step.first_nonfinite() == 1
    assert step.describe(1) == "loss nan (ce=nan, mlm=0.5)"
    assert step.values(0) == {"loss": 1.0, "ce": 0.5, "mlm": 0.5}
    fine = loop.StepLosses()
    fine.add(torch.tensor(2.0), {})
    assert fine.first_nonfinite() is None


def _logs(tmp_path, resumed_step=0):
    return loop.TrainLogs(tmp_path, ("step", "epoch", "lr", "loss", "loss_ce", "grad_norm", "tokens_per_s",
                                     "elapsed_s"), resumed_step, tensorboard=False, main=True)


def _rows(tmp_path):
    with open(tmp_path / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_log_window_averages_device_sums_over_the_logged_steps(tmp_path):
    progress = loop.Progress("t", 3, 0, 1, enabled=False)
    with _logs(tmp_path) as logs:
        window = loop.LogWindow("tokens_per_s", 2, logs, progress)
        for step, (loss, ce) in enumerate([(4.0, 1.0), (2.0, 3.0), (6.0, 5.0)], start=1):
            for _ in range(2):  # two micro-batches per step, each half of it
                window.add({"loss": torch.tensor(loss), "ce": torch.tensor(ce)}, accumulation=2)
            window.step(step, 0, 0.1, torch.tensor(float(step)), count=10, done=step == 3, main=True)
    rows = _rows(tmp_path)
    assert [r["step"] for r in rows] == ["2", "3"]  # every 2nd step, and the last
    assert (rows[0]["loss"], rows[0]["loss_ce"], rows[0]["grad_norm"]) == ("3", "2", "2")
    assert (rows[1]["loss"], rows[1]["loss_ce"], rows[1]["grad_norm"]) == ("6", "5", "3")
    assert float(rows[0]["tokens_per_s"]) > 0


def test_log_window_takes_an_unclipped_nan_grad_norm(tmp_path):
    with _logs(tmp_path) as logs:
        window = loop.LogWindow("tokens_per_s", 1, logs, loop.Progress("t", 1, 0, 1, enabled=False))
        window.add({"loss": torch.tensor(1.0)}, 1)
        window.step(1, 0, 0.1, math.nan, count=1, done=True, main=True)
    assert _rows(tmp_path)[0]["grad_norm"] == "nan"


def test_resumed_logs_drop_the_rows_after_the_checkpoint(tmp_path):
    with _logs(tmp_path) as logs:
        for step in (1, 2, 3):
            logs.write({"step": step, "loss": step}, step)
    with _logs(tmp_path, resumed_step=2) as logs:
        logs.write({"step": 3, "loss": 30}, 3)
    assert [(r["step"], r["loss"]) for r in _rows(tmp_path)] == [("1", "1"), ("2", "2"), ("3", "30")]


def test_other_processes_write_no_logs(tmp_path):
    logs = loop.TrainLogs(tmp_path, ("step",), 0, tensorboard=False, main=False)
    logs.write({"step": 1}, 1)
    logs.close()
    assert list(tmp_path.iterdir()) == []


def test_progress_counts_micro_batches_within_each_step():
    out = io.StringIO()
    progress = loop.Progress("distill", total_steps=2, done_steps=0, accumulation=4, enabled=True, file=out)
    for _ in range(3):
        progress.micro_batch()
    assert progress.micro.n == 3 and "micro-batches" in str(progress.micro) and "3/4" in str(progress.micro)
    progress.step()
    assert (progress.steps.n, progress.micro.n) == (1, 0)
    progress.close()
    assert "micro-batches" in out.getvalue()
    single = loop.Progress("distill", 2, 0, accumulation=1, enabled=True, file=io.StringIO())
    assert single.micro.disable and not single.steps.disable  # one micro-batch per step: no inner bar
    single.close()


@pytest.fixture
def accelerator():
    acc = loop.make_accelerator(cpu=True, mixed_precision="no")
    yield acc
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state()


def test_optimizer_step_clips_steps_and_zeroes_the_gradients(accelerator):
    model = torch.nn.Linear(2, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    scheduler = loop.linear_schedule(optimizer, warmup=0.0, total_steps=2)
    model, optimizer = accelerator.prepare(model, optimizer)
    model(torch.tensor([[3.0, 4.0]])).sum().backward()  # gradient (3, 4): norm 5
    grad_norm, lr = loop.optimizer_step(accelerator, model, optimizer, scheduler, max_grad_norm=1.0)
    assert float(grad_norm) == pytest.approx(5.0) and lr == 1.0
    assert model.weight.detach()[0].tolist() == pytest.approx([-0.6, -0.8])  # clipped to norm 1
    assert model.weight.grad is None and scheduler.get_last_lr()[0] == pytest.approx(0.5)
    model(torch.tensor([[1.0, 0.0]])).sum().backward()
    grad_norm, _ = loop.optimizer_step(accelerator, model, optimizer, scheduler, max_grad_norm=0.0)
    assert math.isnan(grad_norm)  # not clipped: no norm computed


def test_save_if_due_at_multiples_and_at_the_end(accelerator, tmp_path):
    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = loop.linear_schedule(optimizer, 0.0, 10)
    for step, done in ((1, False), (2, False), (3, False), (4, False), (5, True)):
        state = {"step": step, "epoch": 0, "micro_step": step, "tokens": 0}
        loop.save_if_due(accelerator, tmp_path, model, optimizer, scheduler, state, save_every=2, keep=5,
                         done=done, main=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-000002", "step-000004", "step-000005"]
    loop.save_if_due(accelerator, tmp_path / "never", model, optimizer, scheduler, state, 0, 5, True, True)
    assert not (tmp_path / "never").exists()


def _step_run(accelerator, tmp_path, total_steps, state):
    model = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    scheduler = loop.linear_schedule(optimizer, 0.0, 100)
    model, optimizer = accelerator.prepare(model, optimizer)
    cfg = SimpleNamespace(max_grad_norm=0.0, log_every=1, save_every=0, keep_checkpoints=1, progress=False,
                          output=str(tmp_path))
    logs = loop.TrainLogs(tmp_path, ("step", "epoch", "lr", "grad_norm", "tokens_per_s", "elapsed_s", "loss",
                                    "loss_ce"),
                          state["step"], tensorboard=False, main=True)
    return SimpleNamespace(cfg=cfg, accelerator=accelerator, student=model, optimizer=optimizer,
                           scheduler=scheduler, total_steps=total_steps, state=state, logs=logs, main=True)


def test_run_steps_accumulates_micro_batches_into_each_optimizer_step(accelerator, tmp_path):
    state = {"step": 1, "epoch": 0, "micro_step": 3, "tokens": 30}  # resumed after step 1 of 3 micro-batches
    run = _step_run(accelerator, tmp_path, total_steps=3, state=state)
    seen = []

    def micro_batch(micro_step):
        seen.append(micro_step)
        loss = run.student(torch.ones(1, 1)).sum() - 1.0  # d loss / d w = 1 for every micro-batch
        return loop.MicroOutcome(loss, {}, count=10, epoch=micro_step // 4)

    loop.run_steps(run, "t", 3, "tokens", micro_batch, on_nonfinite=lambda *a: pytest.fail("no NaN here"))
    run.logs.close()
    assert seen == [3, 4, 5, 6, 7, 8]  # two steps of three micro-batches, from where the state left off
    assert run.state == {"step": 3, "epoch": 2, "micro_step": 9, "tokens": 90}
    # each step's gradient is the mean over its micro-batches (1.0), so two SGD steps at lr 1 move w by -2
    assert run.student.weight.item() == pytest.approx(-2.0, abs=0.05)  # the schedule decays lr a little
    assert [r["step"] for r in _rows(tmp_path)] == ["2", "3"]


def test_run_steps_hands_the_first_nonfinite_micro_batch_to_the_hook(accelerator, tmp_path):
    run = _step_run(accelerator, tmp_path, total_steps=4, state={"step": 0, "epoch": 0, "micro_step": 0,
                                                                 "tokens": 0})

    def micro_batch(micro_step):
        loss = run.student(torch.ones(1, 1)).sum() * (math.nan if micro_step == 3 else 1.0)
        return loop.MicroOutcome(loss, {"ce": loss}, count=1, epoch=0)

    def on_nonfinite(step, micro_step, step_losses, index):
        raise loop.NonFiniteLossError(f"{step_losses.describe(index)} at step {step + 1}, micro {micro_step}")

    with pytest.raises(loop.NonFiniteLossError, match="at step 2, micro 3"):
        loop.run_steps(run, "t", 2, "tokens", micro_batch, on_nonfinite)
    run.logs.close()
    assert run.state["step"] == 1  # the step with the NaN took no optimizer step


def test_a_missing_tensorboard_names_the_extra(monkeypatch, tmp_path):
    import builtins

    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name == "torch.utils.tensorboard":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    with pytest.raises(loop.UserError, match=r"pip install 'distilkit\[tensorboard\]'"):
        loop.open_tensorboard(tmp_path)
