"""``distilkit distill``: the DistilBERT triple loss as one readable run, setup -> fit -> finish.

Runs single-process on CPU/GPU or under ``accelerate launch`` / ``torchrun`` (data parallel via
accelerate). Exact resume: the data order is a pure function of (seed, epoch), the masking draw
of (seed, micro-batch index, rank), and the checkpoint restores weights, optimizer, scheduler and
the global RNG (dropout) states. What both training loops share is in ``train/loop.py``.
"""

from __future__ import annotations

import functools
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from distilkit.config import DistillConfig, save_config
from distilkit.errors import UserError
from distilkit.models import save_model_dir
from distilkit.train import losses
from distilkit.train.checkpoint import load_checkpoint, resolve_resume
from distilkit.train.data import TokenShards, segment_ids
from distilkit.train.loop import (
    MicroOutcome,
    NonFiniteLossError,
    StepLosses,
    TrainLogs,
    linear_schedule,
    make_accelerator,
    mixed_precision,
    run_steps,
    step_plan,
    step_warning,
)
from distilkit.train.stream import MicroBatch, MicroBatches

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


@dataclass
class Models:
    teacher: torch.nn.Module | None  # None: no loss term reads it (MLM/CLM pre-training)
    student: torch.nn.Module
    tokenizer: Any


def load_models(cfg: DistillConfig, device: torch.device) -> Models:
    """Teacher (frozen, eval, bf16 where fast; None when no loss term needs it) and student (fp32 master
    weights, train mode).

    With --alpha-cos as the only term (``cfg.reads_logits`` False) both are loaded as they are: a bare
    encoder (a sentence-transformers ``BertModel``, an init-student of one) teaches and learns too.

    Raises:
        UserError: unloadable references, a student that is not a masked LM where logits are read,
            a teacher without a masked-LM head where they are, mismatched sizes.
    """
    from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM

    from distilkit.inference.runtime import resolve_dtype
    from distilkit.model_info import hidden_size
    from distilkit.models import MissingHeadError, has_weights, load_model
    from distilkit.train.student_init import load_as_saved

    teacher = tokenizer = None
    if cfg.uses_teacher:
        teacher_dtype = resolve_dtype(cfg.teacher_dtype, device)
        if cfg.reads_logits:
            try:
                loaded = load_model(cfg.teacher, "fill-mask", dtype=teacher_dtype, device=device)
            except MissingHeadError as err:
                raise UserError(f"{err}. To distil the last hidden states alone, as an encoder without a "
                                "masked-LM head allows: --alpha-cos 1 --alpha-ce 0 --alpha-mlm 0") from err
            teacher, tokenizer = loaded.model, loaded.tokenizer
        else:
            teacher, tokenizer = load_as_saved(cfg.teacher)
            teacher = teacher.to(device=device, dtype=teacher_dtype)
        for p in teacher.parameters():
            p.requires_grad_(False)
    path = Path(cfg.student)
    dummy = path.is_dir() and not has_weights(path)  # a weightless directory: its architecture, random
    if path.is_file() and path.suffix == ".json":  # a bare config: random init
        fields = json.loads(path.read_text())
        if teacher is None:
            raise UserError(
                f"--student {path} is a bare config.json and there is no --teacher to take the tokenizer "
                "from; pass a directory with config.json and the tokenizer files"
            )
        config = AutoConfig.for_model(fields.pop("model_type"), **fields)
        torch.manual_seed(cfg.seed)
        student = (AutoModelForMaskedLM if cfg.reads_logits else AutoModel).from_config(config)
    elif cfg.reads_logits:
        try:
            loaded = load_model(cfg.student, "fill-mask", dummy_weights=dummy, seed=cfg.seed)
        except MissingHeadError as err:
            raise UserError(f"{err}. A student without a masked-LM head learns from --alpha-cos alone "
                            "(--alpha-ce 0 --alpha-mlm 0)") from err
        student, tokenizer = loaded.model, loaded.tokenizer
    else:
        student, tokenizer = load_as_saved(cfg.student, dummy_weights=dummy, seed=cfg.seed)
    if teacher is not None:
        if student.config.vocab_size != teacher.config.vocab_size:
            raise UserError(
                f"--student vocabulary ({student.config.vocab_size}) differs from the teacher's "
                f"({teacher.config.vocab_size}); distillation needs the same tokenizer"
            )
        if cfg.alpha_cos > 0 and hidden_size(student.config) != hidden_size(teacher.config):
            raise UserError(
                f"--alpha-cos needs equal hidden sizes (student {hidden_size(student.config)}, teacher "
                f"{hidden_size(teacher.config)}); set --alpha-cos 0 or use init-student"
            )
    if cfg.alpha_clm > 0 and not getattr(student.config, "is_decoder", False):
        raise UserError(
            "--alpha-clm needs a causal-LM student; this student is a masked LM (use --alpha-mlm)"
        )
    return Models(
        teacher=teacher.eval() if teacher is not None else None,
        student=student.float().to(device).train(),
        tokenizer=tokenizer,
    )


