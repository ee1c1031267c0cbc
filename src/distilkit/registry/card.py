"""A registered version's card: the fields read from a model directory at registration, and the card.

``describe_model_dir`` runs once, at registration, over the copied files; ``render_card`` is a pure
function of the stored entry (laid out by ``distilkit.cards``), so a card never changes for a given
``name@version``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from distilkit import cards
from distilkit.model_info import canonical_task, infer_task, is_weight_file

GIB = 1 << 30

DEFAULT_LIMITATIONS = (
    "The model inherits the biases of its training corpus and of the teacher it was distilled from "
    "(DistilBERT's model card documents gender and occupation biases). Scores are not calibrated "
    "probabilities. It was not trained to produce factual statements; evaluate it on your own data "
    "before relying on it."
)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def _hardware(files: dict[str, dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Minimum spec estimated from the weight size (fp32 weights, activations and a copy in memory)."""
    weights = sum(f["size"] for rel, f in files.items() if is_weight_file(rel))
    total = sum(f["size"] for f in files.values())
    return {
        "inference": {"cores": 2, "gpus": 0, "memory_gib": max(2, math.ceil(4 * weights / GIB)),
                      "disk_gib": max(1, math.ceil(2 * total / GIB))},
        "evaluation": {"cores": 4, "gpus": 0, "memory_gib": max(4, math.ceil(8 * weights / GIB)),
                       "disk_gib": max(2, math.ceil(4 * total / GIB))},
    }


def describe_model_dir(directory: Path, files: dict[str, dict[str, Any]], task: str | None) -> dict[str, Any]:
    """Card fields a model directory tells by itself: task, architecture, preprocessing, labels, metrics,
    hardware.

    Raises:
        UserError: unknown ``task``, or none given and ``config.architectures`` does not tell it.
    """
    config = _read_json(directory / "config.json")
    task = (
        canonical_task(task)
        if task
        else infer_task(SimpleNamespace(architectures=config.get("architectures")))
    )
    tok = _read_json(directory / "tokenizer_config.json")
    mask = tok.get("mask_token")
    max_length = tok.get("model_max_length")
    if not isinstance(max_length, int) or max_length > 1_000_000:  # "no limit" sentinel -> the position table
        max_length = config.get("max_position_embeddings")
    labels = None
    if task in ("text-classification", "token-classification") and isinstance(config.get("id2label"), dict):
        labels = [config["id2label"][k] for k in sorted(config["id2label"], key=int)]
    metrics = _read_json(directory / "metrics.json") if "metrics.json" in files else None
    return {
        "task": task,
        "architecture": (config.get("architectures") or [None])[0],
        "preprocessing": {
            "tokenizer": tok.get("tokenizer_class"),
            "lowercase": bool(tok.get("do_lower_case", False)),
            "max_length": max_length,
            "vocab_size": config.get("vocab_size"),
            "mask_token": mask.get("content") if isinstance(mask, dict) else mask,
        },
        "labels": labels,
        "metrics": metrics or None,
        "hardware": _hardware(files),
    }


def _samples(task: str, meta: dict[str, Any]) -> tuple[Any, Any]:
    """Request and response of ``POST /score`` for ``task`` in the formats the DistilBERT catalog cards
    show: ``input_data`` (fill-mask with ``[MASK]``: top-1 strings; classification; NER), ``inputs`` with
    question/context lists (question-answering) and ``inputs.input_string`` + ``parameters.top_k``
    (fill-mask with ``<mask>``)."""
    pre = meta.get("preprocessing") or {}
    mask = pre.get("mask_token") or "[MASK]"
    labels = [l for l in meta.get("labels") or [] if l != "O"] or ["LABEL_0"]
    if task == "fill-mask" and mask == "<mask>":
        request = {"inputs": {"input_string": ["Paris is the <mask> of France.", "Today is a <mask> day!"]},
                   "parameters": {"top_k": 2}}
        one = {
            "score": 0.9,
            "token": 812,
            "token_str": " capital",
            "sequence": "Paris is the capital of France.",
        }
        return request, [[one, {**one, "score": 0.05}], ["..."]]
    if task == "fill-mask":
        return {"input_data": [f"Paris is {mask} of France"], "params": {}}, ["part"]
    if task == "question-answering":
        request = {"inputs": {"question": ["What is my name?", "Where do I live?"],
                              "context": ["My name is John and I live in Seattle.",
                                          "My name is Ravi and I live in Hyderabad."]}}
        return request, [{"score": 0.99, "start": 11, "end": 15, "answer": "John"},
                         {"score": 0.98, "start": 30, "end": 39, "answer": "Hyderabad"}]
    if task == "text-classification":
        label = _fitting(labels, ("positive", "pos", "joy", "love"))
        return {"input_data": ["I love this movie!"], "params": {}}, [{"label": label, "score": 0.98}]
    group = _fitting([label.split("-", 1)[-1] for label in labels], ("per", "person"))
    word = "john" if pre.get("lowercase") else "John"  # an uncased tokenizer's words come out lowercased
    return (
        {
            "input_data": ["My name is John and I live in Seattle."],
            "params": {"aggregation_strategy": "simple"},
        },
        [[{"entity_group": group, "score": 0.99, "word": word, "start": 11, "end": 15}]],
    )


