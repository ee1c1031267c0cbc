"""Evaluate a model on a data set: read -> predict through the Predictor -> score with pure metrics.

Predictions come from ``Predictor.predict`` (or its ``prepare``/``run``/``finish`` stages), the
same path ``distilkit predict`` and the server use, so evaluation and serving cannot disagree.
Every GLUE task of a folder at once: ``distilkit.evaluation.glue``.

Conventions (documented in the README's Evaluation section):

- question-answering: default pipeline parameters; SQuAD v2.0 adds ``handle_impossible_answer``
  (``""`` = no answer). Its ``na_prob`` is the score of the empty answer among the top 10
  answers of the same forward pass (0 when it is not among them).
- token-classification: a sentence's words are joined with single spaces and predicted with
  ``aggregation_strategy="none"``; a word takes the tag of its first sub-token (a token starting
  at the word's first character), ``O`` when that token is ``O`` or cut off by truncation. This
  is the convention of transformers' ``run_ner`` evaluation. Scores: seqeval default mode.
- fill-mask: per sentence one word that is a single vocabulary token is masked (seeded choice);
  top-1/top-k accuracy of its token. Masked-LM: the text's tokens are cut into blocks of 126,
  15% of each block's tokens (at least one) replaced by the mask token (no 80/10/10), accuracy
  of the argmax and perplexity ``exp(mean NLL)`` at those positions.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from distilkit.config import glue_task_option
from distilkit.errors import UserError
from distilkit.evaluation import datasets, metrics
from distilkit.evaluation.datasets import GLUE_LABELS
from distilkit.tasks import Feature

Progress = Callable[[int, int], None]  # (examples just finished, total examples of the run)
CHUNK = 256  # examples per Predictor call: progress granularity; batching happens inside
NA_TOP_K = 10  # answers decoded per question to find the empty answer's score (SQuAD v2.0)
MLM_BLOCK = 126  # tokens per masked-LM block, before the special tokens
MLM_RATE = 0.15


@dataclass
class Evaluation:
    """Metrics of one run plus one JSON-able prediction record per example."""

    task: str
    metrics: dict[str, Any]
    predictions: list[dict[str, Any]] = field(default_factory=list)
    examples: int = 0
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        """What ``metrics.json`` holds."""
        rate = self.examples / self.seconds if self.seconds else None
        return {"task": self.task, "examples": self.examples, "seconds": round(self.seconds, 3),
                "examples_per_second": None if rate is None else round(rate, 2), "metrics": self.metrics}


def _chunks(items: Sequence[Any], size: int = CHUNK) -> Iterator[tuple[int, Sequence[Any]]]:
    for start in range(0, len(items), size):
        yield start, items[start : start + size]


def predict_all(predictor: Any, items: Sequence[Any], params: dict[str, Any] | None = None,
                progress: Progress | None = None) -> list[Any]:
    """``predictor.predict`` over ``items`` in chunks, reporting progress after each chunk."""
    results: list[Any] = []
    for _, chunk in _chunks(items):
        results.extend(predictor.predict(list(chunk), params))
        if progress:
            progress(len(chunk), len(items))
    return results


def _limit(items: list[Any], limit: int | None) -> list[Any]:
    if limit is not None and limit < 1:
        raise UserError(f"--limit must be >= 1, got {limit}")
    return items if limit is None else items[:limit]


# --- question answering ---------------------------------------------------------------------------
def evaluate_squad(predictor: Any, examples: list[datasets.QAExample], version: str,
                   progress: Progress | None = None) -> Evaluation:
    """SQuAD v1.1 (EM/F1) or v2.0 (exact/f1, HasAns/NoAns, best thresholds) through the Predictor."""
    v2 = version.startswith("2")
    params = {"handle_impossible_answer": True} if v2 else {}
    items = [{"question": ex.question, "context": ex.context} for ex in examples]
    answers: list[dict[str, Any]] = []
    na_probs: list[float] = []
    for _, chunk in _chunks(items):
        prepared = predictor.prepare(list(chunk), params)
        outputs = predictor.run(prepared.features)
        answers.extend(predictor.finish(prepared, outputs))
        if v2:  # the same outputs decoded with more answers: the empty one's score is na_prob
            wide = replace(prepared, params=predictor.handler.check_params({**params, "top_k": NA_TOP_K}))
            for ranked in predictor.finish(wide, outputs):
                ranked = ranked if isinstance(ranked, list) else [ranked]
                na_probs.append(next((a["score"] for a in ranked if a["answer"] == ""), 0.0))
        if progress:
            progress(len(chunk), len(items))
    golds = {ex.id: list(ex.answers) for ex in examples}
    preds = {ex.id: a["answer"] for ex, a in zip(examples, answers, strict=True)}
    if v2:
        scores = metrics.squad_v2(golds, preds, dict(zip(golds, na_probs, strict=True)))
    else:
        scores = metrics.squad_v1(golds, preds)
    records = [{"id": ex.id, "question": ex.question, "prediction": a["answer"], "score": a["score"],
                "gold": list(ex.answers), **({"na_prob": p} if v2 else {})}
               for ex, a, p in zip(examples, answers, na_probs or [None] * len(examples), strict=True)]
    return Evaluation("question-answering", {"squad_version": version, **scores}, records)


# --- token classification -------------------------------------------------------------------------
def word_spans(words: Sequence[str]) -> tuple[str, list[tuple[int, int]]]:
    """The text of ``words`` joined by single spaces and each word's (start, end) character span."""
    spans, pos = [], 0
    for word in words:
        spans.append((pos, pos + len(word)))
        pos += len(word) + 1
    return " ".join(words), spans


