"""The HTTP app: ``create_app(settings, predictors)`` -> FastAPI with every route, limit and metric.

This module only builds the app: ``serve.server.ModelServer`` owns the models and a request's
path through them, ``serve.routes`` the routes (one wire-format parser each), ``serve.errors``
the error body, and ``Guard`` (below) what wraps every request.
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

from distilkit import __version__
from distilkit.inference.predictor import Predictor
from distilkit.serve.errors import ApiError, error_response
from distilkit.serve.metrics import ServerMetrics
from distilkit.serve.playground import add_playground
from distilkit.serve.routes import add_routes
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

    app = FastAPI(title="distilkit", version=__version__, lifespan=lifespan,
                  description="Real-time inference for the DistilBERT model family "
                              "(the model cards' formats).")
    app.state.server = server

    app.add_middleware(Guard, settings=settings, metrics=metrics)

    @app.exception_handler(ApiError)
    async def api_error(_: Request, err: ApiError) -> JSONResponse:
        return error_response(err.status, err.message, err.code, err.headers)

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
    return app
