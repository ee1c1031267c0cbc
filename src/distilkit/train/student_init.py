"""Build a student from a teacher: same hidden size, a subset of its layers, copied weights.

BERT -> DistilBERT (parameter names mapped, no token-type embeddings), DistilBERT -> DistilBERT
and RoBERTa -> RoBERTa (fewer layers). The published DistilBERT student takes teacher layers
[0, 2, 4, 7, 9, 11]; ``default_layer_map`` generalises that pattern to any depth.

The teacher may be a masked LM (the distillation recipe), a task model (text/token
classification, question answering: the student gets the same task head, labels included, for
task distillation with ``finetune --teacher``) or a bare encoder such as sentence-transformers'
``BertModel`` checkpoints (the student is a bare encoder too, for ``finetune`` to add a head).
BERT's pooler becomes DistilBERT's ``pre_classifier`` for sequence classification.
"""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path
from typing import Any

import torch

from distilkit.errors import UserError

# BERT encoder-layer submodule -> DistilBERT transformer-layer submodule
BERT_TO_DISTILBERT_LAYER = {
    "attention.self.query": "attention.q_lin",
    "attention.self.key": "attention.k_lin",
    "attention.self.value": "attention.v_lin",
    "attention.output.dense": "attention.out_lin",
    "attention.output.LayerNorm": "sa_layer_norm",
    "intermediate.dense": "ffn.lin1",
    "output.dense": "ffn.lin2",
    "output.LayerNorm": "output_layer_norm",
}
BERT_TO_DISTILBERT_OTHER = {
    "bert.embeddings.word_embeddings": "distilbert.embeddings.word_embeddings",
    "bert.embeddings.position_embeddings": "distilbert.embeddings.position_embeddings",
    "bert.embeddings.LayerNorm": "distilbert.embeddings.LayerNorm",
    "cls.predictions.transform.dense": "vocab_transform",
    "cls.predictions.transform.LayerNorm": "vocab_layer_norm",
    "cls.predictions.decoder": "vocab_projector",
}
BERT_TO_DISTILBERT_HEADS = {  # task heads; BERT's pooler only where DistilBERT has a counterpart
    "bert.pooler.dense": ("text-classification", "pre_classifier"),
    "classifier": (None, "classifier"),
    "qa_outputs": (None, "qa_outputs"),
}
FAMILIES = {"bert": "distilbert", "distilbert": "distilbert", "roberta": "roberta"}
STUDENT_CLASS_PREFIX = {"distilbert": "DistilBert", "roberta": "Roberta"}
STUDENT_FILE = "student_init.json"
ENCODER = None  # the "task" of a bare encoder teacher/student (no head)


