"""Deterministic weights that transformers 4.57.1 and 5.x build byte-identically (no 250 MB commit).

Each tensor of ``model.state_dict()`` is drawn from its own ``numpy.random.default_rng([seed, i])``,
``i`` its rank in sorted-name order: normal * 0.02 for matrices and embeddings, ones for LayerNorm
weights, zeros for biases. Used by record_qa.py (old venv) and the parity test (this venv).
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

STD = 0.02


def tensor_values(name: str, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Values of one parameter, chosen by its name and shape only."""
    lowered = name.lower()
    is_norm = "layernorm" in lowered or "layer_norm" in lowered
    if name.endswith("bias"):
        return np.zeros(shape, dtype=np.float32)
    if is_norm:
        return np.ones(shape, dtype=np.float32)
    return (rng.standard_normal(shape) * STD).astype(np.float32)


def deterministic_state_dict(model: torch.nn.Module, seed: int = 0) -> dict[str, torch.Tensor]:
    """A full state dict for ``model`` from the seed alone (float32)."""
    shapes = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    return {
        name: torch.from_numpy(tensor_values(name, shapes[name], np.random.default_rng([seed, i])))
        for i, name in enumerate(sorted(shapes))
    }


def load_deterministic(model: torch.nn.Module, seed: int = 0) -> str:
    """Overwrite every weight of ``model`` in place; return a SHA-256 over names and bytes."""
    state = deterministic_state_dict(model, seed)
    model.load_state_dict(state, strict=True)
    digest = hashlib.sha256()
    for name in sorted(state):
        digest.update(name.encode())
        digest.update(model.state_dict()[name].float().numpy().tobytes())
    return digest.hexdigest()
