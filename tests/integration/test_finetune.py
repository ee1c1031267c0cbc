"""Fine-tuning end to end on tiny models: every task learns, output contract, resume, teacher, CLI errors."""

from __future__ import annotations

import csv
import dataclasses
import functools
import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForQuestionAnswering

import distilkit
from distilkit.config import FinetuneConfig
from distilkit.train import finetune as finetune_module
from distilkit.train.student_init import init_student

OUTPUT_FILES = [
    "README.md",
    "config.json",
    "config.yaml",
    "metrics.csv",
    "metrics.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
]

# Both labels at every length: length-grouped batches stay mixed.
TEXTS = [
    ("the good day", "joy"),
    ("a great game today", "joy"),
    ("my good team won it", "joy"),
    ("great music and a good day", "joy"),
    ("not the river", "sadness"),
    ("she had not won", "sadness"),
    ("the band was not good", "sadness"),
    ("he was not at the game", "sadness"),
]
SENTENCES = [
    (("John", "live", "in", "London"), ("B-PER", "O", "O", "B-LOC")),
    (("she", "played", "in", "Berlin"), ("O", "O", "O", "B-LOC")),
    (("Microsoft", "won", "the", "game"), ("B-ORG", "O", "O", "O")),
    (("my", "name", "is", "John"), ("O", "O", "O", "B-PER")),
]
QAS = [
    ("What is my name?", "My name is John and I live in Seattle.", "John"),
    ("Where do I live?", "My name is John and I live in Seattle.", "Seattle"),
    ("What is the capital?", "Paris is the capital of France and a great city.", "Paris"),
    ("Who won?", "Apple won the game of the season.", "Apple"),
]


def write_texts(path, rows=TEXTS, repeat=1):
    path.write_text("".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in rows * repeat))
    return path


def write_conll(path, repeat=1):
    blocks = [
        "\n".join(f"{w} NN O {t}" for w, t in zip(words, tags, strict=True)) for words, tags in SENTENCES
    ]
    path.write_text("-DOCSTART- -X- -X- O\n\n" + "\n\n".join(blocks * repeat) + "\n")
    return path


def write_squad(path, repeat=1, impossible=False):
    items = [(q, c, [{"text": a, "answer_start": c.index(a)}]) for q, c, a in QAS * repeat]
    if impossible:
        items.append(("Who is the king?", QAS[0][1], []))
    data = [
        {
            "title": "t",
            "paragraphs": [
                {
                    "context": c,
                    "qas": [
                        {
                            "id": str(i),
                            "question": q,
                            "answers": answers,
                            **({} if answers else {"is_impossible": True}),
                        }
                    ],
                }
            ],
        }
        for i, (q, c, answers) in enumerate(items)
    ]
    path.write_text(json.dumps({"version": "v2.0" if impossible else "1.1", "data": data}))
    return path


def config(model, train, output, task="text-classification", **over):
    base = {
        "task": task,
        "model": str(model),
        "train": str(train),
        "output": str(output),
        "batch_size": 8,
        "lr": 1e-2,
        "warmup": 0.0,
        "max_steps": 30,
        "log_every": 1,
        "precision": "float32",
        "progress": False,
        "seed": 3,
    }
    return FinetuneConfig(**{**base, **over})


def losses(path, column="loss"):
    with open(path, newline="") as f:
        return [float(r[column]) for r in csv.DictReader(f)]


def data_for(task, tmp_path, repeat=4):
    if task == "text-classification":
        return write_texts(tmp_path / "train.jsonl", repeat=repeat)
    if task == "token-classification":
        return write_conll(tmp_path / "train.txt", repeat=repeat)
    return write_squad(tmp_path / "train.json", repeat=repeat)


@pytest.mark.parametrize("task", ["text-classification", "token-classification", "question-answering"])
def test_each_task_learns_a_tiny_repeated_dataset(task, tiny_model, tmp_path):
    train = data_for(task, tmp_path)
    out = finetune_module.finetune(config(tiny_model("fill-mask"), train, tmp_path / "run", task))
    curve = losses(out / "metrics.csv")
    assert len(curve) == 30
    assert sum(curve[-3:]) / 3 < 0.7 * sum(curve[:3]) / 3, curve
    assert distilkit.pipeline(task, model=str(out)).task == task