def word_tags(entities: list[dict[str, Any]], spans: list[tuple[int, int]]) -> list[str]:
    """One tag per word from token-classification output with character offsets.

    Token-level output (``entity`` keys, ``aggregation_strategy="none"``): a word takes the tag
    of the token that starts at its first character (its first sub-token); other words are ``O``.
    Grouped output (``entity_group``): the words an entity overlaps get ``B-type`` then ``I-type``.
    """
    tags = ["O"] * len(spans)
    starts = {start: i for i, (start, _) in enumerate(spans)}
    for entity in entities:
        if "entity" in entity:
            i = starts.get(entity["start"])
            if i is not None:
                tags[i] = entity["entity"]
            continue
        covered = [i for i, (s, e) in enumerate(spans) if s < entity["end"] and e > entity["start"]]
        for n, i in enumerate(w for w in covered if tags[w] == "O"):
            tags[i] = ("B-" if n == 0 else "I-") + entity["entity_group"]
    return tags


def evaluate_ner(predictor: Any, examples: list[datasets.NERExample], progress: Progress | None = None
                 ) -> Evaluation:
    """Entity-level P/R/F1 (overall and per type) of word tags taken from the Predictor's entities."""
    joined = [word_spans(ex.words) for ex in examples]
    params = {"aggregation_strategy": "none"}
    entities = predict_all(predictor, [text for text, _ in joined], params, progress)
    predicted = [word_tags(ents, spans) for ents, (_, spans) in zip(entities, joined, strict=True)]
    scores = metrics.entity_scores([ex.tags for ex in examples], predicted)
    records = [{"words": list(ex.words), "gold": list(ex.tags), "predicted": tags}
               for ex, tags in zip(examples, predicted, strict=True)]
    return Evaluation("token-classification", scores, records)


# --- text classification --------------------------------------------------------------------------
def label_mapping(model_labels: list[str], data_labels: list[str]) -> dict[str, str]:
    """Model label -> data label: by name (case-insensitive); else, when the data's labels are
    integers, label id k -> ``str(k)`` (a data set's integer label is the model's label id, as for
    GLUE's 0/1 files and a model whose labels are named ``negative``/``positive``); else
    ``LABEL_k`` -> the k-th of ``data_labels`` in the order given (GLUE's order for GLUE tasks,
    sorted otherwise).

    Raises:
        UserError: when no rule maps every data label.
    """
    by_lower = {m.lower(): m for m in model_labels}
    if all(d.lower() in by_lower for d in data_labels):
        return {by_lower[d.lower()]: d for d in data_labels}
    if all(d.isdigit() and int(d) < len(model_labels) for d in data_labels):
        return {m: str(k) for k, m in enumerate(model_labels)}
    generic = [f"LABEL_{k}" for k in range(len(model_labels))]
    if model_labels == generic and len(model_labels) >= len(data_labels):
        return {m: d for m, d in zip(model_labels, data_labels, strict=False)}
    raise UserError(f"the model's labels {model_labels} do not match the data's labels {data_labels}; "
                     "evaluate a model fine-tuned on this label set")


def is_regression(config: Any) -> bool:
    """A one-output classifier or ``problem_type="regression"`` predicts a number."""
    return getattr(config, "problem_type", None) == "regression" or int(config.num_labels) == 1


