"""The cards' /score formats as pure request -> items and results -> response functions."""

from __future__ import annotations

import pytest

from distilkit.serve.formats import FieldError, parse_score_request


def fm_result(token: str) -> list[dict]:
    return [{"score": 0.9, "token": 1, "token_str": token, "sequence": "x"},
            {"score": 0.1, "token": 2, "token_str": "other", "sequence": "y"}]


def test_input_data_for_fill_mask_answers_top1_strings():
    req = parse_score_request("fill-mask", {"input_data": ["Paris is [MASK] of France"], "params": {}})
    assert req.items == ["Paris is [MASK] of France"] and req.params == {}
    assert req.respond([fm_result("part")]) == ["part"]


def test_input_data_with_several_masks_answers_one_string_per_mask():
    req = parse_score_request("fill-mask", {"input_data": ["[MASK] and [MASK]"]})
    assert req.respond([[fm_result("a"), fm_result("b")]]) == [["a", "b"]]


def test_qa_inputs_pair_questions_and_contexts():
    payload = {"inputs": {"question": ["What is my name?", "Where do I live?"],
                          "context": ["My name is John.", "I live in Seattle."]}}
    req = parse_score_request("question-answering", payload)
    assert req.items == [{"question": "What is my name?", "context": "My name is John."},
                         {"question": "Where do I live?", "context": "I live in Seattle."}]
    answers = [{"score": 0.5, "start": 11, "end": 15, "answer": "John"}] * 2
    assert req.respond(answers) == answers


def test_input_string_with_parameters_passes_top_k_and_returns_lists():
    payload = {"inputs": {"input_string": ["Paris is the <mask> of France.", "Today is a <mask> day!"]},
               "parameters": {"top_k": 2}}
    req = parse_score_request("fill-mask", payload)
    assert req.params == {"top_k": 2} and len(req.items) == 2
    results = [fm_result("capital"), fm_result("good")]
    assert req.respond(results) == results


@pytest.mark.parametrize(
    ("task", "payload", "field"),
    [("fill-mask", {"input_data": []}, "input_data"),
     ("fill-mask", {"input_data": ["ok [MASK]", 3]}, r"input_data\[1\]"),
     ("fill-mask", {"inputs": {"text": ["a"]}}, "inputs"),
     ("fill-mask", {"inputs": {"input_string": ["a [MASK]"]}, "parameters": [2]}, "parameters"),
     ("fill-mask", {"data": ["a"]}, "body"),
     ("fill-mask", ["a [MASK]"], "body"),
     ("question-answering", {"inputs": {"question": ["a", "b"], "context": ["x", "y", "z"]}}, "inputs"),
     ("question-answering", {"inputs": {"question": ["a"]}}, "inputs.context"),
     ("question-answering", {"input_data": ["a"]}, "input_data")],
)
def test_malformed_requests_name_the_field(task, payload, field):
    with pytest.raises(FieldError, match=f"^{field}: "):
        parse_score_request(task, payload)
