"""The playground's routes without a browser: page and assets served, open under --api-key, off
with --no-playground, the model list the page builds its forms from, Server-Timing on responses."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from test_serve import server

from distilkit.inference.predictor import Predictor
from distilkit.serve.app import create_app
from distilkit.serve.settings import ServeSettings

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "src" / "distilkit" / "serve" / "static"
TIMING = re.compile(r"(^|, )total;dur=\d+\.\d$")


@pytest.fixture(scope="module")
def predictors(tiny_model) -> dict[str, Predictor]:
    return {"bert": Predictor.from_ref(tiny_model("fill-mask"), dtype="float32"),
            "squad": Predictor.from_ref(tiny_model("question-answering"), dtype="float32")}


def client(predictors, **settings) -> TestClient:
    return TestClient(create_app(ServeSettings(**settings), predictors), raise_server_exceptions=False)


def assets(html: str) -> list[str]:
    """The page's own files: <script src>, <link href> (not data: URLs) and the modules they import."""
    paths = [p for p in re.findall(r'(?:src|href)="(/playground/static/[^"]+)"', html)]
    js = (STATIC / "playground.js").read_text()
    paths += [f"/playground/static/{name}" for name in re.findall(r'from "\./([\w.]+)"', js)]
    return paths


def test_page_is_served_at_root_and_playground_with_a_strict_policy(predictors):
    with client(predictors) as c:
        for path in ("/", "/playground"):
            r = c.get(path)
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
            assert "<title>distilkit playground</title>" in r.text
            policy = r.headers["content-security-policy"]
            for directive in ("default-src 'none'", "script-src 'self'", "connect-src 'self'"):
                assert directive in policy
        assert "/" not in c.get("/openapi.json").json()["paths"]  # the page is not an API route


def test_every_asset_the_page_loads_is_served_with_its_type(predictors):
    types = {".js": "text/javascript", ".css": "text/css"}
    with client(predictors) as c:
        paths = assets(c.get("/").text)
        assert sorted(Path(p).name for p in paths) == ["playground.css", "playground.js", "render.js"]
        for path in paths:
            r = c.get(path)
            assert r.status_code == 200, path
            assert r.headers["content-type"].startswith(types[Path(path).suffix])
            assert r.content == (STATIC / Path(path).name).read_bytes()
        assert c.get("/playground/static/nope.js").status_code == 404


def test_assets_ship_in_the_wheel_as_package_data():
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    package = ROOT / "src" / "distilkit" / "serve"
    shipped = {path for pattern in patterns["distilkit.serve"] for path in package.glob(pattern)}
    assert set(STATIC.iterdir()) <= shipped


def test_model_list_names_the_engine_precision_for_int8(tiny_model):
    from distilkit.inference import runtime

    if not runtime.can_run_int8(runtime.resolve_device(None)):
        pytest.skip("this CPU has no int8 dot products (AVX512-VNNI or AMX)")
    int8 = {"mlm": Predictor.from_ref(tiny_model("fill-mask"), "fill-mask", dtype="int8")}
    with client(int8) as c:
        (model,) = c.get("/v1/models").json()["models"]
    assert model["dtype"] == "int8"  # not the bf16/fp32 its activations run in
    assert model["engine"].startswith("PyTorch int8")


def test_model_list_describes_what_the_forms_need(predictors):
    with client(predictors) as c:
        models = {m["name"]: m for m in c.get("/v1/models").json()["models"]}
    assert models["bert"]["mask_token"] == "[MASK]"
    assert {p["name"]: p["default"] for p in models["bert"]["parameters"]} == {"top_k": 5, "targets": None}
    squad = {p["name"]: p for p in models["squad"]["parameters"]}
    assert squad["max_answer_len"] == {"name": "max_answer_len", "type": "integer", "default": 15}
    assert squad["handle_impossible_answer"]["type"] == "boolean"
    assert "mask_token" not in models["squad"]


def test_every_response_carries_a_server_timing_total(predictors):
    with client(predictors) as c:
        ok = c.post("/models/bert", json={"inputs": "Paris is [MASK] of France"})
        bad = c.post("/models/bert", json={"inputs": "no mask here"})
        page = c.get("/")
    assert ok.status_code == 200 and bad.status_code == 422 and page.status_code == 200
    for response in (ok, bad, page):
        assert TIMING.search(response.headers["server-timing"]), response.headers["server-timing"]


def test_api_key_leaves_the_page_open_and_guards_the_api(predictors):
    with client(predictors, api_key="s3cret") as c:
        assert c.get("/").status_code == 200 and c.get("/playground").status_code == 200
        for path in assets(c.get("/").text):
            assert c.get(path).status_code == 200, path
        denied = c.get("/v1/models")
        assert denied.status_code == 401 and denied.json()["error"]["code"] == "unauthorized"
        assert TIMING.search(denied.headers["server-timing"])
        assert c.get("/v1/models", headers={"authorization": "Bearer s3cret"}).status_code == 200
        assert c.post("/models/bert", json={"inputs": "a [MASK]"}).status_code == 401
        assert c.get("/playground/../v1/models").status_code in (401, 404)  # no way around the key


def test_playground_off_answers_404_and_keeps_the_api(predictors):
    with client(predictors, playground=False) as c:
        for path in ("/", "/playground", "/playground/static/playground.js"):
            r = c.get(path)
            assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", path
        assert c.get("/v1/models").status_code == 200


def test_no_playground_flag_turns_the_page_off_in_a_real_server(tiny_model):
    with server("--model", f"bert={tiny_model('fill-mask')}", "--no-playground") as (_, url):
        assert httpx.get(url + "/").status_code == 404
        assert httpx.get(url + "/playground/static/playground.js").status_code == 404
        r = httpx.post(url + "/models/bert", json={"inputs": "a [MASK]"}, timeout=30)
        assert r.status_code == 200 and TIMING.search(r.headers["server-timing"])
