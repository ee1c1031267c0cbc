"""GLUE over a folder of task files: per-task failures, per-task model directories."""

from __future__ import annotations

from distilkit.cards import glue_table
from distilkit.evaluation import glue
from distilkit.inference.predictor import Predictor


def test_evaluate_glue_reports_failures_per_task(tiny_model, tmp_path):
    (tmp_path / "SST-2").mkdir()
    (tmp_path / "SST-2" / "dev.tsv").write_text("sentence\tlabel\nthe good day\t1\na new game\t0\n")
    (tmp_path / "STS-B_dev.tsv").write_text("0\tg\tf\t2012\t0\tn\tn\tthe city\ta city\t3.0\n")
    model = tiny_model("text-classification", num_labels=2)
    done, failed = glue.evaluate_glue(lambda task: Predictor.from_ref(model, dtype="float32"), tmp_path)
    assert list(done) == ["SST-2"] and "STS-B needs a regression model" in failed["STS-B"]
    names, row = glue_table({t: r.metrics["score"] for t, r in done.items()})
    assert names == ["MNLI", "QQP", "QNLI", "SST-2", "CoLA", "STS-B", "MRPC", "RTE"]
    assert row[3] != "-" and row.count("-") == 7


def test_glue_model_picks_per_task_directories(tmp_path):
    (tmp_path / "sst2").mkdir()
    assert glue.glue_model(tmp_path, "SST-2") == str(tmp_path / "sst2")
    assert glue.glue_model(tmp_path, "MRPC") == str(tmp_path)