def test_output_dir_contract_metrics_card_and_pipeline(tiny_model, tmp_path):
    train = write_texts(tmp_path / "train.jsonl", repeat=4)
    dev = write_texts(tmp_path / "dev.jsonl")
    out = finetune_module.finetune(
        config(tiny_model("fill-mask"), train, tmp_path / "run", validation=str(dev))
    )
    assert sorted(p.name for p in out.iterdir()) == OUTPUT_FILES
    cfg = json.loads((out / "config.json").read_text())
    assert (
        cfg["id2label"] == {"0": "joy", "1": "sadness"}
        and cfg["problem_type"] == "single_label_classification"
    )
    assert cfg["architectures"] == ["DistilBertForSequenceClassification"]
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["task"] == "text-classification" and summary["examples"] == 8
    assert summary["metrics"]["accuracy"] == 1.0  # 30 steps on 4 copies of the dev set itself
    card = (out / "README.md").read_text()
    assert "## Evaluation results" in card and "| dev.jsonl | accuracy | 1 |" in card
    assert (out / "config.yaml").read_text().startswith("# distilkit finetune --config config.yaml\n")
    result = distilkit.pipeline("text-classification", model=str(out))("the good day")
    assert result[0]["label"] == "joy"


def test_tensorboard_logs_the_train_rows_and_the_validation_metrics(tiny_model, tmp_path):
    pytest.importorskip("tensorboard", reason="pip install 'distilkit[tensorboard]'")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train = write_texts(tmp_path / "train.jsonl")
    out = finetune_module.finetune(
        config(tiny_model("fill-mask"), train, tmp_path / "run", validation=str(train), max_steps=3,
               tensorboard=True)
    )
    assert sorted(p.name for p in out.iterdir()) == sorted([*OUTPUT_FILES, "tensorboard"])
    assert len(list((out / "tensorboard").glob("events.out.tfevents.*"))) == 1
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    logged = {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}
    train_tags = {"train/loss", "train/loss_task", "train/lr", "train/grad_norm", "train/examples_per_s"}
    assert train_tags <= set(logged)
    assert [step for step, _ in logged["train/loss"]] == [1, 2, 3]
    metrics = json.loads((out / "metrics.json").read_text())["metrics"]
    assert {tag for tag in logged if tag.startswith("eval/")} == {f"eval/{k}" for k in metrics}
    assert logged["eval/accuracy"] == [(3, pytest.approx(metrics["accuracy"]))]


def test_ner_and_squad_v2_are_evaluated_with_their_metrics(tiny_model, tmp_path):
    conll = write_conll(tmp_path / "train.txt", repeat=4)
    out = finetune_module.finetune(
        config(
            tiny_model("fill-mask"),
            conll,
            tmp_path / "ner",
            "token-classification",
            validation=str(conll),
            max_steps=4,
        )
    )
    assert {"precision", "recall", "f1"} <= set(json.loads((out / "metrics.json").read_text())["metrics"])
    assert json.loads((out / "config.json").read_text())["id2label"]["0"] == "O"
    squad = write_squad(tmp_path / "train.json", repeat=2, impossible=True)
    out = finetune_module.finetune(
        config(
            tiny_model("fill-mask"),
            squad,
            tmp_path / "qa",
            "question-answering",
            validation=str(squad),
            max_steps=2,
        )
    )
    metrics = json.loads((out / "metrics.json").read_text())["metrics"]
    assert metrics["squad_version"] == "2.0" and "best_f1" in metrics


