"""``distilkit finetune``: one readable loop, setup -> loop -> save -> evaluate, for the cards' tasks.

Same conventions as ``distill``: accelerate (bf16 autocast where fast), AdamW with linear warmup
and decay, checkpoints that resume exactly (data order is a pure function of (seed, epoch); the
checkpoint restores weights, optimizer, scheduler and RNG states), a progress bar, a CSV log
(and TensorBoard events with ``--tensorboard``).
With ``--teacher`` the loss is α_ce·KL(teacher/T ‖ student/T)·T² on the task logits plus
α_task·(the task loss), the recipe of ``distilbert-base-cased-distilled-squad``. At the end the
model directory is evaluated on ``--validation`` through the Predictor (metrics.json) and gets a
model card (README.md).
"""

from __future__ import annotations

import contextlib
import csv
import inspect
import json
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from distilkit.config import FinetuneConfig, save_config
from distilkit.train import finetune_report, losses, task_data
from distilkit.train.checkpoint import load_checkpoint, resolve_resume
from distilkit.train.data import length_grouped_batches
from distilkit.train.distill import (
    NonFiniteLossError,
    _mixed_precision,
    get_lr_factor,
    save_model_dir,
)
from distilkit.train.loop import (
    LogWindow,
    make_accelerator,
    open_tensorboard,
    optimizer_step,
    save_if_due,
    tb_write,
)

CSV_FIELDS = (
    "step",
    "epoch",
    "lr",
    "loss",
    "loss_task",
    "loss_ce",
    "grad_norm",
    "examples_per_s",
    "elapsed_s",
)
MASKED_LOGIT = -1e4  # QA logits at padding: no probability in either distribution


# --- setup ---------------------------------------------------------------------------------------
def build_config(cfg: FinetuneConfig, source: str, space: task_data.LabelSpace) -> Any:
    """The student's config: the model's, with the discovered labels and any size overrides."""
    from transformers import AutoConfig

    from distilkit.models import TASK_AUTO_CLASSES

    config = AutoConfig.from_pretrained(source)
    if space.labels:
        config.num_labels = len(space.labels)
        for key, value in space.config_fields().items():
            setattr(config, key, value)
    if cfg.num_layers is not None:
        config.num_hidden_layers = cfg.num_layers  # DistilBERT maps these names onto n_layers/dim/n_heads
    if cfg.hidden_size is not None:
        config.hidden_size = cfg.hidden_size
        config.num_attention_heads = cfg.hidden_size // 64
        for name in ("hidden_dim", "intermediate_size"):  # DistilBERT | BERT/RoBERTa feed-forward size
            if hasattr(config, name):
                setattr(config, name, 4 * cfg.hidden_size)
    family = type(config).__name__.removesuffix("Config")
    config.architectures = [family + TASK_AUTO_CLASSES[cfg.task].removeprefix("AutoModel")]
    return config


def load_student(cfg: FinetuneConfig, source: str, config: Any) -> torch.nn.Module:
    """Random init from ``config`` (``--init scratch``) or the model's weights with a new task head.

    Raises:
        ValueError: ``--init pretrained`` on a directory without weights.
    """
    import transformers

    from distilkit.models import TASK_AUTO_CLASSES, _has_weights, quiet_from_pretrained

    auto_cls = getattr(transformers, TASK_AUTO_CLASSES[cfg.task])
    if cfg.init == "scratch":
        torch.manual_seed(cfg.seed)
        return auto_cls.from_config(config)
    if not _has_weights(source):
        raise ValueError(
            f"--model {cfg.model} has no weights; add --init scratch to train it from random init"
        )
    # "newly initialized head" is the point of fine-tuning, not news (nor is the loading bar)
    return quiet_from_pretrained(auto_cls, source, config=config)