def logits_everywhere(cfg: DistillConfig) -> bool:
    """Whether a loss term reads the logits at every position (else only at the masked ones)."""
    return (cfg.alpha_ce > 0 or cfg.alpha_mse > 0) and not cfg.restrict_ce_to_mask or cfg.alpha_clm > 0


def lm_outputs(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention: torch.Tensor,
    at: torch.Tensor | None,
    hidden: bool,
    token_types: torch.Tensor | None = None,
    logits: bool = True,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(last hidden states (B, T, H) or None, logits): (B, T, V), or (N, V) at the rows ``at`` only;
    with ``logits=False`` (last hidden states, None) from the encoder alone.

    ``at`` holds flat indices into the B*T positions (``MicroBatch.masked_rows``). The vocabulary
    projection is most of a small model's cost; when only the masked positions are read (MLM-only
    training, ``--restrict-ce-to-mask``) it runs on those rows alone.
    """
    from distilkit.tasks.fill_mask import mlm_head

    inputs = {"input_ids": input_ids, "attention_mask": attention}
    if token_types is not None:
        inputs["token_type_ids"] = token_types
    if not logits:  # the encoder alone: a model without a masked-LM head has nothing more to give
        return model.base_model(**inputs)[0], None
    head = mlm_head(model) if at is not None else None
    if head is None:
        out = model(**inputs, output_hidden_states=hidden)
        logits = out.logits if at is None else out.logits.flatten(0, 1).index_select(0, at)
        return (out.hidden_states[-1] if hidden else None), logits
    last = model.base_model(**inputs)[0]  # == hidden_states[-1]
    return (last if hidden else None), head(last.flatten(0, 1).index_select(0, at))


class StudentForward(torch.nn.Module):
    """The student behind ``lm_outputs``, as one module so that accelerate's autocast and DDP wrap it.

    Its state dict is the student's own (no prefix): checkpoints stay loadable as the student.
    """

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention, at, hidden, logits=True):
        return lm_outputs(self.model, input_ids, attention, at, hidden, logits=logits)

    def state_dict(self, *args, **kwargs):
        return self.model.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        return self.model.load_state_dict(state_dict, strict=strict, assign=assign)


def compute_losses(cfg: DistillConfig, student, teacher, batch: MicroBatch,
                   teacher_types: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The active loss terms for one micro-batch (only those with α > 0), on flat rows.

    ``student`` is a (prepared) ``StudentForward``; ``teacher`` a masked LM (with --alpha-cos alone, any
    encoder) or None; ``teacher_types`` the teacher's token types (BERT teachers on ``--pairs`` data;
    DistilBERT students have none).
    """
    masked = batch.masked
    real = batch.attention.flatten()  # (B*T,) weight 1 per real token, 0 per pad
    if not cfg.reads_logits:  # --alpha-cos alone: the last hidden states, no vocabulary projection
        with torch.no_grad():
            t_hidden, _ = lm_outputs(teacher, masked.input_ids, batch.attention, None, True, teacher_types,
                                     logits=False)
        s_hidden, _ = student(masked.input_ids, batch.attention, None, True, logits=False)
        return {"cos": losses.cosine_embedding_loss(s_hidden.flatten(0, 1), t_hidden.flatten(0, 1), real)}
    rows = batch.masked_rows  # (N_m,) flat indices of the masked positions
    at = None if logits_everywhere(cfg) else rows  # logits only where a term reads them
    hidden = cfg.alpha_cos > 0
    t_hidden = t_logits = None
    if teacher is not None:
        with torch.no_grad():  # not inference_mode: its tensors cannot be saved for the student's backward
            t_hidden, t_logits = lm_outputs(
                teacher, masked.input_ids, batch.attention, at, hidden, teacher_types
            )
    s_hidden, s_logits = student(masked.input_ids, batch.attention, at, hidden)
    if at is None:  # (B, T, V) -> rows of every position, and those of the masked ones
        s_all = s_logits.flatten(0, 1)
        t_all = None if t_logits is None else t_logits.flatten(0, 1)
        s_masked = s_all.index_select(0, rows)  # (N_m, V)
    else:  # already the rows of the masked positions, in order
        s_all = t_all = None
        s_masked = s_logits
    if cfg.restrict_ce_to_mask:
        ce_s, ce_w = s_masked, None
        ce_t = t_logits if at is not None or t_all is None else t_all.index_select(0, rows)
    else:
        ce_s, ce_t, ce_w = s_all, t_all, real
    terms: dict[str, torch.Tensor] = {}
    if cfg.alpha_ce > 0:
        terms["ce"] = losses.distillation_kl_loss(ce_s, ce_t, ce_w, cfg.temperature)
    if cfg.alpha_mlm > 0:
        terms["mlm"] = losses.masked_lm_loss(s_masked, masked.labels.flatten().index_select(0, rows))
    if cfg.alpha_cos > 0:
        terms["cos"] = losses.cosine_embedding_loss(s_hidden.flatten(0, 1), t_hidden.flatten(0, 1), real)
    if cfg.alpha_mse > 0:
        terms["mse"] = losses.logits_mse_loss(ce_s, ce_t, ce_w)
    if cfg.alpha_clm > 0:
        terms["clm"] = losses.causal_lm_loss(s_logits, batch.input_ids, batch.attention)
    return terms


