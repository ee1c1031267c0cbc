"""Student init: layer map, BERT->DistilBERT name mapping tensor for tensor, RoBERTa->RoBERTa."""

from __future__ import annotations

import json

import pytest
import torch
import transformers

from distilkit.errors import UserError
from distilkit.models import load_model
from distilkit.train.student_init import (
    BERT_TO_DISTILBERT_LAYER,
    build_student,
    default_layer_map,
    hidden_layer_pairs,
    init_student,
    parse_layers,
    recorded_layers,
)


def test_default_layer_map_is_the_published_pattern_scaled():
    assert default_layer_map(12) == [0, 2, 4, 7, 9, 11]
    assert default_layer_map(24) == [0, 2, 4, 6, 8, 10, 13, 15, 17, 19, 21, 23]
    assert default_layer_map(4) == [0, 3]
    assert default_layer_map(1) == [0]


def test_hidden_layer_pairs_follow_the_recorded_map_else_spread_evenly_to_the_last_layer():
    assert hidden_layer_pairs(3, 6, [0, 2, 5]) == [(1, 1), (2, 3), (3, 6)]
    assert hidden_layer_pairs(3, 6) == [(1, 2), (2, 4), (3, 6)]
    assert hidden_layer_pairs(6, 12) == [(i, 2 * i) for i in range(1, 7)]
    assert hidden_layer_pairs(2, 2) == [(1, 1), (2, 2)]
    with pytest.raises(UserError, match="does not fit a 2-layer student of a 6-layer teacher"):
        hidden_layer_pairs(2, 6, [0, 2, 5])
    with pytest.raises(UserError, match="does not fit"):
        hidden_layer_pairs(2, 4, [0, 4])


def test_recorded_layers_reads_init_students_record_and_is_none_elsewhere(tmp_path):
    assert recorded_layers(tmp_path) is None
    (tmp_path / "student_init.json").write_text(json.dumps({"layers": [0, 2, 5]}))
    assert recorded_layers(tmp_path) == [0, 2, 5]


def test_parse_layers():
    assert parse_layers("0, 2,4") == [0, 2, 4]
    with pytest.raises(ValueError, match="--layers"):
        parse_layers("0,two")


@pytest.fixture(scope="module")
def bert_teacher(tiny_model):
    return load_model(tiny_model("fill-mask", "bert", layers=4), "fill-mask").model


def test_bert_to_distilbert_layer_i_equals_teacher_layer_map_i(bert_teacher):
    layers = [3, 0, 2]
    student, used = build_student(bert_teacher, layers)
    assert used == layers and isinstance(student, transformers.DistilBertForMaskedLM)
    assert student.config.n_layers == 3 and student.config.dim == bert_teacher.config.hidden_size
    t, s = bert_teacher.state_dict(), student.state_dict()
    for i, j in enumerate(layers):
        for bert_name, distil_name in BERT_TO_DISTILBERT_LAYER.items():
            for leaf in ("weight", "bias"):
                assert torch.equal(
                    s[f"distilbert.transformer.layer.{i}.{distil_name}.{leaf}"],
                    t[f"bert.encoder.layer.{j}.{bert_name}.{leaf}"],
                )
    pairs = {
        "distilbert.embeddings.word_embeddings.weight": "bert.embeddings.word_embeddings.weight",
        "distilbert.embeddings.LayerNorm.weight": "bert.embeddings.LayerNorm.weight",
        "distilbert.embeddings.LayerNorm.bias": "bert.embeddings.LayerNorm.bias",
        "vocab_transform.weight": "cls.predictions.transform.dense.weight",
        "vocab_transform.bias": "cls.predictions.transform.dense.bias",
        "vocab_layer_norm.weight": "cls.predictions.transform.LayerNorm.weight",
        "vocab_layer_norm.bias": "cls.predictions.transform.LayerNorm.bias",
        "vocab_projector.weight": "cls.predictions.decoder.weight",
        "vocab_projector.bias": "cls.predictions.bias",
    }
    for s_name, t_name in pairs.items():
        assert torch.equal(s[s_name], t[t_name]), s_name
    # token-type row 0 folded into the positions: same embedding output for single-segment input
    assert torch.equal(
        s["distilbert.embeddings.position_embeddings.weight"],
        t["bert.embeddings.position_embeddings.weight"]
        + t["bert.embeddings.token_type_embeddings.weight"][0],
    )
    assert not any("token_type" in name for name in s)
    assert (
        student.vocab_projector.weight.data_ptr()
        == student.distilbert.embeddings.word_embeddings.weight.data_ptr()
    )


def test_all_layers_copied_gives_the_teachers_predictions(bert_teacher):
    student, _ = build_student(bert_teacher, [0, 1, 2, 3])
    ids = torch.randint(5, bert_teacher.config.vocab_size, (2, 9))
    attention = torch.ones_like(ids)
    attention[1, 6:] = 0
    with torch.no_grad():
        expected = bert_teacher(input_ids=ids, attention_mask=attention).logits
        got = student(input_ids=ids, attention_mask=attention).logits
    assert torch.allclose(got[attention.bool()], expected[attention.bool()], atol=1e-4)


def test_roberta_to_roberta(tiny_model):
    teacher = load_model(tiny_model("fill-mask", "roberta", layers=4), "fill-mask").model
    student, layers = build_student(teacher)
    assert layers == [0, 3] and isinstance(student, transformers.RobertaForMaskedLM)
    assert student.config.num_hidden_layers == 2
    t, s = teacher.state_dict(), student.state_dict()
    for name, tensor in s.items():
        source = name
        if ".encoder.layer." in name:
            i = int(name.split(".")[3])
            source = name.replace(f".layer.{i}.", f".layer.{layers[i]}.")
        assert torch.equal(tensor, t[source]), name


