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
