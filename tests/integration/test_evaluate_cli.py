"""``distilkit evaluate`` as a user runs it: metrics.json, predictions JSONL, the summary tables, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

CONLL_LABELS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]


def run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "distilkit", "evaluate", *args], capture_output=True,
                          text=True, timeout=300, env=env)


def test_classification_writes_metrics_and_predictions(tiny_model, tmp_path):
    data = tmp_path / "dev.jsonl"
    data.write_text("".join(json.dumps({"text": f"the {w} day", "label": lab}) + "\n"
                            for w, lab in [("good", "joy"), ("new", "sadness"), ("great", "joy")]))
    model = tiny_model("text-classification", id2label=["sadness", "joy"])
    out = run("text-classification", "--model", str(model), "--data", str(data), "--dtype", "float32",
              "--output", str(tmp_path / "m" / "metrics.json"), "--predictions", str(tmp_path / "p.jsonl"))
    assert out.returncode == 0, out.stderr
    summary = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert summary["task"] == "text-classification" and summary["examples"] == 3
    assert {"accuracy", "macro_f1", "matthews_corr", "f1"} == set(summary["metrics"])
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert [r["gold"] for r in rows] == ["joy", "sadness", "joy"]
    assert "accuracy" in out.stdout and "examples/s" in out.stdout


def test_glue_prints_the_cards_table(tiny_model, tmp_path):
    (tmp_path / "SST-2").mkdir()
    (tmp_path / "SST-2" / "dev.tsv").write_text("sentence\tlabel\nthe good day\t1\na new game\t0\n")
    (tmp_path / "MRPC_dev.tsv").write_text("1\t1\t2\tthe city\ta city\n0\t3\t4\tthe team\tthe band\n")
    model = tiny_model("text-classification", num_labels=2)
    out = run("glue", "--model", str(model), "--data-dir", str(tmp_path),
              "--output", str(tmp_path / "glue.json"))
    assert out.returncode == 0, out.stderr
    header = next(line for line in out.stdout.splitlines() if "MNLI" in line)
    assert [w for w in header.replace("┃", " ").replace("|", " ").split() if w != "Task"] == [
        "MNLI", "QQP", "QNLI", "SST-2", "CoLA", "STS-B", "MRPC", "RTE"]
    result = json.loads((tmp_path / "glue.json").read_text())
    assert set(result["glue"]) == {"SST-2", "MRPC"}
    assert result["table"]["MNLI"] == "-" and result["table"]["MRPC"] != "-"
    assert {"accuracy", "f1", "score"} == set(result["glue"]["MRPC"]["metrics"])


@pytest.mark.parametrize(
    ("args", "message"),
    [(["question-answering"], "takes --data PATH"),
     (["glue"], "evaluate glue takes --data-dir DIR"),
     (["question-answering", "--data", "missing.json"], "--data missing.json: no such file"),
     (["question-answering", "--data", "x.json", "--limit", "0"], "--limit must be >= 1, got 0"),
     (["summarization", "--data", "x"], "unknown task 'summarization'")],
)
def test_user_errors_exit_2_with_one_line(tiny_model, tmp_path, args, message):
    out = run(*args, "--model", str(tiny_model("question-answering")), "--output", str(tmp_path / "m.json"))
    assert out.returncode == 2, out.stderr
    assert message in out.stderr and out.stderr.strip().count("\n") == 0


@pytest.mark.shared
def test_squad_v2_and_conll_on_real_files(shared_dir, tiny_model, tmp_path):
    qa_model = shared_dir / "models/distilbert-base-cased-distilled-squad"
    out = run("question-answering", "--model", str(qa_model), "--dummy-weights",
              "--data", str(shared_dir / "data/squad/dev-v2.0.json"), "--limit", "6",
              "--output", str(tmp_path / "qa.json"))
    assert out.returncode == 0, out.stderr
    metrics = json.loads((tmp_path / "qa.json").read_text())["metrics"]
    assert metrics["squad_version"] == "2.0" and metrics["total"] == 6 and "best_f1" in metrics
    ner_model = tiny_model("token-classification", id2label=CONLL_LABELS)
    out = run("token-classification", "--model", str(ner_model),
              "--data", str(shared_dir / "data/conll2003/test.txt"), "--limit", "40",
              "--output", str(tmp_path / "n.json"))
    assert out.returncode == 0, out.stderr
    ner = json.loads((tmp_path / "n.json").read_text())
    assert ner["examples"] == 40 and {"precision", "recall", "f1", "per_type"} <= set(ner["metrics"])


@pytest.mark.shared
def test_fill_mask_on_wikitext(shared_dir, tmp_path):
    out = run("fill-mask", "--model", str(shared_dir / "models/distilbert-base-cased"), "--dummy-weights",
              "--data", str(shared_dir / "data/wikitext-2/test.txt"), "--limit", "4", "--top-k", "10",
              "--output", str(tmp_path / "fm.json"))
    assert out.returncode == 0, out.stderr
    metrics = json.loads((tmp_path / "fm.json").read_text())["metrics"]
    assert metrics["masked_sentences"] == 4 and metrics["mlm_blocks"] == 4
    assert {"top1_accuracy", "top10_accuracy", "mlm_accuracy", "perplexity"} <= set(metrics)
    assert metrics["perplexity"] > 1000  # random weights over a 28,996-token vocabulary