def evaluate_classification(predictor: Any, examples: list[datasets.TextExample],
                            glue_task: str | None = None, progress: Progress | None = None) -> Evaluation:
    """accuracy/macro-F1/MCC (+ binary F1), Pearson/Spearman for regression, or a GLUE task's metrics."""
    items = [ex.text if ex.text_pair is None else {"text": ex.text, "text_pair": ex.text_pair}
             for ex in examples]
    gold = [ex.label for ex in examples]
    config = predictor.loaded.config
    regression = is_regression(config)
    if glue_task is not None and (glue_task == "STS-B") != regression:
        kind = "a regression model (num_labels=1)" if glue_task == "STS-B" else "a classifier"
        raise UserError(f"{glue_task} needs {kind}; this model has num_labels={config.num_labels}")
    params = {"function_to_apply": "none"} if regression else {}
    results = predict_all(predictor, items, params, progress)
    if regression:
        predicted: list[Any] = [r["score"] for r in results]
        try:
            golds = [float(g) for g in gold]
        except ValueError:
            raise UserError("a regression model needs numeric labels in the data") from None
        scores = (metrics.glue_metrics(glue_task, golds, predicted) if glue_task
                  else metrics.regression_metrics(golds, predicted))
    else:
        model_labels = [config.id2label[i] for i in range(config.num_labels)]
        data_labels = GLUE_LABELS.get(glue_task or "") or sorted(set(gold), key=_label_key)
        mapping = label_mapping(model_labels, data_labels)
        predicted = [mapping.get(r["label"], r["label"]) for r in results]
        if glue_task:
            scores = metrics.glue_metrics(glue_task, gold, predicted)
        else:
            positive = data_labels[-1] if len(data_labels) == 2 else None
            scores = metrics.classification_metrics(gold, predicted, positive)
    records = [{"text": ex.text, **({"text_pair": ex.text_pair} if ex.text_pair is not None else {}),
                "gold": g, "predicted": p, "score": r["score"]}
               for ex, g, p, r in zip(examples, gold, predicted, results, strict=True)]
    return Evaluation("text-classification", scores, records)


def _label_key(label: str) -> tuple[int, float | str]:
    try:
        return 0, float(label)
    except ValueError:
        return 1, label


# --- fill-mask -------------------------------------------------------------------------------------
def mask_one_word(tokenizer: Any, sentence: str, rng: random.Random) -> tuple[str, int] | None:
    """(sentence with one word replaced by the mask token, gold token id), or None if no word fits.

    Candidates are alphabetic words that are one token of the vocabulary.
    """
    enc = tokenizer(sentence, add_special_tokens=False, return_offsets_mapping=True)
    word_ids = enc.word_ids()
    counts: dict[int, int] = {}
    for w in word_ids:
        if w is not None:
            counts[w] = counts.get(w, 0) + 1
    offsets = enc["offset_mapping"]
    candidates = [i for i, w in enumerate(word_ids)
                  if w is not None and counts[w] == 1 and sentence[offsets[i][0] : offsets[i][1]].isalpha()]
    if not candidates:
        return None
    i = rng.choice(candidates)
    start, end = offsets[i]
    return sentence[:start] + tokenizer.mask_token + sentence[end:], int(enc["input_ids"][i])


def evaluate_fill_mask(predictor: Any, lines: list[str], *, top_k: int = 5, limit: int | None = None,
                       seed: int = 0, progress: Progress | None = None) -> Evaluation:
    """Gold-word top-1/top-k accuracy on the text's sentences and masked-LM accuracy/perplexity."""
    tokenizer = predictor.tokenizer
    rng = random.Random(seed)
    masked = []
    for sentence in datasets.split_sentences(lines):
        if limit is not None and len(masked) >= limit:
            break
        if len(tokenizer(sentence)["input_ids"]) > predictor.handler.max_length:
            continue
        found = mask_one_word(tokenizer, sentence, rng)
        if found is not None:
            masked.append(found)
    features, golds = mlm_features(tokenizer, lines, limit=limit, seed=seed)
    total = len(masked) + len(features)
    advance = (lambda n, _: progress(n, total)) if progress else None
    results = predict_all(predictor, [text for text, _ in masked], {"top_k": top_k}, advance)
    gold = [g for _, g in masked]
    ranked = [[c["token"] for c in r] for r in results]
    scores = {"top1_accuracy": metrics.top_k_accuracy(gold, ranked, 1),
              f"top{top_k}_accuracy": metrics.top_k_accuracy(gold, ranked, top_k),
              "masked_sentences": len(masked)}
    scores.update(masked_lm_scores(predictor, features, golds, advance))
    records = [{"text": text, "gold": tokenizer.decode([g]), "predicted": [c["token_str"] for c in r]}
               for (text, g), r in zip(masked, results, strict=True)]
    return Evaluation("fill-mask", scores, records)


