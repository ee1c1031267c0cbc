"""fill-mask parity: distilkit vs the installed transformers pipeline on identical fp32 weights."""

from __future__ import annotations

import pytest
import transformers

import distilkit

TOL = 1e-4


def assert_same(ours, ref):
    """Same tokens/sequences in the same order, scores within TOL (recursing through lists)."""
    if isinstance(ref, list):
        assert isinstance(ours, list) and len(ours) == len(ref)
        for a, b in zip(ours, ref):
            assert_same(a, b)
        return
    keys = ("token", "token_str", "sequence")
    assert {k: ours[k] for k in keys} == {k: ref[k] for k in keys}
    assert abs(ours["score"] - ref["score"]) < TOL


def texts_for(mask: str) -> list[str]:
    return [
        f"the capital of France is {mask} .",
        f"{mask} was the name of his company in London",
        f"they played music in Berlin and {mask} won the first game of the season",
        f"{mask} and {mask} live in Seattle",
        f"a {mask}",
    ]


@pytest.fixture(scope="module", params=["distilbert", "bert", "roberta"])
def pair(request, tiny_model):
    ours = distilkit.pipeline("fill-mask", model=tiny_model("fill-mask", request.param), dtype="float32")
    ref = transformers.pipeline("fill-mask", model=ours.model, tokenizer=ours.tokenizer)
    return ours, ref


def single_token_targets(tokenizer, words: list[str]) -> list[str]:
    """The words (or, for byte-level BPE, " word") that are one token of this vocabulary."""
    out = []
    for word in words:
        for form in (word, " " + word):
            if len(tokenizer(form, add_special_tokens=False)["input_ids"]) == 1:
                out.append(form)
                break
    return out


@pytest.mark.parametrize("kwargs", [{}, {"top_k": 1}, {"top_k": 12}, {"targets": ["the", "London", "game"]},
                                    {"targets": ["Paris"], "top_k": 3}])
def test_list_input_matches_the_pipeline_for_every_parameter(pair, kwargs):
    ours, ref = pair
    mask = ours.tokenizer.mask_token
    if "targets" in kwargs:
        kwargs = {**kwargs, "targets": single_token_targets(ours.tokenizer, kwargs["targets"])}
        assert kwargs["targets"], "the tiny vocabularies hold these words"
    assert_same(ours(texts_for(mask), **kwargs), ref(texts_for(mask), **kwargs))


def test_single_string_and_one_element_list_have_the_pipeline_shapes(pair):
    ours, ref = pair
    text = texts_for(ours.tokenizer.mask_token)[0]
    assert_same(ours(text), ref(text))
    assert_same(ours([text]), ref([text]))
    multi = texts_for(ours.tokenizer.mask_token)[3]
    assert_same(ours(multi, top_k=2), ref(multi, top_k=2))


def test_default_params_given_at_construction_apply_to_calls(tiny_model):
    ours = distilkit.pipeline("fill-mask", model=tiny_model("fill-mask"), dtype="float32", top_k=2)
    assert len(ours("a [MASK]")) == 2
    assert len(ours("a [MASK]", top_k=4)) == 4


@pytest.mark.shared
@pytest.mark.parametrize("name", ["distilbert-base-cased", "distilroberta-base"])
def test_real_shape_models_match_the_pipeline_on_wikitext(shared_dir, name):
    ours = distilkit.pipeline("fill-mask", model=shared_dir / "models" / name, dummy_weights=True,
                              dtype="float32")
    ref = transformers.pipeline("fill-mask", model=ours.model, tokenizer=ours.tokenizer)
    lines = [l.strip() for l in (shared_dir / "data/wikitext-2/test.txt").read_text().splitlines()
             if 20 < len(l.split()) < 90 and not l.strip().startswith("=")][:12]
    mask = ours.tokenizer.mask_token
    texts = [" ".join(w if i != 5 else mask for i, w in enumerate(l.split())) for l in lines]
    texts.append(f"Paris is the {mask} of France and {mask} is its river .")
    assert_same(ours(texts, top_k=3), ref(texts, top_k=3))


def test_one_pass_of_requests_with_different_top_k_and_targets_answers_each_as_the_pipeline(pair):
    """A server's pass mixes requests: each keeps its own top_k (the pass picks the candidates per
    distinct k) or its targets (picked among them at decode)."""
    ours, ref = pair
    mask, predictor = ours.tokenizer.mask_token, ours.predictor
    texts = texts_for(mask)
    targets = single_token_targets(ours.tokenizer, ["the", "London", "game"])
    asks = [({"top_k": 1}, texts[0]), ({"top_k": 7}, texts[1]), ({"targets": targets}, texts[2]),
            ({"top_k": 7}, texts[3]), ({}, texts[4])]
    prepared = [predictor.prepare([text], params) for params, text in asks]
    outputs = predictor.run_batch([f for p in prepared for f in p.features])  # one pass for all
    start = 0
    for (params, text), p in zip(asks, prepared, strict=True):
        mine = outputs[start:start + len(p.features)]
        start += len(p.features)
        assert_same(predictor.finish(p, mine)[0], ref(text, **params))