def test_regression_pairs_and_multi_label(tiny_model, tmp_path):
    pairs = tmp_path / "sts.jsonl"
    pairs.write_text(
        "".join(
            json.dumps({"sentence1": a, "sentence2": b, "label": s}) + "\n"
            for a, b, s in [
                ("the good day", "a good day", 4.5),
                ("the river", "a game", 0.5),
                ("my team won", "the team won", 3.8),
                ("music", "Paris", 1.2),
            ]
        )
    )
    out = finetune_module.finetune(
        config(tiny_model("fill-mask", "bert"), pairs, tmp_path / "sts", validation=str(pairs), max_steps=3)
    )
    assert json.loads((out / "config.json").read_text())["problem_type"] == "regression"
    assert {"pearson", "spearman"} <= set(json.loads((out / "metrics.json").read_text())["metrics"])
    multi = tmp_path / "multi.jsonl"
    multi.write_text(
        "".join(
            json.dumps({"text": t, "labels": labs}) + "\n"
            for t, labs in [
                ("the good day", ["joy", "love"]),
                ("not good", ["anger"]),
                ("great music", ["joy"]),
                ("the river", []),
            ]
        )
    )
    out = finetune_module.finetune(
        config(tiny_model("fill-mask"), multi, tmp_path / "multi", validation=str(multi), max_steps=3)
    )
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["problem_type"] == "multi_label_classification" and len(cfg["id2label"]) == 3
    assert "micro_f1" in json.loads((out / "metrics.json").read_text())["metrics"]


def test_scratch_init_with_size_overrides(tiny_model, tmp_path):
    train = write_texts(tmp_path / "train.jsonl")
    out = finetune_module.finetune(
        config(
            tiny_model("fill-mask"),
            train,
            tmp_path / "run",
            init="scratch",
            num_layers=1,
            hidden_size=64,
            max_steps=2,
        )
    )
    cfg = json.loads((out / "config.json").read_text())
    assert (cfg["n_layers"], cfg["dim"], cfg["n_heads"], cfg["hidden_dim"]) == (1, 64, 1, 256)


