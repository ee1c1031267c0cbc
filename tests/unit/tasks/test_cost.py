"""Cost bounds checked before encoding: masks, candidates, windows, response size; exact window counts."""

from __future__ import annotations

import random

import pytest
from tiny_models import WORDS, make_config, wordpiece_tokenizer

from distilkit.tasks import CostError, CostLimits
from distilkit.tasks.base import show, window_count
from distilkit.tasks.fill_mask import FillMaskHandler
from distilkit.tasks.question_answering import QuestionAnsweringHandler
from distilkit.tasks.token_classification import TokenClassificationHandler


@pytest.fixture(scope="module")
def tokenizer():
    return wordpiece_tokenizer()


@pytest.fixture(scope="module")
def fill_mask(tokenizer) -> FillMaskHandler:
    return FillMaskHandler(tokenizer, make_config("distilbert", "fill-mask", vocab_size=len(tokenizer)))


@pytest.fixture(scope="module")
def qa(tokenizer) -> QuestionAnsweringHandler:
    config = make_config("distilbert", "question-answering", len(tokenizer))
    return QuestionAnsweringHandler(tokenizer, config)


@pytest.fixture(scope="module")
def ner(tokenizer) -> TokenClassificationHandler:
    config = make_config("distilbert", "token-classification", len(tokenizer))
    return TokenClassificationHandler(tokenizer, config)


def check(handler, items, params, **limits) -> None:
    handler.check_cost(handler.check_inputs(items), handler.check_params(params), CostLimits(**limits))


def test_top_k_past_the_vocabulary_is_refused_naming_the_largest_value(fill_mask):
    vocab = fill_mask.vocab_size
    assert fill_mask.check_params({"top_k": vocab})["top_k"] == vocab
    expected = f"top_k must be at most {vocab} \\(the vocabulary size\\), got {vocab + 1}"
    with pytest.raises(ValueError, match=expected):
        fill_mask.check_params({"top_k": vocab + 1})


def test_top_k_past_the_targets_is_cut_to_them_like_the_reference(fill_mask):
    params = fill_mask.check_params({"top_k": 10**6, "targets": ["the", "of"]})
    assert params["top_k"] == 10**6 and len(params["target_ids"]) == 2


def test_masks_per_input_are_bounded(fill_mask):
    check(fill_mask, ["a [MASK] " * 3], {}, max_masks=3)
    with pytest.raises(CostError, match="input 1 has 4 \\[MASK\\] tokens; at most 3") as err:
        check(fill_mask, ["a [MASK]", "a [MASK] " * 4], {}, max_masks=3)
    assert err.value.limit == "max_masks"


def test_top_k_times_masks_is_bounded_and_targets_cap_the_count(fill_mask):
    with pytest.raises(CostError, match="asks for 60 candidates \\(top_k 20 x 3 masks\\)") as err:
        check(fill_mask, ["[MASK] [MASK] [MASK]"], {"top_k": 20}, max_candidates=50)
    assert err.value.limit == "max_candidates"
    check(fill_mask, ["[MASK] [MASK] [MASK]"], {"top_k": 20, "targets": ["the", "of"]}, max_candidates=50)


def test_the_response_size_is_estimated_from_candidates_times_text(fill_mask):
    text = "the [MASK] " + "city " * 200  # every candidate repeats these ~1 KB
    check(fill_mask, [text], {"top_k": 5}, max_response_bytes=10_000)
    with pytest.raises(CostError, match="the response would be about") as err:
        check(fill_mask, [text] * 3, {"top_k": 5}, max_response_bytes=10_000)
    assert err.value.limit == "max_response_bytes"


def test_features_per_request_are_bounded(fill_mask):
    check(fill_mask, ["a [MASK]"] * 4, {}, max_features=4)
    with pytest.raises(CostError, match="needs 5 model rows") as err:
        check(fill_mask, ["a [MASK]"] * 5, {}, max_features=4)
    assert err.value.limit == "max_features"


def test_qa_top_k_is_bounded_by_the_candidates(qa):
    with pytest.raises(CostError, match="top_k 300") as err:
        check(qa, [{"question": "Who?", "context": "Ann."}], {"top_k": 300}, max_candidates=200)
    assert err.value.limit == "max_candidates"


def test_a_qa_stride_that_advances_one_token_is_refused_before_windowing(qa):
    context = " ".join(WORDS * 20)  # ~2,000 tokens
    item = {"question": "Who?", "context": context}
    check(qa, [item], {"max_seq_len": 64}, max_features=300)  # default stride: ~70 windows
    with pytest.raises(CostError, match="model rows \\(context windows") as err:
        check(qa, [item], {"max_seq_len": 64, "doc_stride": 56}, max_features=300)  # advances 1-2 tokens
    assert err.value.limit == "max_features"


def rand_text(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def test_qa_window_count_equals_the_features_encode_makes(qa):
    rng = random.Random(0)
    for _ in range(30):
        items = qa.check_inputs([{"question": rand_text(rng, rng.randint(1, 6)),
                                  "context": rand_text(rng, rng.randint(1, 300))}
                                 for _ in range(rng.randint(1, 3))])
        params = qa.check_params({"max_seq_len": rng.randint(24, 128)})
        params = qa.check_params({"max_seq_len": params["max_seq_len"], "doc_stride": rng.randint(0, 12)})
        try:
            features = qa.encode(items, params)
        except ValueError:  # a question that leaves no room: refused by encode, not counted
            continue
        assert qa.count_features(items, params) == len(features)
        assert qa.count_features(items, params, enough=10**9) >= len(features)  # the cheap bound


def test_token_classification_windows_with_stride_are_counted(ner):
    rng = random.Random(1)
    texts = [rand_text(rng, rng.randint(1, 400)) for _ in range(5)]
    params = ner.check_params({"aggregation_strategy": "simple", "stride": 16})
    assert ner.count_features(texts, params) == len(ner.encode(texts, params))
    no_stride = ner.check_params({})
    assert ner.count_features(texts, no_stride) == len(texts)


@pytest.mark.parametrize(("length", "room", "stride", "windows"), [
    (10, 10, 0, 1), (11, 10, 0, 2), (30, 10, 5, 5), (12, 10, 9, 3), (100, 10, 10, 1)])
def test_window_count_follows_the_tokenizers_overflow_rule(length, room, stride, windows):
    assert window_count(length, room, stride) == windows


def test_error_messages_show_user_values_bounded():
    deep: list = []
    for _ in range(5000):
        deep = [deep]
    assert len(show(deep)) < 100 and len(show("x" * 10**6)) < 100
