"""Fuzz every prediction route with generated bodies: no client input may produce a 5xx."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from distilkit.inference.predictor import Predictor
from distilkit.serve.app import create_app
from distilkit.serve.settings import ServeSettings

KEYS = ["input_data", "inputs", "params", "parameters", "question", "context", "input_string", "instances",
        "dataframe_split", "dataframe_records", "columns", "data", "name", "datatype", "shape", "text",
        "text_pair", "top_k", "targets", "doc_stride", "max_seq_len", "max_answer_len", "max_question_len",
        "handle_impossible_answer", "align_to_words", "id"]
TEXTS = st.one_of(st.text(max_size=40), st.sampled_from(["a [MASK]", "[MASK] [MASK]", "", " ", "<mask>",
                                                         "the [MASK] of France", "Who?", "Ann lives here."]))
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True), TEXTS)
JSON = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=5), st.dictionaries(st.sampled_from(KEYS), inner, max_size=4)), max_leaves=12)
ROUTES = ["/score?model={m}", "/models/{m}", "/invocations?model={m}", "/v1/models/{m}:predict",
          "/v2/models/{m}/infer"]


@pytest.fixture(scope="module")
def client(tiny_model):
    predictors = {name: Predictor.from_ref(tiny_model(task), task, dtype="float32")
                  for name, task in (("mlm", "fill-mask"), ("qa", "question-answering"))}
    app = create_app(ServeSettings(max_inputs=8, max_body_bytes=20_000, timeout_s=20), predictors)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def check(response) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        error = response.json()["error"]
        assert isinstance(error["code"], str) and isinstance(error["message"], str)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(route=st.sampled_from(ROUTES), model=st.sampled_from(["mlm", "qa"]), body=JSON)
def test_generated_json_bodies_never_produce_a_server_error(client, route, model, body):
    check(client.post(route.format(m=model), content=json.dumps(body)))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(route=st.sampled_from(ROUTES), model=st.sampled_from(["mlm", "qa"]), body=st.binary(max_size=200))
def test_arbitrary_bytes_never_produce_a_server_error(client, route, model, body):
    check(client.post(route.format(m=model), content=body))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(params=st.dictionaries(st.sampled_from(KEYS[17:]), SCALARS, max_size=4))
def test_generated_parameters_on_valid_inputs_never_produce_a_server_error(client, params):
    # json.dumps (not httpx's json=) so NaN/Infinity reach the server as clients may send them
    check(client.post("/score?model=mlm", content=json.dumps(
        {"inputs": {"input_string": ["a [MASK]"]}, "parameters": params})))
    check(client.post("/models/qa", content=json.dumps(
        {"inputs": {"question": "Who?", "context": "Ann lives here."}, "parameters": params})))
