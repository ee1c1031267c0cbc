"""The serving scheduler: one queue per model and one thread that runs every forward pass.

A request's features (``Predictor.prepare``) join its model's queue. The model thread plans each
forward pass by what the model pays for, as text-embeddings-inference's queue does: at most
``max_batch_size`` rows and ``max_batch_tokens`` *padded* tokens (rows x the padded length of
the longest row, ``Predictor.padded_length``: the size of the batch's tensors and of its
attention; the encoder's GEMMs run on the real tokens alone), and hands exactly that batch to
``Predictor.run_batch``. A feature longer than the whole budget runs alone (the server refuses
such a budget at start).

Fair sharing: a pass takes features round-robin across the queued requests, so a request with
hundreds of features shares every pass with the small ones that arrive while it runs instead of
holding the model until it is done. After a pass, the requests it served go behind those it did
not serve, so the next pass starts with one that waited; models take turns the same way.

Waiting for company: a pass that is not full waits up to ``max_wait_ms`` (after its oldest
feature was queued) only while other requests are on their way to the queue (announced with
``incoming`` and not yet submitted); a lone request runs at once.

Regrouping: clients that loop (each sends its next request once answered) drift into one large
pass and one small one, alternating. At 32 such clients of ~20-token sentences the passes ran 30
rows then 2, the 2-row pass taking ~28 ms for what 2 more rows of the big pass would cost ~7. So a
pass that would be under half the size of the last one, while no other model has work, waits for
the requests the last pass answered to come back: until as many rows are queued as the last pass
held plus those it left, for at most ``regroup`` x the last pass's duration after it ended. A lone
client's request (as large as the last pass) never waits.

One thread for all models: PyTorch's intra-op OpenMP team belongs to the thread that runs the
ops. A second team (a thread per model) puts more OpenMP threads than cores in the process, and
libgomp then throttles the spin-waiting of every team, which made small passes ~40% slower.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from distilkit.inference.runtime import release_free_heap
from distilkit.serve.settings import ServeSettings
from distilkit.tasks import Feature

log = logging.getLogger("distilkit.serve")
# Seconds between two hand-backs of the heap's free pages (``runtime.release_free_heap``: 8-49 ms per
# call on a ~1.2 GB heap: under 1% of the model thread, and one request in hundreds waits for it).
TRIM_EVERY_S = 5.0


class QueueFull(Exception):
    """The model's queue holds ``max_queue`` features already; the client should retry later."""


@dataclass(eq=False)
class Job:
    """One request's features, their outputs as passes produce them, and the future they resolve."""

    model: str
    features: list[Feature]
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    enqueued: float = field(default_factory=time.perf_counter)
    outputs: list[Any] = field(default_factory=list)
    taken: int = 0  # features handed to passes so far
    done: int = 0  # features with outputs
    forward_seconds: float = 0.0  # time of the passes that held its features
    finished: float = 0.0
    cancelled: bool = False

    def cancel(self) -> None:
        """Drop the features not yet in a pass (the client left or its deadline passed)."""
        self.cancelled = True

    @property
    def queue_seconds(self) -> float:
        """Time in the scheduler outside the passes that held its features."""
        return max(0.0, self.finished - self.enqueued - self.forward_seconds)


@dataclass
class PassStats:
    """What one forward pass did (for metrics and the per-pass log line)."""

    model: str
    rows: int
    tokens: int  # real tokens
    padded_tokens: int  # rows x padded width: the batch's tensors and attention (its GEMMs skip padding)
    requests: int
    seconds: float
    waited: float  # how long its oldest feature had been queued


class Ticket:
    """A request on its way to a queue (see ``Scheduler.incoming``)."""

    submitted = False


@dataclass(eq=False)
class _Queue:
    predictor: Any
    jobs: collections.deque[Job] = field(default_factory=collections.deque)
    queued: int = 0  # features waiting for a pass
    arriving: int = 0  # announced requests not yet submitted
    last_rows: int = 0  # the last pass: its rows, the features it left queued, when it ended, its seconds
    last_left: int = 0
    last_end: float = 0.0
    last_seconds: float = 0.0