def mlm_features(tokenizer: Any, lines: list[str], *, limit: int | None, seed: int
                 ) -> tuple[list[Feature], list[list[int]]]:
    """Masked blocks of the text: features with mask tokens and each block's gold ids at the masks."""
    ids = [t for row in tokenizer(lines, add_special_tokens=False)["input_ids"] for t in row]
    rng = np.random.default_rng(seed)
    # The single-sequence template around an empty text: [CLS] [SEP] for BERT, <s> </s> for RoBERTa.
    template = tokenizer("", add_special_tokens=True)["input_ids"]
    bos, eos = template[:1], template[1:]
    features, golds = [], []
    for start in range(0, len(ids), MLM_BLOCK):
        if limit is not None and len(features) >= limit:
            break
        block = np.array(ids[start : start + MLM_BLOCK])
        n_mask = max(1, round(MLM_RATE * len(block)))
        positions = np.sort(rng.choice(len(block), size=n_mask, replace=False))
        golds.append(block[positions].tolist())
        block[positions] = tokenizer.mask_token_id
        features.append(Feature(item=len(features), input_ids=[*bos, *block.tolist(), *eos]))
    return features, golds


def masked_lm_scores(predictor: Any, features: list[Feature], golds: list[list[int]],
                     progress: Progress | None = None) -> dict[str, float]:
    """Accuracy and perplexity at masked positions from ``Predictor.run`` (the fill-mask handler's
    probabilities at mask positions), for ``mlm_features`` output."""
    correct = count = 0
    nll = 0.0
    tiny = float(np.finfo(np.float32).tiny)  # a probability that underflowed to 0 counts as this
    for start, chunk in _chunks(features):
        for probs, gold in zip(predictor.run(list(chunk)), golds[start : start + len(chunk)], strict=True):
            rows = np.arange(len(gold))  # probs (n_masks, V) in position order
            correct += int((probs.argmax(axis=-1) == gold).sum())
            nll -= float(np.log(np.maximum(probs[rows, gold], tiny)).sum())
            count += len(gold)
        if progress:
            progress(len(chunk), len(features))
    return {"mlm_accuracy": correct / count if count else 0.0, "perplexity": metrics.perplexity(nll, count),
            "mlm_blocks": len(features), "mlm_masked_tokens": count}


# --- entry points ----------------------------------------------------------------------------------
def evaluate(predictor: Any, data: str | Path, *, limit: int | None = None, glue_task: str | None = None,
             top_k: int = 5, progress: Progress | None = None) -> Evaluation:
    """Evaluate ``predictor`` on the file ``data`` in the format of its task.

    Args:
        predictor: a ``distilkit.inference.predictor.Predictor``.
        data: SQuAD JSON (question-answering), CoNLL columns (token-classification), labelled text
            (text-classification) or plain text (fill-mask).
        limit: evaluate the first N examples only (fill-mask: N sentences and N masked-LM blocks).
        glue_task: read ``data`` as this GLUE task's TSV and report its metrics.
        top_k: fill-mask: the k of top-k accuracy.
        progress: called after each chunk with (examples finished, total examples).

    Raises:
        UserError: unreadable data, labels the model does not have, a task without an evaluation.
    """
    task = predictor.task
    _limit([], limit)  # refuse a bad --limit before reading anything
    glue_task = None if glue_task is None else glue_task_option(glue_task)
    start = time.perf_counter()
    if task == "question-answering":
        examples, version = datasets.read_squad(data)
        examples = _limit(examples, limit)
        result = evaluate_squad(predictor, examples, version, progress)
    elif task == "token-classification":
        examples = _limit(datasets.read_conll(data), limit)
        result = evaluate_ner(predictor, examples, progress)
    elif task == "text-classification":
        examples = _limit(datasets.read_labelled(data, glue_task), limit)
        result = evaluate_classification(predictor, examples, glue_task, progress)
    elif task == "fill-mask":
        lines = datasets.read_lines(data)
        result = evaluate_fill_mask(predictor, lines, top_k=top_k, limit=limit, progress=progress)
        examples = result.predictions
    else:
        raise UserError(f"no evaluation for task {task!r}")
    if not examples:
        raise UserError(f"--data {data}: no examples found")
    result.examples = len(examples)
    result.seconds = time.perf_counter() - start
    return result
