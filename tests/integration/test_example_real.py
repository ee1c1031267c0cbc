"""examples/real/*.py --quick: the three real-weights studies run end to end and write their tables."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "real"


def run(script: str, shared: Path, out: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / script), "--quick", "--shared", str(shared), "--output", str(out),
         *args],
        check=False, capture_output=True, text=True, timeout=900, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )


@pytest.mark.slow
@pytest.mark.shared
def test_quick_studies_train_distil_quantise_compare_and_reuse_finished_steps(shared_dir, tmp_path):
    # One task (CoNLL) keeps this short; every task runs the same steps (the README's full runs).
    out = tmp_path / "real"
    done = run("distill_tasks.py", shared_dir, out, "--tasks", "conll")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    task = json.loads((out / "results.json").read_text())["tasks"]["conll"]
    assert set(task["scores"]) == {"teacher", "distilled", "plain"}
    assert task["speed"]["teacher_per_s"] > 0 and task["speed"]["student_per_s"] > 0
    for model in task["models"].values():
        assert (Path(model) / "model.safetensors").is_file()  # normal model directories
    student = json.loads((Path(task["models"]["distilled"]) / "config.json").read_text())
    assert student["architectures"] == ["DistilBertForTokenClassification"] and student["n_layers"] == 3
    assert (out / "results.md").read_text().count("| CoNLL-2003 (test entity F1) |") == 1

    quantized = run("quantize.py", shared_dir, out, "--tasks", "conll", "--models", "teacher")
    assert quantized.returncode == 0, quantized.stdout[-3000:] + quantized.stderr[-3000:]
    variants = json.loads((out / "quantize.json").read_text())["tasks"]["conll"]["teacher"]["variants"]
    assert variants["ONNX int8"]["size_mb"] < variants["ONNX fp32"]["size_mb"] / 2
    assert all(v["items_per_s"] > 0 for v in variants.values())

    compared = run("parity.py", shared_dir, out, "--tasks", "conll")
    assert compared.returncode == 0, compared.stdout[-3000:] + compared.stderr[-3000:]
    rows = json.loads((out / "parity.json").read_text())["rows"]
    assert len([r for r in rows if r["task"] == "token-classification"]) == 2 * 5  # 2 models x 5 strategies
    assert all(r["matching"] == r["inputs"] for r in rows if r["matching"] is not None)

    again = run("distill_tasks.py", shared_dir, out, "--tasks", "conll")  # every step is reused
    assert again.returncode == 0 and again.stdout.count("(done before; reusing it)") == 4
