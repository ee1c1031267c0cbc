"""examples/real/*.py --quick: the three real-weights studies run end to end and write their tables."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "real"


def run(script: str, shared: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / script), "--quick", "--shared", str(shared), "--output", str(out)],
        check=False, capture_output=True, text=True, timeout=900, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )


@pytest.mark.slow
@pytest.mark.shared
def test_quick_studies_train_distil_quantise_compare_and_reuse_finished_steps(shared_dir, tmp_path):
    out = tmp_path / "real"
    done = run("distill_tasks.py", shared_dir, out)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert set(results["tasks"]) == {"sst2", "emotion", "conll", "squad"}
    for task in results["tasks"].values():
        assert set(task["scores"]) == {"teacher", "distilled", "plain"}
        assert task["speed"]["teacher_per_s"] > 0 and task["speed"]["student_per_s"] > 0
        for model in task["models"].values():
            assert (Path(model) / "model.safetensors").is_file()  # normal model directories
    student = json.loads((Path(results["tasks"]["squad"]["models"]["distilled"]) / "config.json").read_text())
    assert student["architectures"] == ["DistilBertForQuestionAnswering"] and student["n_layers"] == 3
    assert (out / "results.md").read_text().count("| SST-2 (dev accuracy) |") == 1

    quantized = run("quantize.py", shared_dir, out)
    assert quantized.returncode == 0, quantized.stdout[-3000:] + quantized.stderr[-3000:]
    table = json.loads((out / "quantize.json").read_text())["tasks"]
    for models in table.values():
        assert set(models) == {"teacher", "distilled student"}
        for variants in (m["variants"] for m in models.values()):
            assert variants["ONNX int8"]["size_mb"] < variants["ONNX fp32"]["size_mb"] / 2

    compared = run("parity.py", shared_dir, out)
    assert compared.returncode == 0, compared.stdout[-3000:] + compared.stderr[-3000:]
    rows = json.loads((out / "parity.json").read_text())["rows"]
    assert {r["task"] for r in rows} >= {"text-classification", "token-classification", "fill-mask"}
    assert all(r["matching"] == r["inputs"] for r in rows)

    again = run("distill_tasks.py", shared_dir, out)  # every training is reused
    assert again.returncode == 0 and again.stdout.count("(done before; reusing it)") == 4 * 4
