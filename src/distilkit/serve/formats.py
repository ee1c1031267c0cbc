"""The model cards' scoring formats (``POST /score``): request -> Predictor items, results -> response.

Pure functions with no web framework, so the server, tests and batch jobs share them:

    request = parse_score_request(task, payload)          # ValueError naming the field
    results = predictor.predict(request.items, request.params)
    body    = request.respond(results)

The three card formats (DESIGN.md §3):
- ``{"input_data": ["Paris is [MASK] of France"], "params": {}}`` -> ``["part"]`` (fill-mask:
  top-1 token string per input; other tasks: the pipeline result per input);
- ``{"inputs": {"question": [...], "context": [...]}}`` -> ``[{"score","start","end","answer"}, ...]``;
- ``{"inputs": {"input_string": [...]}, "parameters": {"top_k": 2}}`` -> one pipeline result per input.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class FieldError(ValueError):
    """A request that does not fit the format; ``field`` is the dotted path of the culprit."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass
class ScoreRequest:
    """Items and parameters for the Predictor plus the function that shapes its results."""

    items: list[Any]
    params: dict[str, Any]
    respond: Callable[[list[Any]], Any]


def _string_list(value: Any, field: str) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise FieldError(field, "expected a non-empty list of strings")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise FieldError(f"{field}[{i}]", f"expected a string, got {type(item).__name__}")
    return value


def _params(payload: dict[str, Any], field: str) -> dict[str, Any]:
    params = payload.get(field) or {}
    if not isinstance(params, dict):
        raise FieldError(field, "expected an object of parameters")
    return dict(params)


def _top1_strings(results: list[Any]) -> list[Any]:
    """fill-mask ``input_data`` response: the best token string per input (a list per mask if several)."""
    out = []
    for result in results:
        if result and isinstance(result[0], list):
            out.append([candidates[0]["token_str"] for candidates in result])
        else:
            out.append(result[0]["token_str"])
    return out


def _qa_items(columns: dict[str, Any], field: str) -> list[dict[str, str]]:
    questions = _string_list(columns.get("question"), f"{field}.question")
    contexts = _string_list(columns.get("context"), f"{field}.context")
    if len(contexts) == 1 and len(questions) > 1:
        contexts = contexts * len(questions)
    if len(questions) != len(contexts):
        raise FieldError(field, f"question and context must have the same length ({len(questions)} vs {len(contexts)})")
    return [{"question": q, "context": c} for q, c in zip(questions, contexts, strict=True)]


def _one_per_item(results: list[Any]) -> list[Any]:
    return results


def parse_score_request(task: str, payload: Any) -> ScoreRequest:
    """Parse a ``/score`` payload for a model of ``task``.

    Raises:
        FieldError: the payload does not match any card format; the message names the field.
    """
    if not isinstance(payload, dict):
        raise FieldError("body", "expected a JSON object with 'input_data' or 'inputs'")
    if "input_data" in payload:
        data = payload["input_data"]
        if task == "question-answering":
            if isinstance(data, dict):
                return ScoreRequest(_qa_items(data, "input_data"), _params(payload, "params"), _one_per_item)
            raise FieldError("input_data", "question-answering expects {'question': [...], 'context': [...]}")
        items = _string_list(data, "input_data")
        respond = _top1_strings if task == "fill-mask" else _one_per_item
        return ScoreRequest(items, _params(payload, "params"), respond)
    if "inputs" in payload:
        inputs = payload["inputs"]
        params = _params(payload, "parameters")
        if task == "question-answering":
            if not isinstance(inputs, dict):
                raise FieldError("inputs", "question-answering expects {'question': [...], 'context': [...]}")
            return ScoreRequest(_qa_items(inputs, "inputs"), params, _one_per_item)
        if isinstance(inputs, dict):
            if "input_string" not in inputs:
                raise FieldError("inputs", "expected 'input_string' (a list of strings)")
            return ScoreRequest(_string_list(inputs["input_string"], "inputs.input_string"), params, _one_per_item)
        return ScoreRequest(_string_list(inputs, "inputs"), params, _one_per_item)
    raise FieldError("body", "expected 'input_data' or 'inputs'")
