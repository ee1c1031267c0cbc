"""Serve an app in uvicorn on a thread of the test process, and hold or watch its forward passes."""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager

import uvicorn

from distilkit.inference.predictor import Predictor
from distilkit.serve.app import create_app
from distilkit.serve.settings import ServeSettings


class Gate:
    """Wraps a Predictor's ``run_batch``: records every pass, can hold passes and slow them down."""

    def __init__(self, predictor: Predictor, delay: float = 0.0):
        self.open = threading.Event()
        self.open.set()
        self.entered = threading.Event()  # a pass has started (and may be held)
        self.passes: list[list[list[int]]] = []
        self.width: list[int] = []
        run_batch = predictor.run_batch

        def gated(features):
            self.entered.set()
            self.open.wait()
            time.sleep(delay)
            self.passes.append([f.input_ids for f in features])
            self.width.append(predictor.padded_length(max(len(f) for f in features)))
            return run_batch(features)

        predictor.run_batch = gated


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(predictors: dict[str, Predictor], **settings):
    """Serve ``predictors`` with uvicorn on a thread; yield the base URL."""
    port = free_port()
    app = create_app(ServeSettings(port=port, **settings), predictors)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           timeout_graceful_shutdown=10))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started and time.time() < deadline:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
