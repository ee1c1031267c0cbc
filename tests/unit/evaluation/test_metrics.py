"""Metrics against hand computations and the reference implementations (seqeval, scikit-learn, scipy)."""

from __future__ import annotations

import math
import random

import pytest

from distilkit.evaluation import datasets, metrics


# --- SQuAD -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [("The  Cat!", "cat"), ("an apple, a pear", "apple pear"), ("theater", "theater"),
     ("  Denver   Broncos. ", "denver broncos"), ("A.B.C", "abc"), ("the", ""),
     ("Über-Straße", "überstraße")],
)
def test_normalize_answer_lowercases_and_drops_punctuation_articles_whitespace(text, expected):
    assert metrics.normalize_answer(text) == expected


def test_squad_v1_takes_the_max_over_gold_answers():
    golds = {"q1": ["Denver Broncos", "Broncos"], "q2": ["the cat sat"], "q3": ["x"]}
    preds = {"q1": "the broncos", "q2": "cat on mat", "q3": "y"}
    # q1: EM 1 via "Broncos"; q2: tokens {cat,on,mat} vs {cat,sat}: P=1/3, R=1/2, F1=0.4; q3: 0.
    scores = metrics.squad_v1(golds, preds)
    assert scores["exact_match"] == pytest.approx(100 / 3)
    assert scores["f1"] == pytest.approx(100 * 1.4 / 3)
    assert scores["total"] == 3


def test_squad_v1_missing_prediction_counts_zero_and_empty_f1_is_zero():
    assert metrics.squad_v1({"a": ["x"], "b": ["y"]}, {"a": "x"})["exact_match"] == 50.0
    assert metrics.token_f1("", "") == 0.0  # v1.1: no common token
    assert metrics.token_f1("", "", empty_matches_empty=True) == 1.0  # v2.0
    assert metrics.token_f1("a", "b c", empty_matches_empty=True) == 0.0  # "a" normalises to nothing


def test_squad_v2_splits_and_best_threshold_by_hand():
    golds = {"q1": ["Paris"], "q2": ["blue"], "q3": [], "q4": [""]}
    preds = {"q1": "Paris", "q2": "red", "q3": "", "q4": "x"}
    na = {"q1": 0.1, "q2": 0.6, "q3": 0.9, "q4": 0.3}
    s = metrics.squad_v2(golds, preds, na)
    assert (s["exact"], s["f1"], s["total"]) == (50.0, 50.0, 4)
    assert (s["HasAns_exact"], s["HasAns_total"], s["NoAns_exact"], s["NoAns_total"]) == (50.0, 2, 50.0, 2)
    # Sweep by na_prob: start at 2 (every no-answer right), q1 +1 -> 3 at 0.1, q4 -1, q2 0, q3 0.
    assert (s["best_exact"], s["best_exact_thresh"]) == (75.0, 0.1)
    assert (s["best_f1"], s["best_f1_thresh"]) == (75.0, 0.1)
    # With a threshold of 0.5, q2 (0.6) and q3 (0.9) count as answered "no answer".
    assert metrics.squad_v2(golds, preds, na, na_prob_thresh=0.5)["exact"] == 50.0
    assert "best_exact" not in metrics.squad_v2(golds, preds)  # as the script without --na-prob-file


def test_squad_v2_f1_partial_match():
    s = metrics.squad_v2({"q": ["the big red dog"]}, {"q": "red dog barks"})
    # tokens {big, red, dog} vs {red, dog, barks}: P=2/3, R=2/3
    assert s["f1"] == pytest.approx(100 * 2 / 3)


