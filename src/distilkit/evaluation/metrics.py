"""Evaluation metrics as pure functions: SQuAD v1.1/v2.0, seqeval entity P/R/F1, GLUE, fill-mask.

Each function reproduces a published reference and is tested against it:

- ``squad_v1`` is the official ``evaluate-v1.1.py``; ``squad_v2`` the official
  ``evaluate-v2.0.py`` (HasAns/NoAns splits and the best no-answer threshold from ``na_probs``).
- ``entity_scores`` is ``seqeval``'s default (non-strict) mode, which reads IOB1 and IOB2 alike.
- ``accuracy`` / ``binary_f1`` / ``macro_f1`` / ``matthews_corr`` / ``pearson`` / ``spearman``
  match scikit-learn and scipy; ``glue_metrics`` picks the ones each GLUE task reports.
- ``top_k_accuracy`` and ``perplexity`` for fill-mask.

Scores in [0, 1] are returned as fractions except the SQuAD ones, which are percentages as the
official scripts print them.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter, defaultdict
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

# --- SQuAD ---------------------------------------------------------------------------------------
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
    """The official SQuAD normalisation: lowercase, drop punctuation, articles and extra whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, gold: str) -> int:
    """1 when the normalised texts are equal, else 0."""
    return int(normalize_answer(prediction) == normalize_answer(gold))


def token_f1(prediction: str, gold: str, *, empty_matches_empty: bool = False) -> float:
    """Bag-of-tokens F1 of normalised texts.

    Args:
        empty_matches_empty: the v2.0 rule: if either side has no tokens, F1 is 1 when both are
            empty and 0 otherwise (v1.1 scores an empty side 0 always).
    """
    pred_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(gold).split()
    if empty_matches_empty and (not pred_tokens or not gold_tokens):
        return float(pred_tokens == gold_tokens)
    same = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if same == 0:
        return 0.0
    precision = same / len(pred_tokens)
    recall = same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def squad_v1(golds: Mapping[str, Sequence[str]], predictions: Mapping[str, str]) -> dict[str, float]:
    """SQuAD v1.1 ``exact_match`` and ``f1`` (percent), each the max over a question's gold answers.

    Args:
        golds: question id -> gold answer texts (every question of the evaluated set).
        predictions: question id -> predicted text; a missing id scores 0, as in the official script.
    """
    em = f1 = 0.0
    for qid, answers in golds.items():
        if qid not in predictions:
            continue
        pred = predictions[qid]
        em += max(exact_match(pred, a) for a in answers)
        f1 += max(token_f1(pred, a) for a in answers)
    total = len(golds)
    return {"exact_match": 100.0 * em / total if total else 0.0, "f1": 100.0 * f1 / total if total else 0.0,
            "total": total}


def squad_v2(
    golds: Mapping[str, Sequence[str]],
    predictions: Mapping[str, str],
    na_probs: Mapping[str, float] | None = None,
    na_prob_thresh: float = 1.0,
) -> dict[str, float]:
    """SQuAD v2.0 as the official script: exact/f1, HasAns_/NoAns_ splits and best thresholds.

    Args:
        golds: question id -> gold answer texts; an empty list (or only blank texts) means unanswerable.
        predictions: question id -> predicted text, ``""`` for "no answer".
        na_probs: question id -> no-answer probability. When given, ``best_exact``/``best_f1``
            (and their thresholds) sweep the threshold over these values, as the script with
            ``--na-prob-file``; without, every na_prob is 0 and there are no best_* entries.
        na_prob_thresh: a question with ``na_prob > thresh`` counts as answered "no answer".
    """
    given = na_probs is not None
    na_probs = dict(na_probs) if given else {qid: 0.0 for qid in predictions}
    has_ans = {qid: any(normalize_answer(a) for a in answers) for qid, answers in golds.items()}
    exact_raw: dict[str, float] = {}
    f1_raw: dict[str, float] = {}
    for qid, answers in golds.items():
        if qid not in predictions:
            continue
        texts = [a for a in answers if normalize_answer(a)] or [""]
        pred = predictions[qid]
        exact_raw[qid] = max(exact_match(pred, a) for a in texts)
        f1_raw[qid] = max(token_f1(pred, a, empty_matches_empty=True) for a in texts)
    exact = _apply_threshold(exact_raw, na_probs, has_ans, na_prob_thresh)
    f1 = _apply_threshold(f1_raw, na_probs, has_ans, na_prob_thresh)
    result = _summary(exact, f1, list(golds))
    for prefix, wanted in (("HasAns", True), ("NoAns", False)):
        ids = [qid for qid in golds if has_ans[qid] == wanted]
        if ids:
            result.update({f"{prefix}_{k}": v for k, v in _summary(exact, f1, ids).items()})
    if given:
        for name, raw in (("best_exact", exact_raw), ("best_f1", f1_raw)):
            result[name], result[f"{name}_thresh"] = _best_threshold(predictions, raw, na_probs, has_ans)
    return result