def test_bad_layers_name_the_flag(bert_teacher):
    with pytest.raises(ValueError, match=r"--layers \[4\] out of range"):
        build_student(bert_teacher, [0, 4])


def test_init_student_writes_a_loadable_model_dir(tmp_path, tiny_model):
    out = init_student(str(tiny_model("fill-mask", "bert", layers=4)), tmp_path / "student")
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json",
        "model.safetensors",
        "student_init.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    assert json.loads((out / "student_init.json").read_text())["layers"] == [0, 3]
    loaded = load_model(out, "fill-mask")
    assert loaded.config.model_type == "distilbert" and loaded.config.n_layers == 2
    with pytest.raises(ValueError, match="not empty"):
        init_student(str(tiny_model("fill-mask", "bert", layers=4)), out)


def test_dummy_weights_teacher_without_weights_gives_a_student_of_its_seeded_weights(tmp_path, tiny_model):
    import shutil

    from distilkit.models import ModelNotFoundError

    weightless = tmp_path / "teacher"
    shutil.copytree(tiny_model("fill-mask", "bert", layers=4), weightless)
    (weightless / "model.safetensors").unlink()
    with pytest.raises(ModelNotFoundError, match="--dummy-weights"):
        init_student(str(weightless), tmp_path / "refused")

    out = init_student(str(weightless), tmp_path / "student", dummy_weights=True, seed=7)
    teacher = load_model(weightless, "fill-mask", dummy_weights=True, seed=7).model
    student = load_model(out, "fill-mask").model
    assert torch.equal(student.distilbert.embeddings.word_embeddings.weight,
                       teacher.bert.embeddings.word_embeddings.weight)
    assert json.loads((out / "student_init.json").read_text())["teacher_dummy_weights"] is True


# --- task teachers and bare encoders ------------------------------------------------------------------
def test_a_bare_encoder_teacher_gives_a_bare_encoder_student(tiny_encoder, tmp_path):
    out = init_student(str(tiny_encoder), tmp_path / "student")
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["DistilBertModel"] and config["n_layers"] == 2
    record = json.loads((out / "student_init.json").read_text())
    assert record["task"] is None and record["layers"] == [0, 3]
    teacher = transformers.BertModel.from_pretrained(tiny_encoder)
    student = transformers.DistilBertModel.from_pretrained(out)
    assert torch.equal(
        student.transformer.layer[1].ffn.lin1.weight, teacher.encoder.layer[3].intermediate.dense.weight
    )


@pytest.mark.parametrize("task", ["question-answering", "token-classification", "text-classification"])
def test_a_bert_task_teacher_gives_a_distilbert_student_with_its_head_and_labels(tiny_model, task):
    labels = {"id2label": ["neg", "pos", "mixed"]} if task != "question-answering" else {}
    teacher = load_model(tiny_model(task, "bert", layers=4, **labels), task).model
    student, _ = build_student(teacher, [0, 1, 2, 3])
    assert type(student).__name__ == "DistilBert" + type(teacher).__name__.removeprefix("Bert")
    if labels:
        assert student.config.id2label == teacher.config.id2label
    ids = torch.randint(5, teacher.config.vocab_size, (2, 9))
    attention = torch.ones_like(ids)
    attention[1, 6:] = 0
    with torch.no_grad():
        t_out = teacher(input_ids=ids, attention_mask=attention)
        s_out = student(input_ids=ids, attention_mask=attention)
    if task == "question-answering":  # all layers copied: the same logits on single-segment inputs
        assert torch.allclose(s_out.start_logits, t_out.start_logits, atol=1e-4)
    elif task == "token-classification":
        assert torch.allclose(s_out.logits[attention.bool()], t_out.logits[attention.bool()], atol=1e-4)
    else:  # BERT's pooler (tanh) becomes DistilBERT's pre_classifier (ReLU): weights copied, outputs differ
        assert torch.equal(student.pre_classifier.weight, teacher.bert.pooler.dense.weight)
        assert torch.equal(student.classifier.weight, teacher.classifier.weight)


def test_roberta_and_distilbert_task_teachers_keep_their_family_and_head(tiny_model):
    for family in ("roberta", "distilbert"):
        teacher = load_model(tiny_model("text-classification", family, layers=4, id2label=["a", "b"]),
                             "text-classification").model
        student, _ = build_student(teacher)
        assert type(student) is type(teacher) and student.config.id2label == teacher.config.id2label
        s, t = student.state_dict(), teacher.state_dict()
        for name in (n for n in s if "layer." not in n):
            assert torch.equal(s[name], t[name]), name


def test_init_student_cli_takes_a_task_teacher(tiny_model, tmp_path):
    import os
    import subprocess
    import sys

    teacher = tiny_model("question-answering", "bert", layers=4)
    done = subprocess.run([sys.executable, "-m", "distilkit", "init-student", "--teacher", str(teacher),
                           "--output", str(tmp_path / "s")], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"}, check=False)
    assert done.returncode == 0, done.stderr
    assert load_model(tmp_path / "s").task == "question-answering"  # a complete head: loads without error
    # a DistilBERT student's tokenizer gives no token_type_ids, so pipelines can feed it what it encodes
    tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "s")
    student = transformers.AutoModelForQuestionAnswering.from_pretrained(tmp_path / "s")
    assert "token_type_ids" not in tokenizer("a question", "a context")
    student(**tokenizer("a question", "a context", return_tensors="pt"))
