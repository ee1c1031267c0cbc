"""The HTTP app: ``create_app(settings, predictors)`` -> FastAPI with every route, limit and metric.

The server does no pre/post-processing of its own: a route's wire format turns the body into
items (``serve.formats``), the Predictor validates/encodes them, the model's Batcher runs their
features with other requests', and the Predictor decodes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from distilkit import __version__
from distilkit.inference.predictor import Predictor
from distilkit.serve.batcher import Batcher, BatchStats, QueueFull
from distilkit.serve.formats import FieldError, ScoreRequest
from distilkit.serve.metrics import ServerMetrics
from distilkit.serve.settings import ServeSettings
from distilkit.serve.timing import append_timing

log = logging.getLogger("distilkit.serve")
# Probes and the playground page (its API calls send the key) stay open.
OPEN_PATHS = {"/health", "/ready", "/metrics", "/v2/health/ready", "/v2/health/live", "/", "/playground"}
STATUS_CODES = {400: "malformed_json", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed",
                413: "payload_too_large", 422: "invalid_request", 429: "queue_full", 503: "unavailable",
                504: "timeout", 500: "internal_error"}


class ApiError(Exception):
    """An error answered as ``{"error": {"code", "message"}}`` with an HTTP status."""

    def __init__(self, status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message = status, message
        self.code = code or STATUS_CODES.get(status, "error")
        self.headers = headers or {}


def error_response(status: int, message: str, code: str | None = None, headers: dict | None = None) -> JSONResponse:
    """The one error body of the server."""
    body = {"error": {"code": code or STATUS_CODES.get(status, "error"), "message": message}}
    return JSONResponse(body, status_code=status, headers=headers)


class ModelServer:
    """The served models with their batchers; what routes use to predict."""

    def __init__(self, settings: ServeSettings, predictors: dict[str, Predictor], metrics: ServerMetrics):
        if not predictors:
            raise ValueError("no model to serve")
        self.settings, self.predictors, self.metrics = settings, predictors, metrics
        self.default = next(iter(predictors))
        self.batchers: dict[str, Batcher] = {}
        self.ready = False

    def start(self) -> None:
        s = self.settings
        for name, predictor in self.predictors.items():
            self.batchers[name] = Batcher(
                predictor, max_batch_size=s.max_batch_size, max_batch_tokens=s.max_batch_tokens,
                max_wait_ms=s.max_wait_ms, max_queue=s.max_queue, on_batch=self._observer(name), name=name)
        self.ready = True

    def stop(self) -> None:
        self.ready = False
        for batcher in self.batchers.values():
            batcher.close(drain=True)

    def _observer(self, name: str) -> Callable[[BatchStats], None]:
        m = self.metrics

        def observe(stats: BatchStats) -> None:
            m.batch_size.labels(name).observe(stats.rows)
            m.batch_tokens.labels(name).observe(stats.tokens)
            m.stage_seconds.labels(name, "queue").observe(stats.queue_seconds)
            m.stage_seconds.labels(name, "infer").observe(stats.infer_seconds)
            m.queue_depth.labels(name).set(self.batchers[name].queued)
            log.info(json.dumps({"event": "batch", "model": name, "rows": stats.rows, "tokens": stats.tokens,
                                 "requests": stats.requests, "queue_ms": round(stats.queue_seconds * 1e3, 2),
                                 "infer_ms": round(stats.infer_seconds * 1e3, 2)}))

        return observe

    def model(self, name: str | None) -> tuple[str, Predictor]:
        name = name or self.default
        if name not in self.predictors:
            raise ApiError(404, f"no model named {name!r}; served: {sorted(self.predictors)}", "model_not_found")
        return name, self.predictors[name]

    async def predict(self, request: Request, name: str | None, parse: Callable[[str, Any], ScoreRequest]) -> Response:
        """Body -> items -> batched prediction -> JSON response, with every limit applied."""
        name, predictor = self.model(name)
        payload = await read_json(request, self.settings.max_body_bytes)
        try:
            parsed = parse(predictor.task, payload)
        except FieldError as err:
            raise ApiError(422, str(err)) from err
        if len(parsed.items) > self.settings.max_inputs:
            raise ApiError(413, f"{parsed.field}: {len(parsed.items)} inputs; at most {self.settings.max_inputs} "
                                "per request", "too_many_inputs")
        start = time.perf_counter()
        try:
            prepared = await run_in_threadpool(predictor.prepare, parsed.items, parsed.params)
        except ValueError as err:
            raise ApiError(422, f"{parsed.field}: {err}") from err
        self.metrics.stage_seconds.labels(name, "tokenize").observe(time.perf_counter() - start)
        batcher = self.batchers[name]
        try:
            job = batcher.submit(prepared.features)
        except QueueFull as err:
            raise ApiError(429, f"{err}; retry shortly", headers={"Retry-After": "1"}) from err
        except RuntimeError as err:
            raise ApiError(503, str(err)) from err
        self.metrics.queue_depth.labels(name).set(batcher.queued)
        outputs = await wait_for_outputs(request, job, self.settings.timeout_s)
        results = await run_in_threadpool(predictor.finish, prepared, outputs)
        # Results are plain JSON types already: skip FastAPI's recursive re-encoding.
        return JSONResponse(parsed.respond(results))


class Guard:
    """Pure ASGI middleware: API-key check, JSON 500 for server bugs, request metrics per route and
    the ``total`` entry of every response's Server-Timing header.

    (Not ``@app.middleware``: Starlette's BaseHTTPMiddleware wraps ``receive`` in a way that hides
    client disconnects from the endpoint, and costs time on every request.)
    """

    def __init__(self, app: Any, settings: ServeSettings, metrics: ServerMetrics):
        self.app, self.settings, self.metrics = app, settings, metrics
        self.authorization = f"Bearer {settings.api_key}".encode() if settings.api_key else None

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), 500
        started = False

        async def send_and_watch(message: dict) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
                message = append_timing(message, "total", time.perf_counter() - start)
            await send(message)

        try:
            if self.authorization and not self._open(scope["path"]) and \
                    dict(scope["headers"]).get(b"authorization") != self.authorization:
                response = error_response(401, "missing or wrong API key: send 'Authorization: Bearer <key>'")
                await response(scope, receive, send_and_watch)
            else:
                await self.app(scope, receive, send_and_watch)
        except Exception:  # a server bug: answer 500 with the error format and keep serving
            log.exception("unhandled error on %s", scope["path"])
            if not started:
                await error_response(500, "internal error; see the server log")(scope, receive, send_and_watch)
        finally:
            label = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.requests.labels(label, str(status)).inc()
            self.metrics.request_seconds.labels(label).observe(time.perf_counter() - start)

    @staticmethod
    def _open(path: str) -> bool:
        return path in OPEN_PATHS or path.startswith(("/docs", "/openapi.json", "/playground/static/"))


async def read_json(request: Request, limit: int) -> Any:
    """Read the body within ``limit`` bytes (413 past it) and parse it as JSON (400 if it is not)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"body is {declared} bytes; the limit is {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"body is over the limit of {limit} bytes")
        chunks.append(chunk)
    try:
        return json.loads(b"".join(chunks))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ApiError(400, f"body is not valid JSON: {err}") from err