def _apply_threshold(scores: dict[str, float], na_probs: Mapping[str, float], has_ans: Mapping[str, bool],
                     thresh: float) -> dict[str, float]:
    return {qid: float(not has_ans[qid]) if na_probs[qid] > thresh else s for qid, s in scores.items()}


def _summary(exact: dict[str, float], f1: dict[str, float], ids: list[str]) -> dict[str, float]:
    # The official script averages over every listed id and fails on a missing prediction; a
    # missing one counts 0 here instead.
    total = len(ids)
    return {"exact": 100.0 * sum(exact.get(q, 0.0) for q in ids) / total,
            "f1": 100.0 * sum(f1.get(q, 0.0) for q in ids) / total, "total": total}


def _best_threshold(predictions: Mapping[str, str], scores: dict[str, float], na_probs: Mapping[str, float],
                    has_ans: Mapping[str, bool]) -> tuple[float, float]:
    """(best score in percent, its threshold): answer "no answer" for every na_prob above it."""
    current = best = sum(1 for qid in has_ans if not has_ans[qid])
    best_thresh = 0.0
    for qid in sorted(na_probs, key=lambda q: na_probs[q]):
        if qid not in scores:
            continue
        if has_ans[qid]:
            diff = scores[qid]
        else:
            diff = -1 if predictions[qid] else 0
        current += diff
        if current > best:
            best, best_thresh = current, na_probs[qid]
    return 100.0 * best / len(scores), best_thresh


# --- NER: seqeval default mode -------------------------------------------------------------------
def _split(tag: str) -> tuple[str, str]:
    """(prefix letter, entity type) as seqeval reads a tag: ``B-PER`` -> (B, PER), ``O`` -> (O, _)."""
    return tag[0], tag[1:].split("-", maxsplit=1)[-1] or "_"


