"""``dtype="int8", backend="onnx"``: ONNX Runtime's dynamic int8 graph through the same Predictor, exported
once, cached (``dtype="int8"`` alone picks it where PyTorch's oneDNN int8 engine cannot run)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime", reason="int8 runs on ONNX Runtime: pip install 'distilkit[onnx]'")

from distilkit.errors import UserError
from distilkit.export import cache
from distilkit.inference.onnx_backend import OnnxModel, read_manifest
from distilkit.inference.predictor import Predictor

TEXTS = ["Paris is the [MASK] of France.", "The [MASK] sat on the mat, and the dog [MASK] at it."]


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("DISTILKIT_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_int8_predictor_runs_the_quantised_graph_and_answers_like_the_fp32_one(tiny_model, home):
    model = tiny_model("fill-mask")
    fp32 = Predictor.from_ref(model, "fill-mask", dtype="float32").predict(TEXTS, {"top_k": 3})
    int8 = Predictor.from_ref(model, "fill-mask", dtype="int8", backend="onnx")
    assert isinstance(int8.model, OnnxModel) and int8.model.precision == "int8"
    answers = int8.predict(TEXTS, {"top_k": 3})
    assert [len(a) for a in answers] == [len(a) for a in fp32]  # one list per mask, three candidates each
    exported = next((home / "cache" / cache.CACHE_DIR).iterdir())
    assert read_manifest(exported)["precision"] == "int8"
    assert read_manifest(exported)["parity"]["float32"]["passed"] is True  # fp32 graph checked first


def test_a_second_load_reuses_the_cached_export(tiny_model, home, monkeypatch):
    model = tiny_model("fill-mask")
    first = cache.int8_model(model)

    def no_export(*args, **kwargs):
        raise AssertionError("exported again although the cache holds this model")

    monkeypatch.setattr(cache, "export_onnx", no_export)
    assert cache.int8_model(model) == first
    Predictor.from_ref(model, dtype="int8", backend="onnx").predict(TEXTS[:1])


def test_a_changed_model_directory_gets_a_new_export(tiny_model, home, tmp_path):
    model = Path(shutil.copytree(tiny_model("fill-mask"), tmp_path / "model"))
    first = cache.int8_model(model)
    (model / "config.json").write_text((model / "config.json").read_text() + "\n")
    assert cache.int8_model(model) != first


def test_int8_falls_back_to_onnx_runtime_where_torch_has_no_int8_engine(tiny_model, home, monkeypatch):
    from distilkit.inference import runtime

    monkeypatch.setattr(runtime, "can_run_int8", lambda device: False)
    int8 = Predictor.from_ref(tiny_model("fill-mask"), "fill-mask", dtype="int8")
    assert isinstance(int8.model, OnnxModel) and int8.engine.backend == "onnx"
    with pytest.raises(UserError, match="needs oneDNN's int8 GEMMs"):
        Predictor.from_ref(tiny_model("fill-mask"), dtype="int8", backend="torch")


def test_an_fp32_onnx_export_is_not_taken_for_int8(tiny_model, home, tmp_path):
    from distilkit.export import export_onnx

    export_onnx(tiny_model("fill-mask"), tmp_path / "fp32")
    with pytest.raises(UserError, match="export it with --quantize int8"):
        Predictor.from_ref(tmp_path / "fp32", dtype="int8")


def test_predict_cli_takes_dtype_int8_on_onnx_runtime(tiny_model, home):
    import json
    import os
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "distilkit", "predict", "fill-mask", "--model", str(tiny_model("fill-mask")),
         "--dtype", "int8", "--backend", "onnx", TEXTS[0]],
        capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "DISTILKIT_HOME": str(home)},
    )
    assert out.returncode == 0, out.stderr
    assert "int8: quantising" in out.stderr and "decisions equal to fp32's" in out.stderr
    results = json.loads(out.stdout)
    assert len(results) == 1 and len(results[0]) == 5  # one text; top_k 5 candidates for its mask


def test_backend_onnx_on_a_model_directory_runs_its_cached_fp32_graph(tiny_model, home):
    model = tiny_model("fill-mask")
    reference = Predictor.from_ref(model, "fill-mask", dtype="float32").predict(TEXTS[:1], {"top_k": 3})
    onnx = Predictor.from_ref(model, "fill-mask", backend="onnx")
    assert isinstance(onnx.model, OnnxModel) and onnx.model.precision == "float32"
    assert (onnx.engine.backend, onnx.engine.precision) == ("onnx", "float32")
    answers = onnx.predict(TEXTS[:1], {"top_k": 3})
    assert [c["token"] for c in answers[0]] == [c["token"] for c in reference[0]]
    exported = next((home / "cache" / "onnx-float32").iterdir())
    assert read_manifest(exported)["precision"] == "float32"
    assert cache.onnx_model(model, "fill-mask", precision="float32") == exported  # the cached graph
