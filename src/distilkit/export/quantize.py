"""Dynamic int8 quantization of an exported graph (weights int8, activations quantized per batch).

Tied weights need care: masked-LM heads share the word-embedding matrix W (V, H) between the
embedding ``Gather`` and the vocabulary projection (``Gemm`` with ``transB``). ORT's quantizer
rewrites that Gemm into a MatMul by transposing its weight in place, which corrupts the Gather.
So the Gemm gets its own copy before quantization, and afterwards the Gather reads a
``Transpose`` of the projection's int8 matrix (ORT folds it at load): the file holds W once.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

QUANTIZATIONS = {"int8"}


def untie_gemm_weights(model: Any) -> int:
    """Give every Gemm whose weight another node also reads a private copy; returns how many."""
    from onnx import numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    readers: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            readers[name] = readers.get(name, 0) + 1
    copied = 0
    for node in graph.node:
        if (node.op_type == "Gemm" and len(node.input) > 1 and node.input[1] in inits
                and readers[node.input[1]] > 1):
            copy = numpy_helper.from_array(
                numpy_helper.to_array(inits[node.input[1]]), f"{node.input[1]}.gemm"
            )
            graph.initializer.append(copy)
            node.input[1] = copy.name
            copied += 1
    return copied


def share_tied_embedding(model: Any) -> int:
    """Make each quantized embedding Gather read the transpose of its tied projection's int8 weight.

    After ``untie_gemm_weights`` the quantizer holds W twice: ``N_quantized`` (V, H) for the
    Gather (uint8, asymmetric) and ``P_quantized`` (H, V) for the projection (int8, symmetric),
    where ``P`` is ``N.gemm`` (onnxruntime < 1.30 transposes in place) or ``N.gemm_Transposed``
    (later versions). The Gather is rewired to ``Transpose(P_quantized)`` and its
    DequantizeLinear to the projection's scale and zero point; the Gather's copy is dropped.
    Relies on the quantizer's ``_quantized/_scale/_zero_point`` names; returns how many were shared.
    """
    from onnx import helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    shared = 0
    for gather in [n for n in graph.node if n.op_type == "Gather"]:
        name = gather.input[0].removesuffix("_quantized")
        tied = next(
            (p for p in (f"{name}.gemm", f"{name}.gemm_Transposed") if f"{p}_quantized" in inits), None
        )
        if gather.input[0] == name or tied is None or name + "_quantized" not in inits:
            continue
        dequant = [
            n for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] == gather.output[0]
        ]
        if len(dequant) != 1 or list(dequant[0].input[1:]) != [f"{name}_scale", f"{name}_zero_point"]:
            continue
        graph.node.insert(0, helper.make_node("Transpose", [f"{tied}_quantized"],
                                              [f"{name}_shared_quantized"], name=f"share_{name}"))
        gather.input[0] = f"{name}_shared_quantized"
        dequant[0].input[1], dequant[0].input[2] = f"{tied}_scale", f"{tied}_zero_point"
        still_read = {x for n in graph.node for x in n.input}
        for old in (f"{name}_quantized", f"{name}_scale", f"{name}_zero_point"):
            if old in inits and old not in still_read:
                graph.initializer.remove(inits[old])
        shared += 1
    return shared


def quantize_int8(source: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Write ``target``: ``source`` with MatMul and embedding Gather weights in signed int8.

    Dynamic quantization needs no calibration data: activation scales are computed per batch at
    run time, weights are quantized once here (per tensor, symmetric signed int8).
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = onnx.load(str(source))
    # The torch.export-based exporter records intermediate shapes (value_info) that ONNX's shape
    # inference, which the quantizer runs first, may contradict; they are hints, so drop them.
    del model.graph.value_info[:]
    untie_gemm_weights(model)
    staged = Path(target).with_suffix(".staged.onnx")
    onnx.save(model, str(staged))
    root = logging.getLogger()
    level = root.level
    # The quantizer logs a "consider pre-processing" warning per call on the root logger; the advice
    # (shape inference, graph optimisation) is for static quantization of vision models, not this.
    root.setLevel(logging.ERROR)
    try:
        quantize_dynamic(model_input=str(staged), model_output=str(target),
                         op_types_to_quantize=["MatMul", "Gather"], weight_type=QuantType.QInt8)
    finally:
        root.setLevel(level)
        staged.unlink(missing_ok=True)
    quantized = onnx.load(str(target))
    if share_tied_embedding(quantized):
        del quantized.graph.value_info[:]
        onnx.save(quantized, str(target))
    return Path(target)
