"""``distilkit finetune``: the cards' tasks as one readable run, setup -> fit -> finish (save, evaluate).

Same conventions as ``distill`` (and the same pieces, from ``train/loop.py``): accelerate (bf16
autocast where fast), AdamW with linear warmup and decay, checkpoints that resume exactly (data
order is a pure function of (seed, epoch); the checkpoint restores weights, optimizer, scheduler
and RNG states), a progress bar, a CSV log (and TensorBoard events with ``--tensorboard``).
With ``--teacher`` the loss is α_ce·KL(teacher/T ‖ student/T)·T² on the task logits plus
α_task·(the task loss), the recipe of ``distilbert-base-cased-distilled-squad``; ``--alpha-cos``
adds the paper's L_cos on the last hidden states, ``--alpha-hidden`` the same on every student
layer's output against the teacher layer it stands for. At the end the
model directory is evaluated on ``--validation`` through the Predictor (metrics.json) and gets a
model card (README.md).
"""

from __future__ import annotations

import functools
import inspect
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from distilkit.config import FinetuneConfig, flag, save_config
from distilkit.errors import UserError
from distilkit.model_info import TASK_AUTO_CLASSES, has_weights, hidden_size
from distilkit.models import quiet_from_pretrained, save_model_dir
from distilkit.train import finetune_report, label_space, losses, task_data
from distilkit.train.checkpoint import load_checkpoint, resolve_resume
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
    tb_write,
)
from distilkit.train.stream import TaskBatches
from distilkit.train.student_init import hidden_layer_pairs, recorded_layers

CSV_FIELDS = (
    "step",
    "epoch",
    "lr",
    "loss",
    "loss_task",
    "loss_ce",
    "loss_cos",
    "loss_hidden",
    "grad_norm",
    "examples_per_s",
    "elapsed_s",
)
MASKED_LOGIT = -1e4  # QA logits at padding: no probability in either distribution


