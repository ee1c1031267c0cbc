"""The last encoder layer computed only at the positions a head reads (inference.selective)."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForMaskedLM, pipeline

from distilkit.inference import runtime, selective
from distilkit.inference.predictor import Predictor

FAMILIES = ["distilbert", "bert", "roberta"]


def batch_with_padding() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    ids = torch.randint(5, 90, (4, 13))
    attention = torch.ones_like(ids)
    attention[1, 9:] = 0
    attention[3, 4:] = 0
    positions = torch.zeros_like(ids, dtype=torch.bool)
    positions[0, 2] = positions[1, 0] = positions[1, 8] = positions[2, 12] = positions[3, 3] = True
    return ids, attention, positions


@pytest.mark.parametrize("family", FAMILIES)
def test_selected_rows_equal_the_full_last_layer_and_the_rest_are_zeros(tiny_model, family):
    model = AutoModelForMaskedLM.from_pretrained(tiny_model("fill-mask", family)).eval()
    ids, attention, positions = batch_with_padding()
    with torch.inference_mode():
        full = model.base_model(input_ids=ids, attention_mask=attention)[0]
        assert selective.select_last_layer(model)
        with selective.only_at(model, positions, attention) as applied:
            part = model.base_model(input_ids=ids, attention_mask=attention)[0]
        after = model.base_model(input_ids=ids, attention_mask=attention)[0]
    assert applied
    torch.testing.assert_close(part[positions], full[positions], rtol=1e-5, atol=1e-5)
    assert torch.count_nonzero(part[~positions]) == 0
    assert torch.equal(after, full)  # outside the block the layer runs in full again


@pytest.mark.parametrize("family", FAMILIES)
def test_bf16_prepacked_selected_rows_stay_within_bf16_rounding(tiny_model, family):
    if not runtime.can_prepack(torch.bfloat16, torch.device("cpu")):
        pytest.skip("this CPU/torch build has no native bf16 oneDNN GEMM")
    model = AutoModelForMaskedLM.from_pretrained(tiny_model("fill-mask", family), dtype=torch.bfloat16).eval()
    runtime.prepack_linears(model)
    runtime.use_bmm_attention(model)
    ids, attention, positions = batch_with_padding()
    with torch.inference_mode():
        full = model.base_model(input_ids=ids, attention_mask=attention)[0].float()
        selective.select_last_layer(model)
        with selective.only_at(model, positions, attention):
            part = model.base_model(input_ids=ids, attention_mask=attention)[0].float()
    assert (part[positions] - full[positions]).abs().max() <= 0.02 * full[positions].abs().max()


def test_the_state_dict_is_unchanged_and_training_runs_the_full_layer(tiny_model):
    model = AutoModelForMaskedLM.from_pretrained(tiny_model("fill-mask", "bert"))
    keys = list(model.state_dict())
    assert selective.select_last_layer(model)
    assert selective.select_last_layer(model)  # a second call does not wrap twice
    assert list(model.state_dict()) == keys
    ids, attention, positions = batch_with_padding()
    model.train()
    with selective.only_at(model, positions, attention):
        hidden = model.base_model(input_ids=ids, attention_mask=attention)[0]
    assert torch.count_nonzero(hidden[~positions]) > 0  # every position computed: gradients are whole


def test_a_selection_for_one_model_leaves_another_model_whole(tiny_model):
    one = AutoModelForMaskedLM.from_pretrained(tiny_model("fill-mask", "distilbert")).eval()
    other = AutoModelForMaskedLM.from_pretrained(tiny_model("fill-mask", "distilbert")).eval()
    selective.select_last_layer(one)
    selective.select_last_layer(other)
    ids, attention, positions = batch_with_padding()
    with torch.inference_mode():
        full = other.base_model(input_ids=ids, attention_mask=attention)[0]
        with selective.only_at(one, positions, attention):
            inside = other.base_model(input_ids=ids, attention_mask=attention)[0]
    assert torch.equal(inside, full)


def test_a_model_of_another_design_is_not_selective_and_runs_in_full():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4))
    assert not selective.select_last_layer(model)
    with selective.only_at(model, torch.ones(1, 4, dtype=torch.bool)) as applied:
        assert not applied


@pytest.mark.parametrize("family", FAMILIES)
def test_fill_mask_and_classification_through_the_predictor_match_the_pipelines(tiny_model, family):
    texts = ["the cat sat on the [MASK] .", "a [MASK] day in the long and quiet town of nowhere"]
    fm = Predictor.from_ref(tiny_model("fill-mask", family), "fill-mask", dtype="float32")
    assert getattr(selective.encoder_layers(fm.model)[-1], "_distilkit_selective", False)
    if family == "roberta":
        texts = [t.replace("[MASK]", fm.tokenizer.mask_token) for t in texts]
    reference = pipeline("fill-mask", model=str(fm.loaded.source), top_k=3)(texts)
    ours = fm.predict(texts, {"top_k": 3})
    for mine, ref in zip(ours, reference, strict=True):
        assert [c["token"] for c in mine] == [c["token"] for c in ref]
        assert [c["score"] for c in mine] == pytest.approx([c["score"] for c in ref], abs=1e-5)
    tc_dir = tiny_model("text-classification", family)
    tc = Predictor.from_ref(tc_dir, "text-classification", dtype="float32")
    assert type(tc.model).__name__ in {"DistilBertForSequenceClassification", "BertForSequenceClassification",
                                       "RobertaForSequenceClassification"}
    sentences = ["a fine film", "the worst two hours of the long year I spent in the cinema"]
    reference = pipeline("text-classification", model=str(tc_dir), top_k=None)(sentences)
    ours = tc.predict(sentences, {"top_k": None})
    for mine, ref in zip(ours, reference, strict=True):
        assert [c["label"] for c in mine] == [c["label"] for c in ref]
        assert [c["score"] for c in mine] == pytest.approx([c["score"] for c in ref], abs=1e-5)