def _fitting(labels: list[str], wanted: tuple[str, ...]) -> str:
    """The first label (case-insensitive) of ``wanted`` the model has, else its first label: the
    sample's answer is a label that fits the sample text ("I love this movie!" -> positive, "John" ->
    a person) where the model has one."""
    by_name = {label.lower(): label for label in labels}
    return next((by_name[name] for name in wanted if name in by_name), labels[0])


def _or(value: Any, missing: str = "not recorded") -> str:
    if isinstance(value, list):
        return ", ".join(value) if value else missing
    return str(value) if value else missing


def _preprocessing(task: str, pre: dict[str, Any], labels: list[str] | None) -> list[str]:
    case = "lowercased" if pre.get("lowercase") else "cased"
    windows = (" (question-answering splits long contexts into overlapping windows instead)."
               if task == "question-answering" else ".")
    lines = [
        f"Text is tokenized with the model's own tokenizer ({_or(pre.get('tokenizer'), 'unknown class')}, "
        f"{case}, vocabulary of {_or(pre.get('vocab_size'), '?')} tokens); sequences longer than "
        f"{_or(pre.get('max_length'), '?')} tokens are truncated" + windows
    ]
    if task == "fill-mask" and pre.get("mask_token"):
        lines.append(f"The mask token is `{pre['mask_token']}`.")
    if labels:
        lines.append(f"Labels: {', '.join(f'`{label}`' for label in labels)}.")
    return lines


def render_card(entry: dict[str, Any]) -> str:
    """The Markdown model card of a registry entry (``Entry.to_dict()``): catalog fields, data, results,
    samples, hardware, files; laid out by ``distilkit.cards``."""
    task = entry["task"]
    summary = (
        entry.get("description")
        or f"A {task} model ({_or(entry.get('architecture'), 'unknown architecture')})."
    )
    fields = [("task", task), ("architecture", entry.get("architecture")), ("license", entry.get("license")),
              ("languages", entry.get("languages")), ("training datasets", entry.get("datasets")),
              ("source hub id", entry.get("hub_id")), ("aliases", entry.get("aliases")),
              ("content SHA-256", f"`{entry['content_sha256']}`")]
    datasets = [f"- {d}" for d in entry.get("datasets") or []]
    request, response = _samples(task, entry)
    hardware = sorted((entry.get("hardware") or {}).items(), key=lambda item: item[0] != "inference")
    files = sorted((entry.get("files") or {}).items())
    sections = [
        cards.section(
            "Training data", *(datasets or ["Not recorded; pass `--dataset NAME` when registering."])
        ),
        cards.section(
            "Preprocessing", *_preprocessing(task, entry.get("preprocessing") or {}, entry.get("labels"))
        ),
        cards.results_section(
            entry.get("metrics") or {}, empty="No `metrics.json` was registered with this version."
        ),
        cards.section("Limitations and biases", entry.get("limitations") or DEFAULT_LIMITATIONS),
        cards.section(
            "Sample input and output",
            "Request to `POST /score` and the shape of its response (values illustrative):",
            "",
            "```json",
            json.dumps(request, indent=2),
            "```",
            "",
            "```json",
            json.dumps(response, indent=2),
            "```",
        ),
        cards.section(
            "Recommended hardware",
            "Minimum spec, estimated from the weight size.",
            "",
            "| use | cores | GPUs | memory | disk |",
            "|---|---|---|---|---|",
            *(
                f"| {use} | {s['cores']} | {s['gpus']} | {s['memory_gib']} GiB | {s['disk_gib']} GiB |"
                for use, s in hardware
            ),
        ),
        cards.section(
            "Files",
            "| file | size (bytes) | SHA-256 |",
            "|---|---|---|",
            *(f"| {rel} | {f['size']} | `{f['sha256']}` |" for rel, f in files),
        ),
    ]
    return cards.render(
        f"{entry['name']}@{entry['version']}", summary, [(k, _or(v)) for k, v in fields], sections
    )
