"""Prediction routes: FastAPI declarations (and documentation) run without FastAPI's per-request machinery."""

from __future__ import annotations

import pytest
from fastapi import FastAPI, Header, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from fastapi.testclient import TestClient

from distilkit.serve.routes import post_prediction


class Refused(Exception):
    pass


def app_with_route() -> FastAPI:
    app = FastAPI()

    @app.exception_handler(Refused)
    async def refused(_: Request, err: Refused) -> JSONResponse:
        return JSONResponse({"error": str(err)}, status_code=422)

    @post_prediction(app, "/p/{name}", summary="A prediction")
    async def endpoint(request: Request, name: str = Path(), model: str | None = Query(None),
                       deployment: str | None = Header(None, alias="x-deployment"),
                       x_region: str | None = Header(None)) -> Response:
        body = await request.json()
        if body.get("refuse"):
            raise Refused(f"refused for {name}")
        return JSONResponse({"name": name, "model": model, "deployment": deployment, "region": x_region,
                             "body": body})

    return app


def test_a_prediction_route_hands_its_endpoint_the_path_query_and_header_strings():
    client = TestClient(app_with_route())
    r = client.post("/p/abc?model=m", json={"a": 1}, headers={"X-Deployment": "d", "X-Region": "eu"})
    assert r.status_code == 200
    # A header without an alias is named as FastAPI names it: underscores become hyphens.
    assert r.json() == {"name": "abc", "model": "m", "deployment": "d", "region": "eu", "body": {"a": 1}}
    bare = client.post("/p/xyz", json={}).json()
    assert bare == {"name": "xyz", "model": None, "deployment": None, "region": None, "body": {}}


def test_a_prediction_routes_errors_reach_the_apps_exception_handlers():
    r = TestClient(app_with_route()).post("/p/abc", json={"refuse": True})
    assert (r.status_code, r.json()) == (422, {"error": "refused for abc"})


def test_a_prediction_route_is_documented_with_its_parameters():
    operation = app_with_route().openapi()["paths"]["/p/{name}"]["post"]
    assert operation["summary"] == "A prediction"
    assert {(p["name"], p["in"]) for p in operation["parameters"]} == {
        ("name", "path"), ("model", "query"), ("x-deployment", "header"), ("x-region", "header")}


def test_a_prediction_route_refuses_parameters_it_would_not_convert():
    async def numeric(request: Request, top_k: int = Query(1)) -> Response:
        return Response()

    async def with_body(request: Request, payload: dict) -> Response:
        return Response()

    with pytest.raises(TypeError, match="'top_k'"):
        post_prediction(FastAPI(), "/numeric")(numeric)
    with pytest.raises(TypeError, match="takes `request: Request` and string parameters"):
        post_prediction(FastAPI(), "/body")(with_body)


def test_the_router_tries_the_prediction_routes_first_and_still_serves_the_others():
    from types import SimpleNamespace

    from distilkit.serve.routes import PredictionRoute, add_routes

    app = FastAPI()
    add_routes(app, SimpleNamespace(predictors={"m": None}, ready=True))
    kinds = [isinstance(route, PredictionRoute) for route in app.router.routes]
    assert kinds == sorted(kinds, reverse=True) and sum(kinds) == 5
    assert TestClient(app).get("/health").json() == {"status": "ok"}
    assert "/health" in app.openapi()["paths"]
