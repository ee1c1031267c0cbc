"""text-classification scoring, ranking, inputs and call shapes on hand-made logits (no model)."""

from __future__ import annotations

import numpy as np
import pytest
from tiny_models import make_config, wordpiece_tokenizer
from transformers import BertTokenizer

from distilkit.tasks.text_classification import (
    LEGACY_TOP_K,
    TextClassificationHandler,
    apply_function,
    default_function,
    normalize_item,
    rank_labels,
)

LABELS = ["neg", "neu", "pos"]
LOGITS = np.array([1.0, 3.0, 2.0], dtype=np.float32)


def make_handler(tokenizer=None, family="distilbert", **config):
    tokenizer = tokenizer or wordpiece_tokenizer()
    config = {"id2label": LABELS, **config}
    return TextClassificationHandler(
        tokenizer, make_config(family, "text-classification", len(tokenizer), **config)
    )


@pytest.fixture(scope="module")
def handler():
    return make_handler()


# --- scores and ranking --------------------------------------------------------------------------
def test_softmax_sigmoid_and_none_give_the_expected_scores():
    e = np.exp([1.0, 3.0, 2.0])
    np.testing.assert_allclose(apply_function(LOGITS, "softmax"), e / e.sum(), rtol=1e-6)
    np.testing.assert_allclose(apply_function(LOGITS, "sigmoid"), 1 / (1 + np.exp(-LOGITS)), rtol=1e-6)
    np.testing.assert_array_equal(apply_function(LOGITS, "none"), LOGITS)
    assert apply_function(LOGITS, "softmax").dtype == np.float32


@pytest.mark.parametrize("num_labels, problem_type, expected", [
    (3, None, "softmax"), (1, None, "sigmoid"), (3, "multi_label_classification", "sigmoid"),
    (1, "regression", "none"), (2, "single_label_classification", "softmax"),
])
def test_default_function_follows_problem_type_and_label_count(num_labels, problem_type, expected):
    config = make_config("bert", "text-classification", 10, num_labels=num_labels)
    config.problem_type = problem_type
    assert default_function(config) == expected


def test_legacy_ranking_gives_only_the_best_label_as_a_dict():
    assert rank_labels(np.array([0.2, 0.5, 0.3]), LABELS, LEGACY_TOP_K) == {"label": "neu", "score": 0.5}


def test_top_k_ranking_sorts_by_score_and_cuts_at_k():
    scores = np.array([0.2, 0.5, 0.3])
    assert [r["label"] for r in rank_labels(scores, LABELS, 2)] == ["neu", "pos"]
    assert [r["label"] for r in rank_labels(scores, LABELS, None)] == ["neu", "pos", "neg"]
    assert len(rank_labels(scores, LABELS, 10)) == 3


def test_top_k_ranking_keeps_label_order_between_equal_scores():
    assert [r["label"] for r in rank_labels(np.array([0.4, 0.2, 0.4]), LABELS, None)] == ["neg", "pos", "neu"]


def test_scores_are_python_floats():
    result = rank_labels(np.array([0.2, 0.5, 0.3], dtype=np.float32), LABELS, None)
    assert all(type(r["score"]) is float for r in result)


# --- inputs --------------------------------------------------------------------------------------
def test_inputs_accept_text_dict_pair_and_nested_list_pair():
    assert normalize_item(0, "hi") == ("hi", None)
    assert normalize_item(0, {"text": "a", "text_pair": "b"}) == ("a", "b")
    assert normalize_item(0, {"text": "a"}) == ("a", None)
    assert normalize_item(0, [["a", "b"]]) == ("a", "b")


@pytest.mark.parametrize("item, message", [
    ("", "text is empty"),
    (3, "expected a string or a text pair, got int"),
    (["a", "b"], "a list is not a text"),
    ({"text": "a", "pair": "b"}, "unexpected key 'pair'"),
    ({"text_pair": "b"}, "missing key 'text'"),
    ({"text": "a", "text_pair": " "}, "text_pair is empty"),
])
def test_bad_inputs_are_refused_by_index_with_a_hint(handler, item, message):
    with pytest.raises(ValueError, match=f"^input 1: .*{message}"):
        handler.check_inputs(["fine", item])


