"""Which exporter traces the graph: TorchScript (faster graphs in ONNX Runtime) while PyTorch has it,
the torch.export-based one otherwise; both must pass the same fp32 parity check."""

from __future__ import annotations

import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from distilkit.export import onnx as onnx_export
from distilkit.export.onnx import eager_attention, export_onnx
from distilkit.models import load_model


@pytest.mark.parametrize("task", ["fill-mask", "question-answering"])
def test_the_torchscript_exporter_is_used_while_pytorch_has_it(tiny_model, tmp_path, task):
    if not onnx_export.torchscript_exporter_available():
        pytest.skip("this PyTorch has no TorchScript ONNX exporter")
    report = export_onnx(tiny_model(task), tmp_path / "out", task=task)
    assert report["exporter"] == "torchscript"
    assert report["parity"]["float32"]["passed"] is True


def test_the_torch_export_based_exporter_is_the_fallback(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setattr(onnx_export, "torchscript_exporter_available", lambda: False)
    report = export_onnx(tiny_model("fill-mask"), tmp_path / "out", task="fill-mask")
    assert report["exporter"] == "torch.export"
    assert report["parity"]["float32"]["passed"] is True


def test_eager_attention_is_restored_after_the_trace(tiny_model):
    model = load_model(tiny_model("question-answering"), "question-answering").model
    before = model.config._attn_implementation
    assert before != "eager"  # transformers' default (sdpa) is what inference runs
    with eager_attention(model):
        assert model.config._attn_implementation == "eager"
    assert model.config._attn_implementation == before
