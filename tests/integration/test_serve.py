"""The real server over HTTP: card payloads, every route, every error, auth, concurrency, shutdown."""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

import distilkit

QA_CARD = {"inputs": {
    "question": ["What is my name?", "Where do I live?"],
    "context": ["My name is John and I live in Seattle.", "My name is Ravi and I live in Hyderabad."]}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def server(*args: str, env: dict | None = None):
    """Start ``distilkit serve`` on a free loopback port; yield (process, base_url); stop it after."""
    port = free_port()
    # The log goes to a file: an unread pipe fills up and blocks the server once it has logged enough.
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "distilkit", "serve", "--port", str(port), "--dtype", "float32", *args],
            stdout=log, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "HF_HUB_OFFLINE": "1", "DISTILKIT_NUM_THREADS": "1", **(env or {})})
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.time() + 90
            while time.time() < deadline:
                if proc.poll() is not None:
                    log.seek(0)
                    raise RuntimeError(f"server exited with {proc.returncode}: {log.read()[-2000:]}")
                try:
                    if httpx.get(url + "/ready", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.2)
            else:
                raise RuntimeError("server did not become ready")
            yield proc, url
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()


@pytest.fixture(scope="module")
def models(tiny_model) -> dict[str, Path]:
    return {"bert": tiny_model("fill-mask"), "squad": tiny_model("question-answering"),
            "roberta": tiny_model("fill-mask", "roberta")}


@pytest.fixture(scope="module")
def base(models):
    """One server with three models: bert (fill-mask, [MASK]), squad (QA), roberta (fill-mask, <mask>)."""
    specs = [f"{name}={path}" for name, path in models.items()]
    args = [a for spec in specs for a in ("--model", spec)]
    with server(*args, "--max-inputs", "8", "--max-body-bytes", "8192") as (_, url):
        yield url


def post(url: str, path: str, body, **kw) -> httpx.Response:
    content = body if isinstance(body, (bytes, str)) else json.dumps(body)
    headers = {"content-type": "application/json", **kw.pop("headers", {})}
    return httpx.post(url + path, content=content, headers=headers, timeout=30, **kw)


# --- the card payloads ------------------------------------------------------------------------------
def test_card_fill_mask_input_data_returns_top1_strings(base, models):
    r = post(base, "/score?model=bert", {"input_data": ["the [MASK] of France", "a [MASK]"], "params": {}})
    assert r.status_code == 200
    pipe = distilkit.pipeline("fill-mask", model=models["bert"], dtype="float32")
    expected = pipe(["the [MASK] of France", "a [MASK]"], top_k=1)
    assert r.json() == [e[0]["token_str"] for e in expected]


def test_card_question_answering_returns_one_span_per_pair(base):
    r = post(base, "/score", QA_CARD, headers={"azureml-model-deployment": "squad"})
    assert r.status_code == 200
    body = r.json()
    assert len(body) == 2
    for answer, context in zip(body, QA_CARD["inputs"]["context"]):
        assert set(answer) == {"score", "start", "end", "answer"}
        assert answer["answer"] == context[answer["start"]:answer["end"]]


def test_card_roberta_input_string_with_top_k_returns_lists(base):
    body = {"inputs": {"input_string": ["Paris is the<mask>.", "a<mask> day"]}, "parameters": {"top_k": 2}}
    r = post(base, "/score?model=roberta", body)
    assert r.status_code == 200
    assert [len(candidates) for candidates in r.json()] == [2, 2]
    assert set(r.json()[0][0]) == {"score", "token", "token_str", "sequence"}


# --- the other routes -------------------------------------------------------------------------------
@pytest.mark.parametrize(("path", "body", "check"), [
    ("/models/bert", {"inputs": "a [MASK]", "parameters": {"top_k": 3}}, lambda b: len(b) == 3),
    ("/models/squad", {"inputs": {"question": "Who?", "context": "Ann lives here."}},
     lambda b: "answer" in b),
    ("/invocations?model=bert", {"input_data": ["a [MASK]"], "params": {"top_k": 1}},
     lambda b: len(b["predictions"]) == 1),
    ("/invocations?model=bert", {"inputs": ["a [MASK]", "the [MASK]"]}, lambda b: len(b["predictions"]) == 2),
    ("/invocations?model=bert", {"instances": [{"text": "a [MASK]"}]}, lambda b: len(b["predictions"]) == 1),
    ("/invocations?model=bert", {"dataframe_split": {"columns": ["input_string"], "data": [["a [MASK]"]]}},
     lambda b: len(b["predictions"]) == 1),
    ("/invocations?model=squad", {"dataframe_records": [{"question": "Who?", "context": "Ann lives here."}]},
     lambda b: "answer" in b["predictions"][0]),
    ("/v1/models/bert:predict", {"instances": ["a [MASK]", "the [MASK]"]},
     lambda b: len(b["predictions"]) == 2),
    ("/v2/models/bert/infer", {"id": "7", "inputs": [{"name": "text", "shape": [1], "datatype": "BYTES",
                                                      "data": ["a [MASK]"]}]},
     lambda b: b["id"] == "7" and len(json.loads(b["outputs"][0]["data"][0])) == 5),
])
def test_every_prediction_route_answers_its_format(base, path, body, check):
    r = post(base, path, body)
    assert r.status_code == 200, r.text
    assert check(r.json())


