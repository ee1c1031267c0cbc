"""Wire formats: request -> Predictor items, results -> response, for every route the server has.

Pure functions with no web framework, so the server, tests and batch jobs share them:

    request = parse_score_request(task, payload)          # FieldError (a UserError) naming the field
    results = predictor.predict(request.items, request.params)
    body    = request.respond(results)

The three formats of the model cards (the cloud catalog's scoring examples):
- ``{"input_data": ["Paris is [MASK] of France"], "params": {}}`` -> ``["part"]`` (fill-mask:
  top-1 token string per input; other tasks: the pipeline result per input);
- ``{"inputs": {"question": [...], "context": [...]}}`` -> ``[{"score","start","end","answer"}, ...]``;
- ``{"inputs": {"input_string": [...]}, "parameters": {"top_k": 2}}`` -> one pipeline result per input.

And the envelopes users bring: Hugging Face inference (``parse_hf_request``), MLflow scoring
(``parse_mlflow_request``), KServe v1 (``parse_kserve_v1_request``) and the Open Inference
Protocol v2 (``parse_v2_request``). Every parser raises ``FieldError`` naming the field.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from distilkit.errors import UserError


class FieldError(UserError):
    """A request that does not fit the format; ``field`` is the dotted path of the culprit."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass
class ParsedRequest:
    """A request of any wire format, parsed: items and parameters for the Predictor plus the
    function that shapes its results into that format's response."""

    items: list[Any]
    params: dict[str, Any]
    respond: Callable[[list[Any]], Any]
    field: str = "inputs"  # where the items came from, to name it in per-input errors


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
        raise FieldError(field, "question and context must have the same length "
                                f"({len(questions)} vs {len(contexts)})")
    return [{"question": q, "context": c} for q, c in zip(questions, contexts, strict=True)]


def _one_per_item(results: list[Any]) -> list[Any]:
    return results


def parse_score_request(task: str, payload: Any) -> ParsedRequest:
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
                return ParsedRequest(_qa_items(data, "input_data"), _params(payload, "params"), _one_per_item,
                                    "input_data")
            raise FieldError("input_data", "question-answering expects {'question': [...], 'context': [...]}")
        items = _string_list(data, "input_data")
        respond = _top1_strings if task == "fill-mask" else _one_per_item
        return ParsedRequest(items, _params(payload, "params"), respond, "input_data")
    if "inputs" in payload:
        inputs = payload["inputs"]
        params = _params(payload, "parameters")
        if task == "question-answering":
            if not isinstance(inputs, dict):
                raise FieldError("inputs", "question-answering expects {'question': [...], 'context': [...]}")
            return ParsedRequest(_qa_items(inputs, "inputs"), params, _one_per_item)
        if isinstance(inputs, dict):
            if "input_string" not in inputs:
                raise FieldError("inputs", "expected 'input_string' (a list of strings)")
            texts = _string_list(inputs["input_string"], "inputs.input_string")
            return ParsedRequest(texts, params, _one_per_item, "inputs.input_string")
        return ParsedRequest(_string_list(inputs, "inputs"), params, _one_per_item)
    raise FieldError("body", "expected 'input_data' or 'inputs'")


# --- the other envelopes -----------------------------------------------------------------------------
TEXT_COLUMNS = ("input_string", "text", "inputs", "sentence", "sequence")


