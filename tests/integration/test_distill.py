"""Distillation end to end on tiny models: CLI, exact resume, the output contract, NaN stop."""

from __future__ import annotations

import csv
import json
import random
import sys

import pytest
import torch
from safetensors.torch import load_file
from tiny_models import WORDS

import distilkit
from distilkit.cli.app import main
from distilkit.config import DistillConfig
from distilkit.train import distill as distill_module
from distilkit.train.data import prepare_data
from distilkit.train.student_init import init_student

OUTPUT_FILES = [
    "checkpoints",
    "config.json",
    "config.yaml",
    "metrics.csv",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
]
CHECKPOINT_FILES = ["model.safetensors", "trainer_state.json", "training_state.pt"]


def _corpus(path, n=120, seed=0):
    r = random.Random(seed)
    path.write_text(
        "\n".join(" ".join(r.choice(WORDS) for _ in range(r.randint(4, 30))) for _ in range(n)) + "\n"
    )
    return path


@pytest.fixture(scope="module")
def setup(tiny_model, tmp_path_factory):
    """(teacher dir, student dir, data dir) for a 4-layer BERT teacher and its 2-layer DistilBERT student."""
    root = tmp_path_factory.mktemp("distill")
    teacher = tiny_model("fill-mask", "bert", layers=4)
    prepare_data(
        str(teacher),
        [_corpus(root / "corpus.txt")],
        root / "data",
        max_length=48,
        min_tokens=3,
        progress=False,
    )
    student = init_student(str(teacher), root / "student")
    return teacher, student, root / "data"


def _config(setup, output, **over):
    teacher, student, data = setup
    base = {
        "teacher": str(teacher),
        "student": str(student),
        "data": str(data),
        "output": str(output),
        "batch_size": 4,
        "grad_accumulation": 2,
        "max_steps": 6,
        "save_every": 3,
        "log_every": 1,
        "precision": "float32",
        "progress": False,
        "seed": 3,
    }
    return DistillConfig(**{**base, **over})


def _losses(path):
    with open(path, newline="") as f:
        return [
            (r["step"], r["lr"], r["loss"], r["loss_ce"], r["loss_mlm"], r["loss_cos"])
            for r in csv.DictReader(f)
        ]


