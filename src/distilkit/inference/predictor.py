"""The Predictor: the only inference path (task handler encode -> batched model -> decode).

Serving, batch prediction and evaluation all call ``Predictor.predict`` or its three stages:
``prepare`` (check and encode), ``run`` (plan length-grouped batches and forward them; for
offline callers) or ``run_batch`` (forward exactly one planned batch; the server's scheduler
plans its passes itself), and ``finish`` (decode).
"""

from __future__ import annotations

import contextlib
import inspect
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from distilkit.errors import UserError
from distilkit.export.cache import onnx_model
from distilkit.inference import quantized, runtime
from distilkit.inference.onnx_backend import is_exported_dir
from distilkit.inference.packing import pad_batch, padded_length, plan_batches
from distilkit.inference.selective import real_tokens, select_last_layer, skip_padding
from distilkit.model_info import LoadedModel
from distilkit.models import load_model, resolve_source
from distilkit.tasks import CostLimits, Feature, get_handler_class

DEFAULT_MAX_BATCH_TOKENS = 2048
DEFAULT_MAX_BATCH_SIZE = 64


@dataclass
class Prepared:
    """Validated items, resolved parameters and their encoded features, ready for ``run``."""

    items: list[Any]
    params: dict[str, Any]
    features: list[Feature]


