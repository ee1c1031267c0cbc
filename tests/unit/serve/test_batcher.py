"""Dynamic batching across requests with a fake predictor (no model)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from distilkit.serve.batcher import Batcher, QueueFull
from distilkit.tasks import Feature


class EchoPredictor:
    """``run`` returns each feature's first token id; records the batches it saw."""

    def __init__(self, fail_on: int | None = None):
        self.batches: list[list[int]] = []
        self.fail_on = fail_on
        self.gate = threading.Event()
        self.gate.set()

    def run(self, features):
        self.gate.wait()
        ids = [f.input_ids[0] for f in features]
        self.batches.append(ids)
        if self.fail_on in ids:
            raise RuntimeError("boom")
        return ids


def feats(*ids: int, length: int = 4) -> list[Feature]:
    return [Feature(item=i, input_ids=[t] * length) for i, t in enumerate(ids)]


def run(coro):
    return asyncio.run(coro)


def test_concurrent_requests_share_a_batch_and_get_their_own_outputs_in_order():
    predictor = EchoPredictor()
    batcher = Batcher(predictor, max_batch_size=16, max_wait_ms=50)

    async def main():
        jobs = [batcher.submit(feats(10 * r + 1, 10 * r + 2)) for r in range(3)]
        return [await j.future for j in jobs]

    assert run(main()) == [[1, 2], [11, 12], [21, 22]]
    assert predictor.batches == [[1, 2, 11, 12, 21, 22]]
    batcher.close()


def test_a_request_larger_than_a_batch_is_split_and_reassembled_in_order():
    predictor = EchoPredictor()
    batcher = Batcher(predictor, max_batch_size=2, max_wait_ms=0)

    async def main():
        return await batcher.submit(feats(1, 2, 3, 4, 5)).future

    assert run(main()) == [1, 2, 3, 4, 5]
    assert predictor.batches == [[1, 2], [3, 4], [5]]
    batcher.close()


def test_token_budget_closes_a_batch():
    predictor = EchoPredictor()
    batcher = Batcher(predictor, max_batch_size=64, max_batch_tokens=8, max_wait_ms=20)

    async def main():
        return await batcher.submit(feats(1, 2, 3, length=4)).future

    assert run(main()) == [1, 2, 3]
    assert predictor.batches == [[1, 2], [3]]
    batcher.close()


def test_cancelled_requests_are_dropped_from_the_queue():
    predictor = EchoPredictor()
    predictor.gate.clear()  # hold the worker inside its first batch
    batcher = Batcher(predictor, max_batch_size=1, max_wait_ms=0)

    async def main():
        first = batcher.submit(feats(1))
        await asyncio.sleep(0.05)
        dropped = batcher.submit(feats(2, 3))
        kept = batcher.submit(feats(4))
        dropped.cancel()
        predictor.gate.set()
        return await first.future, await kept.future

    assert run(main()) == ([1], [4])
    assert [b for b in predictor.batches if 2 in b or 3 in b] == []
    batcher.close()


def test_full_queue_is_refused_but_an_empty_queue_admits_a_large_request():
    predictor = EchoPredictor()
    predictor.gate.clear()
    batcher = Batcher(predictor, max_batch_size=1, max_wait_ms=0, max_queue=2)

    async def main():
        big = batcher.submit(feats(1, 2, 3, 4))  # empty queue: admitted even above max_queue
        await asyncio.sleep(0.05)
        with pytest.raises(QueueFull):
            batcher.submit(feats(5))
        predictor.gate.set()
        return await big.future

    assert run(main()) == [1, 2, 3, 4]
    batcher.close()


def test_a_failing_batch_fails_its_requests_and_the_worker_keeps_serving():
    predictor = EchoPredictor(fail_on=7)
    batcher = Batcher(predictor, max_batch_size=1, max_wait_ms=0)

    async def main():
        bad = batcher.submit(feats(7))
        with pytest.raises(RuntimeError, match="boom"):
            await bad.future
        return await batcher.submit(feats(8)).future

    assert run(main()) == [8]
    batcher.close()


def test_close_drains_queued_work_then_refuses_new_work():
    predictor = EchoPredictor()
    batcher = Batcher(predictor, max_batch_size=4, max_wait_ms=100)

    async def main():
        job = batcher.submit(feats(1, 2))
        await asyncio.to_thread(batcher.close)
        with pytest.raises(RuntimeError, match="shutting down"):
            batcher.submit(feats(3))
        return await job.future

    assert run(main()) == [1, 2]
