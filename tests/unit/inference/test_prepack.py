"""Linears prepacked for oneDNN (runtime.prepack_linears) and the bf16 two-GEMM attention: same model,
same answers, faster kernels."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForMaskedLM, AutoModelForQuestionAnswering

from distilkit.inference import runtime
from distilkit.inference.predictor import Predictor

CPU = torch.device("cpu")
needs_prepack = pytest.mark.skipif(not runtime.can_prepack(torch.bfloat16, CPU),
                                   reason="this CPU/torch build has no native bf16 oneDNN GEMM")
needs_fp32_prepack = pytest.mark.skipif(not runtime.can_prepack(torch.float32, CPU),
                                        reason="this torch build has no oneDNN linear")


def packed(model: torch.nn.Module) -> list[runtime.PackedLinear]:
    return [m for m in model.modules() if isinstance(m, runtime.PackedLinear)]


def test_prepacking_applies_to_fp32_and_to_bf16_only_on_a_cpu_with_fast_bf16(monkeypatch):
    monkeypatch.setattr(runtime, "cpu_has_fast_bf16", lambda: True)
    assert runtime.can_prepack(torch.float32, CPU) == torch.backends.mkldnn.is_available()
    assert not runtime.can_prepack(torch.float16, CPU)
    assert not runtime.can_prepack(torch.bfloat16, torch.device("cuda"))
    assert not runtime.can_prepack(torch.float32, torch.device("cuda"))
    monkeypatch.setattr(runtime, "cpu_has_fast_bf16", lambda: False)
    assert not runtime.can_prepack(torch.bfloat16, CPU)
    assert runtime.can_prepack(torch.float32, CPU) == torch.backends.mkldnn.is_available()


@pytest.mark.parametrize("dtype", [pytest.param(torch.bfloat16, marks=needs_prepack),
                                   pytest.param(torch.float32, marks=needs_fp32_prepack)])
@pytest.mark.parametrize("family", ["distilbert", "bert", "roberta"])
def test_packed_encoder_keeps_its_state_dict_and_its_outputs(tiny_model, family, dtype):
    model = AutoModelForQuestionAnswering.from_pretrained(
        tiny_model("question-answering", family), dtype=dtype).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ids = torch.randint(5, 90, (3, 17))
    with torch.inference_mode():
        plain = model(input_ids=ids).start_logits.float()
        count = runtime.prepack_linears(model)
        fast = model(input_ids=ids).start_logits.float()
    layers = model.config.num_hidden_layers if family != "distilbert" else model.config.n_layers
    assert count == 6 * layers + 1  # q, k, v, out, ffn-in (with its GELU), ffn-out per layer; the head
    assert isinstance(model.qa_outputs, runtime.PackedLinear)
    assert sum(m.attr == "gelu" for m in packed(model)) == layers
    assert list(model.state_dict()) == list(before)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())
    if dtype == torch.float32:  # exact fp32 arithmetic: only the summation order differs
        torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-5)
    else:
        assert (fast - plain).abs().max() <= 0.05 * plain.abs().max()


@pytest.mark.parametrize("dtype", [pytest.param(torch.bfloat16, marks=needs_prepack),
                                   pytest.param(torch.float32, marks=needs_fp32_prepack)])
@pytest.mark.parametrize("family", ["distilbert", "bert", "roberta"])
def test_vocabulary_projection_is_packed_and_stays_tied_to_the_embeddings(tiny_model, family, dtype):
    model = AutoModelForMaskedLM.from_pretrained(tiny_model("fill-mask", family), dtype=dtype).eval()
    projection = model.get_output_embeddings()
    assert projection.weight is model.get_input_embeddings().weight  # tied before
    ids = torch.randint(5, 90, (2, 9))
    with torch.inference_mode():
        plain = model(input_ids=ids).logits.float()
        runtime.prepack_linears(model)
        fast = model(input_ids=ids).logits.float()
    packed_projection = model.get_output_embeddings()
    assert isinstance(packed_projection, runtime.PackedLinear)
    assert packed_projection.weight is model.get_input_embeddings().weight  # still one tensor
    if dtype == torch.float32:
        torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-5)
    else:
        assert (fast - plain).abs().max() <= 0.05 * plain.abs().max()


@needs_prepack
def test_only_an_exact_gelu_is_fused_into_the_gemm(tiny_model):
    model = AutoModelForQuestionAnswering.from_pretrained(
        tiny_model("question-answering", "bert", hidden_act="gelu_new"), dtype=torch.bfloat16).eval()
    ids = torch.randint(5, 90, (2, 11))
    with torch.inference_mode():
        plain = model(input_ids=ids).start_logits.float()
        runtime.prepack_linears(model)
        fast = model(input_ids=ids).start_logits.float()
    assert packed(model) and not any(m.attr == "gelu" for m in packed(model))
    assert (fast - plain).abs().max() <= 0.05 * plain.abs().max()


@needs_prepack
def test_bf16_predictor_runs_packed_and_answers_like_the_unpacked_model(tiny_model):
    path = tiny_model("question-answering")
    fast = Predictor.from_ref(path, dtype="bfloat16")
    plain = Predictor.from_ref(path, dtype="bfloat16")
    plain.model = AutoModelForQuestionAnswering.from_pretrained(path, dtype=torch.bfloat16).eval()
    assert packed(fast.model) and not packed(plain.model)
    q = [{"question": "Where do I live?", "context": "My name is John and I live in Seattle."}]
    a, b = fast.predict(q)[0], plain.predict(q)[0]
    assert abs(a["score"] - b["score"]) < 0.05


@needs_fp32_prepack
def test_float32_predictor_packs_keeps_sdpa_and_answers_like_the_unpacked_model(tiny_model):
    path = tiny_model("fill-mask")
    fast = Predictor.from_ref(path, dtype="float32")
    plain = Predictor.from_ref(path, dtype="float32")
    plain.model = AutoModelForMaskedLM.from_pretrained(path).eval()
    assert packed(fast.model) and not packed(plain.model)
    assert fast.model.config._attn_implementation != runtime.BMM_ATTENTION
    texts = ["Paris is the [MASK] of France.", "The [MASK] sat on the mat and slept all day long."]
    for a, b in zip(fast.predict(texts), plain.predict(texts)):
        assert [c["token"] for c in a] == [c["token"] for c in b]
        assert max(abs(x["score"] - y["score"]) for x, y in zip(a, b)) < 1e-6


@needs_prepack
def test_packed_model_follows_dtype_changes_new_weights_and_training(tiny_model):
    path = tiny_model("question-answering")
    model = AutoModelForQuestionAnswering.from_pretrained(path, dtype=torch.bfloat16).eval()
    runtime.prepack_linears(model)
    ids = torch.randint(5, 90, (2, 13))
    reference = AutoModelForQuestionAnswering.from_pretrained(path).eval()
    with torch.inference_mode():  # .float(): repacked in fp32, exact arithmetic up to summation order
        torch.testing.assert_close(model.float()(input_ids=ids).start_logits,
                                   reference.to(torch.bfloat16).float()(input_ids=ids).start_logits,
                                   rtol=1e-5, atol=1e-5)
    other = AutoModelForQuestionAnswering.from_pretrained(tiny_model("question-answering", seed=1),
                                                          dtype=torch.bfloat16).eval()
    model.to(torch.bfloat16).load_state_dict(other.state_dict())  # in place: the packed copies follow
    with torch.inference_mode():
        fast, plain = model(input_ids=ids).start_logits.float(), other(input_ids=ids).start_logits.float()
    assert (fast - plain).abs().max() <= 0.05 * plain.abs().max()
    model(input_ids=ids).start_logits.float().sum().backward()  # gradients take the plain path
    assert all(m.weight.grad is not None for m in packed(model))


@pytest.mark.parametrize("family", ["distilbert", "bert", "roberta"])
def test_bmm_attention_masks_padding_like_sdpa(tiny_model, family):
    # fp32, so any difference beyond rounding is a masking fault (padded keys attended to)
    model = AutoModelForQuestionAnswering.from_pretrained(tiny_model("question-answering", family)).eval()
    ids = torch.randint(5, 90, (3, 19))
    mask = torch.ones_like(ids)
    mask[1, 11:] = 0  # padded rows: their padding must not change their logits
    mask[2, 5:] = 0
    with torch.inference_mode():
        sdpa = model(input_ids=ids, attention_mask=mask).start_logits
        alone = model(input_ids=ids[2:, :5]).start_logits  # no padding, no mask
        assert runtime.use_bmm_attention(model)
        bmm = model(input_ids=ids, attention_mask=mask).start_logits
        bmm_alone = model(input_ids=ids[2:, :5]).start_logits
    assert model.config._attn_implementation == runtime.BMM_ATTENTION
    real = mask.bool()
    torch.testing.assert_close(bmm[real], sdpa[real], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(bmm[2, :5], alone[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(bmm_alone, alone, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("keys", [7, 19, 32, 40])
def test_bmm_attention_in_bf16_weighs_only_real_keys_at_any_width(keys):
    # bf16 scores are laid out SCORE_MULTIPLE wide: the columns past the keys must weigh nothing
    torch.manual_seed(0)
    q, k, v = (torch.randn(3, 4, keys, 16) for _ in range(3))
    allowed = torch.ones(3, 1, 1, keys, dtype=torch.bool)
    allowed[1, ..., keys // 2:] = False
    bf = [x.bfloat16() for x in (q, k, v)]
    out = runtime.bmm_attention(None, *bf, allowed)[0].float()  # (B, T, heads, d)
    ref = torch.nn.functional.scaled_dot_product_attention(*(x.float() for x in bf), attn_mask=allowed)
    torch.testing.assert_close(out, ref.transpose(1, 2), rtol=0.02, atol=0.02)
    changed = bf[2].clone()
    changed[1, :, keys // 2:] = 100.0  # values of masked keys
    assert torch.equal(runtime.bmm_attention(None, bf[0], bf[1], changed, allowed)[0][1], out[1].bfloat16())


@needs_prepack
def test_bf16_predictor_uses_bmm_attention_and_fp32_keeps_the_reference(tiny_model):
    fast = Predictor.from_ref(tiny_model("fill-mask"), dtype="bfloat16")
    exact = Predictor.from_ref(tiny_model("fill-mask"), dtype="float32")
    assert fast.model.config._attn_implementation == runtime.BMM_ATTENTION
    assert exact.model.config._attn_implementation != runtime.BMM_ATTENTION