def load_teacher(cfg: FinetuneConfig, tokenizer: Any, device: torch.device) -> Any:
    """The frozen task teacher (bf16 where fast) or None.

    Raises:
        ValueError: a teacher with another tokenizer vocabulary.
    """
    if cfg.teacher is None:
        return None
    from distilkit.inference.runtime import resolve_dtype
    from distilkit.models import load_model

    teacher = load_model(cfg.teacher, cfg.task, dtype=resolve_dtype("auto", device), device=device)
    if teacher.tokenizer.get_vocab() != tokenizer.get_vocab():
        raise ValueError(
            f"--teacher {cfg.teacher} has another tokenizer than --model {cfg.model}; "
            "task distillation needs the same vocabulary"
        )
    for p in teacher.model.parameters():
        p.requires_grad_(False)
    return teacher


def teacher_labels(teacher: Any, space: task_data.LabelSpace) -> task_data.LabelSpace:
    """The student takes the teacher's label order, so their logits line up.

    Raises:
        ValueError: the data has labels the teacher does not, or another problem type.
    """
    if not space.labels:
        return space
    names = tuple(teacher.config.id2label[i] for i in range(teacher.config.num_labels))
    problem = getattr(teacher.config, "problem_type", None) or space.problem_type
    if space.problem_type is not None and problem != space.problem_type:
        raise ValueError(f"--teacher is a {problem} model; the data is {space.problem_type}")
    if space.problem_type != task_data.REGRESSION and set(space.labels) - set(names):
        raise ValueError(
            f"--teacher labels {list(names)} miss the data's {sorted(set(space.labels) - set(names))}"
            " (name the data's labels as the teacher does with --label-names)"
        )
    return task_data.LabelSpace(
        names if space.problem_type != task_data.REGRESSION else space.labels, space.problem_type
    )


# --- losses --------------------------------------------------------------------------------------
def task_distillation_loss(
    task: str,
    problem_type: str | None,
    student: Any,
    teacher: Any,
    attention: torch.Tensor,
    temperature: float,
) -> torch.Tensor:
    """α_ce's term on the task logits: KL(softmax(t/T) ‖ softmax(s/T))·T².

    Sequence classification: over the labels; token classification: per non-pad token; QA: over
    the positions of the start and of the end distribution (padding excluded), averaged.
    Regression: squared error to the teacher's prediction; multi-label: binary cross-entropy to
    sigmoid(t/T), ·T² (the KL up to a constant).

    Args:
        attention: (B, T) 1 for real tokens.
    """
    real = attention.bool()  # (B, T)
    if task == "question-answering":
        one = torch.ones(real.shape[0], 1, dtype=torch.bool, device=real.device)  # (B, 1)
        terms = []
        for s, t in ((student.start_logits, teacher.start_logits), (student.end_logits, teacher.end_logits)):
            s = s.float().masked_fill(~real, MASKED_LOGIT)[:, None]  # (B, 1, T)
            t = t.float().masked_fill(~real, MASKED_LOGIT)[:, None]
            terms.append(losses.distillation_kl_loss(s, t, one, temperature))
        return (terms[0] + terms[1]) / 2
    s, t = student.logits.float(), teacher.logits.float()
    if task == "token-classification":
        return losses.distillation_kl_loss(s, t, real, temperature)  # (B, T, L)
    if problem_type == task_data.REGRESSION:
        return F.mse_loss(s, t)
    if problem_type == task_data.MULTI:
        return (
            F.binary_cross_entropy_with_logits(s / temperature, torch.sigmoid(t / temperature))
            * temperature**2
        )
    one = torch.ones(s.shape[0], 1, dtype=torch.bool, device=s.device)
    return losses.distillation_kl_loss(s[:, None], t[:, None], one, temperature)  # (B, 1, L)


def compute_losses(
    cfg: FinetuneConfig, problem_type: str | None, student, teacher, batch: dict,
    student_inputs: set[str] | None = None,
) -> dict[str, torch.Tensor]:
    """The task loss (the model's own head loss) and, with a teacher, the distillation term.

    ``student_inputs``: the batch keys the student takes (None: all). A BERT teacher reads the
    token types a DistilBERT student has no input for (QA's context segment, text pairs).
    """
    out = student(**{k: v for k, v in batch.items() if student_inputs is None or k in student_inputs})
    terms = {"task": out.loss}
    if teacher is not None:
        accepted = set(inspect.signature(teacher.forward).parameters) - {
            "labels",
            "start_positions",
            "end_positions",
        }
        inputs = {k: v for k, v in batch.items() if k in accepted}
        with torch.no_grad():  # not inference_mode: its tensors cannot be saved for the student's backward
            t_out = teacher(**inputs)
        terms["ce"] = task_distillation_loss(
            cfg.task, problem_type, out, t_out, batch["attention_mask"], cfg.temperature
        )
    return terms


