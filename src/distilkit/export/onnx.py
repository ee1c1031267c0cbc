"""``distilkit export onnx``: a model reference -> a directory ONNX Runtime serves, parity-checked.

The directory holds ``model.onnx`` (fp32, or int8 with ``quantize="int8"``), ``config.json``,
the tokenizer files and ``distilkit_export.json`` (marker + report: task, precision, opset,
sizes, parity). Graph inputs are the ones the model's forward accepts (DistilBERT takes no
``token_type_ids``), with dynamic batch and sequence axes. fill-mask graphs take
``mask_positions`` (flat indices into ``B*T``) and project onto the vocabulary only there.

fp32 parity with PyTorch is required (max |diff| <= ``atol`` on real tokens, else
``ExportParityError`` and nothing is written); int8 agreement is measured and reported.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import os
import shutil
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from distilkit.errors import UserError
from distilkit.export import parity
from distilkit.export.quantize import QUANTIZATIONS, quantize_int8
from distilkit.inference.onnx_backend import EXPORT_FORMAT, EXPORT_MANIFEST, MASK_POSITIONS, session_options
from distilkit.inference.selective import only_at, select_last_layer

MODEL_FILE = "model.onnx"
DEFAULT_OPSET = 18  # the torch.export-based exporter's lowest opset (the fallback exporter)
DEFAULT_ATOL = 1e-4
TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class ExportParityError(UserError):
    """The fp32 graph's outputs differ from PyTorch's by more than the tolerance."""


class _ExportModule(torch.nn.Module):
    """The model with plain tensor outputs in a fixed order (fill-mask: logits at ``mask_positions``)."""

    def __init__(self, model: torch.nn.Module, task: str):
        super().__init__()
        self.model = model
        self.task = task
        # fill-mask's last layer runs at the masks only, a first-token classifier's at the first
        # token only (inference.selective), as in the PyTorch path
        if task in ("fill-mask", "text-classification"):
            select_last_layer(model)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        mask_positions: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, ...]:
        from distilkit.tasks.fill_mask import mlm_head
        from distilkit.tasks.text_classification import first_token_positions

        batch = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            batch["token_type_ids"] = token_type_ids
        if self.task == "fill-mask":
            with only_at(self.model, mask_positions, attention_mask):
                hidden = self.model.base_model(**batch)[0]  # (B, T, H): exact at the masks
            picked = hidden.reshape(-1, hidden.shape[-1]).index_select(0, mask_positions)  # (M, H)
            return (mlm_head(self.model)(picked),)  # (M, V)
        first = first_token_positions(self.model, input_ids) if self.task == "text-classification" else None
        if first is not None:
            with only_at(self.model, first, attention_mask):
                return (self.model(**batch).logits,)  # (B, L)
        out = self.model(**batch)
        if self.task == "question-answering":
            return out.start_logits, out.end_logits  # (B, T) each
        return (out.logits,)  # (B, L) or (B, T, L)


def graph_io(model: torch.nn.Module, task: str) -> tuple[list[str], list[str]]:
    """Input and output names of the graph for ``model`` and ``task``."""
    accepted = inspect.signature(model.forward).parameters
    inputs = [n for n in TEXT_INPUTS if n in accepted]
    if task == "fill-mask":
        from distilkit.tasks.fill_mask import mlm_head

        if mlm_head(model) is None:
            raise UserError(f"{type(model).__name__} has no known masked-LM head; cannot export fill-mask")
        inputs.append(MASK_POSITIONS)
    outputs = ["start_logits", "end_logits"] if task == "question-answering" else ["logits"]
    return inputs, outputs


@contextlib.contextmanager
def eager_attention(model: torch.nn.Module) -> Iterator[None]:
    """Trace the model's plain matmul-softmax attention instead of its SDPA call: the exported graph
    then has the attention pattern ONNX Runtime's CPU kernels run fastest (measured on
    distilbert-base-cased, ``benchmarks/runtimes.py``)."""
    configs = {id(m.config): m.config for m in model.modules() if hasattr(m, "config")}
    before = {k: getattr(c, "_attn_implementation", None) for k, c in configs.items()}
    for c in configs.values():
        c._attn_implementation = "eager"
    try:
        yield
    finally:
        for k, c in configs.items():
            c._attn_implementation = before[k]


def output_axes(task: str, outputs: list[str]) -> dict[str, dict[int, str]]:
    """The dynamic axes of each output: masks for fill-mask, (batch, sequence) per token, else batch."""
    if task == "fill-mask":
        return {n: {0: "masks"} for n in outputs}
    per_token = task in ("question-answering", "token-classification")
    return {n: ({0: "batch", 1: "sequence"} if per_token else {0: "batch"}) for n in outputs}


def export_graph(
    model: torch.nn.Module, task: str, path: Path, opset: int = DEFAULT_OPSET
) -> tuple[list[str], list[str]]:
    """Trace ``model`` (fp32, eval) for ``task`` into an ONNX file at ``path``; return its input/output
    names.

    The TorchScript exporter is used while PyTorch has it: on DistilBERT its graphs run 15-25%
    faster in ONNX Runtime than the torch.export-based exporter's (fp32 and int8, fill-mask and QA;
    ``benchmarks/runtimes.py``). Where it is gone, the torch.export-based one is used.
    """
    inputs, outputs = graph_io(model, task)
    ids = torch.full((2, 16), 5, dtype=torch.int64)  # (B, T) example; every axis is exported dynamic
    examples = {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "token_type_ids": torch.zeros_like(ids),
        MASK_POSITIONS: torch.tensor([1, 3, 20], dtype=torch.int64),
    }
    module = _ExportModule(model, task).eval()  # eval: a fresh wrapper defaults to training mode
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)  # the exporter logs every skipped optional op
    try:
        with warnings.catch_warnings(), eager_attention(model):
            warnings.simplefilter("ignore")
            if torchscript_exporter_available():
                # positional, in forward's order; an input the model does not take is None (dropped)
                order = ["input_ids", "attention_mask", "token_type_ids", MASK_POSITIONS]
                last = max(order.index(n) for n in inputs)
                args = tuple(examples[n] if n in inputs else None for n in order[: last + 1])
                axes = {n: ({0: "masks"} if n == MASK_POSITIONS else {0: "batch", 1: "sequence"})
                        for n in inputs}
                torch.onnx.export(module, args, str(path), input_names=inputs, output_names=outputs,
                                  dynamic_axes={**axes, **output_axes(task, outputs)}, opset_version=opset,
                                  dynamo=False, do_constant_folding=True)
            else:
                kwargs = {n: examples[n] for n in inputs}
                dims = {n: ({0: "masks"} if n == MASK_POSITIONS else {0: "batch", 1: "sequence"})
                        for n in inputs}
                torch.onnx.export(module, (), str(path), kwargs=kwargs, input_names=inputs,
                                  output_names=outputs, dynamic_shapes=dims, opset_version=opset,
                                  dynamo=True, external_data=False, verbose=False)
    finally:
        exporter_log.setLevel(level)
    return inputs, outputs


def torchscript_exporter_available() -> bool:
    """True while this PyTorch still ships the TorchScript-based ONNX exporter (``dynamo=False``)."""
    import importlib.util

    try:
        return importlib.util.find_spec("torch.onnx._internal.torchscript_exporter") is not None
    except ModuleNotFoundError:
        return False


def check_parity(model: torch.nn.Module, graph: Path, task: str, tokenizer: Any, input_names: list[str],
                 max_length: int) -> tuple[list[parity.ParityBatch], list[list[Any]], Any]:
    """Generated batches, PyTorch's outputs on them, and an ORT session of ``graph``."""
    import onnxruntime as ort

    batches = parity.generate_batches(tokenizer, input_names, task, max_length)
    ref = [parity.torch_outputs(model, task, b) for b in batches]
    session = ort.InferenceSession(
        str(graph), sess_options=session_options(), providers=["CPUExecutionProvider"]
    )
    return batches, ref, session


