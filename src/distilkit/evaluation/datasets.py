"""Readers for the evaluation formats users have: SQuAD JSON, CoNLL columns, labelled text, plain text.

Every reader returns plain dataclasses and raises ``UserError`` naming the file and line of
the first thing it cannot read.

- SQuAD JSON v1.1 / v2.0 -> ``QAExample`` (v2.0: ``answers == []`` for an unanswerable question).
- CoNLL-2003 column files (word first, tag last, ``-DOCSTART-`` skipped, IOB1 or IOB2) -> ``NERExample``.
- Labelled text -> ``TextExample``: ``.jsonl`` / ``.csv`` / ``.tsv`` / ``.parquet`` with named
  columns (``text`` or ``sentence``/``sentence1``/``question``..., optional pair column,
  ``label``), the emotion ``text;label`` lines (``.txt``), and the GLUE TSV layouts by task name.
- Plain text (one document or paragraph per line) for fill-mask.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distilkit.errors import UserError

TEXT_COLUMNS = ("text", "sentence", "sentence1", "question1", "question", "premise", "#1 String")
PAIR_COLUMNS = ("text_pair", "sentence2", "question2", "hypothesis", "#2 String")
LABEL_COLUMNS = ("label", "labels", "score", "is_duplicate", "gold_label", "Quality")

# GLUE TSV layouts: (text column, pair column or None, label column); negative = from the end.
# The header row is optional (some re-splits drop it); it is recognised by its column names.
GLUE_LAYOUTS: dict[str, tuple[int, int | None, int]] = {
    "CoLA": (3, None, 1),
    "SST-2": (0, None, 1),
    "MRPC": (3, 4, 0),
    "STS-B": (7, 8, -1),
    "QQP": (3, 4, 5),
    "MNLI": (8, 9, -1),
    "QNLI": (1, 2, -1),
    "RTE": (1, 2, -1),
}
GLUE_HEADER_WORDS = frozenset({"label", "quality", "index", "sentence", "text", "id", "gold_label", "score"})
# GLUE label order of the tasks with named labels (a model's LABEL_k is the k-th); the others are 0/1.
GLUE_LABELS = {"MNLI": ["entailment", "neutral", "contradiction"], "QNLI": ["entailment", "not_entailment"],
               "RTE": ["entailment", "not_entailment"]}
# GLUE's names of the tasks whose TSVs hold label indices (name k is label k): what a fine-tuned
# model calls its labels by default, instead of "0"/"1".
GLUE_LABEL_NAMES = {"CoLA": ["unacceptable", "acceptable"], "SST-2": ["negative", "positive"],
                    "MRPC": ["not_equivalent", "equivalent"], "QQP": ["not_duplicate", "duplicate"]}


@dataclass(frozen=True)
class QAExample:
    """One SQuAD question with its gold answer texts (empty for an unanswerable v2.0 question)."""

    id: str
    question: str
    context: str
    answers: tuple[str, ...]


@dataclass(frozen=True)
class NERExample:
    """One sentence: its words and their gold tags."""

    words: tuple[str, ...]
    tags: tuple[str, ...]


@dataclass(frozen=True)
class TextExample:
    """One text (or text pair) and its gold label as a string (a number's text for regression)."""

    text: str
    label: str
    text_pair: str | None = None


def _file(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--data {path}: no such file")
    return path


# --- SQuAD ------------------------------------------------------------------------------------------
def read_squad(path: str | Path) -> tuple[list[QAExample], str]:
    """Read a SQuAD JSON file; returns (examples, version) with version ``"1.1"`` or ``"2.0"``.

    The version is ``"2.0"`` when the file says so or any question is ``is_impossible``.
    """
    path = _file(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        examples, impossible = [], False
        for article in doc["data"]:
            for paragraph in article["paragraphs"]:
                for qa in paragraph["qas"]:
                    impossible |= bool(qa.get("is_impossible", False))
                    answers = () if qa.get("is_impossible") else tuple(a["text"] for a in qa["answers"])
                    examples.append(QAExample(str(qa["id"]), qa["question"], paragraph["context"], answers))
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise UserError(f"{path} is not SQuAD JSON (data/paragraphs/qas/answers): {err}") from None
    version = "2.0" if impossible or str(doc.get("version", "")).lstrip("v").startswith("2") else "1.1"
    return examples, version


# --- CoNLL ------------------------------------------------------------------------------------------
def read_conll(path: str | Path) -> list[NERExample]:
    """Read a CoNLL column file: one ``word ... tag`` line per token, blank lines between sentences."""
    path = _file(path)
    sentences: list[NERExample] = []
    words: list[str] = []
    tags: list[str] = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            fields = line.split()
            if not fields or fields[0] == "-DOCSTART-":
                if words:
                    sentences.append(NERExample(tuple(words), tuple(tags)))
                    words, tags = [], []
                continue
            if len(fields) < 2:
                raise UserError(f"{path}:{n}: expected 'word ... tag' columns, got {line.strip()!r}")
            words.append(fields[0])
            tags.append(fields[-1])
    if words:
        sentences.append(NERExample(tuple(words), tuple(tags)))
    return sentences


# --- labelled text ----------------------------------------------------------------------------------
def _pick(columns: list[str], names: tuple[str, ...], what: str, path: Path) -> str:
    for name in names:
        if name in columns:
            return name
    raise UserError(f"{path}: no {what} column; expected one of {list(names)}, found {columns}")


def _rows_to_examples(rows: list[dict[str, Any]], path: Path, labels: bool = True) -> list[TextExample]:
    if not rows:
        return []
    columns = list(rows[0])
    text = _pick(columns, TEXT_COLUMNS, "text", path)
    pair = next((c for c in PAIR_COLUMNS if c in columns), None)
    if pair is None and text == "question" and "sentence" in columns:  # QNLI-style question + sentence
        pair = "sentence"
    label = (None if not labels and not any(c in columns for c in LABEL_COLUMNS)
             else _pick(columns, LABEL_COLUMNS, "label", path))
    return [TextExample(str(r[text]), "" if label is None else str(r[label]).strip(),
                        None if pair is None else str(r[pair]))
            for r in rows]


def read_glue_tsv(path: str | Path, task: str) -> list[TextExample]:
    """Read a GLUE task's TSV by its column layout (header row optional, no quoting)."""
    if task not in GLUE_LAYOUTS:
        raise UserError(f"unknown GLUE task {task!r}; expected one of {list(GLUE_LAYOUTS)}")
    path = _file(path)
    text_col, pair_col, label_col = GLUE_LAYOUTS[task]
    examples = []
    with path.open(encoding="utf-8-sig") as f:
        for n, line in enumerate(f, 1):
            fields = line.rstrip("\r\n").split("\t")
            if n == 1 and GLUE_HEADER_WORDS & {x.strip().lower() for x in fields}:
                continue
            if not line.strip():
                continue
            try:
                pair = None if pair_col is None else fields[pair_col]
                examples.append(TextExample(fields[text_col], fields[label_col].strip(), pair))
            except IndexError:
                message = f"{path}:{n}: {len(fields)} columns, too few for the {task} layout"
                raise UserError(message) from None
    return examples


def read_labelled(path: str | Path, glue_task: str | None = None, labels: bool = True) -> list[TextExample]:
    """Read labelled texts by file type (see the module docstring); ``glue_task`` selects a GLUE layout.

    ``labels=False``: .jsonl/.csv/.tsv/.parquet rows may lack a label column (their labels are "").
    """
    path = _file(path)
    if glue_task is not None:
        return read_glue_tsv(path, glue_task)
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        rows = []
        with path.open(encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as err:
                        raise UserError(f"{path}:{n}: not a JSON object per line ({err.msg})") from None
        return _rows_to_examples(rows, path, labels)
    if suffix in (".csv", ".tsv"):
        with path.open(encoding="utf-8-sig", newline="") as f:
            if suffix == ".tsv":
                reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            else:
                reader = csv.DictReader(f)
            return _rows_to_examples(list(reader), path, labels)
    if suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise UserError("reading .parquet needs pyarrow: pip install pyarrow") from None
        return _rows_to_examples(pq.read_table(path).to_pylist(), path, labels)
    if suffix == ".txt":
        return read_semicolon(path)
    raise UserError(f"{path}: unknown labelled-text format {suffix!r}; use .jsonl, .csv, .tsv, .parquet "
                     "or .txt (text;label lines)")


def read_semicolon(path: str | Path) -> list[TextExample]:
    """Read ``text;label`` lines (the emotion data set); the label follows the last semicolon."""
    path = _file(path)
    examples = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            text, sep, label = line.rstrip("\r\n").rpartition(";")
            if not sep or not text.strip() or not label.strip():
                raise UserError(f"{path}:{n}: expected 'text;label', got {line.strip()[:80]!r}")
            examples.append(TextExample(text, label.strip()))
    return examples


# --- plain text ---------------------------------------------------------------------------------------
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def read_lines(path: str | Path) -> list[str]:
    """Non-empty lines of a plain text file, stripped."""
    path = _file(path)
    with path.open(encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


def split_sentences(lines: list[str], min_words: int = 4) -> list[str]:
    """Sentences of ``lines``: split after . ! ? plus whitespace; WikiText headings (``= T =``) and
    sentences of fewer than ``min_words`` words are dropped."""
    sentences = []
    for line in lines:
        if line.startswith("=") and line.endswith("="):
            continue
        sentences.extend(s for s in _SENTENCE_END.split(line) if len(s.split()) >= min_words)
    return sentences


# --- GLUE data directories -------------------------------------------------------------------------
def normalize_name(name: str) -> str:
    """Lowercase alphanumerics of a task or file name: ``SST-2``, ``sst2`` and ``SST_2`` match."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def find_glue_files(data_dir: str | Path, split: str = "dev") -> dict[str, Path]:
    """GLUE task -> its ``split`` TSV under ``data_dir`` (searched two levels deep).

    Recognised: ``TASK/dev.tsv`` (the GLUE download layout), ``TASK_dev.tsv`` (re-splits), any case
    and punctuation (``sst2/dev.tsv``, ``STS-B_dev.tsv``); MNLI uses ``dev_matched.tsv``.
    """
    root = Path(data_dir)
    if not root.is_dir():
        raise UserError(f"--data-dir {root}: no such directory")
    candidates = [p for p in [*root.glob("*.tsv"), *root.glob("*/*.tsv"), *root.glob("*/*/*.tsv")]
                  if len(p.relative_to(root).parts) <= 3]
    found: dict[str, Path] = {}
    for task in GLUE_LAYOUTS:
        wanted = normalize_name(task)
        splits = {normalize_name(split)}
        if task == "MNLI":
            splits.add(normalize_name(split + "_matched"))
        for path in sorted(candidates):
            stem, parent = normalize_name(path.stem), normalize_name(path.parent.name)
            if (parent == wanted and stem in splits) or any(stem == wanted + s for s in splits):
                found[task] = path
                break
    return found
