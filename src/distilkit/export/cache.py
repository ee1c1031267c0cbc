"""ONNX Runtime graphs on demand, exported once per model and precision and kept in
``$DISTILKIT_HOME/cache/onnx-<precision>/``: ``dtype="int8", backend="onnx"`` (and ``dtype="int8"`` on a
CPU without int8 dot products, where PyTorch's oneDNN int8 engine does not run) runs the dynamically
quantised graph (ONNX Runtime's int8 GEMMs); ``backend="onnx"`` on a model directory (and ``dtype="auto"``
on a CPU without fast bf16 when torch has no oneDNN) runs the fp32 graph (``benchmarks/runtimes.py``
compares it with PyTorch's).

On this project's 2-core AVX512-VNNI CPU, the dynamic int8 engines measured on distilbert-base-cased
fill-mask (256 x ~20 and 64 x ~120 tokens, sequences/s through the Predictor, one process each in one
session; the VM drifts, so the ratios are rough): ONNX Runtime 356 / 66, ``torch.ao`` dynamic int8
265 / 59 (an API deprecated for removal), torchao's int8 dynamic activations and weights 144 / 38,
PyTorch bf16 161 / 34. ONNX Runtime was the int8 engine until ``distilkit.inference.quantized``
(oneDNN u8 x s8 GEMMs with u8 hand-over inside the feed-forward block) overtook it.
The export checks fp32 parity against PyTorch before quantising (``distilkit export onnx``), and its
report in the cached directory gives the int8 graph's agreement with fp32.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path

from distilkit.errors import UserError
from distilkit.export.onnx import export_onnx
from distilkit.inference.onnx_backend import is_exported_dir, read_manifest
from distilkit.models import resolve_source
from distilkit.registry.store import default_home

PRECISIONS = ("float32", "int8")
CACHE_DIR = "onnx-int8"
KEY_VERSION = 3  # bump when the export's graph or quantisation changes (2: TorchScript exporter,
# 3: the last layer only at fill-mask's masks and a classifier's first token)


def cache_root(precision: str = "int8") -> Path:
    """``$DISTILKIT_HOME/cache/onnx-<precision>`` (``~/.distilkit`` when the variable is unset)."""
    return default_home() / "cache" / f"onnx-{precision}"


def cache_key(source: Path, task: str | None, dummy_weights: bool, seed: int) -> str:
    """A name for the int8 export of ``source``: changes when a file of the model directory changes
    (name, size, modification time), or the task, the random weights' seed, or the library versions."""
    import onnxruntime
    import torch
    import transformers

    files = sorted(
        (p.name, p.stat().st_size, p.stat().st_mtime_ns)
        for p in source.iterdir() if p.is_file() and not p.name.startswith(".")
    )
    what = {
        "key": KEY_VERSION, "source": str(source.resolve()), "files": files, "task": task,
        "dummy_weights": dummy_weights, "seed": seed if dummy_weights else None,
        "versions": [torch.__version__, transformers.__version__, onnxruntime.__version__],
    }
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:24]


def onnx_model(ref: str | os.PathLike, task: str | None = None, *, precision: str = "int8",
               dummy_weights: bool = False, seed: int = 0) -> Path:
    """The ONNX directory of ``ref`` (a model directory, hub id or registry reference) in ``precision``
    (``float32`` or ``int8``): an export in that precision is used as it is; any other model is
    exported (and quantised, for int8) on first use - seconds to a minute; the fp32 graph must match
    PyTorch first - and read from the cache afterwards.

    Raises:
        UserError: an export in the other precision, no onnxruntime, or the export's own errors
            (unknown task, parity failure).
    """
    if precision not in PRECISIONS:
        raise UserError(f"ONNX Runtime graphs are float32 or int8, not {precision!r}")
    source = Path(resolve_source(ref))
    if is_exported_dir(source):
        exported = read_manifest(source).get("precision", "float32")
        if exported != precision:
            hint = "export it with --quantize int8" if precision == "int8" else "use --dtype int8"
            raise UserError(f"{ref} is a {exported} ONNX export; {hint} for {precision}")
        return source
    try:
        import onnxruntime  # noqa: F401
    except ImportError as err:
        raise UserError(f"{precision} on ONNX Runtime needs it: pip install 'distilkit[onnx]'") from err
    target = cache_root(precision) / cache_key(source, task, dummy_weights, seed)
    if is_exported_dir(target):
        return target
    started = time.perf_counter()
    verb = "quantising" if precision == "int8" else "exporting"
    print(f"{precision}: {verb} {ref} once into {target} ...", file=sys.stderr, flush=True)
    report = export_onnx(source, target, task=task, quantize="int8" if precision == "int8" else None,
                         dummy_weights=dummy_weights, seed=seed, overwrite=True)
    parity = report["parity"][precision]
    share = parity.get("top1_agreement", parity.get("span_agreement"))
    if share is not None:
        agreed = f"; decisions equal to fp32's on {share:.0%} of {parity['compared']} parity inputs"
    else:
        agreed = f"; largest difference from PyTorch's outputs {parity['max_abs_diff']:.1e}"
    print(f"{precision}: ready in {time.perf_counter() - started:.0f} s{agreed}", file=sys.stderr, flush=True)
    return target


def int8_model(ref: str | os.PathLike, task: str | None = None, *, dummy_weights: bool = False,
               seed: int = 0) -> Path:
    """``onnx_model`` in int8: the graph ``dtype="int8"`` runs."""
    return onnx_model(ref, task, precision="int8", dummy_weights=dummy_weights, seed=seed)