def test_interrupted_run_resumes_exactly(tiny_model, tmp_path, monkeypatch):
    train = write_texts(tmp_path / "train.jsonl", repeat=4)
    model = tiny_model("fill-mask")
    over = {"max_steps": 6, "save_every": 3, "grad_accumulation": 2, "batch_size": 4}
    straight = finetune_module.finetune(config(model, train, tmp_path / "straight", **over))

    calls = {"n": 0}
    real = finetune_module.compute_losses

    def crash_in_step_5(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 9:  # first micro-batch of step 5: the checkpoint at step 3 survives
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(finetune_module, "compute_losses", crash_in_step_5)
    with pytest.raises(KeyboardInterrupt):
        finetune_module.finetune(config(model, train, tmp_path / "resumed", **over))
    monkeypatch.setattr(finetune_module, "compute_losses", real)
    resumed = finetune_module.finetune(config(model, train, tmp_path / "resumed", resume="auto", **over))

    a, b = load_file(straight / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert losses(straight / "metrics.csv") == losses(resumed / "metrics.csv")
    assert sorted(p.name for p in (resumed / "checkpoints").iterdir()) == ["step-000003", "step-000006"]


def test_example_count_is_each_micro_batch_once_whatever_the_log_window(tiny_model, tmp_path):
    train = write_texts(tmp_path / "train.jsonl", repeat=4)
    over = {"max_steps": 6, "save_every": 6, "grad_accumulation": 2, "batch_size": 4}
    counted = []
    for log_every in (1, 5):
        out = finetune_module.finetune(config(tiny_model("fill-mask"), train, tmp_path / f"log{log_every}",
                                              log_every=log_every, **over))
        state = json.loads((out / "checkpoints" / "step-000006" / "trainer_state.json").read_text())
        counted.append(state["examples"])
    assert counted[0] == counted[1] and 24 < counted[0] <= 6 * 2 * 4


@pytest.mark.parametrize("task", ["text-classification", "question-answering"])
def test_teacher_adds_the_distillation_term(task, tiny_model, tmp_path):
    train = data_for(task, tmp_path, repeat=1)
    labels = {"id2label": ["sadness", "joy"]} if task == "text-classification" else {}
    teacher = tiny_model(task, "distilbert", seed=7, **labels)
    out = finetune_module.finetune(
        config(
            tiny_model("fill-mask"),
            train,
            tmp_path / "run",
            task,
            teacher=str(teacher),
            max_steps=3,
            alpha_ce=2.0,
        )
    )
    ce = losses(out / "metrics.csv", "loss_ce")
    assert len(ce) == 3 and all(v > 0 for v in ce)
    if labels:  # the student adopts the teacher's label order so that the logits line up
        assert json.loads((out / "config.json").read_text())["id2label"] == {"0": "sadness", "1": "joy"}


@pytest.mark.parametrize(("term", "card"), [
    ("cos", "1.0·(1 − cos) of the last hidden states"),  # the last layers
    ("hidden", "1.0·(1 − cos) of each layer's output and its teacher layer's"),  # every student layer
])
def test_hidden_state_terms_alone_pull_the_student_toward_the_teacher(term, card, tiny_model, tmp_path):
    train = data_for("question-answering", tmp_path, repeat=2)
    teacher = tiny_model("question-answering", "distilbert", seed=7, layers=4)
    student = tiny_model("fill-mask", "distilbert", seed=3)  # other random weights, no recorded layer map
    weights = {"alpha_ce": 0.0, "alpha_task": 0.0, f"alpha_{term}": 1.0}
    out = finetune_module.finetune(config(student, train, tmp_path / "run", "question-answering",
                                          teacher=str(teacher), max_steps=12, lr=3e-3, precision="float32",
                                          batch_size=4, **weights))
    curve = losses(out / "metrics.csv", f"loss_{term}")
    assert len(curve) == 12 and curve[0] > 0.01
    assert sum(curve[-3:]) / 3 < 0.5 * sum(curve[:3]) / 3, curve  # the only term: it must fall
    assert card in (out / "README.md").read_text()


def test_alpha_hidden_pairs_each_student_layer_with_the_teacher_layer_it_came_from(tiny_model, tmp_path):
    train = data_for("question-answering", tmp_path, repeat=1)
    teacher = tiny_model("question-answering", "distilbert", seed=7, layers=3)
    cfg = config("unused", train, tmp_path / "unused", "question-answering", teacher=str(teacher),
                 alpha_hidden=1.0)
    batch = {"input_ids": torch.tensor([[101, 7, 8, 9, 102, 0]]),
             "attention_mask": torch.tensor([[1, 1, 1, 1, 1, 0]])}
    t_model = AutoModelForQuestionAnswering.from_pretrained(teacher).eval()
    terms = {}
    for name, layers in (("copy", [0, 1, 2]), ("skip", [0, 2])):
        student_dir = init_student(str(teacher), tmp_path / name, layers)
        student = AutoModelForQuestionAnswering.from_pretrained(student_dir).eval()  # no dropout
        pairs = finetune_module.check_hidden_terms(cfg, student.config, t_model.config, student_dir)
        assert pairs == [(i + 1, t + 1) for i, t in enumerate(layers)]  # the map init-student recorded
        with torch.no_grad():
            terms[name] = float(finetune_module.compute_losses(cfg, None, student, t_model, batch,
                                                                 layer_pairs=pairs)["hidden"])
    assert abs(terms["copy"]) < 1e-7  # every layer is the teacher's own, on the same input
    # layer 2 now reads layer 0's output, not layer 1's (small: random tiny layers change little)
    assert terms["skip"] > 1e-6, terms


@pytest.mark.parametrize("term", ["cos", "hidden"])
def test_hidden_state_terms_with_a_wider_student_than_the_teacher_name_the_flag(term, tiny_model, tmp_path):
    train = data_for("question-answering", tmp_path, repeat=1)
    teacher = tiny_model("question-answering", "distilbert", seed=7)
    wide = tiny_model("fill-mask", "bert", hidden=64)
    with pytest.raises(distilkit.errors.UserError, match=f"--alpha-{term} needs the teacher's hidden size"):
        finetune_module.finetune(config(wide, train, tmp_path / "run", "question-answering",
                                        teacher=str(teacher), max_steps=1, **{f"alpha_{term}": 1.0}))


def run_cli(*args):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "distilkit", "finetune", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )


def test_cli_trains_and_bad_flags_exit_2_with_one_line(tiny_model, tmp_path):
    train = write_texts(tmp_path / "train.jsonl")
    model = str(tiny_model("fill-mask"))
    common = ["text-classification", "--model", model, "--train", str(train), "--output", str(tmp_path / "o")]
    ok = run_cli(*common, "--max-steps", "2", "--no-progress", "--precision", "float32", "--tensorboard")
    assert ok.returncode == 0, ok.stderr
    assert "finetune: done, 2 steps" in ok.stdout
    assert list((tmp_path / "o" / "tensorboard").glob("events.out.tfevents.*"))
    again = run_cli("--config", str(tmp_path / "o" / "config.yaml"), "--output", str(tmp_path / "o2"),
                    "--max-steps", "1")  # config.yaml reruns the command; flags win
    assert again.returncode == 0 and "finetune: done, 1 steps" in again.stdout, again.stderr
    dev = write_texts(tmp_path / "dev.jsonl", rows=[("the good day", "fear")])
    for extra, message in [
        (["--alpha-ce", "1"], "--alpha-ce"),
        (["--num-layers", "2"], "--init scratch"),
        (["--validation", str(dev)], "--validation has labels ['fear']"),
        (["--warmup", "1.5"], "--warmup"),
    ]:
        bad = run_cli(*common, *extra)
        assert bad.returncode == 2, (extra, bad.stderr)
        lines = bad.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], bad.stderr
    missing = run_cli(
        "ner", "--model", model, "--train", str(tmp_path / "nope.txt"), "--output", str(tmp_path / "x")
    )
    assert missing.returncode == 2 and "no such file" in missing.stderr