class Scheduler:
    """Queues of the served models and the one thread that plans and runs their forward passes.

    Args:
        predictors: model name -> Predictor (anything with ``padded_length`` and ``run_batch``).
        max_batch_size: rows per pass.
        max_batch_tokens: padded tokens per pass.
        max_wait_ms: longest wait for requests on their way, after the oldest queued feature.
        max_queue: features waiting per model before ``submit`` raises ``QueueFull``.
        regroup: longest wait for a small pass to regroup, as a share of the last pass's duration (0: off).
        on_pass: called on the model thread after every pass.
    """

    def __init__(
        self,
        predictors: dict[str, Any],
        *,
        max_batch_size: int = ServeSettings.max_batch_size,
        max_batch_tokens: int = ServeSettings.max_batch_tokens,
        max_wait_ms: float = ServeSettings.max_wait_ms,
        max_queue: int = ServeSettings.max_queue,
        regroup: float = ServeSettings.regroup,
        on_pass: Callable[[PassStats], None] | None = None,
    ):
        self.max_batch_size = max_batch_size
        self.max_batch_tokens = max_batch_tokens
        self.max_wait = max_wait_ms / 1000.0
        self.max_queue = max_queue
        self.regroup = regroup
        self.on_pass = on_pass
        self._queues = {name: _Queue(predictor) for name, predictor in predictors.items()}
        self._cond = threading.Condition()
        self._closing = False
        self._turn = 0  # index of the model whose turn is next
        self._trimmed = time.perf_counter()
        self._thread = threading.Thread(target=self._loop, name="distilkit-model-thread", daemon=True)
        self._thread.start()

    def queued(self, model: str) -> int:
        """Features of ``model`` waiting for a pass."""
        return self._queues[model].queued

    @contextmanager
    def incoming(self, model: str) -> Iterator[Ticket]:
        """Announce a request for ``model`` until it is submitted with the ticket (or fails):
        passes that are not full wait for announced requests, up to ``max_wait_ms``."""
        queue = self._queues[model]
        ticket = Ticket()
        with self._cond:
            queue.arriving += 1
        try:
            yield ticket
        finally:
            if not ticket.submitted:
                with self._cond:
                    queue.arriving -= 1
                    self._cond.notify_all()

    def submit(self, model: str, features: list[Feature], ticket: Ticket | None = None) -> Job:
        """Queue a request's features; the returned job's future resolves to their outputs, in order.

        Raises:
            QueueFull: the queue would pass ``max_queue`` features (an empty queue admits any request).
            RuntimeError: the scheduler is shutting down.
        """
        loop = asyncio.get_running_loop()
        job = Job(model, features, loop.create_future(), loop, outputs=[None] * len(features))
        queue = self._queues[model]
        with self._cond:
            if ticket is not None and not ticket.submitted:
                ticket.submitted = True
                queue.arriving -= 1
            if not features:
                job.future.set_result([])
                return job
            if self._closing:
                raise RuntimeError("the server is shutting down")
            if queue.queued + len(features) > self.max_queue and queue.queued > 0:
                raise QueueFull(f"the queue holds {queue.queued} inputs (max {self.max_queue})")
            queue.jobs.append(job)
            queue.queued += len(features)
            self._cond.notify_all()
        return job

    def close(self, drain: bool = True, timeout: float = 30.0) -> None:
        """Stop accepting work; with ``drain`` finish what is queued first."""
        with self._cond:
            self._closing = True
            if not drain:
                for queue in self._queues.values():
                    for job in queue.jobs:
                        job.cancel()
            self._cond.notify_all()
        self._thread.join(timeout)

    # --- the model thread --------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self._cond:
                planned = self._next_pass()
            if planned is None:
                return
            self._run(*planned)
            if time.perf_counter() - self._trimmed >= TRIM_EVERY_S:
                release_free_heap()  # ever-changing pass shapes would otherwise grow the RSS for good
                self._trimmed = time.perf_counter()

    def _next_pass(self) -> tuple[str, _Queue, list[tuple[Job, int]]] | None:
        """Wait for work and plan the next pass (None when closing with nothing queued)."""
        while True:
            turn = self._next_model()
            if turn is None:
                if self._closing:
                    return None
                self._cond.wait()
                continue
            name, queue = turn
            deadline = min(job.enqueued for job in queue.jobs) + self.max_wait
            while queue.arriving > 0 and queue.queued < self.max_batch_size and not self._closing:
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            self._regroup(queue)
            taken = self._plan(queue)
            if taken:
                return name, queue, taken

    def _regroup(self, queue: _Queue) -> None:
        """Hold a pass under half the last one's size for the requests the last pass answered (see the
        module's "Regrouping"); called with the condition held."""
        if not self.regroup or 2 * queue.queued >= queue.last_rows:
            return
        target = min(self.max_batch_size, queue.last_rows + queue.last_left)
        until = queue.last_end + self.regroup * queue.last_seconds
        others = [other for other in self._queues.values() if other is not queue]
        while queue.queued < target and not self._closing and not any(other.queued for other in others):
            remaining = until - time.perf_counter()
            if remaining <= 0:
                return
            self._cond.wait(remaining)

    def _next_model(self) -> tuple[str, _Queue] | None:
        """The next model in turn with live requests queued (cancelled ones are dropped)."""
        names = list(self._queues)
        for shift in range(len(names)):
            name = names[(self._turn + shift) % len(names)]
            queue = self._queues[name]
            if any(not job.cancelled for job in queue.jobs):
                self._turn = (self._turn + shift + 1) % len(names)
                return name, queue
            for job in queue.jobs:
                queue.queued -= len(job.features) - job.taken
            queue.jobs.clear()
        return None

    def _plan(self, queue: _Queue) -> list[tuple[Job, int]]:
        """Take one pass's features round-robin across the queue's requests within both budgets."""
        rotation = collections.deque(job for job in queue.jobs if not job.cancelled)
        taken: list[tuple[Job, int]] = []
        served: dict[int, Job] = {}
        width = 0
        padded_length = queue.predictor.padded_length
        while rotation and len(taken) < self.max_batch_size:
            job = rotation.popleft()
            wider = max(width, padded_length(len(job.features[job.taken])))
            if taken and (len(taken) + 1) * wider > self.max_batch_tokens:
                continue  # its next feature does not fit this pass: it sits the pass out
            taken.append((job, job.taken))
            served[id(job)] = job
            job.taken += 1
            width = wider
            if job.taken < len(job.features):
                rotation.append(job)
        waiting: collections.deque[Job] = collections.deque()
        for job in queue.jobs:
            if job.cancelled:
                queue.queued -= len(job.features) - job.taken
            elif job.taken < len(job.features) and id(job) not in served:
                waiting.append(job)
        # Those that waited go first next time; those served follow, in the order they were served.
        waiting.extend(job for job in served.values() if job.taken < len(job.features))
        queue.jobs = waiting
        queue.queued -= len(taken)
        return taken

    def _run(self, name: str, queue: _Queue, taken: list[tuple[Job, int]]) -> None:
        """Run one pass, store its outputs and settle every job it completed."""
        jobs = list({id(job): job for job, _ in taken}.values())
        start = time.perf_counter()
        try:
            outputs = queue.predictor.run_batch([job.features[i] for job, i in taken])
            if len(outputs) != len(taken):
                raise RuntimeError(
                    f"the model returned {len(outputs)} outputs for a pass of {len(taken)} rows")
        except Exception as err:  # never let the model thread die: fail these requests instead
            log.exception("forward pass failed")
            for job in jobs:
                job.cancel()
            _settle_all([(job, err) for job in jobs])
            return
        end = time.perf_counter()
        for (job, i), out in zip(taken, outputs, strict=True):
            job.outputs[i] = out
            job.done += 1
        finished = []
        for job in jobs:
            job.forward_seconds += end - start
            if job.done == len(job.features):
                job.finished = end
                finished.append((job, None))
        _settle_all(finished)
        with self._cond:
            queue.last_rows, queue.last_left, queue.last_end, queue.last_seconds = \
                len(taken), queue.queued, end, end - start
        if self.on_pass is not None:
            width = max(queue.predictor.padded_length(len(job.features[i])) for job, i in taken)
            self.on_pass(PassStats(name, len(taken), sum(len(job.features[i]) for job, i in taken),
                                   len(taken) * width, len(jobs), end - start,
                                   start - min(job.enqueued for job in jobs)))


def _settle_all(results: list[tuple[Job, BaseException | None]]) -> None:
    """Resolve futures on their event loops: one wake-up per loop, not one per request."""
    by_loop: dict[int, tuple[asyncio.AbstractEventLoop, list]] = {}
    for job, error in results:
        by_loop.setdefault(id(job.loop), (job.loop, []))[1].append((job, error))
    for loop, items in by_loop.values():
        try:
            loop.call_soon_threadsafe(_settle, items)
        except RuntimeError:  # the loop has closed: nobody is waiting any more
            pass


def _settle(items: list[tuple[Job, BaseException | None]]) -> None:
    for job, error in items:
        if job.future.done():
            continue
        if error is not None:
            job.future.set_exception(error)
        else:
            job.future.set_result(job.outputs)