def default_layer_map(teacher_layers: int) -> list[int]:
    """Half the teacher's layers, every other one: the bottom half counted up from layer 0 and the
    top half counted down from the last layer (12 -> [0, 2, 4, 7, 9, 11], 24 -> [0..10, 13..23])."""
    if teacher_layers < 1:
        raise UserError(f"teacher has {teacher_layers} layers")
    n = max(teacher_layers // 2, 1)
    bottom = [2 * i for i in range((n + 1) // 2)]
    top = [teacher_layers - 1 - 2 * i for i in range(n // 2)][::-1]
    return bottom + top


def parse_layers(text: str) -> list[int]:
    """'0,2,4' -> [0, 2, 4]; raises UserError naming --layers on bad input."""
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UserError(
            f"--layers expects comma-separated layer indices like 0,2,4,7,9,11, got {text!r}"
        ) from None


def _check_layer_map(layers: list[int], teacher_layers: int) -> None:
    if not layers:
        raise UserError("--layers must name at least one teacher layer")
    bad = [i for i in layers if not 0 <= i < teacher_layers]
    if bad:
        raise UserError(f"--layers {bad} out of range: the teacher has layers 0..{teacher_layers - 1}")


def model_task(model: torch.nn.Module) -> str | None:
    """The pipeline tag of a transformers model's class (None for a bare encoder such as ``BertModel``).

    Raises:
        UserError: a class that is neither a known task head nor a bare encoder.
    """
    from distilkit.model_info import ARCHITECTURE_TASKS

    name = type(model).__name__
    task = next((t for suffix, t in ARCHITECTURE_TASKS.items() if name.endswith(suffix)), None)
    if task is None and not name.endswith("Model"):
        raise UserError(
            f"--teacher is a {name}; init-student takes a masked LM, a sequence/token classifier, a "
            "question-answering model or a bare encoder"
        )
    return task


def student_config(teacher_config: Any, n_layers: int, task: str | None = "fill-mask") -> Any:
    """The student's config: DistilBERT for a BERT/DistilBERT teacher, RoBERTa for RoBERTa, with the
    teacher's task head (labels included) or none (``task=None``)."""
    from transformers import DistilBertConfig

    from distilkit.model_info import TASK_AUTO_CLASSES

    kind = teacher_config.model_type
    if kind == "roberta":
        config = teacher_config.__class__.from_dict(teacher_config.to_dict())
        config.num_hidden_layers = n_layers
    elif kind == "distilbert":
        config = DistilBertConfig.from_dict(teacher_config.to_dict())
        config.n_layers = n_layers
    elif kind == "bert":
        t = teacher_config
        config = DistilBertConfig(
            vocab_size=t.vocab_size,
            max_position_embeddings=t.max_position_embeddings,
            sinusoidal_pos_embds=False,
            n_layers=n_layers,
            n_heads=t.num_attention_heads,
            dim=t.hidden_size,
            hidden_dim=t.intermediate_size,
            dropout=t.hidden_dropout_prob,
            attention_dropout=t.attention_probs_dropout_prob,
            activation=t.hidden_act,
            initializer_range=t.initializer_range,
            pad_token_id=t.pad_token_id,
            id2label=dict(t.id2label),
            label2id=dict(t.label2id),
            problem_type=t.problem_type,
        )
    else:
        raise UserError(f"--teacher is a {kind!r} model; init-student supports {sorted(FAMILIES)}")
    suffix = "Model" if task is ENCODER else TASK_AUTO_CLASSES[task].removeprefix("AutoModel")
    config.architectures = [STUDENT_CLASS_PREFIX[FAMILIES[kind]] + suffix]
    return config


def _layer_key(kind: str, key: str) -> tuple[int, str] | None:
    """(layer index, rest) for a teacher encoder-layer parameter, else None."""
    prefix = {
        "bert": r"bert\.encoder\.layer",
        "roberta": r"roberta\.encoder\.layer",
        "distilbert": r"distilbert\.transformer\.layer",
    }[kind]
    m = re.match(prefix + r"\.(\d+)\.(.+)$", key)
    return (int(m.group(1)), m.group(2)) if m else None


def map_teacher_state(
    teacher_state: dict[str, torch.Tensor], kind: str, layers: list[int], task: str | None = "fill-mask"
) -> dict[str, torch.Tensor]:
    """Teacher state dict (keys under the family prefix, ``bert.``...) -> student state dict (student
    layer i <- teacher layer layers[i]; the ``task`` head copied).

    BERT's token-type embedding row 0 (what every single-segment input adds) is folded into the
    position embeddings, so the DistilBERT student's embedding output equals BERT's for type-0
    inputs; the word embeddings (tied to the LM head) are copied unchanged.
    """
    student: dict[str, torch.Tensor] = {}
    for key, tensor in teacher_state.items():
        layer = _layer_key(kind, key)
        if layer is not None:
            j, rest = layer
            for i in (i for i, t in enumerate(layers) if t == j):
                if kind == "bert":
                    module, _, leaf = rest.rpartition(".")
                    rest = f"{BERT_TO_DISTILBERT_LAYER[module]}.{leaf}"
                base = {
                    "bert": "distilbert.transformer.layer",
                    "distilbert": "distilbert.transformer.layer",
                    "roberta": "roberta.encoder.layer",
                }[kind]
                student[f"{base}.{i}.{rest}"] = tensor.clone()
            continue
        if kind != "bert":
            student[key] = tensor.clone()
            continue
        module, _, leaf = key.rpartition(".")
        head = BERT_TO_DISTILBERT_HEADS.get(module)
        if module in BERT_TO_DISTILBERT_OTHER:
            student[f"{BERT_TO_DISTILBERT_OTHER[module]}.{leaf}"] = tensor.clone()
        elif key == "cls.predictions.bias":
            student["vocab_projector.bias"] = tensor.clone()
        elif head is not None and head[0] in (None, task):
            student[f"{head[1]}.{leaf}"] = tensor.clone()
    if kind == "bert":
        type0 = teacher_state["bert.embeddings.token_type_embeddings.weight"][0]  # (H,)
        student["distilbert.embeddings.position_embeddings.weight"] = (
            teacher_state["bert.embeddings.position_embeddings.weight"] + type0
        )
    return student


def build_student(
    teacher: torch.nn.Module, layers: list[int] | None = None
) -> tuple[torch.nn.Module, list[int]]:
    """Student initialised from ``teacher`` with the teacher's head (masked LM, task head, or none for
    a bare encoder); returns it and the layer map.

    Raises:
        UserError: unsupported family or head, or layer indices out of range.
    """
    import transformers

    config = teacher.config
    kind = config.model_type
    if kind not in FAMILIES:
        raise UserError(f"--teacher is a {kind!r} model; init-student supports {sorted(FAMILIES)}")
    task = model_task(teacher)
    depth = config.num_hidden_layers  # DistilBERT's config maps it onto n_layers
    layers = list(layers) if layers is not None else default_layer_map(depth)
    _check_layer_map(layers, depth)
    student_cfg = student_config(config, len(layers), task)
    student = getattr(transformers, student_cfg.architectures[0])(student_cfg)
    prefix = "" if task is not ENCODER else teacher.base_model_prefix + "."  # a bare encoder's keys lack it
    state = map_teacher_state(
        {prefix + k: v.detach().float() for k, v in teacher.state_dict().items()}, kind, layers, task
    )
    if task is ENCODER:
        strip = student.base_model_prefix + "."
        state = {k.removeprefix(strip): v for k, v in state.items() if k.startswith(strip)}
    missing, unexpected = student.load_state_dict(state, strict=False)
    tied = set(getattr(student, "_tied_weights_keys", None) or {})
    missing = [k for k in missing if k not in tied]
    if missing or unexpected:
        raise RuntimeError(
            f"student init left parameters unmapped: missing={missing} unexpected={unexpected}"
        )
    return student.eval(), layers


def init_student(teacher_ref: str, output: str | Path, layers: list[int] | None = None, *,
                 dummy_weights: bool = False, seed: int = 0) -> Path:
    """Save a student initialised from ``teacher_ref`` into ``output`` (model dir + tokenizer + layer map).

    ``dummy_weights``: the teacher gets seeded random weights (for architecture and speed work where
    its weights are not available); the student copies them like real ones.

    Raises:
        UserError: unsupported teacher, bad layers, or a non-empty output directory.
    """
    from distilkit.models import save_model_dir

    output = Path(output)
    if output.exists() and any(output.iterdir()):
        raise UserError(f"--output {output} is not empty; choose a new directory")
    teacher, tokenizer = load_as_saved(teacher_ref, dummy_weights=dummy_weights, seed=seed)
    student, layers = build_student(teacher, layers)
    if "token_type_ids" not in inspect.signature(student.forward).parameters:
        # A BERT tokenizer on a DistilBERT student: its encodings must not carry segment ids the
        # model has no input for (transformers' pipelines pass every tokenizer output to forward).
        tokenizer = student_tokenizer(tokenizer)
    output.mkdir(parents=True, exist_ok=True)
    save_model_dir(student, tokenizer, output)
    record = {"teacher": str(teacher_ref), "teacher_type": teacher.config.model_type,
              "task": model_task(teacher), "layers": layers, "teacher_dummy_weights": dummy_weights}
    (output / STUDENT_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return output


def recorded_layers(model_dir: str | Path) -> list[int] | None:
    """The teacher layers init-student copied into the student saved at ``model_dir`` (its
    ``student_init.json``); None for any other model directory."""
    path = Path(model_dir) / STUDENT_FILE
    if not path.is_file():
        return None
    return [int(i) for i in json.loads(path.read_text(encoding="utf-8"))["layers"]]


def hidden_layer_pairs(
    student_depth: int, teacher_depth: int, layers: list[int] | None = None
) -> list[tuple[int, int]]:
    """(student, teacher) indices into ``output_hidden_states`` (0 = embeddings) whose outputs the
    intermediate-layer term compares: student layer i's output with that of teacher layer
    ``layers[i]`` (the layer it was copied from), or, without a map, with teacher layers spread
    evenly and ending at the last (6 -> 3: layers 1, 3, 5).

    Raises:
        UserError: a map of another length than the student's layers, or outside the teacher's.
    """
    if layers is None:
        layers = [round((i + 1) * teacher_depth / student_depth) - 1 for i in range(student_depth)]
    if len(layers) != student_depth or not all(0 <= t < teacher_depth for t in layers):
        raise UserError(
            f"--alpha-hidden: the student's layer map {layers} (from {STUDENT_FILE}) does not fit a "
            f"{student_depth}-layer student of a {teacher_depth}-layer teacher; use the teacher "
            "init-student was given"
        )
    return [(i + 1, t + 1) for i, t in enumerate(layers)]


def student_tokenizer(tokenizer: Any) -> Any:
    """The teacher's tokenizer without ``token_type_ids`` among its model inputs (saved that way too)."""
    import copy

    tokenizer = copy.deepcopy(tokenizer)
    names = [n for n in tokenizer.model_input_names if n != "token_type_ids"]
    tokenizer.model_input_names = names
    tokenizer.init_kwargs["model_input_names"] = names
    return tokenizer


def load_as_saved(ref: str, *, dummy_weights: bool = False, seed: int = 0) -> tuple[torch.nn.Module, Any]:
    """A model with the head its ``config.architectures`` names, or a bare encoder (``BertModel``...): an
    init-student teacher, and both models of hidden-states-only distillation.

    Raises:
        ModelNotFoundError: no such model, or no weights (without ``dummy_weights``).
    """
    import transformers
    from transformers import AutoConfig, AutoTokenizer

    from distilkit.models import (
        ModelNotFoundError,
        TaskNotFoundError,
        has_weights,
        infer_task,
        load_model,
        quiet_from_pretrained,
        resolve_source,
    )

    source = resolve_source(ref)
    config = AutoConfig.from_pretrained(source)
    try:
        task = infer_task(config)
    except TaskNotFoundError:
        task = ENCODER
    if task is not ENCODER:
        loaded = load_model(ref, task, dummy_weights=dummy_weights, seed=seed, backend="torch")
        return loaded.model, loaded.tokenizer
    if dummy_weights:
        torch.manual_seed(seed)
        model = transformers.AutoModel.from_config(config)
    elif not has_weights(source):
        raise ModelNotFoundError(f"{source} has no weights (*.safetensors / *.bin); add --dummy-weights")
    else:
        model = quiet_from_pretrained(transformers.AutoModel, source)
    return model.eval(), AutoTokenizer.from_pretrained(source)