def test_interrupted_run_resumes_exactly(setup, tmp_path, monkeypatch):
    straight = distill_module.distill(_config(setup, tmp_path / "straight"))

    calls = {"n": 0}
    real = distill_module.compute_losses

    def crash_in_step_5(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 9:  # first micro-batch of step 5 (2 per step): the checkpoint at step 3 survives
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(distill_module, "compute_losses", crash_in_step_5)
    with pytest.raises(KeyboardInterrupt):
        distill_module.distill(_config(setup, tmp_path / "resumed"))
    monkeypatch.setattr(distill_module, "compute_losses", real)
    resumed = distill_module.distill(_config(setup, tmp_path / "resumed", resume="auto"))

    a, b = load_file(straight / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert _losses(straight / "metrics.csv") == _losses(
        resumed / "metrics.csv"
    )  # same loss curve, no dup rows
    before = load_file(setup[1] / "model.safetensors")
    assert not torch.equal(before["vocab_transform.weight"], a["vocab_transform.weight"])  # it trained


def test_output_dir_contract_and_pipeline(setup, tmp_path):
    out = distill_module.distill(
        _config(setup, tmp_path / "run", max_steps=2, save_every=0, precision="auto")
    )
    assert sorted(p.name for p in out.iterdir()) == sorted(set(OUTPUT_FILES) - {"checkpoints"})
    fm = distilkit.pipeline("fill-mask", model=str(out))
    result = fm("Paris is the [MASK] of France.", top_k=2)
    assert len(result) == 2 and {"score", "token", "token_str", "sequence"} <= result[0].keys()
    assert (out / "config.yaml").read_text().startswith("# distilkit distill --config config.yaml\n")


def test_cli_runs_the_three_commands(tiny_model, tmp_path, monkeypatch, capsys):
    teacher = tiny_model("fill-mask", "bert", layers=4)

    def run(*args):
        monkeypatch.setattr(sys, "argv", ["distilkit", *map(str, args)])
        try:
            main()
        except SystemExit as done:
            return done.code
        return 0

    assert (
        run(
            "prepare-data",
            "--tokenizer",
            teacher,
            "--input",
            _corpus(tmp_path / "c.txt", n=40),
            "--output",
            tmp_path / "data",
            "--max-length",
            48,
            "--min-tokens",
            3,
            "--no-progress",
        )
        == 0
    )
    assert run("init-student", "--teacher", teacher, "--layers", "1,3", "--output", tmp_path / "student") == 0
    (tmp_path / "c.yaml").write_text("alpha_cos: 2.0\nmax_steps: 3\nbatch_size: 4\n")
    assert (
        run(
            "distill",
            "--teacher",
            teacher,
            "--student",
            tmp_path / "student",
            "--data",
            tmp_path / "data",
            "--output",
            tmp_path / "run",
            "--config",
            tmp_path / "c.yaml",
            "--max-steps",
            2,
            "--grad-accumulation",
            1,
            "--save-every",
            1,
            "--keep-checkpoints",
            1,
            "--no-progress",
        )
        == 0
    )
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == OUTPUT_FILES
    assert [p.name for p in (tmp_path / "run" / "checkpoints").iterdir()] == ["step-000002"]
    assert (
        sorted(p.name for p in (tmp_path / "run" / "checkpoints" / "step-000002").iterdir())
        == CHECKPOINT_FILES
    )
    resolved = (tmp_path / "run" / "config.yaml").read_text()
    assert "alpha_cos: 2.0" in resolved and "max_steps: 2" in resolved
    capsys.readouterr()
    assert (
        run(
            "distill",
            "--teacher",
            teacher,
            "--student",
            tmp_path / "student",
            "--data",
            tmp_path / "data",
            "--output",
            tmp_path / "bad",
            "--alpha-ce",
            "-1",
        )
        == 2
    )
    assert capsys.readouterr().err.strip() == "error: --alpha-ce must be >= 0, got -1.0"


def test_nonfinite_loss_stops_with_the_step_and_saves_the_batch(setup, tmp_path, monkeypatch):
    real = distill_module.losses.cosine_embedding_loss
    calls = {"n": 0}

    def nan_at_step_2(*args):
        calls["n"] += 1
        value = real(*args)
        return value * float("nan") if calls["n"] == 3 else value

    monkeypatch.setattr(distill_module.losses, "cosine_embedding_loss", nan_at_step_2)
    with pytest.raises(distill_module.NonFiniteLossError, match="at step 2 .*nonfinite-batch-step-000002.pt"):
        distill_module.distill(_config(setup, tmp_path / "nan"))
    saved = torch.load(tmp_path / "nan" / "nonfinite-batch-step-000002.pt")
    assert saved["step"] == 2 and saved["input_ids"].shape == saved["attention_mask"].shape


def test_roberta_teacher_to_roberta_student(tiny_model, tmp_path):
    teacher = tiny_model("fill-mask", "roberta", layers=4)
    prepare_data(
        str(teacher),
        [_corpus(tmp_path / "c.txt", n=40)],
        tmp_path / "data",
        max_length=48,
        min_tokens=3,
        progress=False,
    )
    student = init_student(str(teacher), tmp_path / "student")
    cfg = DistillConfig(
        teacher=str(teacher),
        student=str(student),
        data=str(tmp_path / "data"),
        output=str(tmp_path / "run"),
        batch_size=4,
        grad_accumulation=1,
        max_steps=2,
        save_every=0,
        progress=False,
        restrict_ce_to_mask=True,
    )
    out = distill_module.distill(cfg)
    result = distilkit.pipeline("fill-mask", model=str(out))("Paris is the <mask> of France.")
    assert len(result) == 5


def test_mismatched_data_tokenizer_is_refused(setup, tiny_model, tmp_path):
    teacher = tiny_model("fill-mask", "roberta", layers=4)
    cfg = _config(setup, tmp_path / "x", teacher=str(teacher), student=str(teacher))
    with pytest.raises(ValueError, match="rerun prepare-data"):
        distill_module.distill(cfg)


def test_mlm_only_training_needs_no_teacher(setup, tmp_path, monkeypatch):
    loaded = []
    real_load = distilkit.models.load_model
    monkeypatch.setattr(
        distilkit.models, "load_model", lambda ref, *a, **k: loaded.append(ref) or real_load(ref, *a, **k)
    )
    out = distill_module.distill(
        _config(setup, tmp_path / "mlm", teacher="", alpha_ce=0.0, alpha_cos=0.0, alpha_mlm=1.0, save_every=0)
    )
    assert loaded == [str(setup[1])]  # the student only
    with open(out / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 and all(r["loss_ce"] == "" and float(r["loss_mlm"]) > 0 for r in rows)
    before, after = load_file(setup[1] / "model.safetensors"), load_file(out / "model.safetensors")
    assert not torch.equal(before["vocab_transform.weight"], after["vocab_transform.weight"])


def test_teacher_terms_without_a_teacher_are_refused(setup, tmp_path):
    with pytest.raises(ValueError, match="--teacher is required for --alpha-ce"):
        _config(setup, tmp_path / "x", teacher="", alpha_cos=0.0)


@pytest.mark.parametrize(
    "over", [{"restrict_ce_to_mask": True}, {"teacher": "", "alpha_ce": 0.0, "alpha_cos": 0.0}]
)
def test_logits_at_masked_positions_only_give_the_same_losses(setup, tmp_path, monkeypatch, over):
    """When no term reads every position, the vocabulary projection runs on the masked rows only."""
    cfg = _config(setup, tmp_path / "x", teacher_dtype="float32", **over)
    assert not distill_module.logits_everywhere(cfg)
    models = distill_module.load_models(cfg, torch.device("cpu"))
    models.student.eval()  # no dropout: both paths see the same network
    stream = distill_module.MicroBatches(distill_module.TokenShards(cfg.data), cfg, 0, 1, torch.device("cpu"))
    batch = stream.get(0)
    student = distill_module.StudentForward(models.student)
    fast = distill_module.compute_losses(cfg, student, models.teacher, batch)
    monkeypatch.setattr(distill_module, "logits_everywhere", lambda cfg: True)
    full = distill_module.compute_losses(cfg, student, models.teacher, batch)
    assert fast.keys() == full.keys() and "mlm" in fast
    for name in fast:
        assert torch.allclose(fast[name], full[name], rtol=1e-5, atol=1e-6), name


def test_checkpoints_hold_the_students_own_parameter_names(setup, tmp_path):
    out = distill_module.distill(_config(setup, tmp_path / "run", max_steps=3, save_every=3))
    (checkpoint,) = (out / "checkpoints").iterdir()
    assert load_file(checkpoint / "model.safetensors").keys() == load_file(out / "model.safetensors").keys()


def test_pairs_data_gives_a_bert_teacher_its_token_types(tiny_model, tmp_path):
    from distilkit.train.data import segment_ids

    ids = torch.tensor([[101, 7, 8, 102, 9, 102, 0], [101, 7, 102, 9, 9, 9, 102]])
    attention = (ids != 0).long()
    assert segment_ids(ids, attention, 102).tolist() == [[0, 0, 0, 0, 1, 1, 0], [0, 0, 0, 1, 1, 1, 1]]

    teacher = tiny_model("fill-mask", "bert", layers=4)
    prepare_data(str(teacher), [_corpus(tmp_path / "c.txt")], tmp_path / "data", max_length=48, min_tokens=3,
                 pairs=True, progress=False)
    student = init_student(str(teacher), tmp_path / "student")
    seen = []
    real = distill_module.lm_outputs

    def spy(model, input_ids, attention, at, hidden, token_types=None, logits=True):
        if model.config.model_type == "bert":
            seen.append((input_ids, token_types))
        return real(model, input_ids, attention, at, hidden, token_types, logits)

    import unittest.mock

    with unittest.mock.patch.object(distill_module, "lm_outputs", spy):
        distill_module.distill(_config((teacher, student, tmp_path / "data"), tmp_path / "run", max_steps=2))
    sep = distilkit.models.load_model(teacher, "fill-mask").tokenizer.sep_token_id
    assert seen and all(types is not None and types.max() == 1 for _, types in seen)
    for input_ids, types in seen:  # type 1 starts right after the first separator of each row
        first_sep = (input_ids == sep).int().argmax(dim=1)
        starts = (types.cumsum(dim=1) == 1).int().argmax(dim=1)
        assert torch.equal(starts, first_sep + 1)


@pytest.mark.slow
def test_torchrun_two_cpu_processes_train_one_data_parallel_run(setup, tmp_path):
    """Without CUDA, launched processes still form one group (not two runs into the same directory)."""
    import os
    import subprocess
    from pathlib import Path

    teacher, student, data = setup
    torchrun = Path(sys.executable).with_name("torchrun")
    out = tmp_path / "run"
    done = subprocess.run(
        [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "distilkit", "distill",
         "--teacher", str(teacher), "--student", str(student), "--data", str(data), "--output", str(out),
         "--batch-size", "4", "--grad-accumulation", "2", "--max-steps", "4", "--save-every", "2",
         "--log-every", "1", "--precision", "float32", "--no-progress"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"}, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 per step x 2 process(es)" in done.stdout and done.stdout.count("distill: done") == 1
    rows = _losses(out / "metrics.csv")
    assert [r[0] for r in rows] == ["1", "2", "3", "4"]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-000002", "step-000004"]
    fm = distilkit.pipeline("fill-mask", model=str(out))
    assert len(fm("a [MASK] b", top_k=3)) == 3


def test_token_count_is_the_real_tokens_of_every_micro_batch(setup, tmp_path):
    import json

    cfg = _config(setup, tmp_path / "run", save_every=6)
    out = distill_module.distill(cfg)
    stream = distill_module.MicroBatches(distill_module.TokenShards(cfg.data), cfg, 0, 1, torch.device("cpu"))
    expected = sum(int(stream.get(g).attention.sum()) for g in range(6 * 2))  # 6 steps x 2 micro-batches
    (checkpoint,) = (out / "checkpoints").iterdir()
    assert json.loads((checkpoint / "trainer_state.json").read_text())["tokens"] == expected


def test_start_line_tells_the_step_plan_and_a_step_longer_than_an_epoch_is_warned(setup, tmp_path, capsys):
    """What ``--batch-size 8 --max-steps 20`` with the default effective batch used to hide."""
    stream = distill_module.MicroBatches(
        distill_module.TokenShards(setup[2]), _config(setup, tmp_path / "x"), 0, 1, torch.device("cpu")
    )
    accumulation = stream.per_epoch + 2
    distill_module.distill(_config(setup, tmp_path / "run", grad_accumulation=accumulation, max_steps=1,
                                   save_every=0, progress=True))
    out, err = capsys.readouterr()
    assert (
        f"{stream.per_epoch} micro-batches/epoch/process, {accumulation} per step x 1 process(es) = "
        f"up to {4 * accumulation} sequences per step, "
        f"{stream.per_epoch / accumulation:.3g} steps per epoch, "
        "1 steps"
    ) in out
    assert (
        f"warning: one optimizer step is {accumulation} micro-batches per process, more than an epoch" in err
    )
    assert "micro-batches:" in err and f"/{accumulation}" in err  # progress within the step


@pytest.fixture(scope="module")
def encoder_setup(tiny_encoder, tmp_path_factory):
    """(bare BertModel teacher, its bare 2-layer student from init-student, data dir)."""
    root = tmp_path_factory.mktemp("distill-encoder")
    prepare_data(str(tiny_encoder), [_corpus(root / "corpus.txt", n=60)], root / "data", max_length=48,
                 min_tokens=3, progress=False)
    return tiny_encoder, init_student(str(tiny_encoder), root / "student"), root / "data"


def _cos_distance(teacher, student, data) -> float:
    """Mean 1 - cos between the last hidden states of two encoders on the first micro-batch."""
    cfg = _config((teacher, student, data), "unused", alpha_ce=0.0, alpha_mlm=0.0, teacher_dtype="float32")
    models = distill_module.load_models(cfg, torch.device("cpu"))
    models.student.eval()
    batch = distill_module.MicroBatches(distill_module.TokenShards(cfg.data), cfg, 0, 1,
                                        torch.device("cpu")).get(0)
    with torch.no_grad():
        terms = distill_module.compute_losses(cfg, distill_module.StudentForward(models.student),
                                              models.teacher, batch)
    assert list(terms) == ["cos"]
    return float(terms["cos"])


def test_alpha_cos_alone_distils_a_bare_encoder_student_from_a_bare_encoder_teacher(encoder_setup, tmp_path):
    teacher, init, data = encoder_setup
    student = tmp_path / "student.json"  # the init-student's architecture with random weights: much to learn
    student.write_text((init / "config.json").read_text())
    out = distill_module.distill(_config(encoder_setup, tmp_path / "run", student=str(student), alpha_ce=0.0,
                                         alpha_mlm=0.0, max_steps=8, save_every=0, lr=1e-3))
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["DistilBertModel"]  # still a bare encoder, ready for finetune
    with open(out / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert all(r["loss_ce"] == r["loss_mlm"] == "" and float(r["loss_cos"]) > 0 for r in rows)
    assert _cos_distance(teacher, out, data) < _cos_distance(teacher, student, data)


def test_logit_terms_with_a_teacher_without_a_masked_lm_head_name_the_hidden_states_only_flags(
    encoder_setup, setup, tmp_path
):
    with pytest.raises(ValueError, match="--alpha-cos 1 --alpha-ce 0 --alpha-mlm 0"):
        distill_module.distill(_config(encoder_setup, tmp_path / "run", student=str(setup[1])))
    with pytest.raises(ValueError, match="learns from --alpha-cos alone"):
        distill_module.distill(_config(encoder_setup, tmp_path / "run2", teacher=str(setup[0]), alpha_ce=0.0))
