"""fill-mask pre/post-processing with hand-made probabilities (no model)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_models import make_config, wordpiece_tokenizer

from distilkit.tasks.base import Feature
from distilkit.tasks.fill_mask import Candidates, FillMaskHandler, pick_top_k, top_candidates


@pytest.fixture(scope="module")
def handler() -> FillMaskHandler:
    tok = wordpiece_tokenizer()
    return FillMaskHandler(tok, make_config("distilbert", "fill-mask", vocab_size=len(tok)))


def one_hot_probs(vocab: int, ranking: list[int]) -> np.ndarray:
    """Probabilities where ``ranking`` ids come first, in that order."""
    p = np.full(vocab, 1e-6, dtype=np.float32)
    for rank, token in enumerate(ranking):
        p[token] = 0.5 / (rank + 1)
    return p / p.sum()


def test_top_candidates_orders_by_score_and_caps_k_at_vocab():
    probs = np.array([[0.1, 0.6, 0.3]], dtype=np.float32)
    values, ids = top_candidates(probs, top_k=10, target_ids=None)
    assert ids.tolist() == [[1, 2, 0]]
    assert np.allclose(values, [[0.6, 0.3, 0.1]])


def test_top_candidates_restricted_to_targets_maps_back_to_vocab_ids():
    probs = np.array([[0.5, 0.1, 0.3, 0.1]], dtype=np.float32)
    values, ids = top_candidates(probs, top_k=5, target_ids=np.array([1, 2]))
    assert ids.tolist() == [[2, 1]]
    assert np.allclose(values, [[0.3, 0.1]])


def test_a_pass_picks_each_inputs_top_k_as_decode_would_and_keeps_probabilities_for_targets():
    rng = np.random.default_rng(0)
    probs = torch.from_numpy(rng.random((6, 50), dtype=np.float32)).softmax(-1)
    counts, top_k = [1, 2, 1, 2], [3, 5, None, 3]  # inputs of 1-2 masks; the third has targets
    out = pick_top_k(probs, counts, top_k)
    rows = probs.split(counts)
    for i in (0, 1, 3):
        values, ids = top_candidates(rows[i].numpy(), top_k[i], None)
        assert isinstance(out[i], Candidates)
        assert np.array_equal(out[i].ids, ids) and np.array_equal(out[i].values, values)
    assert np.array_equal(out[2], rows[2].numpy())  # targets: the full row, decode picks among them
    assert pick_top_k(probs[:1], [1], [500])[0].ids.shape == (1, 50)  # k past the vocabulary: all of it


def test_decode_reads_candidates_a_pass_picked_like_probabilities(handler):
    tok = handler.tokenizer
    ids = tok("the [MASK] of France")["input_ids"]
    probs = one_hot_probs(len(tok), [tok.convert_tokens_to_ids("capital"), tok.convert_tokens_to_ids("city")])
    params = handler.check_params({"top_k": 2})
    (picked,) = pick_top_k(torch.from_numpy(probs[None, :]), [1], [2])
    assert handler.decode("", [Feature(0, ids)], [picked], params) == \
        handler.decode("", [Feature(0, ids)], [probs[None, :]], params)


def test_decode_single_mask_fills_the_sequence_without_special_tokens(handler):
    tok = handler.tokenizer
    ids = tok("the [MASK] of France")["input_ids"]
    city = tok.convert_tokens_to_ids("capital")
    probs = one_hot_probs(len(tok), [city, tok.convert_tokens_to_ids("city")])[None, :]
    out = handler.decode("", [Feature(0, ids)], [probs], handler.check_params({"top_k": 2}))
    assert [r["token_str"] for r in out] == ["capital", "city"]
    assert out[0]["sequence"] == "the capital of France"
    assert out[0]["score"] > out[1]["score"] and isinstance(out[0]["score"], float)


def test_decode_several_masks_gives_one_list_per_mask_and_keeps_other_masks(handler):
    tok = handler.tokenizer
    ids = tok("[MASK] is the [MASK]")["input_ids"]
    a, b = tok.convert_tokens_to_ids("Paris"), tok.convert_tokens_to_ids("capital")
    probs = np.stack([one_hot_probs(len(tok), [a]), one_hot_probs(len(tok), [b])])
    out = handler.decode("", [Feature(0, ids)], [probs], handler.check_params({"top_k": 1}))
    assert len(out) == 2 and out[0][0]["token_str"] == "Paris" and out[1][0]["token_str"] == "capital"
    assert out[0][0]["sequence"] == "[CLS] Paris is the [MASK] [SEP]"
    assert out[1][0]["sequence"] == "[CLS] [MASK] is the capital [SEP]"


def test_targets_in_vocab_and_single_token_targets_resolve_to_ids(handler):
    tok = handler.tokenizer
    params = handler.check_params({"targets": ["Paris", "capital"]})
    assert set(params["target_ids"].tolist()) == {tok.convert_tokens_to_ids("Paris"),
                                                  tok.convert_tokens_to_ids("capital")}


def test_multi_token_target_is_an_error_that_names_it(handler):
    with pytest.raises(ValueError, match=r"target 'zzzq' is 4 tokens"):
        handler.check_params({"targets": ["Paris", "zzzq"]})


@pytest.mark.parametrize(
    ("params", "message"),
    [({"top_k": 0}, "top_k must be >= 1, got 0"), ({"top_k": "3"}, "top_k must be an integer"),
     ({"topk": 3}, "unknown parameter 'topk' for fill-mask"), ({"targets": 3}, "targets must be a string")],
)
def test_bad_parameters_are_value_errors_that_say_what_is_expected(handler, params, message):
    with pytest.raises(ValueError, match=message):
        handler.check_params(params)


@pytest.mark.parametrize(
    ("texts", "message"),
    [(["a [MASK]", ""], "input 1: text is empty"),
     (["a [MASK]", "no mask here"], "input 1: it has no mask token; this model's mask token is \\[MASK\\]"),
     (["Paris is the <mask>"], "input 0: it has <mask>, but this model's mask token is \\[MASK\\]"),
     (["a [MASK]", 7], "input 1: expected a string")],
)
def test_bad_inputs_name_the_index_and_the_expected_mask_token(handler, texts, message):
    with pytest.raises(ValueError, match=message):
        handler.check_inputs(texts)


def test_too_long_input_names_its_length_and_the_limit(handler):
    text = "the [MASK] " + "city " * 200
    with pytest.raises(ValueError, match=r"input 0: has \d+ tokens; this model accepts at most 128"):
        handler.encode([text], handler.check_params({}))
