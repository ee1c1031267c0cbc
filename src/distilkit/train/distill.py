"""``distilkit distill``: one readable loop, setup -> loop -> save, for the DistilBERT triple loss.

Runs single-process on CPU/GPU or under ``accelerate launch`` / ``torchrun`` (data parallel via
accelerate). Exact resume: the data order is a pure function of (seed, epoch), the masking draw
of (seed, micro-batch index, rank), and the checkpoint restores weights, optimizer, scheduler and
the global RNG (dropout) states.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from distilkit.config import DistillConfig, save_config
from distilkit.errors import UserError
from distilkit.models import save_model_dir
from distilkit.train import losses
from distilkit.train.checkpoint import load_checkpoint, resolve_resume
from distilkit.train.data import TokenShards, collate, length_grouped_batches, segment_ids
from distilkit.train.loop import (
    LogWindow,
    make_accelerator,
    open_tensorboard,
    optimizer_step,
    save_if_due,
)
from distilkit.train.masking import mask_tokens, token_weights

LOSS_TERMS = ("ce", "mlm", "cos", "mse", "clm")
CSV_FIELDS = (
    "step",
    "epoch",
    "lr",
    "loss",
    *(f"loss_{t}" for t in LOSS_TERMS),
    "grad_norm",
    "tokens_per_s",
    "elapsed_s",
)


class NonFiniteLossError(UserError):
    """The loss became NaN/inf; the message names the step and where the offending batch was saved."""


def get_lr_factor(step: int, warmup_steps: int, total_steps: int) -> float:
    """Linear warmup to 1 over ``warmup_steps``, then linear decay to 0 at ``total_steps``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))


@dataclass
class Models:
    teacher: torch.nn.Module | None  # None: no loss term reads it (MLM/CLM pre-training)
    student: torch.nn.Module
    tokenizer: Any


def load_models(cfg: DistillConfig, device: torch.device) -> Models:
    """Teacher (frozen, eval, bf16 where fast; None when no loss term needs it) and student (fp32 master
    weights, train mode).

    Raises:
        UserError: unloadable references, a student that is not a masked LM, mismatched sizes.
    """
    from transformers import AutoConfig, AutoModelForMaskedLM

    from distilkit.inference.runtime import resolve_dtype
    from distilkit.models import has_weights, load_model

    teacher = tokenizer = None
    if cfg.uses_teacher:
        teacher = load_model(
            cfg.teacher, "fill-mask", dtype=resolve_dtype(cfg.teacher_dtype, device), device=device
        )
        for p in teacher.model.parameters():
            p.requires_grad_(False)
        tokenizer = teacher.tokenizer
    path = Path(cfg.student)
    if path.is_file() and path.suffix == ".json":  # a bare config: random init
        fields = json.loads(path.read_text())
        if teacher is None:
            raise UserError(
                f"--student {path} is a bare config.json and there is no --teacher to take the tokenizer "
                "from; pass a directory with config.json and the tokenizer files"
            )
        config = AutoConfig.for_model(fields.pop("model_type"), **fields)
        torch.manual_seed(cfg.seed)
        student = AutoModelForMaskedLM.from_config(config)
    else:
        loaded = load_model(
            cfg.student, "fill-mask", dummy_weights=path.is_dir() and not has_weights(path), seed=cfg.seed
        )
        student, tokenizer = loaded.model, loaded.tokenizer
    if teacher is not None:
        if student.config.vocab_size != teacher.config.vocab_size:
            raise UserError(
                f"--student vocabulary ({student.config.vocab_size}) differs from the teacher's "
                f"({teacher.config.vocab_size}); distillation needs the same tokenizer"
            )
        if cfg.alpha_cos > 0 and _hidden_size(student.config) != _hidden_size(teacher.config):
            raise UserError(
                f"--alpha-cos needs equal hidden sizes (student {_hidden_size(student.config)}, teacher "
                f"{_hidden_size(teacher.config)}); set --alpha-cos 0 or use init-student"
            )
    if cfg.alpha_clm > 0 and not getattr(student.config, "is_decoder", False):
        raise UserError(
            "--alpha-clm needs a causal-LM student; this student is a masked LM (use --alpha-mlm)"
        )
    return Models(
        teacher=teacher.model.eval() if teacher is not None else None,
        student=student.float().to(device).train(),
        tokenizer=tokenizer,
    )


def _hidden_size(config: Any) -> int:
    return getattr(config, "dim", None) or config.hidden_size


