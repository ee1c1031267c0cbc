"""Evaluation through the Predictor on tiny models: predictions are the Predictor's, scores the metrics'."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
import torch

from distilkit.evaluation import evaluate as ev
from distilkit.evaluation import metrics
from distilkit.inference.predictor import Predictor

NER_LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


@pytest.fixture(scope="module")
def qa(tiny_model):
    return Predictor.from_ref(tiny_model("question-answering"), dtype="float32")


# --- pure helpers --------------------------------------------------------------------------------
def test_word_spans_and_token_level_tags_take_the_first_sub_token():
    text, spans = ev.word_spans(["John", "lives", "in", "New", "York"])
    assert text == "John lives in New York" and spans[3] == (14, 17)
    entities = [
        {"entity": "B-PER", "start": 0, "end": 2},  # "Jo": first sub-token of John
        {"entity": "I-LOC", "start": 2, "end": 4},  # "hn": a later sub-token, ignored
        {"entity": "B-LOC", "start": 14, "end": 17},
        {"entity": "I-LOC", "start": 18, "end": 22},
    ]
    assert ev.word_tags(entities, spans) == ["B-PER", "O", "O", "B-LOC", "I-LOC"]


def test_grouped_entities_become_b_then_i_tags():
    _, spans = ev.word_spans(["John", "lives", "in", "New", "York"])
    groups = [{"entity_group": "LOC", "start": 14, "end": 22}, {"entity_group": "PER", "start": 0, "end": 4}]
    assert ev.word_tags(groups, spans) == ["B-PER", "O", "O", "B-LOC", "I-LOC"]


def test_label_mapping_by_name_then_by_index():
    assert ev.label_mapping(["Joy", "sadness"], ["joy", "sadness"]) == {"Joy": "joy", "sadness": "sadness"}
    assert ev.label_mapping(["LABEL_0", "LABEL_1"], ["0", "1"]) == {"LABEL_0": "0", "LABEL_1": "1"}
    nli = ev.label_mapping(["LABEL_0", "LABEL_1"], ["entailment", "not_entailment"])
    assert nli["LABEL_1"] == "not_entailment"
    # integer data labels are label ids, whatever the model calls them (GLUE 0/1 files)
    assert ev.label_mapping(["negative", "positive"], ["0", "1"]) == {"negative": "0", "positive": "1"}
    with pytest.raises(ValueError, match=r"the model's labels \['pos', 'neg'\] do not match"):
        ev.label_mapping(["pos", "neg"], ["0", "2"])
    with pytest.raises(ValueError, match=r"the model's labels \['pos', 'neg'\] do not match"):
        ev.label_mapping(["pos", "neg"], ["good", "bad"])


# --- question answering --------------------------------------------------------------------------
def write_squad(path, with_impossible: bool) -> None:
    contexts = ["My name is John and I live in Seattle.", "Paris is the capital of France. It is a city."]
    qas = [
        {"id": "q1", "question": "What is my name?", "answers": [{"text": "John", "answer_start": 11}]},
        {"id": "q2", "question": "Where do I live?", "answers": [{"text": "Seattle", "answer_start": 30}]},
    ]
    qas2 = [{"id": "q3", "question": "What is the capital of France?",
             "answers": [{"text": "Paris", "answer_start": 0}]}]
    if with_impossible:
        qas2.append({"id": "q4", "question": "Who won the game?", "answers": [], "is_impossible": True})
    doc = {"version": "v2.0" if with_impossible else "1.1", "data": [{"title": "t", "paragraphs": [
        {"context": contexts[0], "qas": qas}, {"context": contexts[1], "qas": qas2}]}]}
    path.write_text(json.dumps(doc))


def test_squad_v1_predictions_are_the_predictors(qa, tmp_path):
    path = tmp_path / "squad.json"
    write_squad(path, with_impossible=False)
    seen = []
    result = ev.evaluate(qa, path, progress=lambda n, total: seen.append((n, total)))
    contexts = ["My name is John and I live in Seattle."] * 2
    contexts.append("Paris is the capital of France. It is a city.")
    items = [{"question": r["question"], "context": c}
             for r, c in zip(result.predictions, contexts, strict=True)]
    direct = qa.predict(items)
    assert [r["prediction"] for r in result.predictions] == [d["answer"] for d in direct]
    golds = {r["id"]: r["gold"] for r in result.predictions}
    expected = metrics.squad_v1(golds, {r["id"]: r["prediction"] for r in result.predictions})
    assert result.metrics == {"squad_version": "1.1", **expected}
    assert result.examples == 3 and seen == [(3, 3)]
    assert ev.evaluate(qa, path, limit=1).examples == 1


def test_squad_v2_uses_the_empty_answer_and_its_score(qa, tmp_path):
    path = tmp_path / "squad2.json"
    write_squad(path, with_impossible=True)
    result = ev.evaluate(qa, path)
    assert {"HasAns_exact", "NoAns_exact", "best_exact", "best_f1_thresh"} <= set(result.metrics)
    context = "Paris is the capital of France. It is a city."
    ranked = qa.predict([{"question": "Who won the game?", "context": context}],
                        {"handle_impossible_answer": True, "top_k": ev.NA_TOP_K})[0]
    null = next((a["score"] for a in ranked if a["answer"] == ""), 0.0)
    assert result.predictions[3]["na_prob"] == pytest.approx(null)
    item = {"question": "Who won the game?", "context": context}
    best = qa.predict([item], {"handle_impossible_answer": True})[0]
    assert result.predictions[3]["prediction"] == best["answer"]


# --- token classification ------------------------------------------------------------------------
def test_ner_scores_the_predictors_entities(tiny_model, tmp_path):
    predictor = Predictor.from_ref(tiny_model("token-classification", id2label=NER_LABELS), dtype="float32")
    path = tmp_path / "ner.txt"
    path.write_text("-DOCSTART- O\n\nJohn B-PER\nlives O\nin O\nLondon B-LOC\n\nParis B-LOC\nFrance B-LOC\n")
    result = ev.evaluate(predictor, path)
    sentences = ["John lives in London", "Paris France"]
    _, spans = ev.word_spans(sentences[0].split())
    direct = predictor.predict(sentences, {"aggregation_strategy": "none"})
    assert result.predictions[0]["predicted"] == ev.word_tags(direct[0], spans)
    gold = [r["gold"] for r in result.predictions]
    assert result.metrics == metrics.entity_scores(gold, [r["predicted"] for r in result.predictions])
    assert all(len(r["predicted"]) == len(r["words"]) for r in result.predictions)


# --- text classification -------------------------------------------------------------------------
def test_classification_maps_labels_and_scores(tiny_model, tmp_path):
    model = tiny_model("text-classification", id2label=["sadness", "joy"])
    predictor = Predictor.from_ref(model, dtype="float32")
    path = tmp_path / "emotion.txt"
    rng = random.Random(0)
    words = ["good", "great", "new", "first"] * 3
    path.write_text("".join(f"the {w} day;{rng.choice(['joy', 'sadness'])}\n" for w in words))
    result = ev.evaluate(predictor, path)
    gold = [r["gold"] for r in result.predictions]
    pred = [r["predicted"] for r in result.predictions]
    assert pred == [d["label"] for d in predictor.predict([r["text"] for r in result.predictions])]
    assert result.metrics == metrics.classification_metrics(gold, pred, positive="sadness")


def test_glue_regression_needs_a_one_output_model(tiny_model, tmp_path):
    path = tmp_path / "STS-B_dev.tsv"
    path.write_text("".join(f"{i}\tg\tf\t2012\t{i}\tn\tn\tthe {w} city\ta {w} city\t{i % 5}.0\n"
                            for i, w in enumerate(["good", "new", "great", "first", "old"])))
    regressor = Predictor.from_ref(tiny_model("text-classification", num_labels=1), dtype="float32")
    result = ev.evaluate(regressor, path, glue_task="STS-B")
    assert set(result.metrics) == {"pearson", "spearman", "score"}
    classifier = Predictor.from_ref(tiny_model("text-classification", num_labels=2), dtype="float32")
    with pytest.raises(ValueError, match="STS-B needs a regression model"):
        ev.evaluate(classifier, path, glue_task="STS-B")


# --- fill-mask -------------------------------------------------------------------------------------
def test_mask_one_word_masks_a_single_token_word(tiny_model):
    predictor = Predictor.from_ref(tiny_model("fill-mask"), dtype="float32")
    text, gold = ev.mask_one_word(predictor.tokenizer, "Paris is the capital of France.", random.Random(0))
    assert text.count("[MASK]") == 1
    word = predictor.tokenizer.convert_ids_to_tokens(gold)
    assert text.replace("[MASK]", word) == "Paris is the capital of France."
    assert ev.mask_one_word(predictor.tokenizer, "12 34 !!", random.Random(0)) is None


def test_fill_mask_accuracy_and_perplexity_by_hand(tiny_model, tmp_path):
    predictor = Predictor.from_ref(tiny_model("fill-mask"), dtype="float32")
    lines = ["= Heading =", "Paris is the capital of France . John lives in Seattle with his band .",
             "The team won the game and the season was good . Berlin is a city in Germany ."]
    path = tmp_path / "text.txt"
    path.write_text("\n".join(lines) + "\n")
    result = ev.evaluate(predictor, path, top_k=3)
    m = result.metrics
    assert m["masked_sentences"] == 4 and 0.0 <= m["top1_accuracy"] <= m["top3_accuracy"] <= 1.0
    # Masked-LM by hand: the same blocks, the model's logits, log-softmax at the masks.
    features, golds = ev.mlm_features(predictor.tokenizer, lines, limit=None, seed=0)
    nll, correct, count = 0.0, 0, 0
    with torch.inference_mode():
        for feature, gold in zip(features, golds, strict=True):
            ids = torch.tensor([feature.input_ids])
            logits = predictor.model(input_ids=ids).logits[0]  # (T, V)
            at_masks = logits[ids[0] == predictor.tokenizer.mask_token_id].log_softmax(-1)  # (M, V)
            nll -= float(at_masks[torch.arange(len(gold)), torch.tensor(gold)].sum())
            correct += int((at_masks.argmax(-1) == torch.tensor(gold)).sum())
            count += len(gold)
    assert m["mlm_masked_tokens"] == count == sum(max(1, round(0.15 * n)) for n in
                                                  [len(f.input_ids) - 2 for f in features])
    assert m["perplexity"] == pytest.approx(math.exp(nll / count), rel=1e-4)
    assert m["mlm_accuracy"] == correct / count


def test_limit_must_be_positive(qa, tmp_path):
    with pytest.raises(ValueError, match="--limit must be >= 1, got 0"):
        ev.evaluate(qa, tmp_path / "x.json", limit=0)


def test_mlm_blocks_mask_fifteen_percent():
    class Tok:
        mask_token_id = 99

        def __call__(self, lines, add_special_tokens):
            if lines == "":
                return {"input_ids": [101, 102]}
            return {"input_ids": [list(range(1000, 1200))]}

    features, golds = ev.mlm_features(Tok(), ["x"], limit=None, seed=0)
    assert [len(f.input_ids) for f in features] == [128, 76]
    assert [len(g) for g in golds] == [19, 11]  # round(0.15 * 126), round(0.15 * 74)
    block = np.array(features[0].input_ids[1:-1])
    assert (block == 99).sum() == 19 and set(golds[0]) <= set(range(1000, 1126))