def _check_data(data: TokenShards, tokenizer: Any) -> None:
    m = data.manifest
    if m["mask_token_id"] != tokenizer.mask_token_id or m["vocab_size"] != len(tokenizer):
        raise UserError(
            f"--data was tokenized with {m['tokenizer']!r} (vocab {m['vocab_size']}, mask id "
            f"{m['mask_token_id']}), not the models' tokenizer (vocab {len(tokenizer)}, mask id "
            f"{tokenizer.mask_token_id}); rerun prepare-data with --tokenizer TEACHER"
        )


@dataclass
class Run:
    """What ``setup`` builds for ``fit`` and ``finish``: the prepared models, data stream, optimizer,
    schedule, resumable state and logs of one distillation run."""

    cfg: DistillConfig
    accelerator: Any
    models: Models
    student: torch.nn.Module  # the prepared StudentForward (autocast, DDP)
    stream: MicroBatches
    optimizer: Any
    scheduler: Any
    total_steps: int
    accumulation: int
    sep_id: int | None  # BERT teachers on --pairs data: token type 1 after the first separator
    state: dict[str, Any]
    logs: TrainLogs

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process


def setup(cfg: DistillConfig) -> Run:
    """Load models and data, build optimizer and schedule, resume, open the logs, print the plan.

    Raises:
        UserError: bad inputs (named by flag).
    """
    from accelerate.utils import set_seed

    accelerator = make_accelerator(cfg.cpu, mixed_precision(cfg.precision, cfg.cpu))
    set_seed(cfg.seed + accelerator.process_index)  # dropout differs per rank, reproducible per run
    world, output = accelerator.num_processes, Path(cfg.output)
    data = TokenShards(cfg.data)
    models = load_models(cfg, accelerator.device)
    _check_data(data, models.tokenizer)
    stream = MicroBatches(data, cfg, accelerator.process_index, world, accelerator.device)
    accumulation = cfg.accumulation(world)
    total_steps = cfg.max_steps or max(1, cfg.epochs * stream.per_epoch // accumulation)
    optimizer = torch.optim.AdamW(models.student.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2),
                                  eps=cfg.adam_eps, weight_decay=cfg.weight_decay)
    scheduler = linear_schedule(optimizer, cfg.warmup, total_steps)
    student, optimizer = accelerator.prepare(StudentForward(models.student), optimizer)
    teacher = models.teacher
    pairs_with_types = (teacher is not None and data.manifest.get("pairs")
                        and getattr(teacher.config, "type_vocab_size", 1) > 1)
    state = {"step": 0, "epoch": 0, "micro_step": 0, "tokens": 0}
    resume_from = resolve_resume(cfg.resume, output / "checkpoints")
    if resume_from is not None:
        state = load_checkpoint(resume_from, accelerator.unwrap_model(student), optimizer, scheduler)
    if accelerator.is_main_process:
        output.mkdir(parents=True, exist_ok=True)
        save_config(cfg, output / "config.yaml", "distilkit distill")
    logs = TrainLogs(output, CSV_FIELDS, state["step"], cfg.tensorboard, accelerator.is_main_process)
    plan = step_plan(stream.per_epoch, accumulation, world, cfg.batch_size, "sequences")
    accelerator.print(
        f"distill: {len(data)} sequences, {plan}, {total_steps} steps, "
        f"precision {accelerator.mixed_precision}"
        + (f", resumed from {resume_from}" if resume_from else "")
    )
    lower = "--effective-batch-size or set --grad-accumulation"
    warning = step_warning(stream.per_epoch, accumulation, lower)
    if warning:
        accelerator.print(warning, file=sys.stderr)
    return Run(cfg, accelerator, models, student, stream, optimizer, scheduler, total_steps, accumulation,
               models.tokenizer.sep_token_id if pairs_with_types else None, state, logs)


