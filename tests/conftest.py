"""Shared fixtures: offline hub, tiny seeded models per task/family, the ../shared folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from tiny_models import make_model_dir  # noqa: E402  (after the offline switch)

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared (real configs, tokenizers, data); tests that need it skip when it is absent."""
    if not (SHARED / "models").is_dir():
        pytest.skip(f"../shared not found at {SHARED}: real configs/tokenizers/data unavailable")
    return SHARED


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """Factory ``tiny_model(task, family="distilbert", **config)`` -> model directory (cached per args)."""
    cache: dict[tuple, Path] = {}

    def build(task: str, family: str = "distilbert", **over) -> Path:
        key = (task, family, tuple(sorted((k, repr(v)) for k, v in over.items())))
        if key not in cache:
            cache[key] = make_model_dir(tmp_path_factory.mktemp(f"{family}-{task}"), task, family, **over)
        return cache[key]

    return build
