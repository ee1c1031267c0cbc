"""Server settings (every flag also as a DISTILKIT_* environment variable) and model specs."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

# The three models of the DistilBERT catalog cards, served when no --model is given.
CARD_MODELS = ("distilbert-base-cased", "distilbert-base-cased-distilled-squad", "distilroberta-base")


@dataclass(frozen=True)
class ServeSettings:
    """Limits and batching of ``distilkit serve``; ``__post_init__`` names the flag of a bad value."""

    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    max_batch_size: int = 32
    """Rows per forward pass across requests."""
    max_batch_tokens: int = 4096
    """Tokens per forward pass across requests."""
    max_wait_ms: float = 2.0
    """How long the first queued input waits for others to share its batch."""
    max_queue: int = 1024
    """Inputs waiting per model before requests get 429."""
    timeout_s: float = 30.0
    """Per-request deadline (504 after it)."""
    max_body_bytes: int = 1 << 20
    max_inputs: int = 64
    """Inputs per request (413 above)."""
    playground: bool = True
    """Serve the playground page at ``/`` and ``/playground`` (try every model from a browser)."""

    def __post_init__(self) -> None:
        for name in ("max_batch_size", "max_batch_tokens", "max_queue", "max_body_bytes", "max_inputs"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.max_wait_ms < 0:
            raise ValueError(f"--max-wait-ms must be >= 0, got {self.max_wait_ms}")
        if self.timeout_s <= 0:
            raise ValueError(f"--timeout-s must be > 0, got {self.timeout_s}")
        if not 0 <= self.port < 65536:
            raise ValueError(f"--port must be between 0 and 65535, got {self.port}")


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
