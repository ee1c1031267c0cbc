"""What ``/openapi.json`` declares: request bodies, the real response shapes and the error body.

Bodies are parsed by ``serve.formats`` (not by FastAPI), so the routes declare these schemas
by hand; a schemathesis run in the test suite checks every response against them.
"""

from __future__ import annotations

from typing import Any

from distilkit.serve.errors import ERROR_SCHEMA

NUMBER = {"type": "number"}
STRING = {"type": "string"}
INTEGER = {"type": "integer"}
STRINGS = {"type": "array", "items": STRING, "minItems": 1}


def obj(required: list[str], optional: dict[str, Any] | None = None, **properties: Any) -> dict[str, Any]:
    """An object schema with ``required`` among ``properties`` (+ ``optional`` ones)."""
    return {"type": "object", "required": required, "properties": {**properties, **(optional or {})}}


def array(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items}


# --- results, one per task: the transformers pipelines' shapes ----------------------------------------
CANDIDATE = obj(["score", "token", "token_str", "sequence"], score=NUMBER, token=INTEGER, token_str=STRING,
                sequence=STRING)
ANSWER = obj(["score", "start", "end", "answer"], score=NUMBER, start=INTEGER, end=INTEGER, answer=STRING)
LABEL = obj(["label", "score"], label=STRING, score=NUMBER)
OFFSET = {"type": ["integer", "null"]}
ENTITY = {"type": "object", "required": ["score", "word", "start", "end"], "properties": {
    "entity": STRING, "entity_group": STRING, "score": NUMBER, "word": STRING, "index": INTEGER,
    "start": OFFSET, "end": OFFSET}}
RESULT = {"description": "One input's result in the transformers pipeline's shape for the model's task",
          "anyOf": [
    array(CANDIDATE), array(array(CANDIDATE)),  # fill-mask: one list, or one per mask
    ANSWER, array(ANSWER),  # question-answering: the best answer, or the top_k
    LABEL, array(LABEL),  # text-classification: the best label, or the top_k
    array(ENTITY),  # token-classification
]}
TOP1 = {"description": "fill-mask input_data: the best token string (one per mask)",
        "anyOf": [STRING, array(STRING)]}
PREDICTIONS = obj(["predictions"], predictions=array(RESULT))
V2_RESPONSE = obj(["model_name", "outputs"], {"id": STRING}, model_name=STRING, outputs=array(obj(
    ["name", "datatype", "shape", "data"], name=STRING, datatype=STRING, shape=array(INTEGER),
    data={"type": "array", "items": STRING, "description": "JSON text of each input's result"})))

# --- requests ------------------------------------------------------------------------------------------
PARAMS = {"type": "object", "description": "The task's pipeline parameters", "properties": {
    "top_k": {"type": "integer", "minimum": 1}, "targets": {"anyOf": [STRING, STRINGS]},
    "doc_stride": {"type": "integer", "minimum": 0}, "max_seq_len": INTEGER, "max_question_len": INTEGER,
    "max_answer_len": {"type": "integer", "minimum": 1}, "handle_impossible_answer": {"type": "boolean"},
    "align_to_words": {"type": "boolean"},
    "function_to_apply": {"enum": ["default", "softmax", "sigmoid", "none"]},
    "aggregation_strategy": {"enum": ["none", "simple", "first", "average", "max"]},
    "ignore_labels": array(STRING), "stride": {"type": "integer", "minimum": 0}}}
QA_COLUMNS = obj(["question", "context"], question=STRINGS, context=STRINGS)
QA_ITEM = obj(["question", "context"], question=STRING, context=STRING)
TEXT_RECORD = {"type": "object", "description": "A text in one of the columns input_string, text, inputs, "
               "sentence, sequence (text + text_pair for classification of pairs)",
               "properties": {"text": STRING, "text_pair": STRING, "input_string": STRING}}
RECORDS = {"type": "array", "minItems": 1, "items": {"anyOf": [STRING, TEXT_RECORD, QA_ITEM]}}
SCORE_REQUEST = {"anyOf": [
    obj(["input_data"], {"params": PARAMS}, input_data={"anyOf": [STRINGS, QA_COLUMNS]}),
    obj(["inputs"], {"parameters": PARAMS},
        inputs={"anyOf": [STRINGS, QA_COLUMNS, obj(["input_string"], input_string=STRINGS)]}),
]}
HF_REQUEST = obj(["inputs"], {"parameters": PARAMS}, inputs={"anyOf": [STRING, RECORDS, QA_ITEM, QA_COLUMNS]})
MLFLOW_REQUEST = {"anyOf": [
    obj(["input_data"], {"params": PARAMS}, input_data={"anyOf": [RECORDS, QA_COLUMNS]}),
    obj(["inputs"], {"params": PARAMS}, inputs={"anyOf": [STRING, RECORDS, QA_COLUMNS]}),
    obj(["instances"], {"params": PARAMS}, instances=RECORDS),
    obj(["dataframe_split"], {"params": PARAMS}, dataframe_split=obj(
        ["columns", "data"], columns=STRINGS, data={"type": "array", "minItems": 1, "items": array(STRING)})),
    obj(["dataframe_records"], {"params": PARAMS}, dataframe_records=RECORDS),
]}
KSERVE_REQUEST = obj(["instances"], {"parameters": PARAMS}, instances=RECORDS)
V2_TENSOR = obj(["name", "shape", "datatype", "data"], name={"enum": ["text", "question", "context"]},
                shape=array(INTEGER), datatype={"const": "BYTES"}, data=STRINGS)
V2_REQUEST = obj(["inputs"], {"id": STRING, "parameters": PARAMS},
                 inputs={"type": "array", "minItems": 1, "items": V2_TENSOR})

ERRORS = {
    400: "Body is not JSON, or nested too deeply",
    401: "Missing or wrong API key (with --api-key)",
    404: "No such model",
    413: "Body, inputs, model rows (--max-features), masks (--max-masks) or response past their limits",
    422: "A field, parameter, input or mask token the model cannot take; the message names it",
    429: "The model's queue is full; retry after Retry-After seconds",
    503: "Starting or shutting down",
    504: "No result within --timeout-s",
}
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying", "schema": STRING}}


def json_content(schema: dict[str, Any], examples: dict[str, Any] | None = None) -> dict[str, Any]:
    media: dict[str, Any] = {"schema": schema}
    if examples:
        media["examples"] = {k: {"value": v} for k, v in examples.items()}
    return {"application/json": media}


def errors(*statuses: int) -> dict[int | str, Any]:
    """Error responses with the one error body (429/503/504 also carry Retry-After)."""
    out: dict[int | str, Any] = {}
    for status in statuses:
        out[status] = {"description": ERRORS[status], "content": json_content(ERROR_SCHEMA)}
        if status in (429, 503, 504):
            out[status]["headers"] = RETRY_AFTER
    return out


def prediction_doc(request: dict[str, Any], response: dict[str, Any], summary: str,
                   examples: dict[str, Any] | None = None,
                   response_examples: dict[str, Any] | None = None) -> dict[str, Any]:
    """``openapi_extra`` and ``responses`` of a prediction route."""
    ok = {"description": "Results in the request's format; Server-Timing has the per-stage times",
          "content": json_content(response, response_examples),
          "headers": {"Server-Timing": {"description": "tokenize, queue, forward and decode in ms",
                                        "schema": STRING}}}
    return {"openapi_extra": {"requestBody": {"required": True, "description": summary,
                                              "content": json_content(request, examples)}},
            "responses": {200: ok, **errors(400, 401, 404, 413, 422, 429, 503, 504)}}