def test_health_ready_models_docs_and_metrics(base):
    assert httpx.get(base + "/health").json() == {"status": "ok"}
    assert httpx.get(base + "/ready").json()["models"] == ["bert", "roberta", "squad"]
    assert httpx.get(base + "/v2/health/ready").json() == {"ready": True}
    assert {m["name"]: m["task"] for m in httpx.get(base + "/v1/models").json()["models"]} == {
        "bert": "fill-mask", "squad": "question-answering", "roberta": "fill-mask"}
    assert httpx.get(base + "/docs").status_code == 200
    spec = httpx.get(base + "/openapi.json").json()
    score = json.dumps(spec["paths"]["/score"])
    assert "input_data" in score and '"answer": "John"' in score  # card requests and responses documented
    post(base, "/score?model=bert", {"input_data": ["a [MASK]"]})
    metrics = httpx.get(base + "/metrics").text
    for family in ("distilkit_requests_total", "distilkit_queue_depth", "distilkit_batch_rows_bucket",
                   "distilkit_batch_padded_tokens_bucket", "distilkit_batch_seconds_bucket",
                   'stage="tokenize"',
                   'stage="queue"', 'stage="forward"', 'stage="decode"'):
        assert family in metrics


def test_every_prediction_answers_its_per_stage_times_in_server_timing(base):
    r = post(base, "/models/bert", {"inputs": "a [MASK]"})
    assert r.status_code == 200
    stages = dict(entry.split(";dur=") for entry in r.headers["server-timing"].split(", "))
    # The stages the server ran, then the guard's whole-request total.
    assert list(stages) == ["tokenize", "queue", "forward", "decode", "total"]
    assert all(float(ms) >= 0 for ms in stages.values()) and float(stages["forward"]) > 0


# --- errors -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("path", "body", "status", "needle"), [
    ("/score?model=bert", b'{"input_data": ["a', 400, "not valid JSON"),
    ("/score?model=bert", {"input_data": ["x [MASK]"] * 9}, 413, "at most 8"),
    ("/score?model=bert", {"input_data": ["x" * 9000]}, 413, "limit"),
    ("/score?model=bert", {"input_data": "nope"}, 422, "input_data"),
    ("/score?model=bert", {"input_data": ["Paris is <mask>."]}, 422, "this model's mask token is [MASK]"),
    ("/score?model=roberta", {"input_data": ["Paris is [MASK]."]}, 422, "this model's mask token is <mask>"),
    ("/score?model=bert", {"input_data": ["a [MASK]"], "params": {"top_k": 0}}, 422, "top_k must be >= 1"),
    ("/score?model=bert", {"inputs": {"text": ["a"]}}, 422, "inputs: expected 'input_string'"),
    ("/score?model=squad", {"inputs": {"question": ["a"], "context": [""]}}, 422, "context"),
    ("/score?model=nope", {"input_data": ["a [MASK]"]}, 404, "no model named 'nope'"),
    ("/models/nope", {"inputs": "a [MASK]"}, 404, "no model named"),
    ("/v2/models/bert/infer", {"inputs": [{"name": "text", "datatype": "FP32", "data": [1.0]}]}, 422,
     "BYTES"),
    ("/v2/models/bert/infer", {"id": [[1]], "inputs": [{"name": "text", "data": ["a [MASK]"]}]}, 422,
     "id: expected"),
    ("/score?model=bert", b"[" * 4000, 400, "nested deeper than"),
    ("/score?model=bert", b'{"input_data": [' + b"[" * 40 + b"]" * 40 + b"]}", 400, "nested deeper than"),
    ("/score?model=bert", b'{"input_data": ["a [MASK]"], "params": {"top_k": ' + b"9" * 4400 + b"}}", 400,
     "not valid JSON"),
    ("/score?model=bert", {"input_data": ["a [MASK]"], "params": {"top_k": 10**6}}, 422,
     "top_k must be at most"),
    ("/score?model=bert", {"input_data": ["a" + " [MASK]" * 21]}, 413, "--max-masks"),
    ("/score?model=bert", {"input_data": ["a [MASK] [MASK]"], "params": {"top_k": 101}}, 422,
     "--max-candidates"),
    ("/score?model=bert", {"input_data": ["a [MASK]"], "params": {"targets": [[[["x"] * 3] * 3] * 3]}}, 422,
     "targets must be a string or a list of strings"),
    ("/models/squad", {"inputs": {"question": "Who?", "context": "Ann lives in Paris . " * 150},
                       "parameters": {"doc_stride": 120}}, 413, "--max-features"),
])
def test_bad_requests_get_json_errors_and_the_server_keeps_serving(base, path, body, status, needle):
    r = post(base, path, body)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"code", "message"} and needle in error["message"]
    assert post(base, "/score?model=bert", {"input_data": ["a [MASK]"]}).status_code == 200


