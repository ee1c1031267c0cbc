"""Predictions take the app's short way in (``ServingApp``): past FastAPI's per-request stack, with the
same guard (API key, metrics, Server-Timing, error format) and the same answers as the full stack."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from distilkit.inference.predictor import Predictor
from distilkit.serve.app import create_app
from distilkit.serve.settings import ServeSettings

BODY = {"inputs": "Paris is the [MASK] of France.", "parameters": {"top_k": 2}}
TIMING = re.compile(r"(^|, )total;dur=\d+\.\d$")


@pytest.fixture(scope="module")
def predictors(tiny_model) -> dict[str, Predictor]:
    return {"mlm": Predictor.from_ref(tiny_model("fill-mask"), dtype="float32")}


def full_stack_only(app):
    """The same app with the short way closed: every request through FastAPI's stack."""
    app.lane = None
    return app


class Broken(Exception):
    pass


def test_predictions_skip_fastapis_stack_and_the_rest_still_takes_it(predictors):
    app = create_app(ServeSettings(), predictors)

    async def broken_stack(scope, receive, send):
        raise Broken("the middleware stack ran")

    with TestClient(app, raise_server_exceptions=False) as client:
        app.middleware_stack = broken_stack
        assert client.post("/models/mlm", json=BODY).status_code == 200
        assert client.post("/score?model=mlm", json={"input_data": ["a [MASK] b"]}).status_code == 200
        with pytest.raises(Broken):  # a probe, a GET and a POST to no prediction route take the stack
            TestClient(app).get("/health")
        with pytest.raises(Broken):
            TestClient(app).get("/models/mlm")
        with pytest.raises(Broken):
            TestClient(app).post("/nowhere", json=BODY)


@pytest.mark.parametrize("request_", [
    ("/models/mlm", BODY), ("/models/nope", BODY), ("/models/mlm", {"inputs": 3}),
    ("/score?model=mlm", {"input_data": ["no mask here"]}), ("/invocations", {"inputs": ["a [MASK]."]}),
    ("/v1/models/mlm:predict", {"instances": ["a [MASK]."]}), ("/v2/models/mlm/infer", {"inputs": []}),
], ids=["ok", "unknown-model", "bad-field", "no-mask", "mlflow", "kserve", "v2-empty"])
def test_a_prediction_answers_as_through_the_full_stack(predictors, request_):
    path, body = request_
    with TestClient(create_app(ServeSettings(), predictors), raise_server_exceptions=False) as lane, \
            TestClient(full_stack_only(create_app(ServeSettings(), predictors)),
                       raise_server_exceptions=False) as stack:
        short, full = lane.post(path, json=body), stack.post(path, json=body)
    assert (short.status_code, short.json()) == (full.status_code, full.json())
    assert short.headers["content-type"] == full.headers["content-type"]
    assert TIMING.search(short.headers["server-timing"])


def test_the_short_way_checks_the_api_key_and_counts_the_route(predictors):
    app = create_app(ServeSettings(api_key="k"), predictors)
    with TestClient(app, raise_server_exceptions=False) as client:
        refused = client.post("/models/mlm", json=BODY)
        assert (refused.status_code, refused.json()["error"]["code"]) == (401, "unauthorized")
        assert client.post("/models/mlm", json=BODY, headers={"Authorization": "Bearer k"}).status_code == 200
        metrics = client.get("/metrics").text
    assert 'distilkit_requests_total{route="/models/{name}",status="401"} 1.0' in metrics
    assert 'distilkit_requests_total{route="/models/{name}",status="200"} 1.0' in metrics


def test_a_server_bug_on_the_short_way_is_a_json_500_and_the_server_goes_on(predictors, monkeypatch):
    app = create_app(ServeSettings(), predictors)
    with TestClient(app, raise_server_exceptions=False) as client:
        server = app.state.server
        monkeypatch.setattr(server, "predict", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("bug")))
        r = client.post("/models/mlm", json=BODY)
        assert (r.status_code, r.json()["error"]["code"]) == (500, "internal_error")
        monkeypatch.undo()
        assert client.post("/models/mlm", json=BODY).status_code == 200


def test_middleware_added_later_sees_predictions_too(predictors):
    app = create_app(ServeSettings(), predictors)
    seen = []

    class Counting:
        def __init__(self, inner):
            self.inner = inner

        async def __call__(self, scope, receive, send):
            seen.append(scope.get("path"))
            await self.inner(scope, receive, send)

    app.add_middleware(Counting)
    with TestClient(app) as client:
        assert client.post("/models/mlm", json=BODY).status_code == 200
    assert "/models/mlm" in seen
