"""The ONNX Runtime model wrapper's contract with the handlers and the Predictor, and its errors."""

from __future__ import annotations

import inspect
import json

import pytest
import torch

from distilkit.inference.onnx_backend import EXPORT_MANIFEST, _MaskedLogits, is_exported_dir, read_manifest
from distilkit.models import load_model


def test_a_plain_model_dir_is_not_an_export_and_says_how_to_make_one(tmp_path):
    assert not is_exported_dir(tmp_path)
    with pytest.raises(ValueError, match="distilkit export onnx --model REF --output DIR"):
        read_manifest(tmp_path)
    (tmp_path / EXPORT_MANIFEST).write_text(json.dumps({"format": "other"}))
    with pytest.raises(ValueError, match="not a distilkit export report"):
        read_manifest(tmp_path)


def test_backend_onnx_on_a_torch_model_dir_is_a_clear_error(tiny_model):
    with pytest.raises(ValueError, match="not an exported ONNX directory"):
        load_model(tiny_model("fill-mask"), backend="onnx")
    with pytest.raises(ValueError, match="backend must be torch or onnx"):
        load_model(tiny_model("fill-mask"), backend="tensorrt")


def test_masked_logits_take_a_boolean_mask_of_the_batch_shape():
    logits = _MaskedLogits(model=None, feeds={}, shape=(2, 3))
    with pytest.raises(TypeError, match="boolean"):
        logits[torch.zeros(2, 4, dtype=torch.bool)]
    with pytest.raises(TypeError, match="boolean"):
        logits[torch.zeros(2, 3, dtype=torch.long)]


def test_exported_model_is_a_drop_in_for_the_predictor(tiny_model, tmp_path):
    pytest.importorskip("onnxruntime")
    from distilkit.export import export_onnx
    from distilkit.inference.predictor import Predictor

    export_onnx(tiny_model("text-classification", "bert"), tmp_path / "x")
    loaded = load_model(tmp_path / "x")
    model = loaded.model
    assert not any(hasattr(model, a) for a in ("vocab_projector", "lm_head", "cls"))
    assert list(inspect.signature(model.forward).parameters) == ["input_ids", "attention_mask",
                                                                 "token_type_ids"]
    predictor = Predictor(loaded)
    assert ((predictor.device, predictor.dtype, predictor._uses_token_types)
            == (torch.device("cpu"), torch.float32, True))
    with pytest.raises(ValueError, match="--compile needs the torch backend"):
        Predictor(loaded, compile=True)
    with pytest.raises(ValueError, match="exported for text-classification, not fill-mask"):
        load_model(tmp_path / "x", "fill-mask")
