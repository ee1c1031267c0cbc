"""Parity helpers: generated inputs, span choice, agreement counting, tied-weight handling (no model)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnx")

from distilkit.export import parity
from distilkit.export.quantize import quantize_int8, untie_gemm_weights


class _Tok:
    """The tokenizer attributes ``generate_batches`` reads."""

    all_special_ids = (0, 1, 2, 3, 4)
    cls_token_id, sep_token_id, pad_token_id, mask_token_id = 2, 3, 0, 4
    bos_token_id = eos_token_id = None

    def __len__(self) -> int:
        return 50


def test_generated_batches_have_the_shapes_padding_and_masks_asked_for():
    batches = parity.generate_batches(_Tok(), ["input_ids", "attention_mask", "token_type_ids"], "fill-mask",
                                      max_length=20, shapes=((1, 7), (3, 33)))
    assert [b.inputs["input_ids"].shape for b in batches] == [(1, 7), (3, 20)]  # clipped to max_length
    for b in batches:
        ids, valid = b.inputs["input_ids"], b.valid
        assert (b.inputs["attention_mask"] == valid).all()
        types = b.inputs["token_type_ids"]  # a second segment of type 1 on each row, 0 on padding
        assert (types[~valid] == 0).all() and (types[:, 0] == 0).all()
        assert all(types[r, n - 1] == 1 for r, n in enumerate(valid.sum(axis=1)))
        assert (ids[~valid] == 0).all() and (ids[:, 0] == 2).all()
        assert (ids.reshape(-1)[b.mask_positions] == 4).all() and valid.reshape(-1)[b.mask_positions].all()
        assert valid[0].all()  # the first row is the longest: the batch is exactly as wide as asked


def test_best_span_respects_order_and_max_length():
    start = np.array([-20.0, 5.0, 0.0, 0.0])
    end = np.array([9.0, 0.0, 1.0, 0.0])  # end 0 is before start 1: not allowed
    assert parity.best_span(start, end) == (1, 2)
    assert parity.best_span(np.array([5.0, 0, 0]), np.array([0, 0, 9.0]), max_len=2) == (1, 2)


def test_agreement_counts_top1_over_real_tokens_and_spans():
    batch = parity.ParityBatch(
        {"input_ids": np.zeros((1, 3), np.int64)}, np.array([[True, True, False]]), None
    )
    ref = [np.array([[[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]])]
    # the pad position's disagreement is not counted
    got = [np.array([[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]])]
    assert parity.agreement("token-classification", [batch], [ref], [got]) == {
        "top1_agreement": 0.5, "compared": 2
    }
    qa = [np.array([[0.0, 3.0, 0.0]]), np.array([[0.0, 0.0, 3.0]])]
    assert parity.agreement("question-answering", [batch], [qa], [qa])["span_agreement"] == 1.0


def test_max_abs_diff_ignores_pad_positions():
    batch = parity.ParityBatch({}, np.array([[True, False]]), None)
    ref = [np.array([[1.0, 0.0]]), np.array([[1.0, 0.0]])]
    got = [np.array([[1.5, 99.0]]), np.array([[1.0, 0.0]])]
    assert parity.max_abs_diff("question-answering", batch, ref, got) == 0.5


def test_tied_embedding_is_stored_once_in_int8(tmp_path):
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = rng.standard_normal((64, 16)).astype(np.float32)  # (V, H), read by the Gather and the Gemm
    nodes = [helper.make_node("Gather", ["W", "ids"], ["emb"]),
             helper.make_node("Gemm", ["h", "W"], ["logits"], transB=1)]
    graph = helper.make_graph(
        nodes, "tied",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, [3]),
         helper.make_tensor_value_info("h", TensorProto.FLOAT, [2, 16])],
        [helper.make_tensor_value_info("emb", TensorProto.FLOAT, [3, 16]),
         helper.make_tensor_value_info("logits", TensorProto.FLOAT, [2, 64])],
        [numpy_helper.from_array(w, "W")])
    probe = helper.make_model(graph)
    assert untie_gemm_weights(probe) == 1 and probe.graph.node[1].input[1] == "W.gemm"

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)
    onnx.save(model, tmp_path / "fp32.onnx")
    quantize_int8(tmp_path / "fp32.onnx", tmp_path / "int8.onnx")
    matrices = [i for i in onnx.load(tmp_path / "int8.onnx").graph.initializer if len(i.dims) == 2]
    # one int8 copy: the projection's (H, V) matrix (named W.gemm_Transposed_quantized by onnxruntime >= 1.30)
    assert [(i.name.startswith("W.gemm"), list(i.dims)) for i in matrices] == [(True, [16, 64])]
    ids, h = np.array([0, 5, 63]), rng.standard_normal((2, 16)).astype(np.float32)
    emb, logits = ort.InferenceSession(tmp_path / "int8.onnx").run(None, {"ids": ids, "h": h})
    scale = np.abs(w).max() / 127
    assert np.abs(emb - w[ids]).max() <= scale  # within one quantization step
    assert np.abs(logits - h @ w.T).max() < 0.1 * np.abs(h @ w.T).max()
