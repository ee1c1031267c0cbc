"""The served models and one request's path through them: body -> items -> features -> pass -> results.

``ModelServer.predict`` is what every prediction route calls with its wire format's parser:

    body     = read_json(...)                    # 413 past the size, 400 unparseable or too deep
    request  = parse(task, body)                 # serve.formats: 422 naming the field
    prepared = predictor.prepare(items, params, limits)   # tokenize: 422 bad input, 413/422 over a cost bound
    outputs  = scheduler.submit(...)             # queue -> forward passes (429 full, 504 deadline)
    results  = predictor.finish(prepared, outputs)        # decode
    response = request.respond(results)          # 413 past --max-response-bytes

Small requests are tokenized and decoded on the event loop itself (a thread hop costs more than
the work); large ones on a small tokenizer pool, so that they never stall the loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi import Request
from fastapi.responses import Response

from distilkit.errors import UserError
from distilkit.inference.predictor import Predictor
from distilkit.serve.errors import ApiError
from distilkit.serve.formats import FieldError, ParsedRequest
from distilkit.serve.metrics import ServerMetrics
from distilkit.serve.scheduler import Job, PassStats, QueueFull, Scheduler
from distilkit.serve.settings import COST_LIMIT_STATUS, ServeSettings, flag
from distilkit.tasks import CostError, CostLimits

log = logging.getLogger("distilkit.serve")
MAX_JSON_DEPTH = 32  # no wire format nests deeper than 5; deeper bodies only cost recursion
INLINE_CHARS = 4096  # requests up to this much text (and few features/candidates) stay on the loop
INLINE_FEATURES = 8
INLINE_TOP_K = 20


class ModelServer:
    """The served models, their scheduler and the limits; what routes use to predict."""

    def __init__(self, settings: ServeSettings, predictors: dict[str, Predictor], metrics: ServerMetrics):
        if not predictors:
            raise UserError("no model to serve")
        for name, predictor in predictors.items():
            longest = predictor.padded_length(predictor.handler.max_length)
            if settings.max_batch_tokens < longest:
                raise UserError(f"--max-batch-tokens must be at least {longest}, the longest input model "
                                 f"{name!r} accepts (one row must fit in a pass), "
                                 f"got {settings.max_batch_tokens}")
        self.settings, self.predictors, self.metrics = settings, predictors, metrics
        self.default = next(iter(predictors))
        self.limits = CostLimits(max_features=settings.max_features, max_masks=settings.max_masks,
                                 max_candidates=settings.max_candidates,
                                 max_response_bytes=settings.max_response_bytes)
        self.scheduler: Scheduler | None = None
        self._pool: ThreadPoolExecutor | None = None
        self.ready = False

    def start(self) -> None:
        s = self.settings
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="distilkit-tokenize")
        self.scheduler = Scheduler(self.predictors, max_batch_size=s.max_batch_size,
                                   max_batch_tokens=s.max_batch_tokens, max_wait_ms=s.max_wait_ms,
                                   max_queue=s.max_queue, regroup=s.regroup, on_pass=self._observe)
        self.ready = True

    def stop(self) -> None:
        self.ready = False
        if self.scheduler is not None:
            self.scheduler.close(drain=True)
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def _observe(self, stats: PassStats) -> None:
        m, name = self.metrics, stats.model
        m.child(m.batch_rows, name).observe(stats.rows)
        m.child(m.batch_padded_tokens, name).observe(stats.padded_tokens)
        m.child(m.batch_tokens, name).observe(stats.tokens)
        m.child(m.batch_seconds, name).observe(stats.seconds)
        m.child(m.queue_depth, name).set(self.scheduler.queued(name) if self.scheduler else 0)
        if log.isEnabledFor(logging.INFO):
            log.info(json.dumps({"event": "pass", "model": name, "rows": stats.rows, "tokens": stats.tokens,
                                 "padded_tokens": stats.padded_tokens, "requests": stats.requests,
                                 "waited_ms": round(stats.waited * 1e3, 2),
                                 "forward_ms": round(stats.seconds * 1e3, 2)}))

    def model(self, name: str | None) -> tuple[str, Predictor]:
        name = name or self.default
        if name not in self.predictors:
            raise ApiError(404, f"no model named {name[:100]!r}; served: {sorted(self.predictors)}",
                           "model_not_found")
        return name, self.predictors[name]

    async def predict(self, request: Request, name: str | None,
                      parse: Callable[[str, Any], ParsedRequest]) -> Response:
        """Body -> items -> batched prediction -> JSON response, with every limit applied."""
        name, predictor = self.model(name)
        if self.scheduler is None:
            raise ApiError(503, "the server is starting", headers={"Retry-After": "1"})
        with self.scheduler.incoming(name) as ticket:
            payload = await read_json(request, self.settings.max_body_bytes)
            try:
                parsed = parse(predictor.task, payload)
            except FieldError as err:
                raise ApiError(422, str(err)) from err
            if len(parsed.items) > self.settings.max_inputs:
                raise ApiError(413, f"{parsed.field}: {len(parsed.items)} inputs; "
                                    f"at most {self.settings.max_inputs} "
                                    f"per request ({flag('max_inputs')})", "too_many_inputs")
            small = _text_size(parsed.items) <= INLINE_CHARS
            start = time.perf_counter()
            try:
                prepared = await self._on_tokenizer(predictor, small, predictor.prepare, parsed.items,
                                                    parsed.params, self.limits)
            except CostError as err:
                raise ApiError(COST_LIMIT_STATUS[err.limit], f"{err} ({flag(err.limit)})",
                               "over_limit") from err
            except ValueError as err:
                raise ApiError(422, f"{parsed.field}: {err}") from err
            tokenized = time.perf_counter()
            try:
                job = self.scheduler.submit(name, prepared.features, ticket)
            except QueueFull as err:
                raise ApiError(429, f"{err}; retry shortly", headers={"Retry-After": "1"}) from err
            except RuntimeError as err:
                raise ApiError(503, str(err), headers={"Retry-After": "1"}) from err
        outputs = await wait_for_outputs(request, job, self.settings.timeout_s)
        decoding = time.perf_counter()
        small = (small and len(prepared.features) <= INLINE_FEATURES
                 and _top_k(prepared.params) <= INLINE_TOP_K)
        results = await self._on_tokenizer(predictor, small, predictor.finish, prepared, outputs)
        # Results are plain JSON types already: no recursive re-encoding, as Starlette's JSONResponse.
        body = json.dumps(parsed.respond(results), ensure_ascii=False, allow_nan=False,
                          separators=(",", ":")).encode()
        if len(body) > self.settings.max_response_bytes:
            raise ApiError(413, f"the response is {len(body)} bytes; at most "
                                f"{self.settings.max_response_bytes} ({flag('max_response_bytes')}): "
                                "ask for fewer candidates or inputs", "over_limit")
        stages = {"tokenize": tokenized - start, "queue": job.queue_seconds, "forward": job.forward_seconds,
                  "decode": time.perf_counter() - decoding}
        self._record(name, stages)
        timing = ", ".join(f"{stage};dur={seconds * 1e3:.3f}" for stage, seconds in stages.items())
        return Response(body, media_type="application/json", headers={"Server-Timing": timing})

    def _record(self, name: str, stages: dict[str, float]) -> None:
        m = self.metrics
        for stage, seconds in stages.items():
            m.child(m.stage_seconds, name, stage).observe(seconds)

    async def _on_tokenizer(self, predictor: Predictor, small: bool, fn: Callable, *args: Any) -> Any:
        """Run a tokenizer stage inline when it is small and the tokenizer is free, else on the pool."""
        if small and predictor.tokenizer_lock.acquire(blocking=False):
            try:
                return fn(*args)
            finally:
                predictor.tokenizer_lock.release()
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)


def _text_size(items: list[Any]) -> int:
    """Characters of text in parsed items (strings, or dicts of strings for pairs and QA)."""
    total = 0
    for item in items:
        if isinstance(item, str):
            total += len(item)
        elif isinstance(item, dict):
            total += sum(len(v) for v in item.values() if isinstance(v, str))
    return total


def _top_k(params: dict[str, Any]) -> int:
    top_k = params.get("top_k")
    return top_k if isinstance(top_k, int) else 1


async def read_json(request: Request, limit: int) -> Any:
    """Read the body within ``limit`` bytes (413 past it) and parse it as JSON (400 if it is not,
    or if it nests deeper than any wire format does)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"body is {declared} bytes; the limit is {limit} ({flag('max_body_bytes')})")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"body is over the limit of {limit} bytes ({flag('max_body_bytes')})")
        chunks.append(chunk)
    body = b"".join(chunks)
    try:
        payload = json.loads(body)
    except RecursionError as err:
        raise ApiError(400, f"body is JSON nested deeper than {MAX_JSON_DEPTH} levels") from err
    except UnicodeDecodeError as err:
        raise ApiError(400, f"body is not UTF-8 JSON: {err.reason} at byte {err.start}") from err
    except ValueError as err:  # JSONDecodeError, or a number past the integer digit limit
        raise ApiError(400, f"body is not valid JSON: {str(err).split(': use ')[0]}") from err
    if body.count(b"[") + body.count(b"{") > MAX_JSON_DEPTH and _deeper_than(payload, MAX_JSON_DEPTH):
        raise ApiError(400, f"body is JSON nested deeper than {MAX_JSON_DEPTH} levels")
    return payload


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether JSON ``value`` nests lists/objects more than ``limit`` levels (iterative: no recursion)."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


async def wait_for_outputs(request: Request, job: Job, timeout: float) -> list[Any]:
    """Await a job's outputs; drop it from the queue if the client leaves or the deadline passes.

    A client leaving is an ``http.disconnect`` from ``receive`` (the body is already read, so the
    next message is the disconnect or the end of the response): no polling.
    """
    watcher = asyncio.ensure_future(request.receive())
    try:
        done, _ = await asyncio.wait({job.future, watcher}, timeout=timeout,
                                     return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if job.future in done:
        return job.future.result()
    job.cancel()
    if watcher in done:
        raise ApiError(499, "client disconnected", "client_closed")
    raise ApiError(504, f"no result within {timeout:g} s ({flag('timeout_s')})", headers={"Retry-After": "1"})
