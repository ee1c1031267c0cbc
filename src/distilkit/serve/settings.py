"""Server settings (every flag also as a DISTILKIT_* environment variable) and model specs."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from distilkit.errors import UserError

# The three models of the DistilBERT catalog cards, served when no --model is given.
CARD_MODELS = ("distilbert-base-cased", "distilbert-base-cased-distilled-squad", "distilroberta-base")


@dataclass(frozen=True)
class ServeSettings:
    """Limits and batching of ``distilkit serve`` (each field is its flag); ``__post_init__`` raises
    UserError naming the flag of a bad value."""

    host: str = "127.0.0.1"
    """Address to listen on (0.0.0.0: every interface)."""
    port: int = 8000
    """TCP port to listen on."""
    api_key: str | None = None
    """Require 'Authorization: Bearer KEY' (health, metrics and the playground page stay open)."""
    max_batch_size: int = 64
    """Rows per forward pass across requests."""
    max_batch_tokens: int = 4096
    """Padded tokens per forward pass across requests (rows x padded length)."""
    max_wait_ms: float = 2.0
    """How long a pass that is not full waits for requests on their way to join it."""
    regroup: float = 0.15
    """A pass under half the size of the last one waits up to this share of the last one's duration for
    the requests it answered to come back (clients that loop), so that they share one pass (0: off)."""
    max_queue: int = 1024
    """Inputs waiting per model before requests get 429."""
    timeout_s: float = 30.0
    """Per-request deadline (504 after it)."""
    max_body_bytes: int = 1 << 20
    """Request body size (413 above)."""
    max_inputs: int = 64
    """Inputs per request (413 above)."""
    max_features: int = 256
    """Model rows per request: inputs x windows of long QA contexts / strided texts (413 above)."""
    max_masks: int = 20
    """Mask tokens per fill-mask input (413 above)."""
    max_candidates: int = 200
    """Candidates per input: top_k x masks for fill-mask, top_k for question-answering (422 above)."""
    max_response_bytes: int = 8 << 20
    """Response size, estimated before running where the task can (fill-mask) and checked after (413)."""
    access_log: bool = False
    """One log line per HTTP request (uvicorn's access log); the server always logs one per forward pass."""
    playground: bool = True
    """Serve the playground page at ``/`` and ``/playground`` (try every model from a browser)."""

    def __post_init__(self) -> None:
        for name in ("max_batch_size", "max_batch_tokens", "max_queue", "max_body_bytes", "max_inputs",
                     "max_features", "max_masks", "max_candidates", "max_response_bytes"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.max_wait_ms < 0:
            raise UserError(f"--max-wait-ms must be >= 0, got {self.max_wait_ms}")
        if self.regroup < 0:
            raise UserError(f"--regroup must be >= 0, got {self.regroup}")
        if self.timeout_s <= 0:
            raise UserError(f"--timeout-s must be > 0, got {self.timeout_s}")
        if not 0 <= self.port < 65536:
            raise UserError(f"--port must be between 0 and 65535, got {self.port}")


# HTTP status of a request over each cost bound: too much work 413, a parameter asking too much 422.
COST_LIMIT_STATUS = {"max_features": 413, "max_masks": 413, "max_candidates": 422, "max_response_bytes": 413}


def flag(field: str) -> str:
    """How users set a ServeSettings field: ``--max-masks / DISTILKIT_MAX_MASKS``."""
    return f"--{field.replace('_', '-')} / DISTILKIT_{field.upper()}"


@dataclass(frozen=True)
class ModelSpec:
    """One served model: its route name, optional task, and reference (dir | hub id | registry)."""

    name: str
    ref: str
    task: str | None = None


_SPEC = re.compile(r"^(?P<name>[A-Za-z0-9_.\-]+)(?::(?P<task>[a-z\-]+))?=(?P<ref>.+)$")


def parse_model_spec(spec: str) -> ModelSpec:
    """``REF`` | ``NAME=REF`` | ``NAME:TASK=REF``; a bare REF is named after its directory/hub id."""
    match = _SPEC.match(spec)
    if match and not Path(spec).exists():
        return ModelSpec(match["name"], match["ref"], match["task"])
    name = Path(spec.rstrip("/")).name or spec
    return ModelSpec(name, spec)
