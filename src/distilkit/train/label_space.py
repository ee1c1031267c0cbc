"""The labels a model is fine-tuned on: discovered from the training examples (order, problem type),
named (``--label-names``, GLUE's names), and checked against the validation data before training."""

from __future__ import annotations

import ast
from dataclasses import dataclass, replace
from typing import Any

from distilkit.errors import UserError
from distilkit.evaluation.datasets import GLUE_LABEL_NAMES
from distilkit.evaluation.evaluate import GLUE_LABELS

SINGLE, MULTI, REGRESSION = "single_label_classification", "multi_label_classification", "regression"


@dataclass(frozen=True)
class LabelSpace:
    """The labels a model is fine-tuned on, in id order, and the text-classification problem type."""

    labels: tuple[str, ...]
    problem_type: str | None = None

    def config_fields(self) -> dict[str, Any]:
        """What goes into the model config (``id2label``, ``label2id``, ``num_labels``, ``problem_type``)."""
        if not self.labels:
            return {}
        fields: dict[str, Any] = {
            "id2label": dict(enumerate(self.labels)),
            "label2id": {name: i for i, name in enumerate(self.labels)},
        }
        if self.problem_type is not None:
            fields["problem_type"] = self.problem_type
        return fields


def parse_multi_label(label: str) -> list[str]:
    """Labels of one multi-label example: a list literal (``["a", "b"]``, as JSONL/Parquet lists are
    read) or comma-separated names; ``[]`` or an empty string is no label."""
    text = label.strip()
    if text.startswith("["):
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise UserError(f"label {label!r} is not a list of labels") from None
        return [str(v).strip() for v in value]
    return [part.strip() for part in text.split(",") if part.strip()]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _label_key(label: str) -> tuple[int, float | str]:
    return (0, float(label)) if _is_number(label) else (1, label)


def _tag_key(tag: str) -> tuple[int, str, str]:
    """O first, then by entity type, B- before I- (E-/S- after)."""
    if tag == "O":
        return (0, "", "")
    prefix, _, kind = tag.partition("-")
    return (1, kind or prefix, prefix)


def discover_labels(
    task: str, examples: list[Any], problem_type: str = "auto", glue_task: str | None = None
) -> LabelSpace:
    """The label set of the training examples and the text-classification problem type.

    ``auto`` picks regression for STS-B or numeric labels with a fraction, multi-label when labels
    are lists, else single-label. Labels are ordered GLUE's way for GLUE tasks, numbers numerically,
    names alphabetically; NER tags O first.

    Raises:
        UserError: a regression file with non-numeric labels, or fewer than 2 classes.
    """
    if task == "question-answering":
        return LabelSpace(())
    if task == "token-classification":
        return LabelSpace(tuple(sorted({t for ex in examples for t in ex.tags}, key=_tag_key)))
    raw = [ex.label for ex in examples]
    if problem_type == "auto":
        if glue_task == "STS-B" or (
            all(map(_is_number, raw)) and any(not float(r).is_integer() for r in raw)
        ):
            problem_type = REGRESSION
        elif any(r.strip().startswith("[") for r in raw):
            problem_type = MULTI
        else:
            problem_type = SINGLE
    if problem_type == REGRESSION:
        bad = next((r for r in raw if not _is_number(r)), None)
        if bad is not None:
            raise UserError(f"--problem-type regression needs numeric labels, got {bad!r}")
        return LabelSpace(("LABEL_0",), REGRESSION)
    names = {n for r in raw for n in parse_multi_label(r)} if problem_type == MULTI else set(raw)
    known = GLUE_LABELS.get(glue_task or "")
    labels = (
        [n for n in known if n in names] + sorted(names - set(known), key=_label_key)
        if known
        else sorted(names, key=_label_key)
    )
    if len(labels) < 2 and problem_type == SINGLE:
        raise UserError(f"the training data has one label ({labels}); classification needs at least 2")
    return LabelSpace(tuple(labels), problem_type)


def name_labels(
    space: LabelSpace, names: list[str] | None, glue_task: str | None = None
) -> tuple[LabelSpace, dict[str, str]]:
    """Give the data's labels names: ``names[k]`` for the k-th label of ``space`` (``--label-names``),
    else GLUE's names when ``glue_task`` is a GLUE task whose files hold label indices.

    Returns:
        The renamed label space and the data label -> name map to apply to examples (empty: no renaming).

    Raises:
        UserError: names for a regression or multi-label problem, or as many names as labels not given.
    """
    if names is None and glue_task in GLUE_LABEL_NAMES and space.labels == ("0", "1"):
        names = GLUE_LABEL_NAMES[glue_task]
    if names is None:
        return space, {}
    if space.problem_type != SINGLE:
        raise UserError(f"--label-names is for single-label classification; the data is {space.problem_type}")
    if len(names) != len(space.labels):
        raise UserError(
            f"--label-names gives {len(names)} names for the data's {len(space.labels)} labels "
            f"{list(space.labels)[:20]} (one name per label, in that order)"
        )
    return LabelSpace(tuple(names), space.problem_type), dict(zip(space.labels, names, strict=True))


def rename_examples(examples: list[Any], renames: dict[str, str]) -> list[Any]:
    """Text examples with their labels renamed by ``renames`` (see ``name_labels``)."""
    if not renames:
        return examples
    return [replace(ex, label=renames.get(ex.label, ex.label)) for ex in examples]


def check_known_labels(space: LabelSpace, task: str, examples: list[Any], flag: str = "--validation") -> None:
    """Refuse examples whose labels the model will not have (before training, not after).

    Raises:
        UserError: naming the unknown labels.
    """
    if task == "question-answering" or space.problem_type == REGRESSION:
        return
    if task == "token-classification":
        seen = {t for ex in examples for t in ex.tags}
    elif space.problem_type == MULTI:
        seen = {n for ex in examples for n in parse_multi_label(ex.label)}
    else:
        seen = {ex.label for ex in examples}
    unknown = sorted(seen - set(space.labels))
    if unknown:
        raise UserError(
            f"{flag} has labels {unknown[:10]} that the training data does not have "
            f"(known: {list(space.labels)[:20]})"
        )