def _mixed_precision(cfg: DistillConfig) -> str:
    """accelerate's mixed_precision for ``--precision`` (auto: bf16 where it is fast)."""
    from distilkit.inference.runtime import cpu_has_fast_bf16

    if cfg.precision != "auto":
        return {"float32": "no", "bfloat16": "bf16", "float16": "fp16"}[cfg.precision]
    if torch.cuda.is_available() and not cfg.cpu:
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_fast_bf16() else "no"


def logits_everywhere(cfg: DistillConfig) -> bool:
    """Whether a loss term reads the logits at every position (else only at the masked ones)."""
    return (cfg.alpha_ce > 0 or cfg.alpha_mse > 0) and not cfg.restrict_ce_to_mask or cfg.alpha_clm > 0


def lm_outputs(model: torch.nn.Module, input_ids: torch.Tensor, attention: torch.Tensor, at: torch.Tensor | None,
               hidden: bool, token_types: torch.Tensor | None = None) -> tuple[torch.Tensor | None, torch.Tensor]:
    """(last hidden states (B, T, H) or None, logits): (B, T, V), or (N, V) at the ``at`` positions only.

    The vocabulary projection is most of a small model's cost; when only the masked positions are
    read (MLM-only training, ``--restrict-ce-to-mask``) it runs on those rows alone.
    """
    from distilkit.tasks.fill_mask import mlm_head

    inputs = {"input_ids": input_ids, "attention_mask": attention}
    if token_types is not None:
        inputs["token_type_ids"] = token_types
    head = mlm_head(model) if at is not None else None
    if head is None:
        out = model(**inputs, output_hidden_states=hidden)
        logits = out.logits if at is None else out.logits[at]
        return (out.hidden_states[-1] if hidden else None), logits
    last = model.base_model(**inputs)[0]  # == hidden_states[-1]
    return (last if hidden else None), head(last[at])


class StudentForward(torch.nn.Module):
    """The student behind ``lm_outputs``, as one module so that accelerate's autocast and DDP wrap it.

    Its state dict is the student's own (no prefix): checkpoints stay loadable as the student.
    """

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention, at, hidden):
        return lm_outputs(self.model, input_ids, attention, at, hidden)

    def state_dict(self, *args, **kwargs):
        return self.model.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        return self.model.load_state_dict(state_dict, strict=strict, assign=assign)


