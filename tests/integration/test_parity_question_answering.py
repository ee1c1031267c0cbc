"""question-answering parity with transformers 4.57.1's pipeline, from golden files.

How the golden files are made and re-recorded: tests/golden/README.md.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
sys.path.insert(0, str(GOLDEN))

from qa_cases import SQUAD_MODEL, squad_by_id
from record_qa import call_arguments

SCORE_TOL = 1e-4


def load(name: str) -> dict:
    return json.loads((GOLDEN / name).read_text(encoding="utf-8"))


def assert_same(got, want, where: str = "") -> float:
    """Same nesting, starts, ends and answers in the same order; scores within SCORE_TOL. Returns max diff."""
    if isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), f"{where}: {got!r} != {want!r}"
        diffs = [assert_same(g, w, f"{where}[{i}]") for i, (g, w) in enumerate(zip(got, want))]
        return max(diffs, default=0.0)
    assert isinstance(got, dict), f"{where}: expected a dict, got {got!r}"
    assert set(got) == {"score", "start", "end", "answer"}, where
    assert (got["start"], got["end"], got["answer"]) == (want["start"], want["end"], want["answer"]), where
    assert type(got["score"]) is float and type(got["start"]) is int and type(got["end"]) is int, where
    diff = abs(got["score"] - want["score"])
    assert diff <= SCORE_TOL, f"{where}: score {got['score']} vs {want['score']}"
    return diff


@pytest.fixture(scope="module")
def tiny_qa():
    import distilkit

    return distilkit.pipeline("question-answering", model=str(GOLDEN / "qa-tiny-model"), dtype="float32")


@pytest.fixture(scope="module")
def tiny_golden() -> dict:
    return load("qa_tiny.json")


def test_tiny_fixture_matches_reference_over_the_parameter_grid(tiny_qa, tiny_golden):
    questions = [q for q, _ in tiny_golden["pairs"]]
    contexts = [c for _, c in tiny_golden["pairs"]]
    assert len(tiny_golden["grid"]) >= 10
    for case in tiny_golden["grid"]:
        got = tiny_qa(question=questions, context=contexts, **case["params"])
        assert_same(got, case["outputs"], where=json.dumps(case["params"]))


def test_tiny_fixture_multi_window_contexts_are_covered(tiny_qa, tiny_golden):
    # The grid is only a windowing test if some contexts really span several windows.
    handler = tiny_qa.predictor.handler
    items = handler.check_inputs([{"question": q, "context": c} for q, c in tiny_golden["pairs"]])
    features = handler.encode(items, handler.check_params({}))
    windows = [sum(f.item == i for f in features) for i in range(len(items))]
    assert max(windows) >= 3
    small = handler.encode(items, handler.check_params({"max_seq_len": 64, "doc_stride": 16}))
    assert len(small) > 3 * len(items)


def test_tiny_fixture_call_conventions_match_reference_shapes(tiny_qa, tiny_golden):
    for call in tiny_golden["calls"]:
        args, kwargs = call_arguments(call)
        got = tiny_qa(*args, **kwargs, **call["params"])
        assert_same(got, call["output"], where=f"{call['form']} {call['pairs']} {call['params']}")


def test_tiny_fixture_predictor_gives_the_pipeline_results_unwrapped(tiny_qa, tiny_golden):
    # The Predictor (serve/predict path) returns one result per item, even for a single item.
    items = [{"question": q, "context": c} for q, c in tiny_golden["pairs"][:1]]
    case = tiny_golden["grid"][1]
    got = tiny_qa.predictor.predict(items, case["params"])
    assert_same(got, case["outputs"][:1])


@pytest.mark.shared
def test_real_shape_squad_matches_reference(shared_dir):
    import torch
    from transformers import AutoConfig, AutoModelForQuestionAnswering, AutoTokenizer
    from weights import load_deterministic

    from distilkit.inference.pipeline import Pipeline
    from distilkit.inference.predictor import Predictor
    from distilkit.models import LoadedModel

    golden = load("qa_squad.json")
    model_dir = shared_dir / "models" / SQUAD_MODEL
    config = AutoConfig.from_pretrained(model_dir)
    torch.manual_seed(0)
    model = AutoModelForQuestionAnswering.from_config(config).eval()
    assert load_deterministic(model, golden["weights"]["seed"]) == golden["weights"]["sha256"]
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    loaded = LoadedModel(model, tokenizer, model.config, "question-answering", "golden")
    qa = Pipeline(Predictor(loaded))

    rows = golden["rows"]
    assert len(rows) == 100 and sum(r["windows"] > 1 for r in rows) >= 20
    squad = squad_by_id(shared_dir, [r["id"] for r in rows])
    questions, contexts = [s["question"] for s in squad], [s["context"] for s in squad]
    got = qa(question=questions, context=contexts, **golden["params"])
    max_diff = 0.0
    for row, s, out in zip(rows, squad, got, strict=True):
        assert (out["start"], out["end"]) == (row["start"], row["end"]), row["id"]
        assert out["answer"] == s["context"][row["start"] : row["end"]], row["id"]
        diff = abs(out["score"] - row["score"])
        # Near-uniform random-weight scores are ~1e-4, so the relative error is checked as well.
        assert diff <= 1e-3 * row["score"], (row["id"], out["score"], row["score"])
        max_diff = max(max_diff, diff)
    assert max_diff <= SCORE_TOL
    print(f"real-shape QA parity: max score diff {max_diff:.3g} over {len(rows)} questions")
