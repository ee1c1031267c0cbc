"""The server under load, in process over real HTTP: budgets, fairness, overload, deadlines, disconnects.

The app runs in uvicorn on a thread of the test process (``inprocess.serving``), so a test can
hold or slow the model (``inprocess.Gate``) and see every forward pass it ran; assertions are
about order and counts, not time.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import re
import time

import httpx
import pytest
from inprocess import Gate, serving

from distilkit.inference.predictor import Predictor


@pytest.fixture
def bert(tiny_model) -> Predictor:
    return Predictor.from_ref(tiny_model("fill-mask"), "fill-mask", dtype="float32")


@pytest.fixture
def squad(tiny_model) -> Predictor:
    return Predictor.from_ref(tiny_model("question-answering"), "question-answering", dtype="float32")


def test_no_forward_pass_exceeds_the_padded_token_budget_or_the_row_limit(bert):
    gate = Gate(bert)
    gate.open.clear()  # requests pile up first, so that the scheduler has to split them
    texts = [f"the [MASK] {'city ' * (i % 13)}" for i in range(40)]
    with serving({"bert": bert}, max_batch_size=8, max_batch_tokens=128, max_wait_ms=0) as url:
        with concurrent.futures.ThreadPoolExecutor(40) as pool:
            futures = [pool.submit(httpx.post, url + "/models/bert", json={"inputs": t}, timeout=60)
                       for t in texts]
            time.sleep(0.5)
            gate.open.set()
            assert all(f.result().status_code == 200 for f in futures)
        metrics = httpx.get(url + "/metrics").text
    assert sum(len(p) for p in gate.passes) == 40 and any(len(p) > 1 for p in gate.passes)
    for rows, width in zip(gate.passes, gate.width, strict=True):
        assert len(rows) <= 8 and len(rows) * width <= 128
    count = re.search(r'distilkit_batch_padded_tokens_count\{model="bert"\} (\S+)', metrics)[1]
    assert f'distilkit_batch_padded_tokens_bucket{{le="128.0",model="bert"}} {count}' in metrics
    assert f'distilkit_batch_rows_bucket{{le="8.0",model="bert"}} {count}' in metrics
    # Real tokens per pass are counted too: every text's tokens once, never more than the padded ones.
    real = float(re.search(r'distilkit_batch_tokens_sum\{model="bert"\} (\S+)', metrics)[1])
    padded = float(re.search(r'distilkit_batch_padded_tokens_sum\{model="bert"\} (\S+)', metrics)[1])
    assert real == sum(len(f) for f in bert.prepare(texts).features) and real < padded


def test_small_requests_are_answered_while_a_maximal_admitted_request_runs(squad):
    gate = Gate(squad, delay=0.02)
    # A long context with a stride that advances a few tokens per window: exactly --max-features windows.
    context = "Ann lives in Paris and works for a company in London . " * 60
    big = {"inputs": {"question": "Who?", "context": context}, "parameters": {"doc_stride": 110}}
    small = {"inputs": {"question": "Who?", "context": "Ann lives here."}}
    prepared = squad.prepare([big["inputs"]], big["parameters"])
    windows = len(prepared.features)
    with serving({"squad": squad}, max_batch_size=1, max_features=windows) as url:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            running = pool.submit(httpx.post, url + "/models/squad", json=big, timeout=120)
            assert gate.entered.wait(30)
            answered = [httpx.post(url + "/models/squad", json=small, timeout=60) for _ in range(5)]
            big_still_running = not running.done()
            assert running.result().status_code == 200
        over = {**big, "parameters": {"doc_stride": 111}}  # one more window: refused, naming the flag
        refused = httpx.post(url + "/models/squad", json=over, timeout=60)
    assert [r.status_code for r in answered] == [200] * 5
    assert big_still_running  # every small request was answered while the big one was still running
    assert windows > 50 and len(gate.passes) == windows + 5
    assert refused.status_code == 413 and "--max-features" in refused.json()["error"]["message"]


def test_overload_admits_what_fits_answers_the_rest_429_and_recovers(bert):
    Gate(bert, delay=0.2)  # passes of 200 ms: 512 clients arrive much faster than the model drains them

    async def storm(url: str) -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=512, max_keepalive_connections=512)
        async with httpx.AsyncClient(limits=limits, timeout=120) as client:
            return await asyncio.gather(*(client.post(url + "/models/bert", json={"inputs": f"a [MASK] {i}"})
                                          for i in range(512)))

    with serving({"bert": bert}, max_queue=64, max_batch_size=32) as url:
        responses = asyncio.run(storm(url))
        statuses = [r.status_code for r in responses]
        assert set(statuses) <= {200, 429}
        assert statuses.count(200) >= 64 and statuses.count(429) > 0
        for r in responses:
            if r.status_code == 429:
                assert r.headers["retry-after"] == "1" and r.json()["error"]["code"] == "queue_full"
        assert httpx.get(url + "/health").status_code == 200
        assert httpx.post(url + "/models/bert", json={"inputs": "the [MASK]"}, timeout=30).status_code == 200


def test_a_full_queue_answers_429_and_a_request_past_its_deadline_504(bert):
    gate = Gate(bert)
    gate.open.clear()
    with serving({"bert": bert}, max_queue=1, timeout_s=0.5) as url, \
            concurrent.futures.ThreadPoolExecutor(2) as pool:
        first = pool.submit(httpx.post, url + "/models/bert", json={"inputs": "a [MASK]"}, timeout=30)
        assert gate.entered.wait(30)  # the first request's pass is held
        second = pool.submit(httpx.post, url + "/models/bert", json={"inputs": "the [MASK]"}, timeout=30)
        time.sleep(0.2)  # the second request now fills the one-input queue
        third = httpx.post(url + "/models/bert", json={"inputs": "one [MASK]"}, timeout=30)
        assert third.status_code == 429 and third.headers["retry-after"] == "1"
        late = second.result()
        assert late.status_code == 504 and late.json()["error"]["code"] == "timeout"
        gate.open.set()
        assert first.result().status_code == 504  # held past its deadline too
        assert httpx.post(url + "/models/bert", json={"inputs": "a [MASK]"}, timeout=30).status_code == 200


def test_a_client_that_disconnects_is_dropped_from_the_queue(bert):
    gate = Gate(bert)
    gate.open.clear()
    with serving({"bert": bert}) as url, concurrent.futures.ThreadPoolExecutor(1) as pool:
        first = pool.submit(httpx.post, url + "/models/bert", json={"inputs": "a [MASK]"}, timeout=30)
        assert gate.entered.wait(30)  # the first request's pass is held
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(url + "/models/bert", json={"inputs": "Paris [MASK] London"}, timeout=0.3)
        time.sleep(0.2)
        gate.open.set()
        assert first.result().status_code == 200
        assert httpx.post(url + "/models/bert", json={"inputs": "the [MASK]"}, timeout=30).status_code == 200
    left = bert.tokenizer("Paris [MASK] London")["input_ids"]
    assert left not in [row for rows in gate.passes for row in rows]  # the client that left never ran


@pytest.mark.parametrize("body", [b"[" * 100_000, b"[" * 100_000 + b"]" * 100_000], ids=["open", "balanced"])
def test_json_nested_100000_deep_under_the_default_body_limit_is_a_400(bert, body):
    with serving({"bert": bert}) as url:  # default --max-body-bytes (1 MiB): the body is read and parsed
        r = httpx.post(url + "/models/bert", content=body, headers={"content-type": "application/json"},
                       timeout=30)
        after = httpx.post(url + "/models/bert", json={"inputs": "the [MASK]"}, timeout=30)
    assert r.status_code == 400 and "nested deeper than" in r.json()["error"]["message"]
    assert after.status_code == 200
