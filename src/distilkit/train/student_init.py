"""Build a student from a teacher: same hidden size, a subset of its layers, copied weights.

BERT -> DistilBERT (parameter names mapped, no token-type embeddings), DistilBERT -> DistilBERT
and RoBERTa -> RoBERTa (fewer layers). The published DistilBERT student takes teacher layers
[0, 2, 4, 7, 9, 11]; ``default_layer_map`` generalises that pattern to any depth.
"""

from __future__ import annotations

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
FAMILIES = {"bert": "distilbert", "distilbert": "distilbert", "roberta": "roberta"}
STUDENT_FILE = "student_init.json"


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


def student_config(teacher_config: Any, n_layers: int) -> Any:
    """The student's config: DistilBERT for a BERT/DistilBERT teacher, RoBERTa for RoBERTa."""
    from transformers import DistilBertConfig

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
        )
    else:
        raise UserError(f"--teacher is a {kind!r} model; init-student supports {sorted(FAMILIES)}")
    config.architectures = [{"roberta": "RobertaForMaskedLM"}.get(kind, "DistilBertForMaskedLM")]
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
    teacher_state: dict[str, torch.Tensor], kind: str, layers: list[int]
) -> dict[str, torch.Tensor]:
    """Teacher state dict -> student state dict (student layer i <- teacher layer layers[i]).

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
        if module in BERT_TO_DISTILBERT_OTHER:
            student[f"{BERT_TO_DISTILBERT_OTHER[module]}.{leaf}"] = tensor.clone()
        elif key == "cls.predictions.bias":
            student["vocab_projector.bias"] = tensor.clone()
    if kind == "bert":
        type0 = teacher_state["bert.embeddings.token_type_embeddings.weight"][0]  # (H,)
        student["distilbert.embeddings.position_embeddings.weight"] = (
            teacher_state["bert.embeddings.position_embeddings.weight"] + type0
        )
    return student


def build_student(
    teacher: torch.nn.Module, layers: list[int] | None = None
) -> tuple[torch.nn.Module, list[int]]:
    """Student masked-LM model initialised from ``teacher`` (a *ForMaskedLM); returns it and the layer map.

    Raises:
        UserError: unsupported family or layer indices out of range.
    """
    import transformers

    config = teacher.config
    kind = config.model_type
    if kind not in FAMILIES:
        raise UserError(f"--teacher is a {kind!r} model; init-student supports {sorted(FAMILIES)}")
    depth = config.n_layers if kind == "distilbert" else config.num_hidden_layers
    layers = list(layers) if layers is not None else default_layer_map(depth)
    _check_layer_map(layers, depth)
    student_cfg = student_config(config, len(layers))
    student = getattr(transformers, student_cfg.architectures[0])(student_cfg)
    state = map_teacher_state({k: v.detach().float() for k, v in teacher.state_dict().items()}, kind, layers)
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
    from distilkit.models import load_model, save_model_dir

    output = Path(output)
    if output.exists() and any(output.iterdir()):
        raise UserError(f"--output {output} is not empty; choose a new directory")
    teacher = load_model(teacher_ref, "fill-mask", dummy_weights=dummy_weights, seed=seed)
    student, layers = build_student(teacher.model, layers)
    output.mkdir(parents=True, exist_ok=True)
    save_model_dir(student, teacher.tokenizer, output)
    record = {"teacher": str(teacher_ref), "teacher_type": teacher.config.model_type, "layers": layers,
              "teacher_dummy_weights": dummy_weights}
    (output / STUDENT_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return output
