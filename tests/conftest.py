"""Shared fixtures: offline hub, tiny seeded models per task/family, the ../shared folder."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The registry and the ONNX graph cache of every test (and every CLI it starts) stay out of ~/.distilkit,
# in a folder of the session's own that goes when the session ends.
if "DISTILKIT_HOME" not in os.environ:
    os.environ["DISTILKIT_HOME"] = tempfile.mkdtemp(prefix="distilkit-tests-home-")
    atexit.register(shutil.rmtree, os.environ["DISTILKIT_HOME"], ignore_errors=True)

# imported after the offline switch above
from tiny_models import make_model_dir

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


@pytest.fixture(scope="session")
def tiny_encoder(tiny_model, tmp_path_factory) -> Path:
    """A bare tiny ``BertModel`` directory (no task head, like sentence-transformers checkpoints)."""
    from transformers import AutoTokenizer, BertModel
    from transformers.utils import logging as hf_logging

    source = tiny_model("fill-mask", "bert", layers=4)
    path = tmp_path_factory.mktemp("bert-encoder")
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the MLM head left behind is the point
    try:
        BertModel.from_pretrained(source).save_pretrained(path)
    finally:
        hf_logging.set_verbosity(verbosity)
    AutoTokenizer.from_pretrained(source).save_pretrained(path)
    return path