# --- the loop ------------------------------------------------------------------------------------
def finetune(cfg: FinetuneConfig) -> Path:
    """Fine-tune ``cfg.model`` on ``cfg.train`` for ``cfg.task``; return the output model directory.

    Raises:
        ValueError: bad inputs (named by flag); NonFiniteLossError when the loss becomes NaN/inf.
    """
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm
    from transformers import AutoTokenizer

    from distilkit.inference import runtime
    from distilkit.models import resolve_source

    # ---- setup
    accelerator = make_accelerator(cfg.cpu, _mixed_precision(cfg))
    if accelerator.device.type == "cpu":
        runtime.set_threads()
    set_seed(cfg.seed + accelerator.process_index)
    main, world = accelerator.is_main_process, accelerator.num_processes
    output, source = Path(cfg.output), resolve_source(cfg.model)
    tokenizer = AutoTokenizer.from_pretrained(source)
    examples = task_data.read_examples(cfg.task, cfg.train, cfg.glue_task)
    space = task_data.discover_labels(cfg.task, examples, cfg.problem_type, cfg.glue_task)
    space, renames = task_data.name_labels(space, cfg.label_name_list(), cfg.glue_task)
    examples = task_data.rename_examples(examples, renames)
    teacher = load_teacher(cfg, tokenizer, accelerator.device)
    if teacher is not None:
        space = teacher_labels(teacher, space)
    if cfg.validation is not None:  # unknown validation labels fail now, not after training
        validation = task_data.read_examples(cfg.task, cfg.validation, cfg.glue_task, "--validation")
        task_data.check_known_labels(space, cfg.task, task_data.rename_examples(validation, renames))
    config = build_config(cfg, source, space)
    student = load_student(cfg, source, config).float().to(accelerator.device).train()
    max_seq_len = cfg.max_seq_len or min(
        _model_limit(config, tokenizer), 384 if cfg.task == "question-answering" else 10**9
    )
    teacher_types = teacher is not None and "token_type_ids" in inspect.signature(teacher.model.forward).parameters
    data = task_data.build_features(cfg.task, examples, tokenizer, config, space, max_seq_len, cfg.doc_stride,
                                    token_types=teacher_types)
    lengths, pad_id = data.lengths, tokenizer.pad_token_id or 0
    per_epoch = len(length_grouped_batches(lengths, cfg.batch_size, cfg.seed, 0)) // world
    if per_epoch == 0:
        raise ValueError(
            f"--train has {len(data)} rows: fewer batches of --batch-size {cfg.batch_size} than processes"
        )
    total_steps = cfg.max_steps or max(1, cfg.epochs * per_epoch // cfg.grad_accumulation)
    warmup_steps = math.ceil(cfg.warmup * total_steps)
    accepted = set(inspect.signature(student.forward).parameters)
    if "token_type_ids" not in tokenizer.model_input_names:  # as at inference: the tokenizer decides
        accepted.discard("token_type_ids")
    wanted = accepted | (set(inspect.signature(teacher.model.forward).parameters) if teacher else set())
    decay = [p for n, p in student.named_parameters() if p.ndim > 1]  # no decay on biases and LayerNorms
    rest = [p for n, p in student.named_parameters() if p.ndim <= 1]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": rest, "weight_decay": 0.0}],
        lr=cfg.lr,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: get_lr_factor(s, warmup_steps, total_steps)
    )
    student, optimizer = accelerator.prepare(student, optimizer)
    t_model = None if teacher is None else teacher.model.eval()
    alpha_ce, alpha_task = cfg.loss_weights()
    checkpoints = output / "checkpoints"
    state = {"step": 0, "epoch": 0, "micro_step": 0, "examples": 0}
    resume_from = resolve_resume(cfg.resume, checkpoints)
    if resume_from is not None:
        state = load_checkpoint(resume_from, accelerator.unwrap_model(student), optimizer, scheduler)
    if main:
        output.mkdir(parents=True, exist_ok=True)
        save_config(cfg, output / "config.yaml", "distilkit finetune")
        csv_file, csv_writer = _open_csv(output / "metrics.csv", state["step"])
        tb = open_tensorboard(output) if cfg.tensorboard else None
    accelerator.print(
        f"finetune {cfg.task}: {data.examples} examples -> {len(data)} rows, "
        + (f"{len(space.labels)} labels ({space.problem_type or 'tags'}), " if space.labels else "")
        + f"{per_epoch} batches/epoch/process, {total_steps} steps, precision {accelerator.mixed_precision}"
        + (f", teacher {cfg.teacher}" if teacher else "")
        + (f", resumed from {resume_from}" if resume_from else "")
    )

    # ---- loop
    bar = tqdm(total=total_steps, initial=state["step"], disable=not (main and cfg.progress), desc="finetune")
    logs = (csv_file, csv_writer, tb) if main else (None, None, None)  # written by the main process only
    window = LogWindow("examples_per_s", cfg.log_every, *logs, bar)
    epoch, batches = -1, []
    for step in range(state["step"], total_steps):
        step_examples = 0
        for micro in range(cfg.grad_accumulation):
            e, i = divmod(state["micro_step"], per_epoch)
            if e != epoch:
                epoch, batches = e, length_grouped_batches(lengths, cfg.batch_size, cfg.seed, e)
            rows = batches[i * world + accelerator.process_index]
            batch = task_data.collate(data, rows, pad_id, cfg.task, space.problem_type)
            batch = {k: v.to(accelerator.device) for k, v in batch.items() if k in wanted}
            sync = micro == cfg.grad_accumulation - 1
            with contextlib.nullcontext() if sync else accelerator.no_sync(student):
                terms = compute_losses(cfg, space.problem_type, student, t_model, batch, accepted)
                loss = losses.weighted_sum(terms, {"task": alpha_task, "ce": alpha_ce})
                if not torch.isfinite(loss):
                    raise NonFiniteLossError(
                        f"loss is {float(loss)} at step {step + 1} (micro-batch "
                        f"{state['micro_step']}); lower --lr or resume from a checkpoint"
                    )
                accelerator.backward(loss / cfg.grad_accumulation)
            window.add({"loss": loss, **terms}, cfg.grad_accumulation)
            step_examples += len(rows) * world
            state["micro_step"] += 1
            state["epoch"] = epoch
        grad_norm, lr = optimizer_step(accelerator, student, optimizer, scheduler, cfg.max_grad_norm)
        state["step"] = step + 1
        state["examples"] += step_examples
        bar.update(1)
        done = state["step"] == total_steps
        window.step(state["step"], epoch, lr, grad_norm, step_examples, done, main)
        save_if_due(accelerator, checkpoints, student, optimizer, scheduler, state, cfg.save_every,
                    cfg.keep_checkpoints, done, main)
    bar.close()

    # ---- save, evaluate, card
    accelerator.wait_for_everyone()
    if main:
        csv_file.close()
        save_model_dir(accelerator.unwrap_model(student), tokenizer, output)
        summary = None
        if cfg.validation is not None:
            summary = finetune_report.evaluate_output(cfg, output, space)
            _write_json(output / "metrics.json", summary)
            tb_write(tb, finetune_report.scalar_metrics(summary["metrics"]), state["step"], prefix="eval")
        else:  # results of an earlier model in this directory would describe the wrong weights
            (output / "metrics.json").unlink(missing_ok=True)
        if tb is not None:
            tb.close()
        (output / "README.md").write_text(
            finetune_report.render_card(cfg, config, space, data, state, summary), encoding="utf-8"
        )
        accelerator.print(
            f"finetune: done, {state['step']} steps, model in {output}"
            + (f"; validation {finetune_report.headline(summary)}" if summary else "")
        )
    return output


def _model_limit(config: Any, tokenizer: Any) -> int:
    from distilkit.tasks.base import TaskHandler

    return TaskHandler(tokenizer, config).max_length


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


def _write_json(path: Path, payload: Any) -> None:
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