def write_sst2(path, repeat=2):
    rows = [(t, "1" if lab == "joy" else "0") for t, lab in TEXTS * repeat]
    path.write_text("sentence\tlabel\n" + "".join(f"{t}\t{lab}\n" for t, lab in rows))
    return path


def test_glue_index_labels_get_glue_names_and_still_score_against_the_0_1_file(tiny_model, tmp_path):
    data = write_sst2(tmp_path / "train.tsv")
    out = finetune_module.finetune(config(tiny_model("fill-mask"), data, tmp_path / "run", glue_task="SST-2",
                                          validation=str(data), max_steps=4))
    saved = json.loads((out / "config.json").read_text())
    assert saved["id2label"] == {"0": "negative", "1": "positive"}
    assert 0 <= json.loads((out / "metrics.json").read_text())["metrics"]["accuracy"] <= 1
    classify = distilkit.pipeline("text-classification", model=str(out))
    labels = {r["label"] for r in classify(["the good day"] * 2)}
    assert labels <= {"negative", "positive"}


def test_label_names_flag_names_the_data_labels_and_a_count_mismatch_exits_2(tiny_model, tmp_path):
    train = write_texts(tmp_path / "train.jsonl",
                        rows=[(t, "1" if lab == "joy" else "0") for t, lab in TEXTS])
    common = ["text-classification", "--model", str(tiny_model("fill-mask")), "--train", str(train)]
    ok = run_cli(*common, "--output", str(tmp_path / "o"), "--label-names", "bad, good", "--max-steps", "1",
                 "--no-progress")
    assert ok.returncode == 0, ok.stderr
    assert json.loads((tmp_path / "o" / "config.json").read_text())["label2id"] == {"bad": 0, "good": 1}
    bad = run_cli(*common, "--output", str(tmp_path / "o2"), "--label-names", "a,b,c")
    assert bad.returncode == 2 and "--label-names gives 3 names for the data's 2 labels" in bad.stderr


