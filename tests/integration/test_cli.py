"""The ``distilkit`` command as a user runs it (a real subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "distilkit", *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}, check=False)


def test_predict_fill_mask_prints_one_json_result_per_text(tiny_model):
    out = run("predict", "fill-mask", "--model", str(tiny_model("fill-mask")), "--param", "top_k=2",
              "--dtype", "float32", "the [MASK] of France", "a [MASK] and a [MASK]")
    assert out.returncode == 0, out.stderr
    results = json.loads(out.stdout)
    assert len(results) == 2
    assert len(results[0]) == 2 and {"score", "token", "token_str", "sequence"} == set(results[0][0])
    assert len(results[1]) == 2 and len(results[1][0]) == 2  # two masks -> one list per mask
    assert out.stderr.count("engine: PyTorch float32 (requested)") == 1  # printed once, with the run


def test_task_is_read_from_the_model_with_dummy_weights(tiny_model):
    out = run("predict", "fill-mask", "--model", str(tiny_model("fill-mask")), "--dummy-weights", "a [MASK]")
    assert out.returncode == 0, out.stderr
    assert len(json.loads(out.stdout)[0]) == 5


@pytest.mark.parametrize(
    ("args", "message"),
    [(["a <mask>"], "input 0: it has <mask>, but this model's mask token is [MASK]"),
     (["--param", "top_k=0", "a [MASK]"], "top_k must be >= 1, got 0"),
     (["--param", "topk=2", "a [MASK]"], "unknown parameter 'topk'"),
     (["--param", "top_k", "a [MASK]"], "--param expects key=value"),
     (["a [MASK]", "  "], "input 1: text is empty")],
)
def test_user_errors_exit_2_with_one_line(tiny_model, args, message):
    out = run("predict", "fill-mask", "--model", str(tiny_model("fill-mask")), *args)
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0
    assert message in out.stderr


def test_offline_hub_id_exits_2_naming_model_dir():
    out = run("predict", "fill-mask", "--model", "distilbert-base-cased-missing", "a [MASK]")
    assert out.returncode == 2
    assert "--model DIR" in out.stderr and out.stderr.strip().count("\n") == 0


def test_unknown_task_exits_2():
    out = run("predict", "summarization", "--model", "x", "text")
    assert out.returncode == 2 and "unknown task 'summarization'" in out.stderr


def test_version_and_help():
    assert run("--version").stdout.startswith("distilkit ")
    assert "predict" in run("--help").stdout


def test_predict_question_answering_pairs_questions_with_contexts(tiny_model):
    context = "My name is John and I live in Seattle."
    out = run("predict", "question-answering", "--model", str(tiny_model("question-answering")),
              "--question", "What is my name?", "--context", context,
              "--question", "Where do I live?", "--context", context)
    assert out.returncode == 0, out.stderr
    answers = json.loads(out.stdout)
    assert len(answers) == 2
    for answer in answers:
        assert set(answer) == {"score", "start", "end", "answer"}
        assert answer["answer"] == context[answer["start"]:answer["end"]]


def test_question_answering_with_an_empty_context_exits_2_naming_the_input(tiny_model):
    out = run("predict", "question-answering", "--model", str(tiny_model("question-answering")),
              "--question", "Who?", "--context", "Ann.", "--question", "Where?", "--context", " ")
    assert out.returncode == 2 and "input 1" in out.stderr and "context" in out.stderr


def test_question_answering_without_matching_contexts_exits_2(tiny_model):
    out = run("predict", "question-answering", "--model", str(tiny_model("question-answering")),
              "--question", "Who?")
    assert out.returncode == 2 and "as many --context as --question" in out.stderr


def test_predict_text_classification_with_top_k(tiny_model):
    model = tiny_model("text-classification", id2label=["neg", "pos"])
    out = run("predict", "text-classification", "--model", str(model), "-p", "top_k=2", "good day", "bad day")
    assert out.returncode == 0, out.stderr
    results = json.loads(out.stdout)
    assert [sorted(r["label"] for r in res) for res in results] == [["neg", "pos"], ["neg", "pos"]]


def test_exit_codes_from_commands_reach_the_shell():
    assert run("--version").returncode == 0
    assert run("predict", "fill-mask").returncode == 2  # missing --model: a usage error


@pytest.mark.parametrize(
    ("args", "flag"),
    [(["export", "onnx", "--output", "{tmp}/x"], "name the task with --task TASK"),
     (["registry", "register", "--name", "enc"], "name the task with --task TASK"),
     (["serve"], "name the task with --model {name}:TASK={model}")],
)
def test_a_bare_encoder_makes_each_command_name_the_flag_that_supplies_the_task(
    tiny_encoder, tmp_path, args, flag
):
    model = str(tiny_encoder)
    args = [a.format(tmp=tmp_path) for a in args]
    where = ["--model", model] if args[0] != "registry" else [model]
    out = run(*args, *where, env={"DISTILKIT_HOME": str(tmp_path / "home")})
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().count("\n") == 0
    assert "an encoder without a task head" in out.stderr
    assert flag.format(model=model, name=tiny_encoder.name) in out.stderr


def test_predicting_a_task_on_a_bare_encoder_says_to_fine_tune_it_first(tiny_encoder):
    out = run("predict", "text-classification", "--model", str(tiny_encoder), "a good day")
    assert out.returncode == 2 and out.stderr.strip().count("\n") == 0
    assert "no weights for the text-classification head" in out.stderr
    assert f"distilkit finetune text-classification --model {tiny_encoder}" in out.stderr


def test_a_user_error_is_one_line_and_exit_2_without_traceback(tiny_model):
    out = run(
        "predict", "fill-mask", "--model", str(tiny_model("fill-mask")), "--dtype", "float64", "a [MASK]"
    )
    assert out.returncode == 2
    assert (
        out.stderr
        == "error: dtype must be one of ['auto', 'bfloat16', 'float16', 'float32', 'int8'], got 'float64'\n"
    )


BUG = """
import sys
import distilkit.models
def broken(*args, **kwargs):
    raise ValueError("an internal bug, not the user's input")
distilkit.models.load_model = broken
from distilkit.cli.app import main
sys.argv = ["distilkit", *sys.argv[1:]]
main()
"""


def test_any_other_error_prints_its_traceback_and_exits_1(tiny_model):
    """A ValueError that is no UserError (a bug, inside torch or numpy say) is not dressed as a user error."""
    model = str(tiny_model("fill-mask"))
    out = subprocess.run([sys.executable, "-c", BUG, "predict", "fill-mask", "--model", model, "a [MASK]"],
                         capture_output=True, text=True, timeout=120,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"}, check=False)
    assert out.returncode == 1
    assert out.stderr.startswith("Traceback (most recent call last):")
    assert "in broken" in out.stderr and out.stderr.rstrip().endswith(
        "ValueError: an internal bug, not the user's input"
    )
    assert "error: " not in out.stderr.splitlines()[0]


def test_serve_keeps_its_one_line_errors():
    """serve's checks raise UserError: exit 2 with one line naming the mistake (models or flags)."""
    out = run("serve", "--model", "a=x", "--model", "a=y")
    assert out.returncode == 2
    assert out.stderr == "error: two --model entries are named 'a'; name them with NAME=REF\n"
    out = run("serve", "--model", "a=x", "--max-queue", "0")
    assert out.returncode == 2
    assert out.stderr == "error: --max-queue must be >= 1, got 0\n"
