"""The last encoder layer computed only at the positions a head reads (inference.selective)."""

from __future__ import annotations

import numpy
import pytest
import torch
from transformers import AutoModelForMaskedLM, pipeline

from distilkit.inference import runtime, selective
from distilkit.inference.packing import SEQUENCE_STEP, packed_rows
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


def bf16_engine_model(path) -> torch.nn.Module:
    """The masked LM in bf16 with the CPU engine's kernels (prepacked GEMMs, two-GEMM attention)."""
    if not runtime.can_prepack(torch.bfloat16, torch.device("cpu")):
        pytest.skip("this CPU/torch build has no native bf16 oneDNN GEMM")
    model = AutoModelForMaskedLM.from_pretrained(path, dtype=torch.bfloat16).eval()
    runtime.prepack_linears(model)
    runtime.use_bmm_attention(model)
    return model


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
    model = bf16_engine_model(tiny_model("fill-mask", family))
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


# --- the encoder on real tokens only (skip_padding / real_tokens) ---------------------------------

@pytest.mark.parametrize("family", FAMILIES)
def test_real_tokens_give_the_padded_models_hidden_states_and_zeros_at_padding(tiny_model, family):
    model = AutoModelForMaskedLM.from_pretrained(tiny_model("fill-mask", family)).eval()
    ids, attention, positions = batch_with_padding()
    real = attention.bool()
    with torch.inference_mode():
        full = model.base_model(input_ids=ids, attention_mask=attention)[0]
        assert selective.skip_padding(model)
        with selective.real_tokens(model, attention) as applied:
            tokens = model.base_model(input_ids=ids, attention_mask=attention)[0]
        selective.select_last_layer(model)  # wrapped after skip_padding: either order works
        with selective.real_tokens(model, attention), selective.only_at(model, positions, attention):
            both = model.base_model(input_ids=ids, attention_mask=attention)[0]
        after = model.base_model(input_ids=ids, attention_mask=attention)[0]
    assert applied
    torch.testing.assert_close(tokens[real], full[real], rtol=1e-5, atol=1e-5)
    assert torch.count_nonzero(tokens[~real]) == 0  # padding never computed
    torch.testing.assert_close(both[positions], full[positions], rtol=1e-5, atol=1e-5)
    assert torch.count_nonzero(both[~positions]) == 0
    assert torch.equal(after, full)  # outside the block the layers run as before


@pytest.mark.parametrize("family", ["distilbert", "bert"])
def test_real_tokens_run_the_gemms_on_a_packed_row_count_and_answer_the_same(tiny_model, family):
    model = AutoModelForMaskedLM.from_pretrained(tiny_model("fill-mask", family)).eval()
    ids, attention, positions = (x[:3] for x in batch_with_padding())  # attention pads 3 rows to 4
    assert 3 % SEQUENCE_STEP != 0
    real = attention.bool()
    rows = []
    layer = selective.encoder_layers(model)[0]
    first_gemm = layer.ffn.lin1 if family == "distilbert" else layer.intermediate.dense
    hook = first_gemm.register_forward_hook(
        lambda module, args, out: rows.append(args[0].shape[:-1].numel()))
    with torch.inference_mode():
        full = model.base_model(input_ids=ids, attention_mask=attention)[0]
        selective.skip_padding(model)
        selective.select_last_layer(model)
        with selective.real_tokens(model, attention):
            tokens = model.base_model(input_ids=ids, attention_mask=attention)[0]
        with selective.real_tokens(model, attention), selective.only_at(model, positions, attention):
            both = model.base_model(input_ids=ids, attention_mask=attention)[0]
    hook.remove()
    n = int(real.sum())
    assert rows == [ids.numel(), packed_rows(n), packed_rows(n)] and packed_rows(n) > n
    torch.testing.assert_close(tokens[real], full[real], rtol=1e-5, atol=1e-5)
    assert torch.count_nonzero(tokens[~real]) == 0  # the extra rows land nowhere
    torch.testing.assert_close(both[positions], full[positions], rtol=1e-5, atol=1e-5)
    assert torch.count_nonzero(both[~positions]) == 0


