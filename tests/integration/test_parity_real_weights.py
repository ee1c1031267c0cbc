"""Parity on real weights: distilkit vs the transformers pipelines on fine-tuned all-MiniLM-L6-v2 models.

The models are the real pretrained encoder from ``../shared`` plus committed fine-tuned heads
(``tests/golden/minilm-heads``: BitFit + task head, see real_heads.py); the inputs are real test
data from ``../shared``. On trained weights the outputs are confident and varied, so labels,
entity groups and answer spans must match exactly, scores within 1e-4 (fp32 on both sides).
text- and token-classification are compared with the installed transformers; question answering
with transformers 4.57.1's pipeline, recorded in ``tests/golden/minilm_qa.json`` (record_real_qa.py).
No fill-mask: this real model has no masked-LM head.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
sys.path.insert(0, str(GOLDEN))

from real_heads import MINILM_SHA256, QA_PARAMS, assemble, minilm_sha256, qa_questions

pytestmark = pytest.mark.shared
TOL = 1e-4
STRATEGIES = ["none", "simple", "first", "average", "max"]


def assert_same(ours, ref, path="result") -> float:
    """Same structure, keys in order, labels/words/offsets; scores within TOL. Returns the max score diff."""
    if isinstance(ref, list):
        assert isinstance(ours, list) and len(ours) == len(ref), f"{path}: {ours!r} vs {ref!r}"
        return max(
            (assert_same(a, b, f"{path}[{i}]") for i, (a, b) in enumerate(zip(ours, ref))), default=0.0
        )
    assert isinstance(ours, dict) and list(ours) == list(ref), f"{path}: {ours!r} vs {ref!r}"
    diff = 0.0
    for key, value in ref.items():
        if key == "score":
            diff = abs(ours[key] - float(value))
            assert isinstance(ours[key], float) and math.isclose(ours[key], float(value), abs_tol=TOL), path
        else:
            assert ours[key] == value, f"{path}.{key}: {ours[key]!r} vs {value!r}"
    return diff


@pytest.fixture(scope="module")
def real_model(shared_dir, tmp_path_factory):
    """``real_model(task)`` -> directory of the fine-tuned real model (assembled once per task)."""
    if minilm_sha256(shared_dir) != MINILM_SHA256:
        pytest.skip("../shared's all-MiniLM-L6-v2 differs from the one the committed heads were trained on")
    built: dict[str, Path] = {}

    def build(task: str) -> Path:
        if task not in built:
            built[task] = assemble(shared_dir, task, tmp_path_factory.mktemp(task) / "model")
        return built[task]

    return build


def pipelines(task: str, model: Path, **params):
    import transformers

    import distilkit

    ours = distilkit.pipeline(task, model=str(model), dtype="float32", **params)
    return ours, transformers.pipeline(task, model=str(model), device=-1, **params)


def test_text_classification_on_emotion_test_matches_the_pipeline(real_model, shared_dir):
    from distilkit.evaluation.datasets import read_labelled

    examples = read_labelled(shared_dir / "data" / "emotion" / "test.txt")[:120]
    texts = [ex.text for ex in examples]
    ours, ref = pipelines("text-classification", real_model("text-classification"))
    top1 = ours(texts)
    assert_same(top1, ref(texts))
    # fine-tuned, not random: well above the majority class (~35%) and more than one label predicted
    assert sum(r["label"] == ex.label for r, ex in zip(top1, examples)) / len(examples) > 0.6
    assert len({r["label"] for r in top1}) >= 3
    for params in ({"top_k": None}, {"top_k": 2, "function_to_apply": "sigmoid"}):
        assert_same(ours(texts, **params), ref(texts, **params), json.dumps(params))


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_token_classification_on_conll_test_matches_the_pipeline(real_model, shared_dir, strategy):
    from distilkit.evaluation.datasets import read_conll

    sentences = [" ".join(ex.words) for ex in read_conll(shared_dir / "data" / "conll2003" / "test.txt")[:60]]
    ours, ref = pipelines("token-classification", real_model("token-classification"),
                          aggregation_strategy=strategy)
    got = ours(sentences)
    assert_same(got, ref(sentences), strategy)
    assert sum(len(entities) for entities in got) >= 40  # trained: entities found, not an all-O model


def test_question_answering_matches_transformers_4_57_1(real_model, shared_dir):
    import distilkit

    golden = json.loads((GOLDEN / "minilm_qa.json").read_text(encoding="utf-8"))
    assert golden["reference"] == "4.57.1" and golden["base_sha256"] == MINILM_SHA256
    questions = qa_questions(shared_dir)
    qa = distilkit.pipeline(
        "question-answering", model=str(real_model("question-answering")), dtype="float32"
    )
    assert [case["params"] for case in golden["grid"]] == QA_PARAMS
    windows = qa.predictor.handler.encode(
        qa.predictor.handler.check_inputs(
            [{"question": q["question"], "context": q["context"]} for q in questions]
        ),
        qa.predictor.handler.check_params({}),
    )
    assert len(windows) > len(questions)  # some contexts span several windows
    for case in golden["grid"]:
        got = qa(question=[q["question"] for q in questions], context=[q["context"] for q in questions],
                 **case["params"])
        for q, out, row in zip(questions, got, case["rows"], strict=True):
            assert row["id"] == q["id"]
            ranked = out if isinstance(out, list) else [out]
            want = [{**a, "answer": q["context"][a["start"] : a["end"]]} for a in row["answers"]]
            assert_same([{k: a[k] for k in ("score", "start", "end", "answer")} for a in ranked], want,
                        f"{q['id']} {case['params']}")
