"""A model directory's results: metrics.json accumulates by data key and its card follows."""

from __future__ import annotations

import json

import pytest

from distilkit.evaluation import results

FINETUNE = {"model": "run", "data": "/data/dev.jsonl", "task": "text-classification", "examples": 8,
            "seconds": 0.1, "examples_per_second": 80.0, "metrics": {"accuracy": 1.0, "f1": 0.75}}
SQUAD = {"model": "run", "data": "/d/squad/dev-v1.1.json", "task": "question-answering", "examples": 3,
         "metrics": {"squad_version": "1.1", "exact_match": 33.33333, "f1": 50.0}}
GLUE = {"model": "run", "data_dir": "/glue", "split": "dev", "errors": {"STS-B": "needs a regression model"},
        "glue": {"SST-2": {"examples": 2, "metrics": {"accuracy": 0.5, "score": 50.0}},
                 "MRPC": {"examples": 2, "metrics": {"accuracy": 0.5, "f1": 0.6667, "score": 58.335}}}}


def test_keys_name_the_data_file_and_its_folder(tmp_path, monkeypatch):
    assert results.evaluation_key("../shared/data/squad/dev-v1.1.json") == "squad/dev-v1.1.json"
    monkeypatch.chdir(tmp_path)
    assert results.evaluation_key("dev.jsonl") == results.evaluation_key(tmp_path / "dev.jsonl")
    assert results.evaluation_key("dev.jsonl") == f"{tmp_path.name}/dev.jsonl"
    assert results.glue_key("dev") == "glue/dev"


def test_merge_keeps_the_finetune_summary_and_other_evaluations_and_replaces_the_same_key():
    merged = results.merge(FINETUNE, "squad/dev-v1.1.json", SQUAD)
    merged = results.merge(merged, "glue/dev", GLUE)
    again = results.merge(merged, "squad/dev-v1.1.json", {**SQUAD, "examples": 5})
    assert {k: again[k] for k in FINETUNE} == FINETUNE
    assert list(again["evaluations"]) == ["glue/dev", "squad/dev-v1.1.json"]  # the newest last
    assert again["evaluations"]["squad/dev-v1.1.json"]["examples"] == 5
    with pytest.raises(ValueError, match='"evaluations" entry that is not an object'):
        results.merge({"evaluations": [1]}, "k", SQUAD)


def test_record_evaluation_merges_into_the_directory(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["DistilBertForQuestionAnswering"]}))
    metrics_path, card_path = results.record_evaluation(tmp_path, "squad/dev-v1.1.json", SQUAD,
                                                        "question-answering")
    results.record_evaluation(tmp_path, "glue/dev", GLUE, "question-answering")
    merged = json.loads(metrics_path.read_text())
    assert list(merged) == ["evaluations"]
    assert list(merged["evaluations"]) == ["squad/dev-v1.1.json", "glue/dev"]
    card = card_path.read_text()
    assert card.startswith(f"# {tmp_path.name}\n\nA question-answering model (DistilBertForQuestionAnswering")
    assert "| squad/dev-v1.1.json | f1 | 50 |" in card and "| score | - | - | - | 50.0 |" in card
    assert card.index("## Evaluation results") < card.index("## How to use")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md", "config.json", "metrics.json"]
    assert card_path.stat().st_mode == (tmp_path / "config.json").stat().st_mode  # not mkstemp's private 0600
    metrics_path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="is not a JSON object"):
        results.record_evaluation(tmp_path, "k", SQUAD, "question-answering")


def test_local_model_dir_refuses_registry_artifacts_the_hub_cache_and_references(tmp_path, monkeypatch):
    from huggingface_hub import constants

    home, cache = tmp_path / "home", tmp_path / "hub"
    monkeypatch.setenv("DISTILKIT_HOME", str(home))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    for d in (tmp_path / "run", home / "artifacts" / "abc", cache / "models--x" / "snapshots" / "1"):
        d.mkdir(parents=True)
        (d / "config.json").write_text("{}")
    assert results.local_model_dir(tmp_path / "run") == ((tmp_path / "run").resolve(), "")
    assert results.local_model_dir(home / "artifacts" / "abc")[1] == \
        "a registry artifact: registered versions are immutable"
    assert results.local_model_dir(cache / "models--x" / "snapshots" / "1")[1] == "in the Hugging Face cache"
    for ref in ("squad-student@1", "distilbert-base-uncased", str(tmp_path)):
        assert results.local_model_dir(ref) == (
            None, "not a local model directory: a hub id or registry reference")