@pytest.mark.parametrize("rows", [3, 4])  # 3: attention runs on 4 sequences, one of them extra
@pytest.mark.parametrize("family", FAMILIES)
def test_bf16_prepacked_real_tokens_equal_the_padded_batch_with_two_gemm_attention(tiny_model, family, rows):
    model = bf16_engine_model(tiny_model("fill-mask", family))
    ids, attention, _ = (x[:rows] for x in batch_with_padding())
    real = attention.bool()
    with torch.inference_mode():
        full = model.base_model(input_ids=ids, attention_mask=attention)[0].float()
        selective.skip_padding(model)
        with selective.real_tokens(model, attention) as applied:
            tokens = model.base_model(input_ids=ids, attention_mask=attention)[0].float()
    assert applied
    assert (tokens[real] - full[real]).abs().max() <= 0.02 * full[real].abs().max()
    assert torch.count_nonzero(tokens[~real]) == 0


def test_a_batch_without_padding_or_a_model_not_adapted_runs_as_before(tiny_model):
    model = AutoModelForMaskedLM.from_pretrained(tiny_model("fill-mask", "bert")).eval()
    ids, attention, _ = batch_with_padding()
    with selective.real_tokens(model, attention) as applied:
        assert not applied  # skip_padding not called
    keys = list(model.state_dict())
    assert selective.skip_padding(model) and selective.skip_padding(model)  # once per layer
    assert list(model.state_dict()) == keys
    with selective.real_tokens(model, torch.ones_like(attention)) as applied:
        assert not applied  # nothing to skip
    little = torch.ones_like(attention)
    little[0, -1] = 0  # 1 of 52 tokens: less padding than gathering the real tokens would cost
    assert 0 < 1 / little.numel() < selective.MIN_PADDING_SHARE
    with selective.real_tokens(model, little) as applied:
        assert not applied
    model.train()
    with selective.real_tokens(model, attention):
        hidden = model.base_model(input_ids=ids, attention_mask=attention)[0]
    assert torch.count_nonzero(hidden[~attention.bool()]) > 0  # training computes every position
    assert not selective.skip_padding(torch.nn.Sequential(torch.nn.Linear(4, 4)))


@pytest.mark.parametrize("block", ["only_at", "real_tokens"])
def test_a_selection_or_real_tokens_for_one_model_leave_another_model_whole(tiny_model, block):
    one = AutoModelForMaskedLM.from_pretrained(tiny_model("fill-mask", "distilbert")).eval()
    other = AutoModelForMaskedLM.from_pretrained(tiny_model("fill-mask", "distilbert")).eval()
    for model in (one, other):
        selective.select_last_layer(model)
        selective.skip_padding(model)
    ids, attention, positions = batch_with_padding()
    with torch.inference_mode():
        full = other.base_model(input_ids=ids, attention_mask=attention)[0]
        with (selective.only_at(one, positions, attention) if block == "only_at"
              else selective.real_tokens(one, attention)) as applied:
            inside = other.base_model(input_ids=ids, attention_mask=attention)[0]
    assert applied and torch.equal(inside, full)


@pytest.mark.parametrize("task", ["token-classification", "question-answering", "text-classification"])
def test_an_unsorted_batch_of_mixed_lengths_answers_each_row_as_alone(tiny_model, task):
    predictor = Predictor.from_ref(tiny_model(task), task, dtype="float32")
    assert getattr(selective.encoder_layers(predictor.model)[0], "_distilkit_tokens", False)
    if task == "question-answering":
        context = "Ada Lovelace wrote the first program in London in 1843 for the analytical engine."
        questions = ("who?", "where did she write the first program?")
        items = [{"question": q, "context": context} for q in questions]
    else:
        items = ["a short one", "a much longer sentence with many more words than the first one has",
                 "mid size text"]
    features = predictor.prepare(items).features
    together = predictor.run_batch(features)  # padded to the longest: the others skip their padding
    for feature, out in zip(features, together, strict=True):
        alone = predictor.run_batch([feature])[0]
        assert numpy.allclose(numpy.asarray(out), numpy.asarray(alone), atol=1e-5)
