"""Fine-tuning data: read a training file, discover its labels, tokenize it exactly as inference does.

Inputs are tokenized with the same calls as the task handlers (``distilkit.tasks``), so a model
sees at training time what the Predictor shows it later:

- text-classification: ``tokenizer(text[, pair], truncation)``; targets are label ids, multi-hot
  rows (multi-label) or numbers (regression).
- token-classification: the words joined by single spaces (as ``distilkit evaluate`` does); each
  word's tag goes to its first sub-token (the token starting at the word's first character), every
  other token gets -100.
- question-answering: the handler's own windows (``max_seq_len``, ``doc_stride``); the target is
  the answer's first and last token when the answer lies inside the window, else the CLS token
  (also for unanswerable SQuAD v2.0 questions).

Transfer rows (``--transfer``) are tokenized the same way with targets the task loss ignores, so
only the teacher's outputs teach the student from them.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from distilkit.errors import UserError
from distilkit.evaluation import datasets
from distilkit.evaluation.evaluate import word_spans
from distilkit.train.label_space import MULTI, REGRESSION, SINGLE, LabelSpace, parse_multi_label

IGNORE_INDEX = -100
# A QA target past every window: transformers' QA losses clamp it to their ignored index.
UNLABELLED_POSITION = 1 << 30
# Batch key (a Python int, never a model input): rows of the micro-batch that have targets.
LABELLED_ROWS = "labelled_rows"


@dataclass(frozen=True)
class QATrainExample:
    """One SQuAD question with its first gold answer (None: unanswerable) and its character start."""

    question: str
    context: str
    answer: str | None
    start: int | None


@dataclass
class TrainData:
    """Tokenized training rows (one per example; QA: one per window) and their targets.

    Rows from ``labelled_rows`` on are transfer rows (``with_transfer``): their targets are ignored.
    """

    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None
    targets: list[Any]
    examples: int
    transfer_examples: int = 0
    labelled_rows: int | None = None  # None: every row has targets

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def lengths(self) -> np.ndarray:
        return np.array([len(ids) for ids in self.input_ids], dtype=np.int64)


# --- reading --------------------------------------------------------------------------------------
def read_squad_train(path: str | Path) -> list[QATrainExample]:
    """SQuAD JSON v1.1/v2.0 with answer offsets (``answer_start``; the text's first occurrence when
    the offset is missing or does not point at the text).

    Raises:
        UserError: not SQuAD JSON, or an answer that does not occur in its context.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--train {path}: no such file")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        examples = []
        for article in doc["data"]:
            for paragraph in article["paragraphs"]:
                context = paragraph["context"]
                for qa in paragraph["qas"]:
                    if qa.get("is_impossible") or not qa["answers"]:
                        examples.append(QATrainExample(qa["question"], context, None, None))
                        continue
                    text, start = qa["answers"][0]["text"], qa["answers"][0].get("answer_start")
                    if start is None or context[start : start + len(text)] != text:
                        start = context.find(text)
                    if start < 0:
                        raise UserError(
                            f"{path}: question {qa.get('id')!r}: answer {text!r} is not in its context"
                        )
                    examples.append(QATrainExample(qa["question"], context, text, start))
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise UserError(f"{path} is not SQuAD JSON (data/paragraphs/qas/answers): {err}") from None
    return examples


def read_examples(
    task: str, path: str | Path, glue_task: str | None = None, flag: str = "--train", labels: bool = True
) -> list[Any]:
    """The examples of a training or validation file in the format of ``task``.

    ``labels=False`` (``--transfer``): text-classification rows may lack a label column.

    Raises:
        UserError: a missing or unreadable file, or one without examples (named by ``flag``).
    """
    if not Path(path).is_file():
        raise UserError(f"{flag} {path}: no such file")
    if task == "question-answering":
        examples: list[Any] = read_squad_train(path)
    elif task == "token-classification":
        examples = datasets.read_conll(path)
    else:
        examples = datasets.read_labelled(path, glue_task, labels)
    if not examples:
        raise UserError(f"{flag} {path}: no examples found")
    return examples


# --- pure alignment ---------------------------------------------------------------------------------
def first_subtoken_labels(
    offsets: list[tuple[int, int]], special: list[int], spans: list[tuple[int, int]], word_labels: list[int]
) -> list[int]:
    """Per-token targets: a word's label on the token that starts at the word's first character,
    -100 on every other token (later sub-tokens, special tokens).

    Args:
        offsets: (start, end) character offsets of each token in the joined text.
        special: 1 for special tokens.
        spans: (start, end) of each word in the joined text.
        word_labels: label id of each word.
    """
    starts = {start: i for i, (start, _) in enumerate(spans)}
    out = []
    for (start, _), is_special in zip(offsets, special, strict=True):
        word = None if is_special else starts.get(start)
        out.append(IGNORE_INDEX if word is None else word_labels[word])
        if word is not None:
            starts.pop(start)  # a word starts at one token only
    return out