def export_onnx(
    model: str | os.PathLike,
    output: str | os.PathLike,
    *,
    task: str | None = None,
    quantize: str | None = None,
    opset: int = DEFAULT_OPSET,
    dummy_weights: bool = False,
    seed: int = 0,
    atol: float = DEFAULT_ATOL,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Export ``model`` to an ONNX directory at ``output`` and return its report.

    Args:
        model: model directory, hub id or registry reference.
        output: directory to create.
        task: pipeline tag (default: from ``config.architectures``).
        quantize: None (fp32) or ``int8`` (dynamic quantization; the fp32 graph is checked first).
        opset: ONNX opset (>= 18).
        dummy_weights: export the architecture with seeded random weights.
        seed: the random weights' seed (with ``dummy_weights``).
        atol: largest allowed |ONNX fp32 - PyTorch| on the logits of real tokens.
        overwrite: replace an existing ``output``.

    Raises:
        ExportParityError: the fp32 graph is off by more than ``atol`` (nothing is written).
        UserError: a bad flag, an existing output, an unknown task.
    """
    from distilkit.models import load_model

    if quantize is not None and quantize not in QUANTIZATIONS:
        raise UserError(f"--quantize must be one of {sorted(QUANTIZATIONS)}, got {quantize!r}")
    if opset < DEFAULT_OPSET:
        raise UserError(f"--opset must be >= {DEFAULT_OPSET} (the torch.export-based exporter), got {opset}")
    if atol <= 0:
        raise UserError(f"--atol must be > 0, got {atol}")
    out = Path(output)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise UserError(f"{out} exists and is not empty; pass --overwrite to replace it")
    started = time.perf_counter()
    loaded = load_model(
        model, task, dummy_weights=dummy_weights, seed=seed, dtype=torch.float32, device="cpu",
        backend="torch",
    )
    work = out.parent / f".{out.name}.export-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        report = _export_into(loaded, work, quantize, opset, atol, str(model))
        if out.exists():
            shutil.rmtree(out)
        work.rename(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report["seconds"] = round(time.perf_counter() - started, 2)
    (out / EXPORT_MANIFEST).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


def _export_into(
    loaded: Any, work: Path, quantize: str | None, opset: int, atol: float, source: str
) -> dict[str, Any]:
    """Export, check, optionally quantize into ``work``; returns the report (raises on fp32 mismatch)."""
    model, task, tokenizer = loaded.model, loaded.task, loaded.tokenizer
    fp32_path = work / (MODEL_FILE if quantize is None else "model.fp32.onnx")
    inputs, outputs = export_graph(model, task, fp32_path, opset)
    max_length = min(
        int(getattr(loaded.config, "max_position_embeddings", 512)), tokenizer.model_max_length, 512
    )
    batches, ref, session = check_parity(model, fp32_path, task, tokenizer, inputs, max_length)
    diffs = [
        parity.max_abs_diff(task, b, r, parity.onnx_outputs(session, b))
        for b, r in zip(batches, ref, strict=True)
    ]
    shapes = [list(b.inputs["input_ids"].shape) for b in batches]
    if max(diffs) > atol:
        worst = max(range(len(diffs)), key=diffs.__getitem__)
        raise ExportParityError(
            f"ONNX fp32 parity failed for {source} ({task}): max |ONNX - PyTorch| = {diffs[worst]:.3g} "
            f"> atol {atol:g} on a batch of shape {shapes[worst]} (opset {opset}); nothing was written. "
            "Try another --opset, or report the model's architecture"
        )
    report: dict[str, Any] = {
        "format": EXPORT_FORMAT, "version": 1, "task": task, "source": source,
        "model_type": getattr(loaded.config, "model_type", None), "model_file": MODEL_FILE,
        "precision": quantize or "float32", "opset": opset, "inputs": inputs, "outputs": outputs,
        "exporter": "torchscript" if torchscript_exporter_available() else "torch.export",
        "sizes": {"float32_bytes": fp32_path.stat().st_size},
        "parity": {"float32": {"atol": atol, "max_abs_diff": max(diffs), "shapes": shapes, "passed": True}},
        "versions": _versions(),
    }
    if quantize == "int8":
        int8_path = quantize_int8(fp32_path, work / MODEL_FILE)
        fp32_path.unlink()
        import onnxruntime as ort

        q_session = ort.InferenceSession(str(int8_path), sess_options=session_options(),
                                         providers=["CPUExecutionProvider"])
        got = [parity.onnx_outputs(q_session, b) for b in batches]
        report["sizes"]["int8_bytes"] = int8_path.stat().st_size
        report["parity"]["int8"] = {
            **parity.agreement(task, batches, ref, got),
            "max_abs_diff": max(
                parity.max_abs_diff(task, b, r, g) for b, r, g in zip(batches, ref, got, strict=True)
            ),
            "shapes": shapes,
        }
    loaded.config.save_pretrained(work)
    tokenizer.save_pretrained(work)
    return report


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__}
