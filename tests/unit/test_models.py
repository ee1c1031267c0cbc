"""Model references: directories, hub ids offline, task inference, dummy weights."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from transformers import AutoConfig

import distilkit
from distilkit.models import ModelNotFoundError, canonical_task, infer_task, load_model


@pytest.mark.parametrize(
    ("arch", "task"),
    [("DistilBertForMaskedLM", "fill-mask"), ("DistilBertForQuestionAnswering", "question-answering"),
     ("RobertaForSequenceClassification", "text-classification"),
     ("BertForTokenClassification", "token-classification")],
)
def test_task_is_inferred_from_config_architectures(arch, task):
    assert infer_task(type("C", (), {"architectures": [arch]})()) == task


def test_config_without_a_known_architecture_asks_for_the_task():
    with pytest.raises(ValueError, match="cannot infer the task"):
        infer_task(type("C", (), {"architectures": ["DistilBertModel"]})())


def test_task_aliases_map_to_pipeline_tags_and_unknown_tasks_are_refused():
    assert canonical_task("ner") == "token-classification"
    assert canonical_task("sentiment-analysis") == "text-classification"
    with pytest.raises(ValueError, match="unknown task 'summarization'"):
        canonical_task("summarization")


def test_hub_id_offline_is_a_clear_error_naming_model_dir(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match=r"--model DIR.*--dummy-weights"):
        load_model("distilbert-base-cased-not-in-cache")


def test_missing_directory_and_directory_without_config_are_named(tmp_path):
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        load_model(str(tmp_path / "nope"))
    with pytest.raises(ModelNotFoundError, match="has no config.json"):
        load_model(tmp_path)


def test_directory_without_weights_suggests_dummy_weights(tiny_model, tmp_path):
    src = tiny_model("fill-mask")
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(src / name, tmp_path / name)
    with pytest.raises(ModelNotFoundError, match="--dummy-weights"):
        load_model(tmp_path)
    loaded = load_model(tmp_path, dummy_weights=True)
    assert loaded.task == "fill-mask"


def test_dummy_weights_are_seeded_and_differ_from_saved_weights(tiny_model):
    src = tiny_model("fill-mask")
    a = load_model(src, dummy_weights=True, seed=1).model.state_dict()
    b = load_model(src, dummy_weights=True, seed=1).model.state_dict()
    saved = load_model(src).model.state_dict()
    key = next(k for k in a if k.endswith("q_lin.weight"))
    assert torch.equal(a[key], b[key])
    assert not torch.equal(a[key], saved[key])


def test_dummy_weights_build_another_task_head_on_a_config(tiny_model):
    loaded = load_model(tiny_model("fill-mask"), "question-answering", dummy_weights=True)
    assert type(loaded.model).__name__ == "DistilBertForQuestionAnswering"


def test_pipeline_infers_the_task_and_reports_it(tiny_model):
    pipe = distilkit.pipeline(model=tiny_model("fill-mask"), dtype="float32")
    assert pipe.task == "fill-mask"
    assert "fill-mask" in repr(pipe)


def test_pipeline_rejects_bad_default_parameters_at_construction(tiny_model):
    with pytest.raises(ValueError, match="unknown parameter 'topk'"):
        distilkit.pipeline("fill-mask", model=tiny_model("fill-mask"), topk=3)


def test_saved_config_round_trip_keeps_architecture(tiny_model):
    config = json.loads((tiny_model("fill-mask") / "config.json").read_text())
    assert AutoConfig.for_model(**{k: v for k, v in config.items() if k == "model_type"}) is not None
    assert config["architectures"] == ["DistilBertForMaskedLM"]


def test_a_bare_encoder_names_no_task_and_the_error_says_which_flag_names_it(tiny_encoder):
    from distilkit.models import TaskNotFoundError

    with pytest.raises(
        TaskNotFoundError, match=r"\['BertModel'\] \(an encoder without a task head: fine-tune"
    ) as err:
        load_model(tiny_encoder)
    assert "name the task with --task TASK" in str(err.value.naming("--task TASK"))
    with pytest.raises(TaskNotFoundError, match=r"name the task with pipeline\(TASK, model=\.\.\.\)"):
        distilkit.pipeline(model=str(tiny_encoder))


@pytest.mark.parametrize("task", ["text-classification", "fill-mask", "question-answering"])
def test_a_task_head_missing_from_the_checkpoint_is_an_error_not_random_answers(tiny_encoder, task):
    from distilkit.models import MissingHeadError

    how = "masked-LM head" if task == "fill-mask" else f"distilkit finetune {task} --model"
    with pytest.raises(MissingHeadError, match=rf"no weights for the {task} head .*{how}.*--dummy-weights"):
        load_model(tiny_encoder, task)
    assert load_model(tiny_encoder, task, dummy_weights=True).task == task  # random weights on purpose


def test_complete_task_checkpoints_load_as_before(tiny_model):
    for task in ("fill-mask", "question-answering", "text-classification", "token-classification"):
        assert load_model(tiny_model(task, "bert"), task).task == task
