"""Precision policy and device choice."""

from __future__ import annotations

import pytest
import torch

import distilkit
from distilkit.inference import runtime

CPU = torch.device("cpu")


def test_auto_is_bf16_on_cpus_with_fast_bf16(monkeypatch):
    monkeypatch.setattr(runtime, "cpu_has_fast_bf16", lambda: True)
    assert runtime.resolve_dtype("auto", CPU) == torch.bfloat16


def test_auto_is_fp32_on_cpus_without_fast_bf16(monkeypatch):
    monkeypatch.setattr(runtime, "cpu_has_fast_bf16", lambda: False)
    assert runtime.resolve_dtype("auto", CPU) == torch.float32


def test_float32_forces_fp32_and_unknown_names_are_refused():
    assert runtime.resolve_dtype("float32", CPU) == torch.float32
    with pytest.raises(ValueError, match="dtype must be one of"):
        runtime.resolve_dtype("fp8", CPU)


def test_cuda_request_without_cuda_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ValueError, match="CUDA is not available"):
        runtime.resolve_device("cuda")
    assert runtime.resolve_device(-1) == CPU


def test_bf16_pipeline_returns_python_float_scores_close_to_fp32(tiny_model):
    ref = distilkit.pipeline("fill-mask", model=tiny_model("fill-mask"), dtype="float32")
    low = distilkit.pipeline("fill-mask", model=tiny_model("fill-mask"), dtype="bfloat16")
    assert next(low.model.parameters()).dtype == torch.bfloat16
    a, b = ref("the [MASK] of France", top_k=1)[0], low("the [MASK] of France", top_k=1)[0]
    assert type(b["score"]) is float
    assert abs(a["score"] - low("the [MASK] of France", targets=[a["token_str"]])[0]["score"]) < 0.02
    assert isinstance(b["token"], int)


@pytest.mark.slow
@pytest.mark.parametrize("task", ["fill-mask", "question-answering"])
def test_compiled_encoder_gives_the_same_answers_as_eager(tiny_model, task):
    eager = distilkit.pipeline(task, model=tiny_model(task), dtype="float32")
    compiled = distilkit.pipeline(task, model=tiny_model(task), dtype="float32", compile=True)
    if task == "fill-mask":
        texts = ["the [MASK] of France", "a [MASK] and the [MASK] of the river in London today"]
        a, b = eager(texts, top_k=3), compiled(texts, top_k=3)
        assert [[c["token"] for c in r] for r in a[:1]] == [[c["token"] for c in r] for r in b[:1]]
        assert abs(a[0][0]["score"] - b[0][0]["score"]) < 1e-4
    else:
        q = {"question": "Where do I live?", "context": "My name is John and I live in Seattle."}
        a, b = eager(q), compiled(q)
        assert (a["start"], a["end"]) == (b["start"], b["end"]) and abs(a["score"] - b["score"]) < 1e-4


def test_auto_engine_is_pytorch_bf16_on_a_cpu_with_avx512_bf16(monkeypatch):
    monkeypatch.setattr(runtime, "cpu_features", lambda: ("avx512_bf16", "avx512_vnni", "avx512f"))
    engine = runtime.choose_engine("auto", CPU)
    assert (engine.backend, engine.precision) == ("torch", "bfloat16")
    assert "avx512_bf16" in engine.describe()


def test_auto_engine_is_prepacked_pytorch_fp32_on_a_cpu_without_fast_bf16(monkeypatch):
    monkeypatch.setattr(runtime, "cpu_features", lambda: ("avx512_vnni", "avx512f", "avx2"))
    monkeypatch.setattr(runtime, "can_prepack", lambda dtype, device: dtype == torch.float32)
    engine = runtime.choose_engine("auto", CPU)
    assert (engine.backend, engine.precision) == ("torch", "float32")
    assert "prepacked oneDNN" in engine.describe()


def test_auto_engine_is_onnx_runtime_fp32_without_fast_bf16_or_onednn(monkeypatch):
    pytest.importorskip("onnxruntime")
    monkeypatch.setattr(runtime, "cpu_features", lambda: ("avx512_vnni", "avx512f", "avx2"))
    monkeypatch.setattr(runtime, "can_prepack", lambda dtype, device: False)
    engine = runtime.choose_engine("auto", CPU)
    assert (engine.backend, engine.precision) == ("onnx", "float32")
    # an explicit float32 stays the PyTorch reference engine; --backend torch keeps auto on PyTorch
    assert runtime.choose_engine("float32", CPU).backend == "torch"
    assert runtime.choose_engine("auto", CPU, "torch") == runtime.Engine(
        "torch", "float32", "auto: no fast bf16 on this CPU")


def test_engine_requests_no_engine_runs_are_user_errors():
    with pytest.raises(ValueError, match="dtype int8 runs on the CPU"):
        runtime.choose_engine("int8", torch.device("cuda"))
    with pytest.raises(ValueError, match="--backend onnx runs float32 or int8"):
        runtime.choose_engine("bfloat16", CPU, "onnx")
    with pytest.raises(ValueError, match="--backend must be torch or onnx"):
        runtime.choose_engine("auto", CPU, "tensorrt")


def test_the_engine_is_printed_once_per_process(monkeypatch, capsys):
    monkeypatch.setattr(runtime, "_announced", set())
    engine = runtime.Engine("torch", "bfloat16", "auto: the CPU has avx512_bf16")
    runtime.announce(engine, "m1")
    runtime.announce(engine, "m2")
    err = capsys.readouterr().err
    assert err.count("engine: PyTorch bfloat16 (auto: the CPU has avx512_bf16) for m1") == 1
    assert "m2" not in err


def test_free_heap_goes_back_through_glibc_and_is_a_no_op_without_it(monkeypatch):
    import platform

    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert runtime.release_free_heap() is True
    monkeypatch.setattr(runtime, "_malloc_trim", lambda: None)
    assert runtime.release_free_heap() is False