# --- parameters ----------------------------------------------------------------------------------
@pytest.mark.parametrize("params, message", [
    ({"top_k": 0}, "top_k must be >= 1"),
    ({"top_k": "3"}, "top_k must be an integer"),
    ({"function_to_apply": "relu"}, "function_to_apply must be one of"),
    ({"truncation": "only_second"}, "truncation must be"),
    ({"aggregation_strategy": "simple"}, "unknown parameter 'aggregation_strategy'"),
])
def test_bad_parameters_are_refused_with_a_clear_message(handler, params, message):
    with pytest.raises(ValueError, match=message):
        handler.check_params(params)


def test_parameters_resolve_the_default_function_and_accept_any_case(handler):
    assert handler.check_params({})["function_to_apply"] == "softmax"
    assert handler.check_params({"function_to_apply": "SIGMOID"})["function_to_apply"] == "sigmoid"
    assert make_handler(num_labels=1, id2label=None).check_params({})["function_to_apply"] == "sigmoid"
    assert handler.check_params({"top_k": None})["top_k"] is None
    assert handler.check_params({})["top_k"] == LEGACY_TOP_K


# --- encode / decode -----------------------------------------------------------------------------
def test_pairs_get_segment_ids_when_the_tokenizer_returns_them_like_bert():
    base = wordpiece_tokenizer()
    bert = BertTokenizer(vocab=base.get_vocab(), do_lower_case=False, model_max_length=128)
    items = make_handler(bert, "bert").check_inputs(["the day", {"text": "the day", "text_pair": "good"}])
    single, pair = make_handler(bert, "bert").encode(items, make_handler(bert, "bert").check_params({}))
    assert pair.input_ids[: len(single)] == single.input_ids  # [CLS] the day [SEP] ...
    assert pair.token_type_ids == [0] * len(single) + [1, 1]  # ... good [SEP]
    assert single.token_type_ids == [0] * len(single)


def test_pairs_get_no_segment_ids_from_a_distilbert_tokenizer(handler):
    items = handler.check_inputs([{"text": "a", "text_pair": "b"}])
    (feature,) = handler.encode(items, handler.check_params({}))
    assert feature.token_type_ids is None
    assert feature.input_ids.count(handler.tokenizer.sep_token_id) == 2


def test_encode_of_no_items_gives_no_features(handler):
    assert handler.encode([], handler.check_params({})) == []


def test_encode_keeps_item_order_when_singles_and_pairs_mix(handler):
    items = handler.check_inputs(["a", {"text": "b", "text_pair": "c"}, "d"])
    features = handler.encode(items, handler.check_params({}))
    assert [f.item for f in features] == [0, 1, 2]
    assert [len(f) for f in features] == [3, 5, 3]


def test_too_long_input_is_refused_unless_truncation_is_asked_for(handler):
    items = handler.check_inputs(["a", "a " * 300])
    with pytest.raises(ValueError, match="^input 1: has 302 tokens; this model accepts at most 128"):
        handler.encode(items, handler.check_params({}))
    features = handler.encode(items, handler.check_params({"truncation": True}))
    assert len(features[1]) == 128


def test_decode_applies_the_function_then_ranks(handler):
    (feature,) = handler.encode(handler.check_inputs(["a"]), handler.check_params({}))
    softmax = handler.decode(("a", None), [feature], [LOGITS], handler.check_params({}))
    assert softmax["label"] == "neu"
    assert softmax["score"] == pytest.approx(np.exp(3) / np.exp([1, 2, 3]).sum())
    raw = handler.decode(("a", None), [feature], [LOGITS], handler.check_params({"function_to_apply": "none",
                                                                                  "top_k": 2}))
    assert raw == [{"label": "neu", "score": 3.0}, {"label": "pos", "score": 2.0}]


# --- call shapes ---------------------------------------------------------------------------------
def test_call_shapes_follow_the_pipeline(handler):
    def shape(*args, **kwargs):
        items, params, shape = handler.split_call(args, kwargs)
        return handler.join_call([f"r{i}" for i in range(len(items))], shape, params)

    assert shape("text") == ["r0"]  # a bare string without top_k comes back in a list
    assert shape("text", top_k=1) == "r0"
    assert shape({"text": "a", "text_pair": "b"}) == "r0"
    assert shape(["a"]) == ["r0"]
    assert shape(["a", "b"], top_k=None) == ["r0", "r1"]