def _chunk_ends(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    if prev_tag in ("E", "S"):
        return True
    if prev_tag in ("B", "I") and tag in ("B", "S", "O"):
        return True
    return prev_tag not in ("O", ".") and prev_type != type_


def _chunk_starts(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    if tag in ("B", "S"):
        return True
    if prev_tag in ("E", "S", "O") and tag in ("E", "I"):
        return True
    return tag not in ("O", ".") and prev_type != type_


def get_entities(tags: Sequence[str] | Sequence[Sequence[str]]) -> list[tuple[str, int, int]]:
    """Entity chunks ``(type, first, last)`` (inclusive) of a tag sequence, as ``seqeval.get_entities``.

    An entity starts at a B- tag, or at an I- tag whose type differs from the previous tag's
    (IOB1's start); it ends before O, B-, or a change of type. IOB1 and IOB2 read the same.
    A list of sentences is joined with an ``O`` between sentences (positions are global).
    """
    if any(isinstance(t, (list, tuple)) for t in tags):
        tags = [tag for sentence in tags for tag in [*sentence, "O"]]
    chunks = []
    prev_tag, prev_type, begin = "O", "", 0
    for i, chunk in enumerate([*tags, "O"]):
        tag, type_ = _split(chunk)
        if _chunk_ends(prev_tag, tag, prev_type, type_):
            chunks.append((prev_type, begin, i - 1))
        if _chunk_starts(prev_tag, tag, prev_type, type_):
            begin = i
        prev_tag, prev_type = tag, type_
    return chunks


def _prf(correct: int, n_pred: int, n_true: int) -> dict[str, float]:
    precision = correct / n_pred if n_pred else 0.0
    recall = correct / n_true if n_true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "support": n_true}


def entity_scores(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> dict[str, Any]:
    """Entity-level micro precision/recall/F1 overall and per type (seqeval default mode).

    An entity counts as correct only when its type and both boundaries match exactly.

    Args:
        gold: one tag list per sentence (IOB1 or IOB2).
        predicted: one tag list per sentence, the same lengths.

    Returns:
        ``{"precision", "recall", "f1", "support", "per_type": {type: {...}}}``.

    Raises:
        ValueError: when the number of sentences or a sentence's length differs.
    """
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold sentences but {len(predicted)} predicted")
    for i, (g, p) in enumerate(zip(gold, predicted, strict=True)):
        if len(g) != len(p):
            raise ValueError(f"sentence {i}: {len(g)} gold tags but {len(p)} predicted")
    true_by_type: dict[str, set] = defaultdict(set)
    pred_by_type: dict[str, set] = defaultdict(set)
    for type_, first, last in get_entities([list(s) for s in gold]):
        true_by_type[type_].add((first, last))
    for type_, first, last in get_entities([list(s) for s in predicted]):
        pred_by_type[type_].add((first, last))
    per_type = {}
    totals = [0, 0, 0]
    for type_ in sorted(set(true_by_type) | set(pred_by_type)):
        t, p = true_by_type[type_], pred_by_type[type_]
        counts = (len(t & p), len(p), len(t))
        per_type[type_] = _prf(*counts)
        totals = [a + b for a, b in zip(totals, counts, strict=True)]
    return {**_prf(*totals), "per_type": per_type}


# --- classification and regression -------------------------------------------------------------
def accuracy(gold: Sequence[Hashable], predicted: Sequence[Hashable]) -> float:
    """Share of equal labels."""
    _same_length(gold, predicted)
    return sum(g == p for g, p in zip(gold, predicted, strict=True)) / len(gold) if gold else 0.0


def binary_f1(gold: Sequence[Hashable], predicted: Sequence[Hashable], positive: Hashable) -> float:
    """F1 of the ``positive`` label (scikit-learn ``average="binary"``; 0 when undefined)."""
    _same_length(gold, predicted)
    tp = sum(g == positive and p == positive for g, p in zip(gold, predicted, strict=True))
    n_pred = sum(p == positive for p in predicted)
    n_true = sum(g == positive for g in gold)
    return _prf(tp, n_pred, n_true)["f1"]


def macro_f1(gold: Sequence[Hashable], predicted: Sequence[Hashable]) -> float:
    """Unweighted mean of per-label F1 over labels seen in gold or predictions (scikit-learn macro)."""
    labels = set(gold) | set(predicted)
    return sum(binary_f1(gold, predicted, label) for label in labels) / len(labels) if labels else 0.0


def matthews_corr(gold: Sequence[Hashable], predicted: Sequence[Hashable]) -> float:
    """Matthews correlation coefficient, multi-class form (scikit-learn; 0 when undefined)."""
    _same_length(gold, predicted)
    n = len(gold)
    correct = sum(g == p for g, p in zip(gold, predicted, strict=True))
    t, p = Counter(gold), Counter(predicted)
    cov_tp = correct * n - sum(p[k] * t[k] for k in set(t) | set(p))
    cov_pp = n * n - sum(v * v for v in p.values())
    cov_tt = n * n - sum(v * v for v in t.values())
    if cov_pp * cov_tt == 0:
        return 0.0
    return cov_tp / math.sqrt(cov_pp * cov_tt)


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson correlation (nan when a side is constant, as scipy)."""
    _same_length(x, y)
    n = len(x)
    mx, my = sum(x) / n, sum(y) / n
    dx, dy = [a - mx for a in x], [b - my for b in y]
    sxx, syy = sum(a * a for a in dx), sum(b * b for b in dy)
    if sxx == 0 or syy == 0:
        return float("nan")
    return max(-1.0, min(1.0, sum(a * b for a, b in zip(dx, dy, strict=True)) / math.sqrt(sxx * syy)))


def _ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks, ties sharing their average rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation: Pearson of the (average-tie) ranks."""
    return pearson(_ranks(x), _ranks(y))


def _same_length(a: Sequence, b: Sequence) -> None:
    if len(a) != len(b):
        raise ValueError(f"{len(a)} gold values but {len(b)} predicted")


# GLUE task -> (metrics it reports, the one number of the cards' table = their mean, x100).
# The cards (and the DistilBERT paper) follow the GLUE score: the mean of a task's metrics.
GLUE_TASKS: dict[str, tuple[str, ...]] = {
    "MNLI": ("accuracy",),
    "QQP": ("accuracy", "f1"),
    "QNLI": ("accuracy",),
    "SST-2": ("accuracy",),
    "CoLA": ("matthews_corr",),
    "STS-B": ("pearson", "spearman"),
    "MRPC": ("accuracy", "f1"),
    "RTE": ("accuracy",),
}


def glue_task_name(name: str) -> str:
    """``name`` as ``GLUE_TASKS`` spells it, in any case and with or without hyphens or underscores
    (``sst2``, ``sst-2`` and ``SST-2`` are ``"SST-2"``; ``stsb`` is ``"STS-B"``).

    Raises:
        ValueError: not a GLUE task (the message lists them).
    """
    key = name.replace("-", "").replace("_", "").lower()
    for task in GLUE_TASKS:
        if task.replace("-", "").lower() == key:
            return task
    raise ValueError(f"unknown GLUE task {name!r}; expected one of {list(GLUE_TASKS)} "
                     "(any case, hyphen optional: sst2 is SST-2)")


def classification_metrics(gold: Sequence[Hashable], predicted: Sequence[Hashable],
                           positive: Hashable | None = None) -> dict[str, float]:
    """accuracy, macro_f1 and matthews_corr; plus f1 of ``positive`` for a binary task."""
    result = {"accuracy": accuracy(gold, predicted), "macro_f1": macro_f1(gold, predicted),
              "matthews_corr": matthews_corr(gold, predicted)}
    if positive is not None:
        result["f1"] = binary_f1(gold, predicted, positive)
    return result


def regression_metrics(gold: Sequence[float], predicted: Sequence[float]) -> dict[str, float]:
    """pearson, spearman and mean squared error."""
    _same_length(gold, predicted)
    mse = sum((g - p) ** 2 for g, p in zip(gold, predicted, strict=True)) / len(gold) if gold else 0.0
    return {"pearson": pearson(gold, predicted), "spearman": spearman(gold, predicted), "mse": mse}


def glue_metrics(task: str, gold: Sequence[Any], predicted: Sequence[Any]) -> dict[str, float]:
    """The metrics GLUE reports for ``task`` (positive label ``"1"`` for MRPC/QQP), plus ``score``.

    ``score`` is the mean of the reported metrics times 100: the number in the cards' table.
    """
    task = glue_task_name(task)
    if task == "STS-B":
        metrics = regression_metrics([float(g) for g in gold], [float(p) for p in predicted])
    else:
        positive = "1" if task in ("MRPC", "QQP") else None
        metrics = classification_metrics([str(g) for g in gold], [str(p) for p in predicted], positive)
    reported = {name: metrics[name] for name in GLUE_TASKS[task]}
    return {**reported, "score": 100.0 * sum(reported.values()) / len(reported)}


# --- fill-mask ----------------------------------------------------------------------------------
def top_k_accuracy(gold: Sequence[Hashable], ranked: Sequence[Sequence[Hashable]], k: int) -> float:
    """Share of rows whose gold value is among the first ``k`` ranked candidates."""
    _same_length(gold, ranked)
    return sum(g in list(r)[:k] for g, r in zip(gold, ranked, strict=True)) / len(gold) if gold else 0.0


def perplexity(nll_sum: float, count: int) -> float:
    """exp(mean negative log-likelihood) over ``count`` predicted tokens (inf when count is 0)."""
    return math.exp(nll_sum / count) if count else float("inf")
