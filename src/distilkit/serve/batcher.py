"""Dynamic batching across concurrent requests: one queue and one worker thread per model.

Requests are encoded into features by the caller (``Predictor.prepare``); their features join
the model's queue and the worker packs features of many requests into one ``Predictor.run``
call: up to ``max_batch_size`` rows or ``max_batch_tokens`` tokens, waiting at most
``max_wait_ms`` after the first queued feature for others to arrive. A request's features may
span several batches; its outputs come back in its own order. Cancelled (disconnected, timed
out) requests are skipped when their turn comes.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from distilkit.inference.predictor import Predictor
from distilkit.tasks import Feature

log = logging.getLogger("distilkit.serve")


class QueueFull(Exception):
    """The model's queue holds ``max_queue`` features already; the client should retry later."""


@dataclass(eq=False)
class Job:
    """One request's features and the future its outputs resolve."""

    features: list[Feature]
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    enqueued: float = field(default_factory=time.perf_counter)
    outputs: list[Any] = field(default_factory=list)
    next_feature: int = 0
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True


@dataclass
class BatchStats:
    """What one forward pass did (for metrics and the per-batch log line)."""

    rows: int
    tokens: int
    requests: int
    queue_seconds: float
    infer_seconds: float


class Batcher:
    """Collects features of concurrent requests for one Predictor and runs them in batches."""

    def __init__(
        self,
        predictor: Predictor,
        *,
        max_batch_size: int = 32,
        max_batch_tokens: int = 4096,
        max_wait_ms: float = 2.0,
        max_queue: int = 1024,
        on_batch: Callable[[BatchStats], None] | None = None,
        name: str = "model",
    ):
        self.predictor = predictor
        self.max_batch_size = max_batch_size
        self.max_batch_tokens = max_batch_tokens
        self.max_wait = max_wait_ms / 1000.0
        self.max_queue = max_queue
        self.on_batch = on_batch
        self._jobs: collections.deque[Job] = collections.deque()
        self._queued = 0  # features waiting
        self._cond = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._loop, name=f"distilkit-batcher-{name}", daemon=True)
        self._thread.start()

    @property
    def queued(self) -> int:
        """Features waiting for a batch."""
        return self._queued

    def submit(self, features: list[Feature]) -> Job:
        """Queue a request's features; the returned job's future resolves to their outputs.

        Raises:
            QueueFull: the queue would pass ``max_queue`` features.
            RuntimeError: the batcher is shutting down.
        """
        loop = asyncio.get_running_loop()
        job = Job(features, loop.create_future(), loop)
        if not features:
            job.future.set_result([])
            return job
        with self._cond:
            if self._closing:
                raise RuntimeError("the server is shutting down")
            if self._queued + len(features) > self.max_queue and self._queued > 0:
                raise QueueFull(f"the queue holds {self._queued} inputs (max {self.max_queue})")
            self._jobs.append(job)
            self._queued += len(features)
            self._cond.notify()
        return job

    def close(self, drain: bool = True, timeout: float = 30.0) -> None:
        """Stop accepting work; with ``drain`` finish what is queued first."""
        with self._cond:
            self._closing = True
            if not drain:
                for job in self._jobs:
                    job.cancel()
            self._cond.notify_all()
        self._thread.join(timeout)

    # --- worker thread ---------------------------------------------------------------------------
    def _take(self) -> list[tuple[Job, Feature]] | None:
        """Wait for work, then take a batch's worth of features (None when closed and empty)."""
        with self._cond:
            while not self._jobs and not self._closing:
                self._cond.wait()
            if not self._jobs:
                return None
            deadline = self._jobs[0].enqueued + self.max_wait
            while self._queued < self.max_batch_size and not self._closing:
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            taken: list[tuple[Job, Feature]] = []
            tokens = 0
            while self._jobs and len(taken) < self.max_batch_size:
                job = self._jobs[0]
                if job.cancelled:
                    self._queued -= len(job.features) - job.next_feature
                    self._jobs.popleft()
                    continue
                feature = job.features[job.next_feature]
                if taken and tokens + len(feature) > self.max_batch_tokens:
                    break
                taken.append((job, feature))
                tokens += len(feature)
                job.next_feature += 1
                self._queued -= 1
                if job.next_feature == len(job.features):
                    self._jobs.popleft()
            return taken

    def _loop(self) -> None:
        while True:
            taken = self._take()
            if taken is None:
                return
            if taken:
                try:
                    self._run(taken)
                except Exception as err:  # never let the worker die: fail these requests instead
                    log.exception("batch failed")
                    for job in {id(j): j for j, _ in taken}.values():
                        job.cancel()
                        job.loop.call_soon_threadsafe(_settle, job.future, None, err)

    def _run(self, taken: list[tuple[Job, Feature]]) -> None:
        """Run one batch and settle every job whose last feature it held."""
        start = time.perf_counter()
        queue_seconds = max(start - job.enqueued for job, _ in taken)
        outputs = self.predictor.run([f for _, f in taken])
        infer_seconds = time.perf_counter() - start
        jobs = {}
        for (job, _), out in zip(taken, outputs, strict=True):
            job.outputs.append(out)
            jobs[id(job)] = job
        for job in jobs.values():
            if len(job.outputs) == len(job.features):
                job.loop.call_soon_threadsafe(_settle, job.future, job.outputs, None)
        if self.on_batch is not None:
            self.on_batch(BatchStats(len(taken), sum(len(f) for _, f in taken), len(jobs),
                                     queue_seconds, infer_seconds))


def _settle(future: asyncio.Future, result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