# --- seqeval ---------------------------------------------------------------------------------------
def test_get_entities_reads_iob1_and_iob2_alike():
    iob1 = ["I-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-ORG"]
    iob2 = ["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "B-ORG"]
    expected = [("PER", 0, 1), ("LOC", 3, 3), ("LOC", 4, 4), ("ORG", 5, 5)]
    assert metrics.get_entities(iob1) == expected
    assert metrics.get_entities(iob2) == expected


def test_get_entities_joins_sentences_with_an_o():
    assert metrics.get_entities([["B-PER"], ["I-PER"]]) == [("PER", 0, 0), ("PER", 2, 2)]


def test_entity_scores_by_hand():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"], ["B-ORG", "B-MISC"]]
    s = metrics.entity_scores(gold, pred)
    # gold {PER, LOC, ORG}; predicted {PER, ORG(wrong place), ORG, MISC}: 2 correct of 4 predicted, 3 gold.
    assert (s["precision"], s["recall"], s["support"]) == (0.5, 2 / 3, 3)
    assert s["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert s["per_type"]["LOC"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert s["per_type"]["ORG"]["precision"] == 0.5 and s["per_type"]["MISC"]["support"] == 0


def test_entity_scores_refuses_length_mismatch():
    with pytest.raises(ValueError, match="sentence 0: 2 gold tags but 1 predicted"):
        metrics.entity_scores([["O", "O"]], [["O"]])


def to_iob1(tags: list[str]) -> list[str]:
    """IOB2 -> IOB1: B- only where an entity directly follows one of the same type."""
    out, prev = [], "O"
    for tag in tags:
        if tag.startswith("B-") and prev[2:] != tag[2:]:
            tag = "I-" + tag[2:]
        out.append(tag)
        prev = tag
    return out


def perturb(sentences: list[list[str]], rng: random.Random) -> list[list[str]]:
    """Gold with ~8% of the tags changed: new type, flipped B/I, dropped to O, or a spurious entity."""
    types = ["PER", "LOC", "ORG", "MISC"]
    out = []
    for tags in sentences:
        new = list(tags)
        for i, tag in enumerate(new):
            if rng.random() < 0.08:
                kind = rng.randrange(4)
                if kind == 0 and tag != "O":
                    new[i] = tag[:2] + rng.choice(types)
                elif kind == 1 and tag != "O":
                    new[i] = ("I-" if tag.startswith("B-") else "B-") + tag[2:]
                elif kind == 2:
                    new[i] = "O"
                else:
                    new[i] = rng.choice("BI") + "-" + rng.choice(types)
        out.append(new)
    return out


@pytest.mark.shared
@pytest.mark.parametrize("scheme", ["IOB2", "IOB1"])
def test_entity_scores_equal_seqeval_on_conll_test(shared_dir, scheme):
    seqeval_metrics = pytest.importorskip("seqeval.metrics")
    from seqeval.metrics.sequence_labeling import get_entities

    gold = [list(ex.tags) for ex in datasets.read_conll(shared_dir / "data/conll2003/test.txt")]
    assert len(gold) == 3453
    if scheme == "IOB1":
        gold = [to_iob1(t) for t in gold]
    pred = perturb(gold, random.Random(0))
    if scheme == "IOB1":
        pred = [to_iob1(t) for t in pred]
    ours = metrics.entity_scores(gold, pred)
    assert metrics.get_entities(pred) == get_entities(pred)
    assert ours["precision"] == pytest.approx(seqeval_metrics.precision_score(gold, pred), abs=1e-12)
    assert ours["recall"] == pytest.approx(seqeval_metrics.recall_score(gold, pred), abs=1e-12)
    assert ours["f1"] == pytest.approx(seqeval_metrics.f1_score(gold, pred), abs=1e-12)
    assert 0.5 < ours["f1"] < 0.95  # the perturbation changes something, not everything
    report = seqeval_metrics.classification_report(gold, pred, output_dict=True, zero_division=0)
    for type_, ref in report.items():
        if type_ in ours["per_type"]:
            mine = ours["per_type"][type_]
            assert mine["support"] == ref["support"]
            for key in ("precision", "recall", "f1"):
                assert mine[key] == pytest.approx(ref[key if key != "f1" else "f1-score"], abs=1e-12)
    assert set(ours["per_type"]) == {"PER", "LOC", "ORG", "MISC"}


# --- classification / regression -------------------------------------------------------------------
def test_classification_metrics_by_hand():
    gold = ["1", "1", "0", "0", "1"]
    pred = ["1", "0", "0", "1", "1"]
    s = metrics.classification_metrics(gold, pred, positive="1")
    assert s["accuracy"] == 0.6
    assert s["f1"] == pytest.approx(2 / 3)  # tp 2, predicted 3, gold 3
    # MCC: tp 2, tn 1, fp 1, fn 1 -> (2*1 - 1*1) / sqrt(3*3*2*2) = 1/6
    assert s["matthews_corr"] == pytest.approx(1 / 6)
    assert s["macro_f1"] == pytest.approx((2 / 3 + 0.5) / 2)


def test_classification_and_correlation_equal_sklearn_and_scipy():
    sk = pytest.importorskip("sklearn.metrics")
    stats = pytest.importorskip("scipy.stats")
    rng = random.Random(1)
    gold = [rng.choice("abcd") for _ in range(300)]
    pred = [g if rng.random() < 0.6 else rng.choice("abcd") for g in gold]
    assert metrics.accuracy(gold, pred) == pytest.approx(sk.accuracy_score(gold, pred))
    assert metrics.macro_f1(gold, pred) == pytest.approx(sk.f1_score(gold, pred, average="macro"))
    assert metrics.matthews_corr(gold, pred) == pytest.approx(sk.matthews_corrcoef(gold, pred))
    reference = sk.f1_score(gold, pred, labels=["b"], average="micro")
    assert metrics.binary_f1(gold, pred, "b") == pytest.approx(reference)
    x = [rng.choice([0.0, 1.0, 2.5, 3.0, 5.0]) for _ in range(200)]  # ties exercise average ranks
    y = [v + rng.gauss(0, 1.5) for v in x]
    assert metrics.pearson(x, y) == pytest.approx(stats.pearsonr(x, y)[0], abs=1e-12)
    assert metrics.spearman(x, y) == pytest.approx(stats.spearmanr(x, y)[0], abs=1e-12)


def test_undefined_scores_are_zero_or_nan():
    assert metrics.matthews_corr(["a", "a"], ["a", "a"]) == 0.0
    assert metrics.binary_f1(["0"], ["0"], "1") == 0.0
    assert math.isnan(metrics.pearson([1.0, 1.0], [1.0, 2.0]))


def test_glue_metrics_report_the_card_number():
    mrpc = metrics.glue_metrics("MRPC", ["1", "1", "0", "0", "1"], ["1", "0", "0", "1", "1"])
    assert set(mrpc) == {"accuracy", "f1", "score"}
    assert mrpc["score"] == pytest.approx(100 * (0.6 + 2 / 3) / 2)
    assert metrics.glue_metrics("CoLA", ["1", "0"], ["1", "0"])["score"] == 100.0
    assert metrics.glue_metrics("STS-B", [1.0, 2.0, 3.0], [1.5, 2.5, 3.5])["score"] == pytest.approx(100.0)
    assert metrics.glue_metrics("sst2", ["1", "0"], ["1", "1"])["score"] == 50.0
    with pytest.raises(ValueError, match="unknown GLUE task 'SST3'"):
        metrics.glue_metrics("SST3", [], [])


@pytest.mark.parametrize(("written", "task"), [("sst2", "SST-2"), ("SST-2", "SST-2"), ("sst-2", "SST-2"),
                                                ("stsb", "STS-B"), ("sts_b", "STS-B"), ("cola", "CoLA"),
                                                ("MRPC", "MRPC"), ("mnli", "MNLI"), ("Rte", "RTE")])
def test_glue_task_names_are_read_in_any_case_with_or_without_hyphens(written, task):
    assert metrics.glue_task_name(written) == task


def test_an_unknown_glue_task_lists_the_tasks():
    with pytest.raises(ValueError, match=r"unknown GLUE task 'wnli'.*'SST-2'"):
        metrics.glue_task_name("wnli")


# --- fill-mask ---------------------------------------------------------------------------------------
def test_top_k_accuracy_and_perplexity():
    ranked = [[5, 3, 9], [1, 2, 3], [7, 8, 4]]
    assert metrics.top_k_accuracy([5, 2, 0], ranked, 1) == pytest.approx(1 / 3)
    assert metrics.top_k_accuracy([5, 2, 0], ranked, 3) == pytest.approx(2 / 3)
    assert metrics.perplexity(2 * math.log(4.0), 2) == pytest.approx(4.0)
    assert metrics.perplexity(0.0, 0) == math.inf