def test_a_bert_teacher_reads_the_token_types_its_distilbert_student_has_no_input_for(
    tiny_model, tmp_path, monkeypatch
):
    import shutil

    from transformers import AutoTokenizer

    teacher = tmp_path / "teacher"  # a BERT QA teacher whose tokenizer gives token types, like MiniLM's
    shutil.copytree(tiny_model("question-answering", "bert", layers=2), teacher)
    AutoTokenizer.from_pretrained(
        teacher, model_input_names=["input_ids", "token_type_ids", "attention_mask"]
    ).save_pretrained(teacher)
    student = init_student(str(teacher), tmp_path / "student")
    # the DistilBERT student's tokenizer gives no segment ids (its forward has no input for them)
    assert AutoTokenizer.from_pretrained(student).model_input_names == ["input_ids", "attention_mask"]
    seen = {}
    real = finetune_module.compute_losses

    def spy(cfg, problem_type, s, t, batch, student_inputs=None, layer_pairs=None):
        if not seen:
            t.register_forward_pre_hook(lambda _m, _a, kwargs: seen.update(kwargs), with_kwargs=True)
        return real(cfg, problem_type, s, t, batch, student_inputs, layer_pairs)

    monkeypatch.setattr(finetune_module, "compute_losses", spy)
    train = data_for("question-answering", tmp_path, repeat=1)
    finetune_module.finetune(config(student, train, tmp_path / "run", "question-answering",
                                    teacher=str(teacher), max_steps=1))
    types = seen["token_type_ids"]  # the context is segment 1, as the teacher was trained
    assert types.max() == 1 and (types[seen["attention_mask"] == 0] == 0).all()


TRANSFER = {  # inputs without usable labels: unseen labels, a file without a label column, v2.0 questions
    "text-classification": lambda path: path.write_text(
        "".join(json.dumps({"text": t}) + "\n" for t in ["a good river", "not a great day", "the won game"])
    ),
    "token-classification": lambda path: write_conll(path),
    "question-answering": lambda path: write_squad(path, impossible=True),
}


@pytest.mark.parametrize("task", list(TRANSFER))
def test_transfer_rows_train_the_distillation_term_and_never_the_task_loss(task, tiny_model, tmp_path):
    from distilkit.train import task_data

    train = data_for(task, tmp_path, repeat=1)
    transfer = tmp_path / ("transfer.jsonl" if task == "text-classification" else f"transfer{train.suffix}")
    TRANSFER[task](transfer)
    labels = {"id2label": ["sadness", "joy"]} if task == "text-classification" else {}
    if task == "token-classification":
        labels = {"id2label": ["O", "B-LOC", "B-ORG", "B-PER"]}
    teacher = tiny_model(task, "distilbert", seed=7, **labels)
    cfg = config(tiny_model("fill-mask"), train, tmp_path / "run", task, teacher=str(teacher),
                 transfer=str(transfer), max_steps=3, batch_size=4)
    run = finetune_module.setup(cfg)
    labelled = run.data.labelled_rows  # the training rows come first, one per example here
    assert labelled == run.data.examples == {"text-classification": 8, "token-classification": 4,
                                             "question-answering": 4}[task]
    assert run.data.transfer_examples == len(run.data) - labelled == {
        "text-classification": 3, "token-classification": 4, "question-answering": 5}[task]
    run.student.eval()  # no dropout: the same rows give the same loss twice
    loss = functools.partial(finetune_module.compute_losses, cfg, run.space.problem_type, run.student,
                             run.teacher, student_inputs=run.student_inputs)

    def batch(rows):
        return task_data.training_batch(run.data, rows, 0, task, run.space.problem_type)

    only_transfer = loss(batch=batch(list(range(labelled, len(run.data)))))
    assert float(only_transfer["task"].detach()) == 0.0 and float(only_transfer["ce"].detach()) > 0
    if task != "question-answering":  # padding does not enter these losses: a wider mixed batch is fair
        mixed = loss(batch=batch([0, 1, labelled, labelled + 1]))
        alone = loss(batch=batch([0, 1]))
        assert torch.allclose(mixed["task"], alone["task"], atol=1e-6) and float(alone["task"].detach()) > 0
    run.logs.close()
    out = finetune_module.finetune(dataclasses.replace(cfg, output=str(tmp_path / "run2")))
    assert all(v >= 0 for v in losses(out / "metrics.csv", "loss_task"))
    card = (out / "README.md").read_text()
    assert "transfer data (teacher-labelled)" in card and str(transfer) in card
