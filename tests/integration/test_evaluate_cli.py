"""``distilkit evaluate`` as a user runs it: metrics.json, predictions JSONL, the summary tables, errors,
and the results it adds to a local model directory's metrics.json and card."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from distilkit.config import FinetuneConfig
from distilkit.registry.store import Registry
from distilkit.train.finetune import finetune

CONLL_LABELS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
# The session's tiny models are shared by many tests: evaluating them must not add files to them.
KEEP = "--no-update-model-dir"


def run(*args: str, home: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200", "OMP_NUM_THREADS": "1",
           **({"DISTILKIT_HOME": str(home)} if home else {})}
    return subprocess.run([sys.executable, "-m", "distilkit", "evaluate", *args], capture_output=True,
                          text=True, timeout=300, env=env, check=False)


def test_classification_writes_metrics_and_predictions(tiny_model, tmp_path):
    data = tmp_path / "dev.jsonl"
    data.write_text("".join(json.dumps({"text": f"the {w} day", "label": lab}) + "\n"
                            for w, lab in [("good", "joy"), ("new", "sadness"), ("great", "joy")]))
    model = tiny_model("text-classification", id2label=["sadness", "joy"])
    out = run("text-classification", "--model", str(model), "--data", str(data), "--dtype", "float32", KEEP,
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
    out = run("glue", "--model", str(model), "--data-dir", str(tmp_path), KEEP,
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
    out = run("token-classification", "--model", str(ner_model), KEEP,
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


# --- results recorded in the model directory -------------------------------------------------------
BINARY = [("the good day", 1), ("not the river", 0), ("a great game today", 1), ("she had not won", 0)]


def write_binary(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in BINARY))
    return path


def write_glue(root: Path) -> Path:
    (root / "SST-2").mkdir(parents=True)
    rows = "".join(f"{t}\t{lab}\n" for t, lab in BINARY)
    (root / "SST-2" / "dev.tsv").write_text("sentence\tlabel\n" + rows)
    return root


def snapshot(directory: Path) -> dict[str, str]:
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finetuned(tiny_model, tmp_path_factory) -> Path:
    """A tiny fine-tuned binary classifier (labels "0"/"1", as GLUE's) with finetune's metrics.json, card."""
    root = tmp_path_factory.mktemp("finetuned")
    train = write_binary(root / "train.jsonl")
    cfg = FinetuneConfig(task="text-classification", model=str(tiny_model("fill-mask")), train=str(train),
                         validation=str(train), output=str(root / "run"), batch_size=4, max_steps=2,
                         precision="float32", progress=False, cpu=True)
    return finetune(cfg)


def test_evaluations_accumulate_in_the_model_dir_metrics_and_card(finetuned, tmp_path):
    model = shutil.copytree(finetuned, tmp_path / "run")
    before = json.loads((model / "metrics.json").read_text())
    dev = write_binary(tmp_path / "sst" / "dev.jsonl")
    first = run("text-classification", "--model", str(model), "--data", str(dev), "--dtype", "float32",
                "--output", str(tmp_path / "m.json"))
    assert first.returncode == 0, first.stderr
    assert f"results added to {model / 'metrics.json'} and {model / 'README.md'}\n" in first.stderr
    merged = json.loads((model / "metrics.json").read_text())
    assert {k: merged[k] for k in before} == before  # what finetune measured stays
    assert merged["evaluations"] == {"sst/dev.jsonl": json.loads((tmp_path / "m.json").read_text())}

    second = run("glue", "--model", str(model), "--data-dir", str(write_glue(tmp_path / "glue")),
                 "--output", str(tmp_path / "g.json"))
    assert second.returncode == 0, second.stderr
    merged = json.loads((model / "metrics.json").read_text())
    assert list(merged["evaluations"]) == ["sst/dev.jsonl", "glue/dev"]
    assert set(merged["evaluations"]["glue/dev"]["glue"]) == {"SST-2"}
    card = (model / "README.md").read_text()
    assert "## Training procedure" in card and "## How to use" in card  # finetune's card, results rewritten
    assert card.count("## Evaluation results") == 1
    for row in ["| train.jsonl | accuracy |", "| sst/dev.jsonl | accuracy |", "| glue/dev/SST-2 | accuracy |",
                "| Task | MNLI | QQP | QNLI | SST-2 | CoLA | STS-B | MRPC | RTE |"]:
        assert row in card, row
    score = merged["evaluations"]["glue/dev"]["glue"]["SST-2"]["metrics"]["score"]
    assert f"| score | - | - | - | {score:.1f} | - | - | - | - |" in card


def test_a_registry_reference_leaves_the_store_untouched(finetuned, tmp_path):
    home = tmp_path / "home"
    entry = Registry(home).register(finetuned, "clf", task="text-classification")
    artifact = Path(entry.path)
    before = snapshot(home / "artifacts")
    dev = write_binary(tmp_path / "dev.jsonl")
    for ref in ("clf@1", str(artifact)):
        out = run("text-classification", "--model", ref, "--data", str(dev),
                  "--output", str(tmp_path / "m.json"), home=home)
        assert out.returncode == 0, out.stderr
        note = [line for line in out.stderr.splitlines() if "left as they are" in line]
        assert len(note) == 1, out.stderr
    assert "registry artifact" in note[0]
    assert snapshot(home / "artifacts") == before
    Registry(home).verify(Registry(home).get("clf@1"))  # still loads: every file matches its manifest


def test_no_update_model_dir_and_dummy_weights_write_nothing_into_it(finetuned, tmp_path):
    model = shutil.copytree(finetuned, tmp_path / "run")
    before = snapshot(model)
    dev = write_binary(tmp_path / "dev.jsonl")
    for flag in (KEEP, "--dummy-weights"):
        out = run("text-classification", "--model", str(model), "--data", str(dev), flag,
                  "--output", str(tmp_path / "m.json"))
        assert out.returncode == 0, out.stderr
        assert (tmp_path / "m.json").is_file()
    assert "--dummy-weights scores random weights" in out.stderr
    assert snapshot(model) == before


def test_squad_predictions_json_is_the_official_scripts_id_to_answer_object(tiny_model, tmp_path):
    context = "My name is John and I live in Seattle."
    squad = {"version": "1.1", "data": [{"title": "t", "paragraphs": [{"context": context, "qas": [
        {"id": "q1", "question": "What is my name?", "answers": [{"text": "John", "answer_start": 11}]},
        {"id": "q2", "question": "Where do I live?",
         "answers": [{"text": "Seattle", "answer_start": 30}]}]}]}]}
    data = tmp_path / "dev.json"
    data.write_text(json.dumps(squad))
    model = str(tiny_model("question-answering"))
    common = ["question-answering", "--model", model, "--data", str(data), KEEP,
              "--output", str(tmp_path / "m.json")]
    out = run(*common, "--predictions", str(tmp_path / "preds.json"))
    assert out.returncode == 0, out.stderr
    preds = json.loads((tmp_path / "preds.json").read_text())
    assert set(preds) == {"q1", "q2"} and all(isinstance(a, str) and a in context for a in preds.values())
    lines = run(*common, "--predictions", str(tmp_path / "preds.jsonl"))
    assert lines.returncode == 0, lines.stderr
    rows = [json.loads(line) for line in (tmp_path / "preds.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["q1", "q2"]
    assert [r["prediction"] for r in rows] == [preds["q1"], preds["q2"]]