def test_api_key_is_required_except_on_health_ready_and_metrics(models):
    with server("--model", f"bert={models['bert']}", "--api-key", "s3cret") as (_, url):
        assert post(url, "/score", {"input_data": ["a [MASK]"]}).status_code == 401
        wrong = post(url, "/score", {"input_data": ["a [MASK]"]}, headers={"authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "unauthorized"
        ok = post(url, "/score", {"input_data": ["a [MASK]"]}, headers={"authorization": "Bearer s3cret"})
        assert ok.status_code == 200
        assert httpx.get(url + "/health").status_code == 200
        assert httpx.get(url + "/metrics").status_code == 200


def test_32_clients_x_20_requests_are_all_answered_with_their_own_results(base, models):
    reference = distilkit.pipeline("fill-mask", model=models["bert"], dtype="float32")
    words = ["the", "of", "and", "in", "a", "is", "was", "for"]

    def text(client: int, i: int) -> str:
        return f"{words[client % 8]} [MASK] {words[i % 8]} " + "city " * (client % 5 + i % 3)

    def client(c: int) -> list[tuple[str, list]]:
        with httpx.Client(timeout=60) as http:
            out = []
            for i in range(20):
                r = http.post(base + "/models/bert", json={"inputs": text(c, i), "parameters": {"top_k": 2}})
                assert r.status_code == 200, r.text
                out.append((text(c, i), r.json()))
            return out

    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        answers = [a for result in pool.map(client, range(32)) for a in result]
    assert len(answers) == 640
    texts = sorted({t for t, _ in answers})
    expected = dict(zip(texts, reference(texts, top_k=2)))
    for t, got in answers:
        assert [c["token"] for c in got] == [c["token"] for c in expected[t]]
        assert got[0]["sequence"] == expected[t][0]["sequence"]
        assert abs(got[0]["score"] - expected[t][0]["score"]) < 1e-4
    rows = re.search(r'distilkit_batch_rows_sum\{model="bert"\} (\S+)', httpx.get(base + "/metrics").text)
    passes = re.search(r'distilkit_batch_rows_count\{model="bert"\} (\S+)', httpx.get(base + "/metrics").text)
    assert float(rows[1]) > float(passes[1])  # concurrent requests shared forward passes


def test_sigterm_finishes_requests_in_flight_then_exits_0(models):
    # One QA request of ~200 windows, one per pass: still running when SIGTERM arrives.
    long = {"inputs": {"question": "Who?", "context": "Ann lives in Paris . " * 150},
            "parameters": {"doc_stride": 110}}
    args = ("--model", f"squad={models['squad']}", "--max-batch-size", "1", "--max-batch-tokens", "128")
    with server(*args) as (proc, url):
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            futures = [pool.submit(post, url, "/models/squad", long) for _ in range(2)]
            time.sleep(0.3)
            proc.send_signal(signal.SIGTERM)
            assert [f.result().status_code for f in futures] == [200, 200]
        assert proc.wait(30) == 0
        with pytest.raises(httpx.TransportError):
            httpx.get(url + "/health", timeout=2)


def test_no_model_and_no_cache_is_a_one_paragraph_error(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-m", "distilkit", "serve"], check=False, capture_output=True,
                         text=True, timeout=60, env=env)
    assert out.returncode == 2
    assert "--model DIR" in out.stderr and "--dummy-weights" in out.stderr
    assert out.stderr.strip().count("\n") == 0