def fit(run: Run) -> None:
    """The loop (``loop.run_steps``): micro-batches -> the distillation losses -> backward, then one
    optimizer step; log, checkpoint.

    Raises:
        NonFiniteLossError: a micro-batch's loss became NaN/inf (checked once per optimizer step).
    """
    cfg = run.cfg
    alphas = {"ce": cfg.alpha_ce, "mlm": cfg.alpha_mlm, "cos": cfg.alpha_cos, "mse": cfg.alpha_mse,
              "clm": cfg.alpha_clm}

    def micro_batch(micro_step: int) -> MicroOutcome:
        batch = run.stream.get(micro_step)
        types = segment_ids(batch.input_ids, batch.attention, run.sep_id) if run.sep_id else None
        terms = compute_losses(cfg, run.student, run.models.teacher, batch, types)
        return MicroOutcome(losses.weighted_sum(terms, alphas), terms, batch.tokens, batch.epoch)

    stop = functools.partial(_stop_on_nonfinite, run)
    run_steps(run, "distill", run.accumulation, "tokens", micro_batch, stop)


def finish(run: Run) -> Path:
    """Wait for every process, write the model directory (main process), report; return its path."""
    output = Path(run.cfg.output)
    run.accelerator.wait_for_everyone()
    if run.main:
        run.logs.close()
        save_model_dir(run.models.student, run.models.tokenizer, output)
        run.accelerator.print(
            f"distill: done, {run.state['step']} steps, {run.state['tokens']} tokens, model in {output}"
        )
    return output


def distill(cfg: DistillConfig) -> Path:
    """Distil ``cfg.student`` from ``cfg.teacher`` on ``cfg.data``; return the output model directory.

    Raises:
        UserError: bad inputs (named by flag); NonFiniteLossError when the loss becomes NaN/inf.
    """
    run = setup(cfg)
    with run.logs:  # closed however the loop ends
        fit(run)
        return finish(run)


def _stop_on_nonfinite(run: Run, step: int, micro_step: int, step_losses: StepLosses, index: int) -> None:
    """Save the offending micro-batch (rebuilt from its index: the stream is a pure function of it) and
    raise with the step number; ``index`` is its place in the step."""
    output = Path(run.cfg.output)
    output.mkdir(parents=True, exist_ok=True)
    path = output / f"nonfinite-batch-step-{step + 1:06d}.pt"
    batch = run.stream.get(micro_step)
    torch.save(
        {
            "step": step + 1,
            "micro_step": micro_step,
            "input_ids": batch.input_ids.cpu(),
            "attention_mask": batch.attention.cpu(),
            "masked_input_ids": batch.masked.input_ids.cpu(),
            "labels": batch.masked.labels.cpu(),
            "terms": step_losses.values(index),
        },
        path,
    )
    raise NonFiniteLossError(
        f"{step_losses.describe(index)} at step {step + 1} (micro-batch {micro_step}); "
        f"the batch is saved in {path}. "
        "Lower --lr, or resume from the last checkpoint"
    )
