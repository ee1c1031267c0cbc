"""Registry fixtures: a fresh store per test and small fixed model directories (no weights to train)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from distilkit.registry.store import Registry


def write_model_dir(path: Path, arch: str = "DistilBertForMaskedLM", weights: bytes = b"\x00weights\x01" * 64,
                    metrics: dict | None = None, lowercase: bool = False, **config) -> Path:
    """A model directory with fixed bytes: config.json, tokenizer_config.json,
    model.safetensors[, metrics.json]."""
    path.mkdir(parents=True, exist_ok=True)
    cfg = {"architectures": [arch], "model_type": "distilbert", "vocab_size": 28996,
           "max_position_embeddings": 512, **config}
    (path / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True))
    mask = "<mask>" if arch.startswith("Roberta") else "[MASK]"
    tok = {"tokenizer_class": "DistilBertTokenizer", "do_lower_case": lowercase, "model_max_length": 512,
           "mask_token": mask}
    (path / "tokenizer_config.json").write_text(json.dumps(tok, indent=2, sort_keys=True))
    (path / "model.safetensors").write_bytes(weights)
    if metrics is not None:
        (path / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return path


@pytest.fixture
def registry(tmp_path) -> Registry:
    return Registry(tmp_path / "home")


@pytest.fixture
def model_dir(tmp_path) -> Path:
    return write_model_dir(tmp_path / "model", metrics={"squad": {"exact_match": 77.7, "f1": 85.8}})


@pytest.fixture
def make_dir(tmp_path):
    """Factory ``make_dir(name, **kwargs)`` -> ``write_model_dir(tmp_path / name, **kwargs)``."""
    return lambda name, **kwargs: write_model_dir(tmp_path / name, **kwargs)