# --- setup ---------------------------------------------------------------------------------------
def build_config(cfg: FinetuneConfig, source: str, space: label_space.LabelSpace) -> Any:
    """The student's config: the model's, with the discovered labels and any size overrides."""
    from transformers import AutoConfig

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
        UserError: ``--init pretrained`` on a directory without weights.
    """
    import transformers

    auto_cls = getattr(transformers, TASK_AUTO_CLASSES[cfg.task])
    if cfg.init == "scratch":
        torch.manual_seed(cfg.seed)
        return auto_cls.from_config(config)
    if not has_weights(source):
        raise UserError(
            f"--model {cfg.model} has no weights; add --init scratch to train it from random init"
        )
    # "newly initialized head" is the point of fine-tuning, not news (nor is the loading bar)
    return quiet_from_pretrained(auto_cls, source, config=config)


def load_teacher(cfg: FinetuneConfig, tokenizer: Any, device: torch.device) -> Any:
    """The frozen task teacher (bf16 where fast) or None.

    Raises:
        UserError: a teacher with another tokenizer vocabulary.
    """
    if cfg.teacher is None:
        return None
    from distilkit.inference.runtime import resolve_dtype
    from distilkit.models import load_model

    teacher = load_model(cfg.teacher, cfg.task, dtype=resolve_dtype("auto", device), device=device)
    if teacher.tokenizer.get_vocab() != tokenizer.get_vocab():
        raise UserError(
            f"--teacher {cfg.teacher} has another tokenizer than --model {cfg.model}; "
            "task distillation needs the same vocabulary"
        )
    for p in teacher.model.parameters():
        p.requires_grad_(False)
    return teacher


def teacher_labels(teacher: Any, space: label_space.LabelSpace) -> label_space.LabelSpace:
    """The student takes the teacher's label order, so their logits line up.

    Raises:
        UserError: the data has labels the teacher does not, or another problem type.
    """
    if not space.labels:
        return space
    names = tuple(teacher.config.id2label[i] for i in range(teacher.config.num_labels))
    problem = getattr(teacher.config, "problem_type", None) or space.problem_type
    if space.problem_type is not None and problem != space.problem_type:
        raise UserError(f"--teacher is a {problem} model; the data is {space.problem_type}")
    if space.problem_type != label_space.REGRESSION and set(space.labels) - set(names):
        raise UserError(
            f"--teacher labels {list(names)} miss the data's {sorted(set(space.labels) - set(names))}"
            " (name the data's labels as the teacher does with --label-names)"
        )
    return label_space.LabelSpace(
        names if space.problem_type != label_space.REGRESSION else space.labels, space.problem_type
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
    if task == "question-answering":  # one row per example: a distribution over its positions
        terms = []
        for s, t in ((student.start_logits, teacher.start_logits), (student.end_logits, teacher.end_logits)):
            s = s.float().masked_fill(~real, MASKED_LOGIT)  # (B, T)
            t = t.float().masked_fill(~real, MASKED_LOGIT)
            terms.append(losses.distillation_kl_loss(s, t, None, temperature))
        return (terms[0] + terms[1]) / 2
    s, t = student.logits.float(), teacher.logits.float()
    if task == "token-classification":  # one row per token, padding weighs 0
        return losses.distillation_kl_loss(s.flatten(0, 1), t.flatten(0, 1), attention.flatten(), temperature)
    if problem_type == label_space.REGRESSION:
        return F.mse_loss(s, t)
    if problem_type == label_space.MULTI:
        return (
            F.binary_cross_entropy_with_logits(s / temperature, torch.sigmoid(t / temperature))
            * temperature**2
        )
    return losses.distillation_kl_loss(s, t, None, temperature)  # (B, L): one row per example


def compute_losses(
    cfg: FinetuneConfig, problem_type: str | None, student, teacher, batch: dict,
    student_inputs: set[str] | None = None, layer_pairs: list[tuple[int, int]] | None = None,
) -> dict[str, torch.Tensor]:
    """The task loss (the model's own head loss) and, with a teacher, the distillation terms.

    ``student_inputs``: the batch keys the student takes (None: all). A BERT teacher reads the
    token types a DistilBERT student has no input for (QA's context segment, text pairs).
    ``layer_pairs``: (student, teacher) hidden-state indices the ``hidden`` term compares
    (``student_init.hidden_layer_pairs``; needed with ``cfg.alpha_hidden``).
    """
    hidden = teacher is not None and (cfg.alpha_cos > 0 or cfg.alpha_hidden > 0)
    labelled = batch.get(task_data.LABELLED_ROWS)  # None: every row has targets
    batch = {k: v for k, v in batch.items() if k != task_data.LABELLED_ROWS}
    inputs = {k: v for k, v in batch.items() if student_inputs is None or k in student_inputs}
    out = student(**inputs, output_hidden_states=hidden)
    # a batch of transfer rows alone has no task loss (the model's mean over no targets is NaN)
    terms = {"task": out.loss if labelled != 0 else torch.zeros((), device=batch["input_ids"].device)}
    if teacher is not None:
        accepted = set(inspect.signature(teacher.forward).parameters) - {
            "labels",
            "start_positions",
            "end_positions",
        }
        inputs = {k: v for k, v in batch.items() if k in accepted}
        with torch.no_grad():  # not inference_mode: its tensors cannot be saved for the student's backward
            t_out = teacher(**inputs, output_hidden_states=hidden)
        terms["ce"] = task_distillation_loss(
            cfg.task, problem_type, out, t_out, batch["attention_mask"], cfg.temperature
        )
        real = batch["attention_mask"].flatten().float() if hidden else None

        def cos(s: int, t: int) -> torch.Tensor:  # 1 - cos over the real tokens of two layers' outputs
            return losses.cosine_embedding_loss(
                out.hidden_states[s].flatten(0, 1), t_out.hidden_states[t].flatten(0, 1), real
            )

        if cfg.alpha_cos > 0:  # L_cos over the last hidden states
            terms["cos"] = cos(-1, -1)
        if cfg.alpha_hidden > 0:
            terms["hidden"] = torch.stack([cos(s, t) for s, t in layer_pairs]).mean()
    return terms


def check_hidden_terms(cfg: FinetuneConfig, config: Any, teacher_config: Any, source: str | Path
                       ) -> list[tuple[int, int]] | None:
    """Check that the hidden-state terms can compare the two models; return the layer pairs of
    ``--alpha-hidden`` (init-student's map recorded in ``source``, else evenly spaced) or None.

    Raises:
        UserError: different hidden sizes, or a recorded map that does not fit the two models.
    """
    for name in ("alpha_cos", "alpha_hidden"):
        if getattr(cfg, name) and hidden_size(config) != hidden_size(teacher_config):
            raise UserError(
                f"{flag(name)} needs the teacher's hidden size ({hidden_size(teacher_config)}; --model has "
                f"{hidden_size(config)}): set {flag(name)} 0 or make the student with distilkit init-student"
            )
    if not cfg.alpha_hidden:
        return None
    return hidden_layer_pairs(config.num_hidden_layers, teacher_config.num_hidden_layers,
                              recorded_layers(source))


def takes_token_types(model: torch.nn.Module) -> bool:
    """Whether ``model``'s forward reads segment ids (BERT does; DistilBERT has no such input)."""
    return "token_type_ids" in inspect.signature(model.forward).parameters


def model_inputs(student: torch.nn.Module, tokenizer: Any) -> set[str]:
    """The batch keys the student reads: its forward's parameters, without token types when its
    tokenizer gives none (as at inference, where the tokenizer decides what the model sees)."""
    accepted = set(inspect.signature(student.forward).parameters)
    if "token_type_ids" not in tokenizer.model_input_names:
        accepted.discard("token_type_ids")
    return accepted


# --- the run ---------------------------------------------------------------------------------------
@dataclass
class Run:
    """What ``setup`` builds for ``fit`` and ``finish``: model, teacher, data, optimizer and logs."""

    cfg: FinetuneConfig
    accelerator: Any
    student: torch.nn.Module  # prepared (autocast, DDP)
    teacher: torch.nn.Module | None
    tokenizer: Any
    config: Any  # the student's transformers config (labels, architecture)
    space: label_space.LabelSpace
    data: task_data.TrainData
    batches: TaskBatches
    optimizer: Any
    scheduler: Any
    total_steps: int
    state: dict[str, Any]
    logs: TrainLogs
    student_inputs: set[str] | None = None  # the batch keys the student's forward takes (None: all)
    layer_pairs: list[tuple[int, int]] | None = None  # --alpha-hidden: (student, teacher) hidden states

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process


def setup(cfg: FinetuneConfig) -> Run:
    """Read and label the data, build the student (and teacher), optimizer and schedule; resume; open
    the logs and print the plan.

    Raises:
        UserError: bad inputs (named by flag); unknown validation labels fail here, not after training.
    """
    from accelerate.utils import set_seed
    from transformers import AutoTokenizer

    from distilkit.inference import runtime
    from distilkit.models import resolve_source

    accelerator = make_accelerator(cfg.cpu, mixed_precision(cfg.precision, cfg.cpu))
    if accelerator.device.type == "cpu":
        runtime.set_threads()
    set_seed(cfg.seed + accelerator.process_index)
    world, output, source = accelerator.num_processes, Path(cfg.output), resolve_source(cfg.model)
    tokenizer = AutoTokenizer.from_pretrained(source)
    examples = task_data.read_examples(cfg.task, cfg.train, cfg.glue_task)
    space = label_space.discover_labels(cfg.task, examples, cfg.problem_type, cfg.glue_task)
    space, renames = label_space.name_labels(space, cfg.label_name_list(), cfg.glue_task)
    examples = label_space.rename_examples(examples, renames)
    teacher = load_teacher(cfg, tokenizer, accelerator.device)
    if teacher is not None:
        space = teacher_labels(teacher, space)
    if cfg.validation is not None:  # unknown validation labels fail now, not after training
        validation = task_data.read_examples(cfg.task, cfg.validation, cfg.glue_task, "--validation")
        label_space.check_known_labels(space, cfg.task, label_space.rename_examples(validation, renames))
    config = build_config(cfg, source, space)
    layer_pairs = None if teacher is None else check_hidden_terms(cfg, config, teacher.config, source)
    student = load_student(cfg, source, config).float().to(accelerator.device).train()
    max_seq_len = cfg.max_seq_len or min(
        _model_limit(config, tokenizer), 384 if cfg.task == "question-answering" else 10**9
    )
    build = functools.partial(  # the training rows' tokenization, shared by the --transfer rows
        task_data.build_features, cfg.task, tokenizer=tokenizer, config=config, space=space,
        max_seq_len=max_seq_len, doc_stride=cfg.doc_stride,
        token_types=teacher is not None and takes_token_types(teacher.model),
    )
    data = build(examples)
    if cfg.transfer is not None:
        transfer = task_data.read_examples(cfg.task, cfg.transfer, cfg.glue_task, "--transfer", labels=False)
        data = task_data.with_transfer(data, task_data.transfer_features(cfg.task, transfer, space, build))
    student_inputs = model_inputs(student, tokenizer)
    wanted = student_inputs | (set(inspect.signature(teacher.model.forward).parameters) if teacher else set())
    batches = TaskBatches(data, cfg, space, tokenizer.pad_token_id or 0, wanted, accelerator.process_index,
                          world, accelerator.device)
    total_steps = cfg.max_steps or max(1, cfg.epochs * batches.per_epoch // cfg.grad_accumulation)
    decay = [p for p in student.parameters() if p.ndim > 1]  # no decay on biases and LayerNorms
    rest = [p for p in student.parameters() if p.ndim <= 1]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": rest, "weight_decay": 0.0}],
        lr=cfg.lr,
    )
    scheduler = linear_schedule(optimizer, cfg.warmup, total_steps)
    student, optimizer = accelerator.prepare(student, optimizer)
    state = {"step": 0, "epoch": 0, "micro_step": 0, "examples": 0}
    resume_from = resolve_resume(cfg.resume, output / "checkpoints")
    if resume_from is not None:
        state = load_checkpoint(resume_from, accelerator.unwrap_model(student), optimizer, scheduler)
    if accelerator.is_main_process:
        output.mkdir(parents=True, exist_ok=True)
        save_config(cfg, output / "config.yaml", "distilkit finetune")
    logs = TrainLogs(output, CSV_FIELDS, state["step"], cfg.tensorboard, accelerator.is_main_process)
    accelerator.print(
        f"finetune {cfg.task}: {data.examples} examples -> {data.labelled_rows or len(data)} rows, "
        + (f"{data.transfer_examples} transfer examples -> {len(data) - data.labelled_rows} rows "
           "(distillation terms only), " if data.labelled_rows is not None else "")
        + (f"{len(space.labels)} labels ({space.problem_type or 'tags'}), " if space.labels else "")
        + step_plan(batches.per_epoch, cfg.grad_accumulation, world, cfg.batch_size, "rows")
        + f", {total_steps} steps, precision {accelerator.mixed_precision}"
        + (f", teacher {cfg.teacher}" if teacher else "")
        + (f", resumed from {resume_from}" if resume_from else "")
    )
    warning = step_warning(batches.per_epoch, cfg.grad_accumulation, "--grad-accumulation")
    if warning:
        accelerator.print(warning, file=sys.stderr)
    t_model = None if teacher is None else teacher.model.eval()
    return Run(cfg, accelerator, student, t_model, tokenizer, config, space, data, batches, optimizer,
               scheduler, total_steps, state, logs, student_inputs, layer_pairs)


def fit(run: Run) -> None:
    """The loop (``loop.run_steps``): micro-batches -> task and distillation losses -> backward, then one
    optimizer step; log, checkpoint.

    Raises:
        NonFiniteLossError: a micro-batch's loss became NaN/inf (checked once per optimizer step).
    """
    cfg = run.cfg
    alpha_ce, alpha_task = cfg.loss_weights()
    weights = {"task": alpha_task, "ce": alpha_ce, "cos": cfg.alpha_cos, "hidden": cfg.alpha_hidden}

    def micro_batch(micro_step: int) -> MicroOutcome:
        epoch, examples, batch = run.batches.get(micro_step)
        terms = compute_losses(cfg, run.space.problem_type, run.student, run.teacher, batch,
                               run.student_inputs, run.layer_pairs)
        return MicroOutcome(losses.weighted_sum(terms, weights), terms, examples, epoch)

    def on_nonfinite(step: int, micro_step: int, step_losses: StepLosses, index: int) -> None:
        raise NonFiniteLossError(f"{step_losses.describe(index)} at step {step + 1} (micro-batch "
                                 f"{micro_step}); lower --lr or resume from a checkpoint")

    run_steps(run, "finetune", cfg.grad_accumulation, "examples", micro_batch, on_nonfinite)


def finish(run: Run) -> Path:
    """Save the model directory, evaluate it on --validation (metrics.json), write its card; return it."""
    cfg, output, state = run.cfg, Path(run.cfg.output), run.state
    run.accelerator.wait_for_everyone()
    if not run.main:
        return output
    save_model_dir(run.accelerator.unwrap_model(run.student), run.tokenizer, output)
    summary = None
    if cfg.validation is not None:
        summary = finetune_report.evaluate_output(cfg, output, run.space)
        _write_json(output / "metrics.json", summary)
        scalars = finetune_report.scalar_metrics(summary["metrics"])
        tb_write(run.logs.tb, scalars, state["step"], prefix="eval")
    else:  # results of an earlier model in this directory would describe the wrong weights
        (output / "metrics.json").unlink(missing_ok=True)
    run.logs.close()
    (output / "README.md").write_text(
        finetune_report.render_card(cfg, run.config, run.space, run.data, state, summary), encoding="utf-8"
    )
    run.accelerator.print(
        f"finetune: done, {state['step']} steps, model in {output}"
        + (f"; validation {finetune_report.headline(summary)}" if summary else "")
    )
    return output


def finetune(cfg: FinetuneConfig) -> Path:
    """Fine-tune ``cfg.model`` on ``cfg.train`` for ``cfg.task``; return the output model directory.

    Raises:
        UserError: bad inputs (named by flag); NonFiniteLossError when the loss becomes NaN/inf.
    """
    run = setup(cfg)
    with run.logs:  # closed however the loop ends
        fit(run)
        return finish(run)


def _model_limit(config: Any, tokenizer: Any) -> int:
    from distilkit.tasks.base import TaskHandler

    return TaskHandler(tokenizer, config).max_length


def _write_json(path: Path, payload: Any) -> None:
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
