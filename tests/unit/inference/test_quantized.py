"""PyTorch's oneDNN int8 engine (inference.quantized): u8 x s8 GEMMs, shared and static activation scales."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForMaskedLM, pipeline

from distilkit.errors import UserError
from distilkit.inference import quantized, runtime, selective
from distilkit.inference.predictor import Predictor

CPU = torch.device("cpu")
pytestmark = pytest.mark.skipif(not runtime.can_run_int8(CPU),
                                reason="needs oneDNN's int8 GEMMs and an AVX512-VNNI/AMX CPU")
FAMILIES = ["distilbert", "bert", "roberta"]
TEXTS = ["Paris is the [MASK] of France.", "The [MASK] sat on the mat, and the dog [MASK] at it.",
         "A [MASK] of tea.", "Rivers flow into the [MASK] after the rains in the mountains."]


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got.float() - want.float()).norm() / want.float().norm()).item()


def test_quantize_rows_round_trips_within_half_a_step_and_keeps_zero_exact():
    torch.manual_seed(0)
    x = torch.randn(37, 64) * 3 + 1
    before = x.clone()
    q, scale, zero = quantized.quantize_rows(x)
    assert torch.equal(x, before)  # the input is left as it was
    assert q.dtype == torch.uint8 and q.shape == (37, 64)
    assert (((q.float() - zero) * scale) - x).abs().max() <= scale / 2 + 1e-6
    positive = x.abs()  # all >= 0: the range still includes 0, which maps to the zero point exactly
    q, scale, zero = quantized.quantize_rows(positive)
    assert zero == 0 and (((q.float() - zero) * scale) - positive).abs().max() <= scale / 2 + 1e-6


@pytest.mark.parametrize("out_dtype", [torch.float32, torch.bfloat16])
def test_quantized_linear_matches_the_float_linear_within_int8_error(out_dtype):
    torch.manual_seed(0)
    linear = torch.nn.Linear(96, 48)
    x = torch.randn(5, 7, 96)
    with torch.inference_mode():
        got = quantized.QuantizedLinear(linear, out_dtype)(x.to(out_dtype))
        want = linear(x)
    assert got.shape == (5, 7, 48) and got.dtype == out_dtype
    assert relative_error(got, want) < 0.02


def test_feed_forward_pair_passes_u8_with_the_calibrated_scale_and_matches_float():
    torch.manual_seed(0)
    first, second = torch.nn.Linear(64, 256), torch.nn.Linear(256, 64)
    x = torch.randn(30, 64)
    with torch.inference_mode():
        hidden = torch.nn.functional.gelu(first(x))
        want = second(hidden)
        low, high = torch.aminmax(hidden)
        q1 = quantized.QuantizedLinear(first, torch.float32, gelu=True, out_range=(low.item(), high.item()))
        q2 = quantized.QuantizedLinear(second, torch.float32, in_params=q1.out_params)
        middle = q1(x)
        got = q2(middle)
    assert middle.dtype == torch.uint8  # the 4x-wide activation never exists in float
    assert relative_error(got, want) < 0.03
    with pytest.raises(RuntimeError, match="u8 input needs the scale"):
        quantized.QuantizedLinear(second, torch.float32)(middle)


def test_gemms_sharing_an_input_quantise_it_once(monkeypatch):
    calls = []
    real = quantized.quantize_rows
    monkeypatch.setattr(quantized, "quantize_rows", lambda x: calls.append(1) or real(x))
    shared = quantized.SharedQuantizer()
    q, k, v = (quantized.QuantizedLinear(torch.nn.Linear(32, 32), torch.float32, quantizer=shared)
               for _ in range(3))
    x, y = torch.randn(4, 32), torch.randn(4, 32)
    with torch.inference_mode():
        q(x), k(x), v(x)
        assert len(calls) == 1
        q(y)  # a new tensor is measured afresh, never mistaken for the last one
        assert len(calls) == 2
        k(x)
        assert len(calls) == 3


@pytest.mark.parametrize("family", FAMILIES)
def test_convert_quantises_every_encoder_gemm_and_keeps_the_hidden_states(tiny_model, family):
    model = AutoModelForMaskedLM.from_pretrained(tiny_model("fill-mask", family)).eval()
    predictor = Predictor.from_ref(tiny_model("fill-mask", family), "fill-mask", dtype="float32")
    batches = predictor.calibration_batches()
    layers = len(selective.encoder_layers(model))
    with torch.inference_mode():
        want = model.base_model(**batches[0])[0]
        assert quantized.convert(model, lambda: batches, torch.float32) == 6 * layers
        got = model.base_model(**batches[0])[0]
    kinds = [m for m in model.base_model.modules() if isinstance(m, quantized.QuantizedLinear)]
    assert len(kinds) == 6 * layers
    assert sum(m.out_params is not None for m in kinds) == layers  # one u8 hand-over per feed-forward block
    assert not any(type(m) is torch.nn.Linear for m in selective.encoder_layers(model).modules())
    cosine = torch.nn.functional.cosine_similarity(got.float().flatten(1), want.flatten(1)).min()
    assert cosine > 0.99, cosine


def test_calibration_records_each_feed_forward_activation_range(tiny_model):
    predictor = Predictor.from_ref(tiny_model("fill-mask", "bert"), "fill-mask", dtype="float32")
    model = AutoModelForMaskedLM.from_pretrained(tiny_model("fill-mask", "bert")).eval()
    ranges, _ = quantized.calibrate(model, predictor.calibration_batches(["one two three", "four five"]))
    blocks = list(quantized.feed_forward_blocks(model))
    assert len(ranges) == len(blocks) == model.config.num_hidden_layers
    for low, high in ranges.values():
        assert -0.2 <= low < 0 < high  # GELU's minimum is -0.17
    with pytest.raises(UserError, match="calibration texts"):
        predictor.calibration_batches(["", "  "])


@pytest.mark.parametrize("family", FAMILIES)
def test_int8_predictor_answers_in_the_pipeline_shape_close_to_fp32(tiny_model, family):
    model = tiny_model("fill-mask", family)
    mask = "<mask>" if family == "roberta" else "[MASK]"
    texts = [t.replace("[MASK]", mask) for t in TEXTS if t.count("[MASK]") == 1]
    reference = pipeline("fill-mask", model=str(model), device=-1)(texts, top_k=5)
    int8 = Predictor.from_ref(model, "fill-mask", dtype="int8")
    assert (int8.engine.backend, int8.engine.precision) == ("torch", "int8")
    answers = int8.predict(texts, {"top_k": 5})
    assert [len(a) for a in answers] == [5] * len(texts)
    assert all(set(a[0]) == set(r[0]) for a, r in zip(answers, reference, strict=True))
    for got, want in zip(answers, reference, strict=True):  # int8's best is among fp32's five best
        assert got[0]["token"] in {c["token"] for c in want}, (got, want)


@pytest.mark.parametrize("task", ["question-answering", "text-classification", "token-classification"])
def test_int8_runs_every_task_with_custom_calibration_texts(tiny_model, task):
    inputs = {"question-answering": [{"question": "Who lives here?", "context": "John lives in Paris."}],
              "text-classification": ["a fine film", "dull"],
              "token-classification": ["John lives in Paris"]}[task]
    fp32 = Predictor.from_ref(tiny_model(task), task, dtype="float32").predict(inputs)
    int8 = Predictor.from_ref(tiny_model(task), task, dtype="int8", calibration_texts=["Some text.", "More."])
    got = int8.predict(inputs)
    assert int8.engine.precision == "int8" and len(got) == len(fp32)
    first = lambda out: out[0][0] if isinstance(out[0], list) else out[0]
    assert set(first(got)) == set(first(fp32))  # the same answer shape as the fp32 engine's


def test_int8_with_compile_is_a_user_error(tiny_model):
    with pytest.raises(UserError, match="drop it for --dtype int8"):
        Predictor.from_ref(tiny_model("fill-mask"), "fill-mask", dtype="int8", compile=True)


def test_int8_engine_choice_follows_the_cpu(monkeypatch):
    assert runtime.choose_engine("int8", CPU).backend == "torch"
    assert runtime.choose_engine("int8", CPU, "onnx") == runtime.Engine(
        "onnx", "int8", "requested; ONNX Runtime dynamic int8 on VNNI")
    monkeypatch.setattr(runtime, "cpu_features", lambda: ("avx512f", "avx2"))
    assert runtime.choose_engine("int8", CPU).backend == "onnx"
    with pytest.raises(UserError, match="needs oneDNN's int8 GEMMs"):
        runtime.choose_engine("int8", CPU, "torch")


def test_smoothing_keeps_the_float_function_and_flattens_the_context_channels():
    torch.manual_seed(0)
    value, output = torch.nn.Linear(16, 16), torch.nn.Linear(16, 8)
    with torch.no_grad():
        value.weight[3] *= 40  # an outlier channel of the context, as trained models have
        value.bias[3] *= 40
    x = torch.randn(2, 5, 16)
    weights = torch.softmax(torch.randn(2, 5, 5), dim=-1)  # attention: rows of a weighted mean
    with torch.no_grad():
        context = weights @ value(x)
        want = output(context)
        peak = context.reshape(-1, 16).abs().amax(dim=0)
        quantized.smooth(value, output, peak)
        smoothed = weights @ value(x)
        got = output(smoothed)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    after = smoothed.reshape(-1, 16).abs().amax(dim=0)
    assert after.max() / after.min() < (peak.max() / peak.min()) / 4


def test_a_calibration_file_gives_the_texts_and_bad_ones_are_user_errors(tiny_model, tmp_path, monkeypatch):
    seen = []
    real = Predictor.calibration_batches
    monkeypatch.setattr(Predictor, "calibration_batches", lambda self, texts=None: seen.append(texts)
                        or real(self, texts))
    path = tmp_path / "domain.txt"
    path.write_text("First domain text.\n\n  Second one, with more words.  \n", encoding="utf-8")
    model = tiny_model("fill-mask")
    Predictor.from_ref(model, "fill-mask", dtype="int8", calibration=path).predict(TEXTS[:1])
    assert seen == [["First domain text.", "Second one, with more words."]]
    (tmp_path / "empty.txt").write_text("\n \n", encoding="utf-8")
    with pytest.raises(UserError, match="no text in it"):
        Predictor.from_ref(model, "fill-mask", dtype="int8", calibration=tmp_path / "empty.txt")
    with pytest.raises(UserError, match="cannot read it"):
        Predictor.from_ref(model, "fill-mask", dtype="int8", calibration=tmp_path / "missing.txt")
    with pytest.raises(UserError, match="calibrates --dtype int8, not bfloat16"):
        Predictor.from_ref(model, "fill-mask", dtype="bfloat16", calibration=path)


def test_predict_cli_takes_a_calibration_file(tiny_model, tmp_path):
    import json
    import os
    import subprocess
    import sys

    path = tmp_path / "domain.txt"
    path.write_text("Some text of the domain.\nAnother line.\n", encoding="utf-8")
    out = subprocess.run(
        [sys.executable, "-m", "distilkit", "predict", "fill-mask", "--model", str(tiny_model("fill-mask")),
         "--dtype", "int8", "--calibration", str(path), TEXTS[0]],
        capture_output=True, text=True, timeout=300, check=False, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert out.returncode == 0, out.stderr
    assert "engine: PyTorch int8" in out.stderr
    assert len(json.loads(out.stdout)[0]) == 5