def answer_positions(
    offsets: np.ndarray,
    seq: np.ndarray,
    answer_seq: int,
    start_char: int | None,
    end_char: int | None,
    cls_index: int = 0,
) -> tuple[int, int]:
    """Token (start, end) of the answer characters [start_char, end_char) in one window.

    Args:
        offsets: (T, 2) character offsets of the window's tokens.
        seq: (T,) sequence id per token (-1 for special tokens).
        answer_seq: the sequence id of the context.
        cls_index: target when the answer is not inside the window or there is none.
    """
    context = np.flatnonzero(seq == answer_seq)
    if start_char is None or end_char is None or len(context) == 0:
        return cls_index, cls_index
    if offsets[context[0], 0] > start_char or offsets[context[-1], 1] < end_char:
        return cls_index, cls_index
    first = context[offsets[context, 0] <= start_char][-1]
    last = context[offsets[context, 1] >= end_char][0]
    return int(first), int(last)


# --- tokenizing -----------------------------------------------------------------------------------
def _types(encoded: Any, tokenizer: Any, token_types: bool = False) -> list[list[int]] | None:
    wanted = token_types or "token_type_ids" in tokenizer.model_input_names
    return encoded.get("token_type_ids") if wanted else None


def build_features(
    task: str,
    examples: list[Any],
    tokenizer: Any,
    config: Any,
    space: LabelSpace,
    max_seq_len: int,
    doc_stride: int | None = None,
    token_types: bool = False,
) -> TrainData:
    """Tokenize ``examples`` for training (see the module docstring for each task).

    ``token_types``: also keep segment ids when the tokenizer's model inputs do not include them
    (a BERT teacher reads them beside a DistilBERT student).

    Raises:
        UserError: a file that mixes single texts and pairs; a QA question too long for a window.
    """
    if task == "question-answering":
        return _qa_features(examples, tokenizer, config, max_seq_len, doc_stride, token_types)
    if task == "token-classification":
        ids = {name: i for i, name in enumerate(space.labels)}
        joined = [word_spans(ex.words) for ex in examples]
        enc = tokenizer(
            [text for text, _ in joined],
            truncation=True,
            max_length=max_seq_len,
            return_attention_mask=False,
            return_token_type_ids=False,
            return_special_tokens_mask=True,
            return_offsets_mapping=True,
        )
        targets = [
            first_subtoken_labels(
                enc["offset_mapping"][i], enc["special_tokens_mask"][i], spans, [ids[t] for t in ex.tags]
            )
            for i, (ex, (_, spans)) in enumerate(zip(examples, joined, strict=True))
        ]
        return TrainData(enc["input_ids"], None, targets, len(examples))
    pairs = [ex.text_pair for ex in examples]
    if any(p is None for p in pairs) and any(p is not None for p in pairs):
        raise UserError("the data mixes single texts and text pairs; use one kind per file")
    enc = tokenizer(
        [ex.text for ex in examples],
        None if pairs[0] is None else pairs,
        truncation=True,
        max_length=max_seq_len,
        return_attention_mask=False,
        return_token_type_ids=True,
    )
    types = _types(enc, tokenizer, token_types)
    return TrainData(enc["input_ids"], types, _class_targets(examples, space), len(examples))


def _class_targets(examples: list[Any], space: LabelSpace) -> list[Any]:
    if space.problem_type == REGRESSION:
        return [float(ex.label) for ex in examples]
    ids = {name: i for i, name in enumerate(space.labels)}
    if space.problem_type == MULTI:
        rows = []
        for ex in examples:
            row = [0.0] * len(ids)
            for name in parse_multi_label(ex.label):
                row[ids[name]] = 1.0
            rows.append(row)
        return rows
    return [ids[ex.label] for ex in examples]


