"""``distilkit export onnx`` end to end: parity for every task, int8 size, pipeline/predict/serve on an
export."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time

import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

import distilkit
from distilkit.export import ExportParityError, export_onnx

CASES = [("fill-mask", "distilbert"), ("question-answering", "bert"), ("text-classification", "roberta"),
         ("token-classification", "distilbert")]
INPUTS = {
    "fill-mask": ["Paris is the [MASK] of France.", "the [MASK] of [MASK] is John"],
    "question-answering": [{"question": "What is my name?",
                            "context": "My name is John and I live in Seattle."},
                           {"question": "Where?", "context": "He played music in London with his band."}],
    "text-classification": ["Paris is great", "today is a good day today", "the river"],
    "token-classification": ["John lives in Paris France", "Microsoft won the game"],
}
ENV = {"HF_HUB_OFFLINE": "1", "DISTILKIT_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def exported(tiny_model, tmp_path_factory):
    """task -> (torch model dir, fp32 export dir, its report)."""
    out = {}
    for task, family in CASES:
        src = tiny_model(task, family)
        dst = tmp_path_factory.mktemp("onnx") / task
        out[task] = (src, dst, export_onnx(src, dst))
    return out


def assert_close(a, b, path="result"):
    """Same structure and strings; floats within 1e-4."""
    if isinstance(a, float):
        assert b == pytest.approx(a, abs=1e-4), path
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            assert_close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_close(x, y, f"{path}[{i}]")
    else:
        assert a == b, path


@pytest.mark.parametrize(("task", "family"), CASES)
def test_fp32_export_matches_pytorch_and_has_the_contract_file_set(exported, task, family):
    src, dst, report = exported[task]
    fp32 = report["parity"]["float32"]
    assert fp32["passed"] and fp32["max_abs_diff"] <= 1e-4 and len(fp32["shapes"]) >= 3
    assert {s[0] for s in fp32["shapes"]} >= {1, 2, 4} and len({s[1] for s in fp32["shapes"]}) >= 3
    names = {p.name for p in dst.iterdir()}
    tokenizer_files = {p.name for p in src.iterdir()} - {"config.json", "model.safetensors"}
    assert names == {"model.onnx", "config.json", "distilkit_export.json"} | tokenizer_files
    saved = json.loads((dst / "distilkit_export.json").read_text())
    assert saved["task"] == task and saved["precision"] == "float32" and saved["model_file"] == "model.onnx"
    assert ("token_type_ids" in saved["inputs"]) == (family != "distilbert")  # only what forward accepts
    assert ("mask_positions" in saved["inputs"]) == (task == "fill-mask")


@pytest.mark.parametrize(("task", "family"), CASES)
def test_pipeline_on_the_export_equals_pytorch(exported, task, family):
    src, dst, _ = exported[task]
    params = {"top_k": 3} if task in ("fill-mask", "question-answering") else {}
    want = distilkit.pipeline(task, model=str(src), dtype="float32")(INPUTS[task], **params)
    onnx_pipe = distilkit.pipeline(model=str(dst))  # task and backend come from the directory
    assert "OnnxModel" in repr(onnx_pipe.model)
    assert_close(want, onnx_pipe(INPUTS[task], **params))


def test_int8_is_at_least_3x_smaller_and_reports_agreement(tiny_model, tmp_path):
    # Big enough that weights dominate the file (2 layers of 256 x 1024); tiny models are mostly graph.
    src = tiny_model("fill-mask", hidden=256, ffn=1024, heads=4)
    fp32 = export_onnx(src, tmp_path / "fp32")
    int8 = export_onnx(src, tmp_path / "int8", quantize="int8")
    fp32_bytes = (tmp_path / "fp32/model.onnx").stat().st_size
    int8_bytes = (tmp_path / "int8/model.onnx").stat().st_size
    assert fp32_bytes >= 3 * int8_bytes, (fp32_bytes, int8_bytes)
    assert int8["sizes"] == {"float32_bytes": fp32["sizes"]["float32_bytes"], "int8_bytes": int8_bytes}
    assert int8["precision"] == "int8" and int8["parity"]["float32"]["passed"]
    assert 0.0 <= int8["parity"]["int8"]["top1_agreement"] <= 1.0 and int8["parity"]["int8"]["compared"] > 10
    assert not list(tmp_path.glob(".*"))  # no work directories left behind
    result = distilkit.pipeline(model=str(tmp_path / "int8"))("Paris is the [MASK] of France.", top_k=2)
    assert len(result) == 2


def test_int8_qa_reports_span_agreement(exported, tmp_path):
    src, _, _ = exported["question-answering"]
    report = export_onnx(src, tmp_path / "qa8", quantize="int8")
    assert set(report["parity"]["int8"]) == {"span_agreement", "compared", "max_abs_diff", "shapes"}


def test_parity_failure_fails_loudly_and_writes_nothing(exported, tmp_path):
    src, _, _ = exported["text-classification"]
    with pytest.raises(ExportParityError, match=r"max \|ONNX - PyTorch\| = .* > atol 1e-12"):
        export_onnx(src, tmp_path / "bad", atol=1e-12)
    assert not (tmp_path / "bad").exists() and not list(tmp_path.glob(".*"))


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "distilkit", *args], capture_output=True, text=True,
                          timeout=180, check=False, env={**os.environ, **ENV})


def test_cli_export_and_predict(exported, tmp_path):
    src, _, _ = exported["fill-mask"]
    out = run_cli("export", "onnx", "--model", str(src), "--output", str(tmp_path / "fm"), "--atol", "1e-12")
    assert out.returncode == 2 and out.stderr.startswith("error: ONNX fp32 parity failed")
    out = run_cli("export", "onnx", "--model", str(src), "--output", str(tmp_path / "fm"))
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["parity"]["float32"]["passed"]
    out = run_cli("export", "onnx", "--model", str(src), "--output", str(tmp_path / "fm"))
    assert out.returncode == 2 and "--overwrite" in out.stderr
    args = ("--param", "top_k=2", "the [MASK] of France")
    onnx_out = run_cli("predict", "fill-mask", "--model", str(tmp_path / "fm"), *args)
    torch_out = run_cli("predict", "fill-mask", "--model", str(src), "--dtype", "float32", *args)
    assert onnx_out.returncode == 0 and torch_out.returncode == 0, onnx_out.stderr + torch_out.stderr
    assert_close(json.loads(torch_out.stdout), json.loads(onnx_out.stdout))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_an_exported_model_end_to_end(exported):
    import httpx

    src, dst, _ = exported["fill-mask"]
    port = free_port()
    log = tempfile.TemporaryFile("w+")  # noqa: SIM115  (a file, not a pipe: an unread pipe blocks a chatty server)
    proc = subprocess.Popen([sys.executable, "-m", "distilkit", "serve", "--model", str(dst),
                             "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, text=True, env={**os.environ, **ENV})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            if proc.poll() is not None or time.time() > deadline:
                log.seek(0)
                raise RuntimeError(f"server not ready (exit {proc.returncode}): {log.read()[-2000:]}")
            try:
                if httpx.get(url + "/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        body = {"input_data": ["Paris is the [MASK] of France.", "the [MASK] is good"], "params": {}}
        response = httpx.post(url + "/score", json=body, timeout=30)
        assert response.status_code == 200, response.text
        want = distilkit.pipeline("fill-mask", model=str(src), dtype="float32")(body["input_data"], top_k=1)
        assert response.json() == [r[0]["token_str"] for r in want]
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_an_exported_directory_registers_and_loads_by_registry_reference(exported, tmp_path, monkeypatch):
    from distilkit.registry.store import Registry

    monkeypatch.setenv("DISTILKIT_HOME", str(tmp_path / "home"))
    source, out, _ = exported["fill-mask"]
    Registry().register(out, "tiny-onnx", aliases=["prod"])
    by_ref = distilkit.pipeline("fill-mask", model="tiny-onnx:prod")
    assert type(by_ref.model).__name__ == "OnnxModel"
    reference = distilkit.pipeline("fill-mask", model=source, dtype="float32")
    assert_close(by_ref("the [MASK] of France", top_k=3), reference("the [MASK] of France", top_k=3))
