"""examples/wikitext2/run.py --quick: the ablation script runs end to end and writes its table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "wikitext2" / "run.py"


@pytest.mark.slow
@pytest.mark.shared
def test_quick_run_trains_five_models_and_writes_results(shared_dir, tmp_path):
    out = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--shared", str(shared_dir), "--output", str(out),
         "--threads", "1"],
        capture_output=True, text=True, timeout=900, env={**os.environ, "HF_HUB_OFFLINE": "1"}, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert len(results["models"]) == 5
    for metrics in results["models"].values():
        assert (0 <= metrics["mlm_accuracy"] <= 1 and metrics["perplexity"] > 1
                and metrics["mlm_masked_tokens"] > 0)
    assert results["speed"]["teacher_seq_per_s"] > 0 and results["speed"]["student_model_speedup"] > 0
    table = (out / "results.md").read_text()
    assert table.count("| student,") == 4 and "| teacher (4 layers) | " in table
    for name in ("teacher", "student-distilled", "student-distilled-uniform", "student-scratch"):
        assert (out / name / "model.safetensors").is_file()  # normal model directories
    # a second run reuses every finished training
    again = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--shared", str(shared_dir), "--output", str(out),
         "--threads", "1"],
        capture_output=True, text=True, timeout=900, env={**os.environ, "HF_HUB_OFFLINE": "1"}, check=False,
    )
    assert again.returncode == 0 and again.stdout.count("(done before; reusing it)") == 5