async def wait_for_outputs(request: Request, job: Any, timeout: float) -> list[Any]:
    """Await a job's outputs; drop it from the queue if the client leaves or the deadline passes."""

    async def disconnected() -> None:
        while not await request.is_disconnected():
            await asyncio.sleep(0.05)

    watcher = asyncio.ensure_future(disconnected())
    try:
        done, _ = await asyncio.wait({job.future, watcher}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if job.future in done:
        return job.future.result()
    job.cancel()
    if watcher in done:
        raise ApiError(499, "client disconnected", "client_closed")
    raise ApiError(504, f"no result within {timeout:g} s", headers={"Retry-After": "1"})


def create_app(settings: ServeSettings, predictors: dict[str, Predictor]) -> FastAPI:
    """Build the app for ``predictors`` (name -> Predictor); batchers start with the app's lifespan."""
    from distilkit.serve.playground import add_playground
    from distilkit.serve.routes import add_routes

    metrics = ServerMetrics()
    server = ModelServer(settings, predictors, metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        server.start()
        log.info(json.dumps({"event": "ready", "models": {n: p.task for n, p in predictors.items()}}))
        yield
        server.stop()  # uvicorn has stopped accepting and finished in-flight requests by now

    app = FastAPI(title="distilkit", version=__version__, lifespan=lifespan,
                  description="Real-time inference for the DistilBERT model family (the model cards' formats).")
    app.state.server = server

    app.add_middleware(Guard, settings=settings, metrics=metrics)

    @app.exception_handler(ApiError)
    async def api_error(_: Request, err: ApiError) -> JSONResponse:
        return error_response(err.status, err.message, err.code, err.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, err: StarletteHTTPException) -> JSONResponse:
        return error_response(err.status_code, str(err.detail))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, err: RequestValidationError) -> JSONResponse:
        first = err.errors()[0] if err.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error_response(422, f"{where}: {first.get('msg', 'invalid request')}")

    add_routes(app, server)
    add_playground(app, settings)
    return app
