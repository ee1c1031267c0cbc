"""The three examples of the DistilBERT catalog cards give exactly the shapes the cards show.

``POST /score`` requests: ``{"input_data": [...], "params": {}}`` (fill-mask with ``[MASK]`` -> the top-1
token string per input), ``{"inputs": {"question": [...], "context": [...]}}`` (question-answering -> one
``{score, start, end, answer}`` per pair) and ``{"inputs": {"input_string": [...]}, "parameters":
{"top_k": 2}}`` (fill-mask with ``<mask>`` -> ``top_k`` candidates per input).
"""

from __future__ import annotations

import pytest

from distilkit.inference.predictor import Predictor
from distilkit.serve.formats import parse_score_request

pytestmark = pytest.mark.shared

QA_PAYLOAD = {"inputs": {
    "question": ["What is my name?", "Where do I live?"],
    "context": ["My name is John and I live in Seattle.", "My name is Ravi and I live in Hyderabad."],
}}


def score(predictor: Predictor, payload: dict):
    request = parse_score_request(predictor.task, payload)
    return request.respond(predictor.predict(request.items, request.params))


def test_distilbert_base_cased_input_data_gives_a_list_of_top1_strings(shared_dir):
    p = Predictor.from_ref(shared_dir / "models/distilbert-base-cased", dummy_weights=True)
    body = score(p, {"input_data": ["Paris is [MASK] of France"], "params": {}})
    assert isinstance(body, list) and len(body) == 1 and isinstance(body[0], str) and body[0]


def test_distilled_squad_inputs_give_one_span_per_pair_with_char_offsets(shared_dir):
    p = Predictor.from_ref(shared_dir / "models/distilbert-base-cased-distilled-squad", dummy_weights=True)
    body = score(p, QA_PAYLOAD)
    assert len(body) == 2
    for answer, context in zip(body, QA_PAYLOAD["inputs"]["context"]):
        assert set(answer) == {"score", "start", "end", "answer"}
        assert isinstance(answer["score"], float) and isinstance(answer["start"], int)
        assert answer["answer"] == context[answer["start"]:answer["end"]]


def test_distilroberta_input_string_with_top_k_gives_lists_of_candidates(shared_dir):
    p = Predictor.from_ref(shared_dir / "models/distilroberta-base", dummy_weights=True)
    body = score(p, {"inputs": {"input_string": ["Paris is the <mask> of France.", "Today is a <mask> day!"]},
                     "parameters": {"top_k": 2}})
    assert len(body) == 2
    for candidates in body:
        assert len(candidates) == 2
        assert all(set(c) == {"score", "token", "token_str", "sequence"} for c in candidates)
        assert candidates[0]["score"] >= candidates[1]["score"]
