"""The Predictor on tiny models: its three stages, order across length-grouped batches, QA windows, errors."""

from __future__ import annotations

import pytest
import torch

from distilkit.errors import UserError
from distilkit.inference.predictor import Predictor
from distilkit.models import load_model

TEXTS = ["a [MASK]", "the capital of France is a [MASK] city and a good one", "[MASK] day",
         "my name is John and I live in [MASK]", "[MASK]"]
CONTEXT = " ".join(["the river in Paris was good and the team played music."] * 6) + " My name is John."


@pytest.fixture(scope="module")
def fill_mask(tiny_model):
    return load_model(tiny_model("fill-mask"))


@pytest.fixture(scope="module")
def qa(tiny_model):
    return load_model(tiny_model("question-answering"))


def test_prepare_encodes_without_the_model_and_finish_decodes_in_item_order(fill_mask):
    predictor = Predictor(fill_mask)
    calls = []
    predictor.model.base_model.register_forward_pre_hook(lambda *a: calls.append(1))  # the encoder runs
    prepared = predictor.prepare(TEXTS, {"top_k": 2})
    assert not calls and prepared.params["top_k"] == 2
    assert [f.item for f in prepared.features] == list(range(len(TEXTS)))  # one feature per item, in order
    outputs = predictor.run(prepared.features)
    assert calls and len(outputs) == len(prepared.features)
    results = predictor.finish(prepared, outputs)
    assert len(results) == len(TEXTS) and all(len(r) == 2 for r in results)  # top_k=2, one mask each
    assert results == predictor.predict(TEXTS, {"top_k": 2})


def test_results_keep_input_order_whatever_the_batches(fill_mask):
    """Length grouping reorders rows inside ``run``; every output still lands at its feature's place."""
    one_by_one = [Predictor(fill_mask).predict([text], {"top_k": 3})[0] for text in TEXTS]
    for budget in ({"max_batch_size": 1}, {"max_batch_size": 2}, {"max_batch_tokens": 24}, {}):
        got = Predictor(fill_mask, **budget).predict(TEXTS, {"top_k": 3})
        assert [[c["token"] for c in r] for r in got] == [[c["token"] for c in r] for r in one_by_one], budget
        for a, b in zip(got, one_by_one, strict=True):
            assert [c["score"] for c in a] == pytest.approx([c["score"] for c in b], abs=1e-5)


def test_run_returns_one_output_per_feature_at_its_length(fill_mask):
    predictor = Predictor(fill_mask, max_batch_size=2)
    prepared = predictor.prepare(TEXTS)
    outputs = predictor.run(prepared.features)
    masks = [f.input_ids.count(predictor.handler.mask_id) for f in prepared.features]
    assert [len(o.ids) for o in outputs] == masks  # fill-mask: one row of top-k candidates per mask


def test_cpu_batches_pad_to_their_longest_row_and_an_explicit_multiple_rounds_up(fill_mask):
    widths = []
    hook = fill_mask.model.base_model.register_forward_pre_hook(
        lambda module, args, kwargs: widths.append(kwargs["input_ids"].shape[1]), with_kwargs=True)
    try:
        for multiple in (None, 8):
            predictor = Predictor(fill_mask, pad_to_multiple_of=multiple)
            features = predictor.prepare(TEXTS[:2]).features
            longest = max(len(f.input_ids) for f in features)
            widths.clear()
            predictor.run_batch(features)
            assert widths == [longest if multiple is None else -(-longest // 8) * 8], multiple
            assert longest % 8  # the texts are chosen so that rounding changes the width
    finally:
        hook.remove()


def test_a_long_context_becomes_windows_that_finish_joins_into_one_answer_per_item(qa):
    predictor = Predictor(qa, max_batch_size=2)
    items = [{"question": "What is my name?", "context": CONTEXT},
             {"question": "Where?", "context": "My name is John and I live in Seattle."}]
    params = {"max_seq_len": 32, "doc_stride": 8}
    prepared = predictor.prepare(items, params)
    per_item = [sum(f.item == i for f in prepared.features) for i in range(2)]
    assert per_item[0] > 1 and per_item[1] == 1  # the long context is split into windows
    assert [f.item for f in prepared.features] == sorted(f.item for f in prepared.features)
    answers = predictor.finish(prepared, predictor.run(prepared.features))
    assert len(answers) == 2
    for item, answer in zip(items, answers, strict=True):
        assert answer["answer"] == item["context"][answer["start"]:answer["end"]]
    alone = Predictor(qa).predict(items[:1], params)[0]
    assert alone["answer"] == answers[0]["answer"] and alone["score"] == pytest.approx(
        answers[0]["score"], abs=1e-5
    )


def test_bad_params_and_inputs_are_user_errors_naming_them(fill_mask):
    predictor = Predictor(fill_mask)
    with pytest.raises(UserError, match="unknown parameter 'topk'"):
        predictor.predict(["a [MASK]"], {"topk": 2})
    with pytest.raises(UserError, match="top_k must be >= 1, got 0"):
        predictor.prepare(["a [MASK]"], {"top_k": 0})
    with pytest.raises(UserError, match="input 1: text is empty"):
        predictor.prepare(["a [MASK]", " "])
    with pytest.raises(UserError, match="input 0: it has no mask token"):
        predictor.predict(["no mask here"])


def test_batching_limits_must_be_positive(fill_mask):
    for bad in ({"max_batch_tokens": 0}, {"max_batch_size": 0}, {"pad_to_multiple_of": 0}):
        with pytest.raises(ValueError, match="must be >= 1"):
            Predictor(fill_mask, **bad)


def test_from_ref_applies_the_precision_policy(tiny_model):
    predictor = Predictor.from_ref(tiny_model("fill-mask"), dtype="float32", device="cpu")
    assert (
        predictor.dtype == torch.float32 and predictor.device.type == "cpu" and predictor.task == "fill-mask"
    )
