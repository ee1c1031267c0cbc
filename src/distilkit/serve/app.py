"""The HTTP app: ``create_app(settings, predictors)`` -> FastAPI with every route, limit and metric.

This module only builds the app: ``serve.server.ModelServer`` owns the models and a request's
path through them, ``serve.routes`` the routes (one wire-format parser each), ``serve.errors``
the error body, ``Guard`` (below) what wraps every request and ``ServingApp`` the short way in
for predictions.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from distilkit import __version__
from distilkit.inference.predictor import Predictor
from distilkit.serve.errors import ApiError, error_response
from distilkit.serve.metrics import ServerMetrics
from distilkit.serve.playground import add_playground
from distilkit.serve.routes import PredictionRoute, add_routes
from distilkit.serve.server import ModelServer
from distilkit.serve.settings import ServeSettings
from distilkit.serve.timing import append_timing

log = logging.getLogger("distilkit.serve")
# Probes and the playground page (its API calls send the key) stay open.
OPEN_PATHS = {"/health", "/ready", "/metrics", "/v2/health/ready", "/v2/health/live", "/", "/playground"}


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
                response = error_response(500, "internal error; see the server log")
                await response(scope, receive, send_and_watch)
        finally:
            label = getattr(scope.get("route"), "path", "unmatched")
            m = self.metrics
            m.child(m.requests, label, str(status)).inc()
            m.child(m.request_seconds, label).observe(time.perf_counter() - start)

    @staticmethod
    def _open(path: str) -> bool:
        return path in OPEN_PATHS or path.startswith(("/docs", "/openapi.json", "/playground/static/"))


class ServingApp(FastAPI):
    """FastAPI with a short way in for predictions.

    A POST to a prediction route (``routes.PredictionRoute``) skips FastAPI's per-request stack: its
    telemetry check, the error, exception-telemetry, body-limit and exception middleware, the exit
    stack and the router's walk over the routes. ``Guard`` runs around the route itself, and the
    route's ``ApiError`` is answered as the app's handler answers it. That stack took ~10% of the
    event loop's time per prediction (py-spy, ``benchmarks/serve_overhead.py``), and on 2 cores each
    0.1 ms of the loop per request costs ~4-5% of the throughput at 32-128 clients. Every other
    request takes the whole stack.
    """

    lane: Guard | None = None  # ``Guard`` around ``_predict``; None: every request takes the stack
    prediction_routes: tuple[PredictionRoute, ...] = ()

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if self.lane is not None and scope["type"] == "http" and scope["method"] == "POST":
            for route in self.prediction_routes:
                match, child = route.matches(scope)
                if match is Match.FULL:
                    scope.update(child, app=self, route=route)
                    await self.lane(scope, receive, send)
                    return
        await super().__call__(scope, receive, send)

    def open_lane(self, settings: ServeSettings, metrics: ServerMetrics) -> None:
        """Route predictions the short way (call once every route is added)."""
        self.prediction_routes = tuple(r for r in self.router.routes if isinstance(r, PredictionRoute))
        self.lane = Guard(_predict, settings, metrics)

    def add_middleware(self, *args: Any, **kwargs: Any) -> None:
        super().add_middleware(*args, **kwargs)
        self.lane = None  # middleware added later must see predictions too


async def _predict(scope: dict, receive: Callable, send: Callable) -> None:
    try:
        await scope["route"].app(scope, receive, send)
    except ApiError as err:
        await err.response()(scope, receive, send)


def create_app(settings: ServeSettings, predictors: dict[str, Predictor]) -> FastAPI:
    """Build the app for ``predictors`` (name -> Predictor); the scheduler runs during the app's lifespan.

    Raises:
        UserError: settings the models cannot be served with (the message names the flag).
    """
    metrics = ServerMetrics(settings.max_batch_size, settings.max_batch_tokens)
    server = ModelServer(settings, predictors, metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        server.start()
        log.info(json.dumps({"event": "ready", "models": {n: p.task for n, p in predictors.items()}}))
        yield
        server.stop()  # uvicorn has stopped accepting and finished in-flight requests by now

    app = ServingApp(title="distilkit", version=__version__, lifespan=lifespan,
                     description="Real-time inference for the DistilBERT model family "
                                 "(the model cards' formats).")
    app.state.server = server

    app.add_middleware(Guard, settings=settings, metrics=metrics)

    @app.exception_handler(ApiError)
    async def api_error(_: Request, err: ApiError) -> JSONResponse:
        return err.response()

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, err: StarletteHTTPException) -> JSONResponse:
        return error_response(err.status_code, str(err.detail), headers=getattr(err, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, err: RequestValidationError) -> JSONResponse:
        first = err.errors()[0] if err.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error_response(422, f"{where}: {first.get('msg', 'invalid request')}")

    add_routes(app, server)
    add_playground(app, settings)
    app.open_lane(settings, metrics)
    return app
