"""Frozen, validated configuration per command; values come from a YAML file overridden by CLI flags."""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distilkit.errors import UserError
from distilkit.evaluation.metrics import glue_task_name
from distilkit.model_info import canonical_task

# One precision vocabulary everywhere (--precision here, --dtype at inference): torch's dtype names.
PRECISIONS = ("auto", "float32", "bfloat16", "float16")
LEGACY_PRECISIONS = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}  # accepted, deprecated


def glue_task_option(name: str) -> str:
    """``--glue-task``'s value as GLUE spells the task (``sst2`` -> ``SST-2``).

    Raises:
        UserError: not a GLUE task (the message names the flag and lists the tasks).
    """
    try:
        return glue_task_name(name)
    except ValueError as err:
        raise UserError(f"--glue-task: {err}") from None


@dataclass(frozen=True)
class DistillConfig:
    """``distilkit distill``: the DistilBERT recipe (Sanh et al., 2019); each field is the flag of its name.

    The defaults are the published recipe: loss 5·L_ce + 2·L_mlm + 1·L_cos at temperature 2; masking 15%
    of the real tokens (80% mask token, 10% random, 10% kept) drawn ∝ count^-0.7; AdamW lr 5e-4, betas
    (0.9, 0.98), eps 1e-6, 5% linear warmup, gradient-norm clip 5, effective batch of 4,096 sequences,
    3 epochs.
    """

    teacher: str = ""
    """Teacher model directory or hub id (a *ForMaskedLM; with --alpha-cos as the only term any encoder,
    e.g. a sentence-transformers BertModel); may be omitted when only MLM/CLM terms are on."""
    student: str = ""
    """Student model dir (e.g. from init-student; a bare encoder with --alpha-cos as the only term), or a
    config.json or weightless dir for random init."""
    data: str = ""
    """Shard directory written by distilkit prepare-data."""
    output: str = ""
    """Run directory: the final model, config.yaml, metrics.csv, checkpoints/."""
    alpha_ce: float = 5.0
    """Weight of L_ce, the KL between teacher and student distributions at temperature T."""
    alpha_mlm: float = 2.0
    """Weight of L_mlm, the cross-entropy of the original token at masked positions."""
    alpha_cos: float = 1.0
    """Weight of L_cos, 1 - cos(student, teacher) of last hidden states at non-pad positions."""
    alpha_mse: float = 0.0
    """Weight of the squared error between student and teacher logits."""
    alpha_clm: float = 0.0
    """Weight of a causal-LM loss (needs a causal student; masked-LM students reject it)."""
    temperature: float = 2.0
    """Softmax temperature T of L_ce (the loss is scaled by T²)."""
    restrict_ce_to_mask: bool = False
    """Compute L_ce (and the MSE term) at masked positions only instead of all non-pad positions."""
    mlm_probability: float = 0.15
    """Share of maskable tokens per sequence to predict (exactly ceil(p·n))."""
    mask_replace: float = 0.8
    """Share of chosen positions shown as the mask token."""
    random_replace: float = 0.1
    """Share of chosen positions shown as a random token (the rest stay unchanged)."""
    mlm_smoothing: float = 0.7
    """Masking probability ∝ max(count, 1)^-smoothing (0 = uniform)."""
    lr: float = 5e-4
    """Peak learning rate (linear warmup, then linear decay to 0)."""
    warmup: float = 0.05
    """Warmup as a fraction of all optimizer steps."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    beta1: float = 0.9
    """AdamW beta1."""
    beta2: float = 0.98
    """AdamW beta2."""
    adam_eps: float = 1e-6
    """AdamW epsilon."""
    max_grad_norm: float = 5.0
    """Clip the global gradient norm to this (0 disables clipping)."""
    batch_size: int = 16
    """Sequences per micro-batch per process."""
    effective_batch_size: int = 4096
    """Sequences per optimizer step over all processes; sets grad_accumulation when that is not given."""
    grad_accumulation: int | None = None
    """Micro-batches per optimizer step (default: effective_batch_size / (batch_size · processes))."""
    epochs: int = 3
    """Passes over the data (ignored when max_steps is set)."""
    max_steps: int | None = None
    """Stop after this many optimizer steps."""
    seed: int = 56
    """Seed for data order, masking, dropout and random init."""
    precision: str = "auto"
    """Compute dtype of mixed precision (weights stay float32): auto (bfloat16 on CUDA and on CPUs with
    AMX/AVX512-BF16, else float32) | float32 | bfloat16 | float16."""
    teacher_dtype: str = "auto"
    """Teacher weights: auto (bf16 where fast) | float32 | bfloat16."""
    cpu: bool = False
    """Train on CPU even when CUDA is present."""
    log_every: int = 10
    """Log losses, lr and tokens/s every N optimizer steps."""
    save_every: int = 500
    """Checkpoint every N optimizer steps (0 = only at the end)."""
    keep_checkpoints: int = 2
    """How many recent checkpoints to keep."""
    resume: str | None = None
    """Checkpoint directory to resume from, or 'auto' for the latest one in output/checkpoints."""
    tensorboard: bool = False
    """Also log to TensorBoard (needs the tensorboard package)."""
    progress: bool = True
    """Show a progress bar."""

    def __post_init__(self) -> None:
        for name in ("student", "data", "output"):
            if not getattr(self, name):
                raise UserError(f"--{name} is required (flag or key {name!r} in --config)")
        if not self.teacher and self.uses_teacher:
            raise UserError(
                "--teacher is required for --alpha-ce/--alpha-cos/--alpha-mse (set them to 0 to train "
                "the student with MLM/CLM only)"
            )
        for name in (
            "alpha_ce",
            "alpha_mlm",
            "alpha_cos",
            "alpha_mse",
            "alpha_clm",
            "weight_decay",
            "max_grad_norm",
        ):
            if getattr(self, name) < 0:
                raise UserError(f"{flag(name)} must be >= 0, got {getattr(self, name)}")
        if self.alpha_ce + self.alpha_mlm + self.alpha_cos + self.alpha_mse + self.alpha_clm == 0:
            raise UserError("all --alpha-* are 0: nothing to train")
        if self.alpha_clm > 0 and self.alpha_mlm > 0:
            raise UserError("--alpha-clm and --alpha-mlm are exclusive (causal vs masked LM); set one to 0")
        if self.temperature <= 0:
            raise UserError(f"--temperature must be > 0, got {self.temperature}")
        if not 0 < self.mlm_probability <= 1:
            raise UserError(f"--mlm-probability must be in (0, 1], got {self.mlm_probability}")
        if self.mask_replace < 0 or self.random_replace < 0 or self.mask_replace + self.random_replace > 1:
            raise UserError("--mask-replace and --random-replace must be >= 0 and sum to at most 1")
        if self.mlm_smoothing < 0:
            raise UserError(f"--mlm-smoothing must be >= 0, got {self.mlm_smoothing}")
        if self.lr <= 0:
            raise UserError(f"--lr must be > 0, got {self.lr}")
        if not 0 <= self.warmup < 1:
            raise UserError(f"--warmup is a fraction of the steps in [0, 1), got {self.warmup}")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1) or self.adam_eps <= 0:
            raise UserError("--beta1/--beta2 must be in [0, 1) and --adam-eps > 0")
        for name in ("batch_size", "effective_batch_size", "epochs", "log_every"):
            if getattr(self, name) < 1:
                raise UserError(f"{flag(name)} must be >= 1, got {getattr(self, name)}")
        for name in ("grad_accumulation", "max_steps"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise UserError(f"{flag(name)} must be >= 1, got {getattr(self, name)}")
        if self.save_every < 0 or self.keep_checkpoints < 1:
            raise UserError("--save-every must be >= 0 and --keep-checkpoints >= 1")
        object.__setattr__(self, "precision", check_precision(self.precision))
        if self.teacher_dtype not in ("auto", "float32", "bfloat16"):
            raise UserError(f"--teacher-dtype must be auto, float32 or bfloat16, got {self.teacher_dtype!r}")

    @property
    def uses_teacher(self) -> bool:
        """Whether a loss term reads the teacher's outputs (otherwise: plain MLM/CLM pre-training)."""
        return self.alpha_ce > 0 or self.alpha_cos > 0 or self.alpha_mse > 0

    @property
    def reads_logits(self) -> bool:
        """Whether a loss term reads logits; without one (--alpha-cos alone) only the encoders' last
        hidden states count, so teacher and student need no masked-LM head."""
        return self.alpha_ce > 0 or self.alpha_mlm > 0 or self.alpha_mse > 0 or self.alpha_clm > 0

    def accumulation(self, num_processes: int = 1) -> int:
        """Micro-batches per optimizer step."""
        if self.grad_accumulation is not None:
            return self.grad_accumulation
        return max(1, math.ceil(self.effective_batch_size / (self.batch_size * num_processes)))

    def to_dict(self) -> dict[str, Any]:
        """The resolved configuration (what config.yaml holds)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


def check_precision(value: str) -> str:
    """A ``--precision`` value in the one vocabulary; the old ``fp32``/``bf16``/``fp16`` still work, with a
    deprecation warning.

    Raises:
        UserError: any other value.
    """
    if value in LEGACY_PRECISIONS:
        new = LEGACY_PRECISIONS[value]
        warnings.warn(f"--precision {value} is deprecated; use --precision {new} (the --dtype names)",
                      FutureWarning, stacklevel=4)
        return new
    if value not in PRECISIONS:
        raise UserError(f"--precision must be one of {list(PRECISIONS)}, got {value!r}")
    return value


def flag(name: str) -> str:
    """The command-line flag of a config field: ``max_steps`` -> ``--max-steps``."""
    return "--" + name.replace("_", "-")


def field_help(cls: type, name: str) -> str:
    """The docstring under a dataclass field (the CLI help text), read from the source."""
    return _field_docs(cls).get(name, "")


@functools.cache
def _field_docs(cls: type) -> dict[str, str]:
    import ast
    import inspect

    body = ast.parse(inspect.getsource(cls)).body[0].body  # type: ignore[attr-defined]
    docs = {}
    for node, following in itertools.pairwise(body):
        named = isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
        if named and isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant):
            docs[node.target.id] = str(following.value.value)
    return docs


def load_config(cls: type, yaml_path: str | Path | None, overrides: dict[str, Any]):
    """Build ``cls`` from a YAML file (if any) overridden by the non-None ``overrides`` (CLI flags).

    Raises:
        UserError: unreadable YAML, unknown keys, or invalid values (from ``__post_init__``).
    """
    import yaml

    values: dict[str, Any] = {}
    if yaml_path is not None:
        path = Path(yaml_path)
        if not path.is_file():
            raise UserError(f"--config {path} does not exist")
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise UserError(f"--config {path} is not valid YAML: {' '.join(str(err).split())}") from None
        if not isinstance(loaded, dict):
            raise UserError(f"--config {path} must be a mapping of option: value")
        values.update({str(k).replace("-", "_"): v for k, v in loaded.items()})
    values.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise UserError(f"unknown option(s) {unknown} in --config; known: {sorted(known)}")
    return cls(**values)


def save_config(config: Any, path: str | Path, command: str) -> None:
    """Write the resolved config as YAML, headed by the command that reruns it."""
    import yaml

    body = yaml.safe_dump(config.to_dict(), sort_keys=False)
    Path(path).write_text(f"# {command} --config {Path(path).name}\n{body}")


FINETUNE_TASKS = ("text-classification", "token-classification", "question-answering")
PROBLEM_TYPES = ("auto", "single_label_classification", "multi_label_classification", "regression")


@dataclass(frozen=True)
class FinetuneConfig:
    """``distilkit finetune``: fine-tuning, optionally task-distilled from a teacher (the same KL at
    temperature T on the task logits, how distilbert-base-cased-distilled-squad was made).

    Each field is the flag of the same name."""

    task: str = ""
    """text-classification | token-classification | question-answering (aliases: ner, sentiment-analysis)."""
    model: str = ""
    """Model directory, hub id or registry reference to start from (its tokenizer is used)."""
    train: str = ""
    """Training file: .jsonl/.csv/.tsv/.parquet, emotion text;label .txt, CoNLL columns, or SQuAD JSON."""
    validation: str | None = None
    """Evaluated through the Predictor at the end: metrics.json and the card's results table."""
    output: str = ""
    """Run directory: the fine-tuned model, config.yaml, metrics.csv/json, README.md, checkpoints/,
    tensorboard/."""
    glue_task: str | None = None
    """Read the files as this GLUE task's TSV (e.g. MRPC, STS-B, sst2; any case) and report its GLUE
    metrics."""
    label_names: str | None = None
    """text-classification: comma-separated names of the data's labels in their sorted order (e.g.
    negative,positive for 0/1), kept in the model's config (default with --glue-task: GLUE's names,
    SST-2 negative,positive)."""
    problem_type: str = "auto"
    """text-classification: auto (lists -> multi-label, fractional numbers or STS-B -> regression) |
    single_label_classification | multi_label_classification | regression."""
    init: str = "pretrained"
    """pretrained (load the model's weights) | scratch (random init from its config)."""
    num_layers: int | None = None
    """Scratch students: number of transformer layers (default: the config's)."""
    hidden_size: int | None = None
    """Scratch students: hidden size, a multiple of 64 (heads of 64, feed-forward 4x)."""
    teacher: str | None = None
    """Fine-tuned teacher for the same task and labels: adds alpha_ce * KL(teacher/T || student/T) * T²."""
    alpha_ce: float | None = None
    """Weight of the distillation term on the task logits (default 0.5; needs --teacher)."""
    alpha_task: float | None = None
    """Weight of the task loss (default 0.5 with --teacher, else 1.0)."""
    alpha_cos: float = 0.0
    """Weight of L_cos = 1 - cos(student, teacher) on the last hidden states of the real tokens (the
    paper's third term; needs --teacher with the student's hidden size, as init-student makes)."""
    alpha_hidden: float = 0.0
    """Weight of the intermediate-layer term: the mean over the student's layers of 1 - cos(the layer's
    output, the output of the teacher layer it stands for) on the real tokens. The map is the one
    init-student recorded (student layer i <- teacher layer --layers[i]), else evenly spaced teacher
    layers ending at the last; needs --teacher with the student's hidden size."""
    transfer: str | None = None
    """Extra inputs only the teacher labels (needs --teacher): a file in --train's format whose labels
    or answers are not used (e.g. SQuAD v2.0's unanswerable questions, labels of another task, a jsonl
    or csv without a label column); its rows join the training batches and train the distillation
    terms alone. Single-label classification, NER and QA."""
    temperature: float = 2.0
    """Softmax temperature T of the distillation term (scaled by T²)."""
    max_seq_len: int | None = None
    """Longest input in tokens (default: 384 for question-answering, else the model's limit)."""
    doc_stride: int | None = None
    """question-answering: overlap between windows (default: min(max_seq_len / 2, 128), as at inference)."""
    lr: float = 5e-5
    """Peak learning rate (linear warmup, then linear decay to 0)."""
    warmup: float = 0.1
    """Warmup as a fraction of all optimizer steps."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    max_grad_norm: float = 1.0
    """Clip the global gradient norm to this (0 disables clipping)."""
    batch_size: int = 32
    """Examples (QA: windows) per micro-batch per process."""
    grad_accumulation: int = 1
    """Micro-batches per optimizer step."""
    epochs: int = 3
    """Passes over the training data (ignored when max_steps is set)."""
    max_steps: int | None = None
    """Stop after this many optimizer steps."""
    seed: int = 42
    """Seed for data order, dropout and random init."""
    precision: str = "auto"
    """Compute dtype of mixed precision (weights stay float32): auto (bfloat16 on CUDA and on CPUs with
    AMX/AVX512-BF16, else float32) | float32 | bfloat16 | float16."""
    cpu: bool = False
    """Train on CPU even when CUDA is present."""
    log_every: int = 50
    """Log losses, lr and examples/s every N optimizer steps."""
    save_every: int = 0
    """Checkpoint every N optimizer steps (0 = no checkpoints)."""
    keep_checkpoints: int = 2
    """How many recent checkpoints to keep."""
    resume: str | None = None
    """Checkpoint directory to resume from, or 'auto' for the latest one in output/checkpoints."""
    progress: bool = True
    """Show a progress bar."""
    tensorboard: bool = False
    """Also log the training rows and the validation metrics to output/tensorboard (needs tensorboard)."""

    def __post_init__(self) -> None:
        for name in ("task", "model", "train", "output"):
            if not getattr(self, name):
                what = "TASK is required" if name == "task" else f"--{name} is required"
                raise UserError(f"{what} (or key {name!r} in --config)")
        task = canonical_task(self.task)
        if task not in FINETUNE_TASKS:
            raise UserError(f"finetune supports {list(FINETUNE_TASKS)}, not {task!r}")
        object.__setattr__(self, "task", task)
        if self.problem_type not in PROBLEM_TYPES:
            raise UserError(
                f"--problem-type must be one of {list(PROBLEM_TYPES)}, got {self.problem_type!r}"
            )
        if self.problem_type != "auto" and task != "text-classification":
            raise UserError("--problem-type is for text-classification")
        if self.glue_task is not None:
            if task != "text-classification":
                raise UserError("--glue-task is for text-classification")
            object.__setattr__(self, "glue_task", glue_task_option(self.glue_task))
        if isinstance(self.label_names, (list, tuple)):  # a YAML list
            object.__setattr__(self, "label_names", ",".join(map(str, self.label_names)))
        if self.label_names is not None:
            if task != "text-classification":
                raise UserError("--label-names is for text-classification")
            names = self.label_name_list()
            if len(names) < 2 or "" in names or len(set(names)) != len(names):
                raise UserError(
                    f"--label-names takes 2 or more distinct comma-separated names, got {self.label_names!r}"
                )
        if self.init not in ("pretrained", "scratch"):
            raise UserError(f"--init must be pretrained or scratch, got {self.init!r}")
        if self.init == "pretrained" and (self.num_layers is not None or self.hidden_size is not None):
            raise UserError("--num-layers/--hidden-size change the architecture: add --init scratch "
                             "(or build a student from a teacher with distilkit init-student)")
        if self.num_layers is not None and self.num_layers < 1:
            raise UserError(f"--num-layers must be >= 1, got {self.num_layers}")
        if self.hidden_size is not None and (self.hidden_size < 64 or self.hidden_size % 64):
            raise UserError(f"--hidden-size must be a positive multiple of 64, got {self.hidden_size}")
        if self.teacher is None and self.alpha_ce is not None:
            raise UserError("--alpha-ce weighs the distillation term: it needs --teacher")
        for name in ("alpha_cos", "alpha_hidden"):
            if self.teacher is None and getattr(self, name):
                raise UserError(
                    f"{flag(name)} compares hidden states with the teacher's: it needs --teacher"
                )
        if self.teacher is None and self.transfer is not None:
            raise UserError("--transfer rows are labelled by the teacher alone: it needs --teacher")
        for name in ("alpha_ce", "alpha_task", "alpha_cos", "alpha_hidden"):
            if getattr(self, name) is not None and getattr(self, name) < 0:
                raise UserError(f"{flag(name)} must be >= 0, got {getattr(self, name)}")
        hidden_terms = self.alpha_cos or self.alpha_hidden
        if self.loss_weights() == (0.0, 0.0) and not hidden_terms:
            raise UserError(
                "--alpha-ce, --alpha-task, --alpha-cos and --alpha-hidden are all 0: nothing to train"
            )
        if self.transfer is not None and self.loss_weights()[0] == 0 and not hidden_terms:
            raise UserError("--transfer rows train the distillation terms only: --alpha-ce (or --alpha-cos, "
                            "--alpha-hidden) must be > 0")
        for name in ("temperature", "lr"):
            if getattr(self, name) <= 0:
                raise UserError(f"--{name} must be > 0, got {getattr(self, name)}")
        if not 0 <= self.warmup < 1:
            raise UserError(f"--warmup is a fraction of the steps in [0, 1), got {self.warmup}")
        if self.doc_stride is not None and self.doc_stride < 0:
            raise UserError(f"--doc-stride must be >= 0, got {self.doc_stride}")
        for name in ("weight_decay", "max_grad_norm", "save_every"):
            if getattr(self, name) < 0:
                raise UserError(f"{flag(name)} must be >= 0, got {getattr(self, name)}")
        for name in ("batch_size", "grad_accumulation", "epochs", "log_every", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise UserError(f"{flag(name)} must be >= 1, got {getattr(self, name)}")
        for name in ("max_steps", "max_seq_len"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise UserError(f"{flag(name)} must be >= 1, got {getattr(self, name)}")
        if None not in (self.max_seq_len, self.doc_stride) and self.doc_stride >= self.max_seq_len:
            raise UserError(
                f"--doc-stride ({self.doc_stride}) must be smaller than --max-seq-len ({self.max_seq_len})"
            )
        object.__setattr__(self, "precision", check_precision(self.precision))

    def label_name_list(self) -> list[str] | None:
        """``label_names`` split at commas (None when not given)."""
        return None if self.label_names is None else [n.strip() for n in self.label_names.split(",")]

    def loss_weights(self) -> tuple[float, float]:
        """(alpha_ce, alpha_task) after defaults: 0.5/0.5 with a teacher, 0/1 without."""
        if self.teacher is None:
            return 0.0, 1.0 if self.alpha_task is None else self.alpha_task
        ce = 0.5 if self.alpha_ce is None else self.alpha_ce
        return ce, 0.5 if self.alpha_task is None else self.alpha_task

    def to_dict(self) -> dict[str, Any]:
        """The resolved configuration (what config.yaml holds)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