def compute_losses(cfg: DistillConfig, student, teacher, ids, attention, batch,
                   teacher_types: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The active loss terms for one micro-batch (only those with α > 0).

    ``student`` is a (prepared) ``StudentForward``; ``teacher`` a masked LM or None; ``teacher_types``
    the teacher's token types (BERT teachers on ``--pairs`` data; DistilBERT students have none).
    """
    at = None if logits_everywhere(cfg) else batch.chosen  # (B, T) bool: logits only where read
    hidden = cfg.alpha_cos > 0
    if teacher is not None:
        with torch.no_grad():  # not inference_mode: its tensors cannot be saved for the student's backward
            t_hidden, t_logits = lm_outputs(teacher, batch.input_ids, attention, at, hidden, teacher_types)
    s_hidden, s_logits = student(batch.input_ids, attention, at, hidden)
    real = attention.bool()  # (B, T)
    if at is None:
        ce_at, labels = (batch.chosen if cfg.restrict_ce_to_mask else real), batch.labels
    else:  # logits are the rows of the masked positions, in order
        ce_at = torch.ones(s_logits.shape[0], dtype=torch.bool, device=s_logits.device)
        labels = batch.labels[at]
    terms: dict[str, torch.Tensor] = {}
    if cfg.alpha_ce > 0:
        terms["ce"] = losses.distillation_kl_loss(s_logits, t_logits, ce_at, cfg.temperature)
    if cfg.alpha_mlm > 0:
        terms["mlm"] = losses.masked_lm_loss(s_logits, labels)
    if cfg.alpha_cos > 0:
        terms["cos"] = losses.cosine_embedding_loss(s_hidden, t_hidden, real)
    if cfg.alpha_mse > 0:
        terms["mse"] = losses.logits_mse_loss(s_logits, t_logits, ce_at)
    if cfg.alpha_clm > 0:
        terms["clm"] = losses.causal_lm_loss(s_logits, ids, attention)
    return terms


class MicroBatches:
    """The micro-batch stream: global index g -> (epoch, batch) for this rank; a pure function of g."""

    def __init__(self, data: TokenShards, cfg: DistillConfig, rank: int, world: int, device: torch.device):
        self.data, self.cfg, self.rank, self.world, self.device = data, cfg, rank, world, device
        m = data.manifest
        self.special_ids, self.mask_id, self.pad_id = m["special_ids"], m["mask_token_id"], m["pad_token_id"]
        self.vocab_size = m["vocab_size"]
        self.weights = token_weights(data.counts(), cfg.mlm_smoothing)
        self._epoch, self._batches = -1, []
        self.per_epoch = len(self.batches(0)) // world
        if self.per_epoch == 0:
            raise UserError(
                f"--data has {len(data)} sequences: fewer batches of --batch-size {cfg.batch_size} "
                f"than processes ({world}); lower --batch-size"
            )

    def batches(self, epoch: int) -> list:
        if epoch != self._epoch:
            self._epoch = epoch
            self._batches = length_grouped_batches(
                self.data.lengths, self.cfg.batch_size, self.cfg.seed, epoch
            )
        return self._batches

    def get(self, g: int):
        """Micro-batch g: (epoch, raw ids (B, T), attention (B, T), masked batch), all on the device."""
        epoch, i = divmod(g, self.per_epoch)
        rows = self.batches(epoch)[i * self.world + self.rank]
        ids, attention = collate([self.data[int(r)] for r in rows], self.pad_id)  # (B, T), (B, T)
        seed = int(np.random.SeedSequence([self.cfg.seed, g, self.rank]).generate_state(1)[0])
        gen = torch.Generator().manual_seed(seed)
        masked = mask_tokens(
            ids,
            attention,
            special_ids=self.special_ids,
            mask_token_id=self.mask_id,
            vocab_size=self.vocab_size,
            weights=self.weights,
            mlm_probability=self.cfg.mlm_probability,
            mask_replace=self.cfg.mask_replace,
            random_replace=self.cfg.random_replace,
            generator=gen,
        )
        to = self.device
        masked = type(masked)(masked.input_ids.to(to), masked.labels.to(to), masked.chosen.to(to))
        return epoch, ids.to(to), attention.to(to), masked


def _check_data(data: TokenShards, tokenizer: Any) -> None:
    m = data.manifest
    if m["mask_token_id"] != tokenizer.mask_token_id or m["vocab_size"] != len(tokenizer):
        raise UserError(
            f"--data was tokenized with {m['tokenizer']!r} (vocab {m['vocab_size']}, mask id "
            f"{m['mask_token_id']}), not the models' tokenizer (vocab {len(tokenizer)}, mask id "
            f"{tokenizer.mask_token_id}); rerun prepare-data with --tokenizer TEACHER"
        )


def _open_csv(path: Path, resumed_step: int) -> tuple[Any, Any]:
    """metrics.csv for appending; on resume, rows past the checkpoint (a crashed tail) are dropped."""
    rows = []
    if resumed_step and path.is_file():
        with open(path, newline="") as f:
            rows = [r for r in csv.DictReader(f) if int(r["step"]) <= resumed_step]
    f = open(path, "w", newline="")  # noqa: SIM115  (closed at the end of the loop)
    writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    return f, writer


def distill(cfg: DistillConfig) -> Path:
    """Distil ``cfg.student`` from ``cfg.teacher`` on ``cfg.data``; return the output model directory.

    Raises:
        UserError: bad inputs (named by flag); NonFiniteLossError when the loss becomes NaN/inf.
    """
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm

    # ---- setup
    accelerator = make_accelerator(cfg.cpu, _mixed_precision(cfg))
    set_seed(cfg.seed + accelerator.process_index)  # dropout differs per rank, reproducible per run
    main, world = accelerator.is_main_process, accelerator.num_processes
    output = Path(cfg.output)
    data = TokenShards(cfg.data)
    models = load_models(cfg, accelerator.device)
    _check_data(data, models.tokenizer)
    stream = MicroBatches(data, cfg, accelerator.process_index, world, accelerator.device)
    accum = cfg.accumulation(world)
    total_steps = cfg.max_steps or max(1, cfg.epochs * stream.per_epoch // accum)
    warmup_steps = math.ceil(cfg.warmup * total_steps)
    optimizer = torch.optim.AdamW(
        models.student.parameters(),
        lr=cfg.lr,
        betas=(cfg.beta1, cfg.beta2),
        eps=cfg.adam_eps,
        weight_decay=cfg.weight_decay,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: get_lr_factor(s, warmup_steps, total_steps)
    )
    # the scheduler stays unwrapped: accelerate would step it once per process
    student, optimizer = accelerator.prepare(StudentForward(models.student), optimizer)
    teacher = models.teacher
    # sentence-pair data: a teacher with token types (BERT) sees segment B as type 1, like in pre-training
    pairs_with_types = (teacher is not None and data.manifest.get("pairs")
                        and getattr(teacher.config, "type_vocab_size", 1) > 1)
    sep_id = models.tokenizer.sep_token_id if pairs_with_types else None
    alphas = {
        "ce": cfg.alpha_ce,
        "mlm": cfg.alpha_mlm,
        "cos": cfg.alpha_cos,
        "mse": cfg.alpha_mse,
        "clm": cfg.alpha_clm,
    }
    checkpoints = output / "checkpoints"
    state = {"step": 0, "epoch": 0, "micro_step": 0, "tokens": 0}
    resume_from = resolve_resume(cfg.resume, checkpoints)
    if resume_from is not None:
        state = load_checkpoint(resume_from, accelerator.unwrap_model(student), optimizer, scheduler)
    if main:
        output.mkdir(parents=True, exist_ok=True)
        save_config(cfg, output / "config.yaml", "distilkit distill")
        csv_file, csv_writer = _open_csv(output / "metrics.csv", state["step"])
        tb = open_tensorboard(output) if cfg.tensorboard else None
    accelerator.print(
        f"distill: {len(data)} sequences, {stream.per_epoch} micro-batches/epoch/process, "
        f"{accum} per step x {world} process(es), {total_steps} steps, precision "
        f"{accelerator.mixed_precision}" + (f", resumed from {resume_from}" if resume_from else "")
    )

    # ---- loop
    bar = tqdm(total=total_steps, initial=state["step"], disable=not (main and cfg.progress), desc="distill")
    logs = (csv_file, csv_writer, tb) if main else (None, None, None)  # written by the main process only
    window = LogWindow("tokens_per_s", cfg.log_every, *logs, bar)
    for step in range(state["step"], total_steps):
        step_tokens = 0
        for micro in range(accum):
            epoch, ids, attention, batch = stream.get(state["micro_step"])
            sync = micro == accum - 1
            with contextlib.nullcontext() if sync else accelerator.no_sync(student):
                types = segment_ids(ids, attention, sep_id) if sep_id is not None else None
                terms = compute_losses(cfg, student, teacher, ids, attention, batch, types)
                loss = losses.weighted_sum(terms, alphas)
                if not torch.isfinite(loss):
                    _stop_on_nonfinite(output, step, state["micro_step"], loss, terms, ids, attention, batch)
                accelerator.backward(loss / accum)
            window.add({"loss": loss, **terms}, accum)
            step_tokens += int(attention.sum()) * world
            state["micro_step"] += 1
            state["epoch"] = epoch
        grad_norm, lr = optimizer_step(accelerator, student, optimizer, scheduler, cfg.max_grad_norm)
        state["step"] = step + 1
        state["tokens"] += step_tokens
        bar.update(1)
        done = state["step"] == total_steps
        window.step(state["step"], epoch, lr, grad_norm, step_tokens, done, main)
        save_if_due(accelerator, checkpoints, student, optimizer, scheduler, state, cfg.save_every,
                    cfg.keep_checkpoints, done, main)
    bar.close()

    # ---- save
    accelerator.wait_for_everyone()
    if main:
        csv_file.close()
        if tb is not None:
            tb.close()
        save_model_dir(models.student, models.tokenizer, output)
        accelerator.print(
            f"distill: done, {state['step']} steps, {state['tokens']} tokens, model in {output}"
        )
    return output


def _stop_on_nonfinite(output: Path, step: int, micro_step: int, loss, terms, ids, attention, batch) -> None:
    """Save the offending batch and raise with the step number."""
    output.mkdir(parents=True, exist_ok=True)
    path = output / f"nonfinite-batch-step-{step + 1:06d}.pt"
    torch.save(
        {
            "step": step + 1,
            "micro_step": micro_step,
            "input_ids": ids.cpu(),
            "attention_mask": attention.cpu(),
            "masked_input_ids": batch.input_ids.cpu(),
            "labels": batch.labels.cpu(),
            "terms": {k: float(v.detach()) for k, v in terms.items()},
        },
        path,
    )
    parts = ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in terms.items())
    raise NonFiniteLossError(
        f"loss is {float(loss.detach())} at step {step + 1} (micro-batch {micro_step}; {parts}); "
        f"the batch is saved in {path}. Lower --lr, or resume from the last checkpoint"
    )