class Predictor:
    """Runs one model for one task over lists of inputs with length-aware, token-budgeted batches.

    Args:
        loaded: model, tokenizer, config and task from ``distilkit.models.load_model``.
        max_batch_tokens: padded tokens per forward pass (rows x padded length).
        max_batch_size: rows per forward pass.
        pad_to_multiple_of: round each batch's length up to this. Default: 8 on CUDA (tensor-core
            tiles), 1 on the CPU, where the GEMMs see rows x length as one dimension and rounding
            only adds work (1.14x on 512 fill-mask rows of ~20 tokens in bf16, 1.05x on QA).
        compile: compile the encoder with torch.compile (a ~20 s warm-up; on the 2-core AVX512-BF16
            CI machine now 0.84-0.93x the default prepacked engine, ``benchmarks/inference.py``).
    """

    def __init__(
        self,
        loaded: LoadedModel,
        *,
        max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        pad_to_multiple_of: int | None = None,
        compile: bool = False,
    ):
        if (max_batch_tokens < 1 or max_batch_size < 1
                or (pad_to_multiple_of is not None and pad_to_multiple_of < 1)):
            raise UserError("max_batch_tokens, max_batch_size and pad_to_multiple_of must be >= 1")
        self.loaded = loaded
        self.model = loaded.model
        self.tokenizer = loaded.tokenizer
        self.task = loaded.task
        self.handler = get_handler_class(loaded.task)(loaded.tokenizer, loaded.config)
        self.max_batch_tokens = max_batch_tokens
        self.max_batch_size = max_batch_size
        accepted = inspect.signature(self.model.forward).parameters
        self._uses_token_types = "token_type_ids" in accepted
        self._pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        first = next(self.model.parameters(), None)  # None: an ONNX Runtime model (weights in its session)
        self.device = (first.device if first is not None
                       else getattr(self.model, "device", torch.device("cpu")))
        self.dtype = first.dtype if first is not None else getattr(self.model, "dtype", torch.float32)
        if pad_to_multiple_of is None:
            pad_to_multiple_of = 8 if self.device.type == "cuda" else 1
        self.pad_to_multiple_of = pad_to_multiple_of
        if first is not None:
            self.engine = runtime.Engine("torch", str(self.dtype).removeprefix("torch."), "given")
        else:
            precision = getattr(self.model, "precision", "float32")
            self.engine = runtime.Engine("onnx", precision, "an exported model")
        # Fast tokenizers are not safe to call from several threads at once (truncation state is
        # shared): ``prepare`` and ``finish`` hold this lock. Reentrant, so that a server can take
        # it without blocking first and then call them on the same thread.
        self.tokenizer_lock = threading.RLock()
        # Set by ``from_ref``: the engine line goes to stderr with the first forward pass, so a
        # command refused for bad input prints only its one-line error.
        self.announce_as: str | None = None
        if compile:
            if first is None:
                raise UserError(
                    "--compile needs the torch backend; an ONNX model is already a compiled graph")
            runtime.compile_encoder(self.model)
        elif first is not None:  # heads that read a few positions get the last layer at those only
            select_last_layer(self.model)
        # The encoder's layers run on each batch's real tokens only (``selective.skip_padding``);
        # False runs them on the padded batch (``benchmarks/padding_ab.py`` compares the two).
        self.skips_padding = first is not None and not compile and skip_padding(self.model)

    @classmethod
    def from_ref(
        cls,
        model: str | os.PathLike,
        task: str | None = None,
        *,
        dummy_weights: bool = False,
        seed: int = 0,
        dtype: str | torch.dtype = "auto",
        device: str | int | torch.device | None = None,
        num_threads: int | None = None,
        backend: str | None = None,
        calibration_texts: Sequence[str] | None = None,
        calibration: str | os.PathLike | None = None,
        **batching: Any,
    ) -> Predictor:
        """Load ``model`` (directory or hub id) and build a Predictor with the precision policy applied.

        ``backend`` is ``torch``, ``onnx`` or None (``onnx`` for a ``distilkit export onnx`` directory).
        ``dtype="int8"`` runs the encoder's GEMMs in int8: PyTorch's oneDNN engine on a CPU with
        int8 dot products (``distilkit.inference.quantized``, calibrated at load on
        ``calibration_texts`` or the lines of the text file ``calibration``, default
        ``quantized.CALIBRATION_TEXTS``), else ONNX Runtime's dynamic
        int8 graph. ``backend="onnx"`` on a model directory runs its ONNX Runtime graph (exported once,
        cached); ``dtype="auto"`` picks the engine for the hardware (``runtime.choose_engine``) and
        the choice is printed on stderr.
        """
        if calibration is not None:
            if dtype != runtime.INT8:
                raise UserError(f"--calibration calibrates --dtype int8, not {dtype}")
            calibration_texts = read_calibration(calibration)
        dev = runtime.resolve_device(device)
        exported = is_exported_dir(resolve_source(model))
        engine = (None if exported and dtype != runtime.INT8  # an export's int8 is its graph's
                  else runtime.choose_engine(dtype, dev, backend or ("onnx" if exported else None)))
        if engine is not None and engine.backend == "onnx":
            model = onnx_model(model, task, precision=engine.precision, dummy_weights=dummy_weights,
                               seed=seed)
            backend = "onnx"
        torch_int8 = engine is not None and engine.backend == "torch" and engine.precision == runtime.INT8
        if torch_int8 and batching.get("compile"):  # refused before the model is loaded
            raise UserError("--compile runs bf16/fp32 models; drop it for --dtype int8")
        torch_dtype = runtime.int8_compute_dtype(dev) if torch_int8 else runtime.resolve_dtype(dtype, dev)
        if dev.type == "cpu":
            runtime.set_threads(num_threads)
        loaded = load_model(model, task, dummy_weights=dummy_weights, seed=seed, dtype=torch_dtype,
                            device=dev, backend=backend)
        predictor = cls(loaded, **batching)
        if torch_int8:
            quantized.convert(predictor.model, lambda: predictor.calibration_batches(calibration_texts),
                              torch_dtype)
        if (predictor.engine.backend == "torch" and not batching.get("compile")
                and runtime.can_prepack(predictor.dtype, predictor.device)):
            runtime.prepack_linears(predictor.model)
            if predictor.dtype == torch.bfloat16:  # in fp32 PyTorch's fused attention is the faster
                runtime.use_bmm_attention(predictor.model)
        if engine is not None:
            predictor.engine = engine
        predictor.announce_as = str(loaded.source)
        return predictor

    def calibration_batches(self, texts: Sequence[str] | None = None) -> list[dict[str, torch.Tensor]]:
        """Encoder batches of ``texts`` (default ``quantized.CALIBRATION_TEXTS``), single and paired.

        Pairs (a short text with a long one) give the ranges of question-answering's inputs.
        """
        texts = list(texts or quantized.CALIBRATION_TEXTS)
        if not texts or not all(isinstance(t, str) and t.strip() for t in texts):
            raise UserError("calibration texts must be a non-empty list of non-empty strings")
        by_length, half = sorted(texts, key=len), len(texts) // 2 or 1
        pairs = (by_length[:half], by_length[::-1][:half])  # the shortest with the longest
        keep = ("input_ids", "attention_mask") + (("token_type_ids",) if self._uses_token_types else ())
        batches = []
        with self.tokenizer_lock:
            for args in ((texts,), pairs):
                enc = self.tokenizer(*args, padding=True, truncation=True, max_length=self.handler.max_length,
                                     return_tensors="pt")
                batches.append({k: v.to(self.device) for k, v in enc.items() if k in keep})
        return batches

    # --- the three stages ------------------------------------------------------------------------
    def prepare(
        self, items: list[Any], params: dict[str, Any] | None = None, limits: CostLimits | None = None
    ) -> Prepared:
        """Validate params and items, check their cost against ``limits``, encode them (no model call).

        Raises:
            ValueError: a bad parameter or input; ``CostError`` (a ValueError) past ``limits``.
        """
        with self.tokenizer_lock:  # parameters too: fill-mask targets are tokenized
            resolved = self.handler.check_params(params)
            checked = self.handler.check_inputs(list(items))
            if limits is not None:
                self.handler.check_cost(checked, resolved, limits)
            features = self.handler.encode(checked, resolved)
        return Prepared(checked, resolved, features)

    def padded_length(self, length: int) -> int:
        """The width a row of ``length`` tokens pads to in a batch (what a row costs a pass)."""
        return padded_length(length, self.pad_to_multiple_of, self.handler.max_length)

    def announce(self) -> None:
        """Print the engine line on stderr now (once per engine and process); serve calls it at start-up."""
        runtime.announce(self.engine, self.announce_as or str(self.loaded.source))
        self.announce_as = None

    def run(self, features: list[Feature]) -> list[Any]:
        """Forward ``features`` in length-grouped batches; return one output per feature, in order."""
        lengths = [len(f) for f in features]
        batches = plan_batches(
            lengths, self.max_batch_tokens, self.max_batch_size, self.pad_to_multiple_of,
            self.handler.max_length,
        )
        outputs: list[Any] = [None] * len(features)
        for idx in batches:
            for i, out in zip(idx, self.run_batch([features[i] for i in idx]), strict=True):
                outputs[i] = out
        return outputs

    def run_batch(self, features: list[Feature]) -> list[Any]:
        """Forward exactly ``features`` as one batch, padded to the longest (rounded up to the multiple).

        The caller owns the plan: a batch of ``n`` rows costs ``n x padded_length(longest)`` tokens.
        """
        if not features:
            return []
        if self.announce_as is not None:
            self.announce()
        width = self.padded_length(max(len(f) for f in features))
        types = [f.token_type_ids or [0] * len(f) for f in features] if self._uses_token_types else None
        batch = pad_batch([f.input_ids for f in features], self._pad_id, width, types)
        with torch.inference_mode():
            batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
            tokens = (real_tokens(self.model, batch["attention_mask"]) if self.skips_padding
                      else contextlib.nullcontext())
            with tokens:
                return self.handler.forward(self.model, batch, features)

    def finish(self, prepared: Prepared, outputs: list[Any]) -> list[Any]:
        """Decode each item from its features' outputs."""
        per_item: list[list[int]] = [[] for _ in prepared.items]
        for i, f in enumerate(prepared.features):
            per_item[f.item].append(i)
        with self.tokenizer_lock:
            return [
                self.handler.decode(
                    item, [prepared.features[i] for i in fidx], [outputs[i] for i in fidx], prepared.params
                )
                for item, fidx in zip(prepared.items, per_item, strict=True)
            ]

    def predict(self, items: list[Any], params: dict[str, Any] | None = None) -> list[Any]:
        """Predict a list of items; returns one result per item, in the task's pipeline shape.

        Raises:
            ValueError: an unknown parameter, a value out of range, or a bad input (named by index).
        """
        prepared = self.prepare(items, params)
        return self.finish(prepared, self.run(prepared.features))


def read_calibration(path: str | os.PathLike) -> list[str]:
    """The calibration texts of a UTF-8 text file: one per non-empty line.

    Raises:
        UserError: the file cannot be read or holds no text.
    """
    try:
        with open(path, encoding="utf-8") as f:
            texts = [line.strip() for line in f if line.strip()]
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"--calibration {path}: cannot read it as UTF-8 text ({err})") from err
    if not texts:
        raise UserError(f"--calibration {path}: no text in it (one calibration text per line)")
    return texts
