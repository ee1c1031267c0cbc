"""The serving scheduler with a fake predictor (no model): budgets, fairness, waiting, failures."""

from __future__ import annotations

import asyncio
import random
import threading
import time

import pytest

from distilkit.serve.scheduler import QueueFull, Scheduler
from distilkit.tasks import Feature


class EchoPredictor:
    """``run_batch`` returns each feature's first token id; records the passes it ran.

    Rows pad to a multiple of 8, like the Predictor's default on CUDA.
    """

    def __init__(self, fail_on: int | None = None, delay: float = 0.0):
        self.passes: list[list[Feature]] = []
        self.fail_on = fail_on
        self.delay = delay
        self.gate = threading.Event()
        self.gate.set()
        self.started = threading.Event()

    def padded_length(self, n: int) -> int:
        return -(-n // 8) * 8

    def run_batch(self, features):
        self.started.set()
        self.gate.wait()
        time.sleep(self.delay)
        self.passes.append(list(features))
        ids = [f.input_ids[0] for f in features]
        if self.fail_on in ids:
            raise RuntimeError("boom")
        return ids

    def ids(self) -> list[list[int]]:
        return [[f.input_ids[0] for f in p] for p in self.passes]


def feats(*ids: int, length: int = 4) -> list[Feature]:
    return [Feature(item=i, input_ids=[t] * length) for i, t in enumerate(ids)]


def scheduler(predictor, **kw) -> Scheduler:
    return Scheduler({"m": predictor}, **kw)


def test_concurrent_requests_share_a_pass_and_get_their_own_outputs_in_order():
    predictor = EchoPredictor()
    predictor.gate.clear()  # the first request's pass holds the model while the others queue
    sched = scheduler(predictor, max_batch_size=16, max_wait_ms=0)

    async def main():
        first = sched.submit("m", feats(1))
        await asyncio.to_thread(predictor.started.wait)
        jobs = [sched.submit("m", feats(10 * r + 1, 10 * r + 2)) for r in range(1, 4)]
        predictor.gate.set()
        return [await first.future] + [await j.future for j in jobs]

    assert asyncio.run(main()) == [[1], [11, 12], [21, 22], [31, 32]]
    assert predictor.ids() == [[1], [11, 21, 31, 12, 22, 32]]
    sched.close()


def test_no_pass_exceeds_the_padded_token_budget_or_the_row_limit():
    # Unpadded, 3 rows of 5 tokens are 15 <= 16 tokens; padded to 8 they cost 24: at most 2 per pass.
    rng = random.Random(0)
    predictor = EchoPredictor()
    predictor.gate.clear()
    sched = scheduler(predictor, max_batch_size=6, max_batch_tokens=64, max_wait_ms=0)
    requests = [[Feature(item=i, input_ids=[r * 100 + i] * rng.randint(1, 30))
                 for i in range(rng.randint(1, 9))]
                for r in range(40)]

    async def main():
        jobs = [sched.submit("m", features) for features in requests]
        predictor.gate.set()
        return [await j.future for j in jobs]

    outputs = asyncio.run(main())
    assert outputs == [[f.input_ids[0] for f in features] for features in requests]
    assert sum(len(p) for p in predictor.passes) == sum(len(r) for r in requests)
    for features in predictor.passes:
        assert len(features) <= 6
        assert len(features) * max(predictor.padded_length(len(f)) for f in features) <= 64
    sched.close()


def test_unpadded_tokens_under_the_budget_still_split_when_their_padding_passes_it():
    predictor = EchoPredictor()
    sched = scheduler(predictor, max_batch_size=64, max_batch_tokens=16, max_wait_ms=0)

    async def main():
        return await sched.submit("m", feats(1, 2, 3, length=5)).future

    assert asyncio.run(main()) == [1, 2, 3]
    assert predictor.ids() == [[1, 2], [3]]
    sched.close()


def test_a_request_larger_than_a_pass_is_split_and_reassembled_in_order():
    predictor = EchoPredictor()
    sched = scheduler(predictor, max_batch_size=2, max_wait_ms=0)

    async def main():
        return await sched.submit("m", feats(1, 2, 3, 4, 5)).future

    assert asyncio.run(main()) == [1, 2, 3, 4, 5]
    assert predictor.ids() == [[1, 2], [3, 4], [5]]
    sched.close()


def test_small_requests_share_the_passes_of_a_big_one_and_finish_before_it():
    predictor = EchoPredictor()
    predictor.gate.clear()
    sched = scheduler(predictor, max_batch_size=4, max_wait_ms=0)
    finished: list[str] = []

    async def main():
        big = sched.submit("m", feats(*range(100, 140)))
        big.future.add_done_callback(lambda _: finished.append("big"))
        await asyncio.to_thread(predictor.started.wait)  # the big request's first pass is running
        small = [sched.submit("m", feats(i)) for i in (1, 2, 3)]
        for i, job in enumerate(small):
            job.future.add_done_callback(lambda _, i=i: finished.append(f"small{i}"))
        predictor.gate.set()
        await asyncio.gather(big.future, *(j.future for j in small))

    asyncio.run(main())
    # The pass after the big request's first holds the big request's next feature and all three small ones.
    assert predictor.ids()[1] == [104, 1, 2, 3]
    assert finished[-1] == "big" and len(predictor.passes) == 11
    sched.close()


def test_a_lone_request_does_not_wait_for_company_but_an_announced_one_is_waited_for():
    predictor = EchoPredictor()
    sched = scheduler(predictor, max_batch_size=8, max_wait_ms=5000)

    async def main():
        alone = await asyncio.wait_for(sched.submit("m", feats(1)).future, 2)  # not 5 s
        with sched.incoming("m") as ticket:
            first = sched.submit("m", feats(2))
            await asyncio.sleep(0.2)  # the pass waits: a request is on its way
            assert not first.future.done()
            second = sched.submit("m", feats(3), ticket)
            return alone, await first.future, await second.future

    assert asyncio.run(main()) == ([1], [2], [3])
    assert predictor.ids() == [[1], [2, 3]]
    sched.close()


def test_cancelled_requests_are_dropped_from_the_queue():
    predictor = EchoPredictor()
    predictor.gate.clear()  # hold the model thread inside its first pass
    sched = scheduler(predictor, max_batch_size=1, max_wait_ms=0)

    async def main():
        first = sched.submit("m", feats(1))
        await asyncio.to_thread(predictor.started.wait)
        dropped = sched.submit("m", feats(2, 3))
        kept = sched.submit("m", feats(4))
        dropped.cancel()
        predictor.gate.set()
        return await first.future, await kept.future

    assert asyncio.run(main()) == ([1], [4])
    assert [p for p in predictor.ids() if 2 in p or 3 in p] == []
    assert sched.queued("m") == 0
    sched.close()


def test_full_queue_is_refused_but_an_empty_queue_admits_a_large_request():
    predictor = EchoPredictor()
    predictor.gate.clear()
    sched = scheduler(predictor, max_batch_size=1, max_wait_ms=0, max_queue=2)

    async def main():
        big = sched.submit("m", feats(1, 2, 3, 4))  # empty queue: admitted even above max_queue
        await asyncio.to_thread(predictor.started.wait)
        with pytest.raises(QueueFull):
            sched.submit("m", feats(5))
        predictor.gate.set()
        return await big.future

    assert asyncio.run(main()) == [1, 2, 3, 4]
    sched.close()


def test_a_failing_pass_fails_its_requests_and_the_model_thread_keeps_serving():
    predictor = EchoPredictor(fail_on=7)
    sched = scheduler(predictor, max_batch_size=1, max_wait_ms=0)

    async def main():
        bad = sched.submit("m", feats(7))
        with pytest.raises(RuntimeError, match="boom"):
            await bad.future
        return await sched.submit("m", feats(8)).future

    assert asyncio.run(main()) == [8]
    sched.close()


def test_two_models_share_one_model_thread_oldest_request_first():
    a, b = EchoPredictor(), EchoPredictor()
    a.gate.clear()
    sched = Scheduler({"a": a, "b": b}, max_batch_size=8, max_wait_ms=0)

    async def main():
        first = sched.submit("a", feats(1))
        await asyncio.to_thread(a.started.wait)
        other = sched.submit("b", feats(2))
        a.gate.set()
        return await first.future, await other.future

    assert asyncio.run(main()) == ([1], [2])
    assert a.ids() == [[1]] and b.ids() == [[2]]
    sched.close()


def test_close_drains_queued_work_then_refuses_new_work():
    predictor = EchoPredictor()
    sched = scheduler(predictor, max_batch_size=4, max_wait_ms=100)

    async def main():
        job = sched.submit("m", feats(1, 2))
        await asyncio.to_thread(sched.close)
        with pytest.raises(RuntimeError, match="shutting down"):
            sched.submit("m", feats(3))
        return await job.future

    assert asyncio.run(main()) == [1, 2]


@pytest.mark.parametrize(("every_s", "expected"), [(0.0, 5), (3600.0, 0)])
def test_the_model_thread_hands_free_heap_back_at_most_every_few_seconds(monkeypatch, every_s, expected):
    from distilkit.serve import scheduler as scheduler_module

    trims = []
    monkeypatch.setattr(scheduler_module, "TRIM_EVERY_S", every_s)
    monkeypatch.setattr(scheduler_module, "release_free_heap",
                        lambda: trims.append(threading.current_thread().name))
    predictor = EchoPredictor()
    sched = scheduler(predictor, max_wait_ms=0)

    async def main():
        for i in range(5):  # one request at a time: five passes
            assert await sched.submit("m", feats(i + 1)).future == [i + 1]

    asyncio.run(main())
    sched.close()
    assert len(predictor.passes) == 5
    assert trims == ["distilkit-model-thread"] * expected  # after every pass when due, on the model thread


async def _loop_back(sched, predictor, back_after: float | None) -> float:
    """Four requests share a pass and leave one queued; the four come back ``back_after`` s after their
    answers (None: never). Returns how long the one left behind took after those answers."""
    predictor.gate.clear()
    first = sched.submit("m", feats(1))
    await asyncio.to_thread(predictor.started.wait)
    answered = [sched.submit("m", feats(i)) for i in (2, 3, 4, 5)]
    left = sched.submit("m", feats(6))
    predictor.gate.set()
    for job in (first, *answered):
        await job.future
    answered_at = time.perf_counter()
    back = []
    if back_after is not None:
        await asyncio.sleep(back_after)
        back = [sched.submit("m", feats(i)) for i in (7, 8, 9)]
    await left.future
    took = time.perf_counter() - answered_at
    for job in back:
        await job.future
    return took


@pytest.mark.parametrize(("regroup", "expected"), [
    (1.0, [[1], [2, 3, 4, 5], [6, 7, 8, 9]]),  # the one left behind waits for those answered
    (0.0, [[1], [2, 3, 4, 5], [6], [7, 8, 9]]),  # off: it runs alone
])
def test_a_pass_under_half_the_last_waits_for_the_requests_that_pass_answered(regroup, expected):
    predictor = EchoPredictor(delay=0.2)
    sched = scheduler(predictor, max_batch_size=4, max_wait_ms=0, regroup=regroup)
    asyncio.run(_loop_back(sched, predictor, back_after=0.05))
    assert predictor.ids() == expected
    sched.close()


def test_a_regrouping_wait_ends_after_its_share_of_the_last_pass_when_nobody_comes_back():
    predictor = EchoPredictor(delay=0.1)
    sched = scheduler(predictor, max_batch_size=4, max_wait_ms=0, regroup=3.0)
    # Nobody comes back: the one left runs once 3 x 0.1 s have passed since the pass ended.
    took = asyncio.run(_loop_back(sched, predictor, back_after=None))
    assert predictor.ids()[-1] == [6]
    assert 0.15 < took < 2.0
    sched.close()


def test_a_lone_client_is_never_held_for_regrouping():
    predictor = EchoPredictor(delay=0.05)
    sched = scheduler(predictor, max_batch_size=4, max_wait_ms=0, regroup=100.0)  # a 5 s hold, if any

    async def main():
        start = time.perf_counter()
        for i in range(5):
            await sched.submit("m", feats(i)).future
        return time.perf_counter() - start

    assert asyncio.run(main()) < 2.0
    assert predictor.ids() == [[0], [1], [2], [3], [4]]
    sched.close()