def _qa_features(
    examples: list[QATrainExample], tokenizer: Any, config: Any, max_seq_len: int, doc_stride: int | None,
    token_types: bool = False,
) -> TrainData:
    from distilkit.tasks.question_answering import QAItem, QuestionAnsweringHandler

    handler = QuestionAnsweringHandler(tokenizer, config)
    handler.send_token_types |= token_types
    params = handler.check_params({"max_seq_len": max_seq_len, "doc_stride": doc_stride})
    features = handler.encode([QAItem(ex.question, ex.context) for ex in examples], params)
    cls_id = tokenizer.cls_token_id
    targets = []
    for f in features:
        ex = examples[f.item]
        cls_index = f.input_ids.index(cls_id) if cls_id in f.input_ids else 0
        end = None if ex.start is None else ex.start + len(ex.answer)
        targets.append(
            answer_positions(f.data["offsets"], f.data["seq"], handler.answer_seq, ex.start, end, cls_index)
        )
    types = [f.token_type_ids for f in features] if handler.send_token_types else None
    return TrainData([f.input_ids for f in features], types, targets, len(examples))


def transfer_features(
    task: str, examples: list[Any], space: LabelSpace, build: Callable[[list[Any]], TrainData]
) -> TrainData:
    """``--transfer`` rows: ``examples`` tokenized by ``build`` (``build_features`` with the training
    rows' settings) with their labels or answers unused, every target one the task loss ignores
    (-100 labels; QA positions past the window).

    Raises:
        UserError: regression or multi-label text classification (no target there is ignored).
    """
    if task == "text-classification" and space.problem_type != SINGLE:
        raise UserError(
            f"--transfer is for single-label classification, NER and QA, not {space.problem_type}"
        )
    if task == "question-answering":
        examples = [dataclasses.replace(ex, answer=None, start=None) for ex in examples]
    elif task == "token-classification":
        examples = [dataclasses.replace(ex, tags=(space.labels[0],) * len(ex.words)) for ex in examples]
    else:
        examples = [dataclasses.replace(ex, label=space.labels[0]) for ex in examples]
    data = build(examples)
    if task == "question-answering":
        data.targets = [(UNLABELLED_POSITION, UNLABELLED_POSITION)] * len(data)
    elif task == "token-classification":
        data.targets = [[IGNORE_INDEX] * len(t) for t in data.targets]
    else:
        data.targets = [IGNORE_INDEX] * len(data)
    return data


def with_transfer(data: TrainData, transfer: TrainData) -> TrainData:
    """``data``'s rows followed by ``transfer``'s (one pool: batches mix them)."""
    if (data.token_type_ids is None) != (transfer.token_type_ids is None):
        raise ValueError("training and transfer rows must both have token types or neither")
    types = None if data.token_type_ids is None else data.token_type_ids + transfer.token_type_ids
    return TrainData(data.input_ids + transfer.input_ids, types, data.targets + transfer.targets,
                     data.examples, transfer.examples, len(data))


def training_batch(
    data: TrainData,
    rows: np.ndarray | list[int],
    pad_id: int,
    task: str,
    problem_type: str | None,
    pad_to_multiple_of: int = 8,
) -> dict[str, Any]:
    """One padded batch: input_ids/attention_mask (B, T), token_type_ids, and the task's targets
    (labels (B,) | (B, L) | (B, T), or start_positions/end_positions (B,)); with transfer rows in
    ``data``, also ``LABELLED_ROWS``: how many of the batch's rows have targets."""
    seqs = [data.input_ids[r] for r in rows]
    width = -(-max(map(len, seqs)) // pad_to_multiple_of) * pad_to_multiple_of
    batch = {
        "input_ids": torch.full((len(seqs), width), pad_id, dtype=torch.long),
        "attention_mask": torch.zeros((len(seqs), width), dtype=torch.long),
    }
    if data.token_type_ids is not None:
        batch["token_type_ids"] = torch.zeros((len(seqs), width), dtype=torch.long)
    if task == "token-classification":
        batch["labels"] = torch.full((len(seqs), width), IGNORE_INDEX, dtype=torch.long)
    for b, (r, seq) in enumerate(zip(rows, seqs, strict=True)):
        batch["input_ids"][b, : len(seq)] = torch.tensor(seq)
        batch["attention_mask"][b, : len(seq)] = 1
        if data.token_type_ids is not None:
            batch["token_type_ids"][b, : len(seq)] = torch.tensor(data.token_type_ids[r])
        if task == "token-classification":
            batch["labels"][b, : len(seq)] = torch.tensor(data.targets[r])
    targets = [data.targets[r] for r in rows]
    if task == "question-answering":
        batch["start_positions"] = torch.tensor([s for s, _ in targets], dtype=torch.long)
        batch["end_positions"] = torch.tensor([e for _, e in targets], dtype=torch.long)
    elif task == "text-classification":
        dtype = torch.long if problem_type == SINGLE else torch.float
        batch["labels"] = torch.tensor(targets, dtype=dtype)
    if data.labelled_rows is not None:
        batch[LABELLED_ROWS] = int(sum(r < data.labelled_rows for r in rows))
    return batch
