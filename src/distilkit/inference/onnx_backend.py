"""The ONNX Runtime backend: an exported directory run as a drop-in "model" for the task handlers.

An exported directory (``distilkit export onnx``) holds ``model.onnx``, ``config.json``, the
tokenizer files and ``distilkit_export.json`` (the marker and the export report). ``OnnxModel``
is called like a transformers model (``model(**batch)``) and returns ``.logits`` or
``.start_logits`` / ``.end_logits`` as torch tensors, so the handlers run it unchanged.

fill-mask graphs take a fourth input, ``mask_positions`` (flat indices into ``B*T``), and project
onto the vocabulary only there (over all positions, that projection is a third of DistilBERT's
FLOPs). Their ``.logits`` is therefore lazy: the handler's generic path
``model(**batch).logits[mask]`` runs the graph with the positions of ``mask``. onnxruntime is
imported only when a model is loaded.
"""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from distilkit.errors import UserError
from distilkit.model_info import LoadedModel, canonical_task

EXPORT_MANIFEST = "distilkit_export.json"
EXPORT_FORMAT = "distilkit-onnx"
MASK_POSITIONS = "mask_positions"


def is_exported_dir(path: str | os.PathLike) -> bool:
    """True when ``path`` is a directory written by ``distilkit export onnx``."""
    return (Path(path) / EXPORT_MANIFEST).is_file()


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """The export report of an exported directory.

    Raises:
        UserError: the directory is not an export, or its report is not distilkit's.
    """
    file = Path(path) / EXPORT_MANIFEST
    if not file.is_file():
        raise UserError(
            f"{path} is not an exported ONNX directory (no {EXPORT_MANIFEST}); create one with "
            "`distilkit export onnx --model REF --output DIR`, or use --backend torch"
        )
    manifest = json.loads(file.read_text(encoding="utf-8"))
    if manifest.get("format") != EXPORT_FORMAT:
        raise UserError(f"{file} is not a distilkit export report (format {manifest.get('format')!r})")
    return manifest


def session_options(num_threads: int | None = None) -> Any:
    """ORT session options: intra-op threads as torch's setting (one thread setting per process)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = num_threads or torch.get_num_threads()
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return opts


class _MaskedLogits:
    """fill-mask logits computed on demand: ``logits[mask]`` -> (M, V) at the positions ``mask`` selects."""

    def __init__(self, model: OnnxModel, feeds: dict[str, Any], shape: tuple[int, int]):
        self._model, self._feeds, self._shape = model, feeds, shape

    def __getitem__(self, mask: torch.Tensor) -> torch.Tensor:
        is_mask = isinstance(mask, torch.Tensor) and mask.dtype == torch.bool
        if not (is_mask and tuple(mask.shape) == self._shape):
            raise TypeError(f"ONNX fill-mask logits are indexed with a boolean (B, T) = {self._shape} mask")
        positions = mask.reshape(-1).nonzero().squeeze(1).cpu().numpy()  # (M,) flat indices into B*T
        (logits,) = self._model.session.run(["logits"], {**self._feeds, MASK_POSITIONS: positions})
        return torch.from_numpy(logits)  # (M, V)


class OnnxModel:
    """An ONNX Runtime session that task handlers call like a transformers model (CPU, no parameters).

    Args:
        path: the ``.onnx`` file.
        config: the transformers config (handlers read labels etc. from it).
        task: pipeline tag the graph was exported for.
        precision: ``float32`` or ``int8`` (reported; activations run in fp32 either way).
        num_threads: ORT intra-op threads (default: torch's thread count).
    """

    device = torch.device("cpu")
    dtype = torch.float32  # activations and outputs; int8 graphs keep int8 weights only
    training = False

    def __init__(self, path: str | os.PathLike, config: Any, task: str, *, precision: str = "float32",
                 num_threads: int | None = None):
        import onnxruntime as ort

        self.path = Path(path)
        self.config = config
        self.task = task
        self.precision = precision
        self.session = ort.InferenceSession(
            str(self.path), sess_options=session_options(num_threads), providers=["CPUExecutionProvider"]
        )
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        # Handlers and the Predictor read the accepted inputs from forward's signature.
        self.forward = self._make_forward([n for n in self.input_names if n != MASK_POSITIONS])

    def _make_forward(self, names: list[str]) -> Any:
        def forward(**batch: torch.Tensor) -> SimpleNamespace:
            return self._run(batch)

        forward.__signature__ = inspect.Signature(
            [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=None) for n in names]
        )
        return forward

    def __call__(self, **batch: torch.Tensor) -> SimpleNamespace:
        return self.forward(**batch)

    def _run(self, batch: dict[str, torch.Tensor]) -> SimpleNamespace:
        feeds = {}
        for name in self.input_names:
            if name == MASK_POSITIONS:
                continue
            if name not in batch:
                raise ValueError(f"the ONNX graph needs input {name!r}; got {sorted(batch)}")  # a handler bug
            feeds[name] = batch[name].detach().cpu().to(torch.int64).numpy()  # (B, T)
        if MASK_POSITIONS in self.input_names:
            return SimpleNamespace(logits=_MaskedLogits(self, feeds, tuple(batch["input_ids"].shape)))
        outputs = self.session.run(self.output_names, feeds)
        named = zip(self.output_names, outputs, strict=True)
        return SimpleNamespace(**{n: torch.from_numpy(o) for n, o in named})

    def eval(self) -> OnnxModel:
        return self

    def parameters(self):
        return iter(())

    def __repr__(self) -> str:
        return f"OnnxModel({str(self.path)!r}, task={self.task!r}, precision={self.precision!r})"


def load_exported(source: str | os.PathLike, task: str | None = None, ref: str | None = None) -> LoadedModel:
    """Load an exported directory into a ``LoadedModel`` whose model is an ``OnnxModel``.

    Raises:
        UserError: not an exported directory, or ``task`` differs from the exported task.
    """
    from transformers import AutoConfig, AutoTokenizer

    manifest = read_manifest(source)
    exported_task = manifest["task"]
    if task is not None and canonical_task(task) != exported_task:
        raise UserError(f"{source} was exported for {exported_task}, not {canonical_task(task)}")
    config = AutoConfig.from_pretrained(source)
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = OnnxModel(Path(source) / manifest["model_file"], config, exported_task,
                      precision=manifest.get("precision", "float32"))
    return LoadedModel(model=model, tokenizer=tokenizer, config=config, task=exported_task,
                       source=str(ref if ref is not None else source))