def _item(task: str, value: Any, field: str) -> Any:
    """One item from a record: a string, or a dict with the task's named fields."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        if task == "question-answering":
            if not isinstance(value.get("question"), str) or not isinstance(value.get("context"), str):
                raise FieldError(field, "expected {'question': str, 'context': str}")
            return {"question": value["question"], "context": value["context"]}
        if "text_pair" in value and task == "text-classification":
            return {"text": value.get("text"), "text_pair": value["text_pair"]}
        for column in TEXT_COLUMNS:
            if isinstance(value.get(column), str):
                return value[column]
        raise FieldError(field, f"expected a string or an object with one of {list(TEXT_COLUMNS)}")
    raise FieldError(field, f"expected a string or an object, got {type(value).__name__}")


def _records(task: str, values: Any, field: str) -> list[Any]:
    if not isinstance(values, list) or not values:
        raise FieldError(field, "expected a non-empty list")
    return [_item(task, v, f"{field}[{i}]") for i, v in enumerate(values)]


def _columns(task: str, columns: dict[str, Any], field: str) -> list[Any]:
    """Items from column lists: {question, context} for QA, else one text column (+ text_pair)."""
    if task == "question-answering":
        return _qa_items(columns, field)
    for column in TEXT_COLUMNS:
        if column in columns:
            texts = _string_list(columns[column], f"{field}.{column}")
            if task == "text-classification" and "text_pair" in columns:
                pairs = _string_list(columns["text_pair"], f"{field}.text_pair")
                if len(pairs) != len(texts):
                    raise FieldError(field, f"{column} and text_pair must have the same length")
                return [{"text": t, "text_pair": p} for t, p in zip(texts, pairs, strict=True)]
            return texts
    raise FieldError(field, f"expected one of the columns {list(TEXT_COLUMNS)}")


def _items(task: str, value: Any, field: str) -> list[Any]:
    if isinstance(value, dict):
        pair = ("question", "context")
        if task == "question-answering" and all(isinstance(value.get(k), str) for k in pair):
            return [_item(task, value, field)]
        return _columns(task, value, field)
    if isinstance(value, str):
        return [value]
    return _records(task, value, field)


def parse_hf_request(task: str, payload: Any) -> ParsedRequest:
    """Hugging Face inference: ``{"inputs": str | [..] | {question, context}, "parameters": {..}}``.

    The response is the pipeline's: one result for one input, a list for a list.
    """
    if not isinstance(payload, dict) or "inputs" not in payload:
        raise FieldError("body", "expected a JSON object with 'inputs'")
    inputs = payload["inputs"]
    items = _items(task, inputs, "inputs")
    single = isinstance(inputs, str) or (task == "question-answering" and isinstance(inputs, dict)
                                         and isinstance(inputs.get("question"), str))
    return ParsedRequest(items, _params(payload, "parameters"), (lambda r: r[0]) if single else _one_per_item)


def _predictions(results: list[Any]) -> dict[str, Any]:
    return {"predictions": results}


def parse_mlflow_request(task: str, payload: Any) -> ParsedRequest:
    """MLflow scoring: ``input_data`` | ``inputs`` | ``instances`` | ``dataframe_split`` |
    ``dataframe_records`` plus ``params``; the response is ``{"predictions": [...]}``."""
    if not isinstance(payload, dict):
        raise FieldError("body", "expected a JSON object")
    params = _params(payload, "params")
    names = ("input_data", "inputs", "instances", "dataframe_split", "dataframe_records")
    keys = [k for k in names if k in payload]
    if len(keys) != 1:
        raise FieldError("body", "expected exactly one of input_data, inputs, instances, dataframe_split, "
                                 "dataframe_records")
    key = keys[0]
    value = payload[key]
    if key == "dataframe_split":
        if not isinstance(value, dict) or not isinstance(value.get("columns"), list) \
                or not isinstance(value.get("data"), list) or not value["data"]:
            raise FieldError(key, "expected {'columns': [...], 'data': [[...], ...]}")
        columns = value["columns"]
        for i, row in enumerate(value["data"]):
            if not isinstance(row, list) or len(row) != len(columns):
                raise FieldError(f"{key}.data[{i}]", f"expected a list of {len(columns)} values")
        table = {str(c): [row[j] for row in value["data"]] for j, c in enumerate(columns)}
        return ParsedRequest(_columns(task, table, key), params, _predictions, key)
    if key == "dataframe_records":
        return ParsedRequest(_records(task, value, key), params, _predictions, key)
    return ParsedRequest(_items(task, value, key), params, _predictions, key)


def parse_kserve_v1_request(task: str, payload: Any) -> ParsedRequest:
    """KServe v1: ``{"instances": [...], "parameters"?: {...}}`` -> ``{"predictions": [...]}``."""
    if not isinstance(payload, dict) or "instances" not in payload:
        raise FieldError("body", "expected a JSON object with 'instances'")
    return ParsedRequest(_records(task, payload["instances"], "instances"), _params(payload, "parameters"),
                        _predictions, "instances")


def parse_v2_request(task: str, payload: Any, model_name: str) -> ParsedRequest:
    """Open Inference Protocol v2: BYTES input tensors named ``text`` (or ``question``/``context``).

    Each output element is the JSON text of one pipeline result (BYTES tensor ``output``).
    """
    if not isinstance(payload, dict) or not isinstance(payload.get("inputs"), list) or not payload["inputs"]:
        raise FieldError("inputs", "expected a non-empty list of input tensors")
    tensors: dict[str, list[str]] = {}
    for i, tensor in enumerate(payload["inputs"]):
        if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
            raise FieldError(f"inputs[{i}]", "expected a tensor {'name', 'shape', 'datatype', 'data'}")
        if tensor.get("datatype", "BYTES") != "BYTES":
            raise FieldError(f"inputs[{i}].datatype", "text inputs must be BYTES")
        tensors[tensor["name"]] = _string_list(tensor.get("data"), f"inputs[{i}].data")
    if task != "question-answering" and len(tensors) == 1:
        tensors = {"text": next(iter(tensors.values()))}
    items = _columns(task, tensors, "inputs")
    request_id = payload.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise FieldError("id", f"expected a string, got {type(request_id).__name__}")

    def respond(results: list[Any]) -> dict[str, Any]:
        body = {"model_name": model_name, "outputs": [{
            "name": "output", "datatype": "BYTES", "shape": [len(results)],
            "data": [json.dumps(r, ensure_ascii=False) for r in results]}]}
        if request_id is not None:
            body["id"] = request_id
        return body

    return ParsedRequest(items, _params(payload, "parameters"), respond, "inputs")
