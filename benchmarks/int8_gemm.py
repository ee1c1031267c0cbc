"""Per-GEMM rates of the CPU int8 kernels PyTorch reaches, against its bf16 packed GEMM.

The question behind it: could a PyTorch int8 engine (oneDNN's u8 x s8 ``qlinear_pointwise`` on
VNNI) replace ONNX Runtime's dynamic int8 as distilkit's ``--dtype int8``? For each encoder GEMM
shape (tokens x in x out of DistilBERT-base) it times, in one process:

- ``bf16``: oneDNN's packed bf16 GEMM (``mkldnn._linear_pointwise``), distilkit's bf16 engine;
- ``int8 gemm``: ``onednn.qlinear_pointwise`` on an already-quantised u8 activation (static
  activation scales: the quantisation is paid elsewhere, or fused into the previous op);
- ``int8 + dynamic quant``: the same after quantising the fp32 activation per tensor at run time
  (``torch.quantize_per_tensor_dynamic``, one fused pass);
- ``int_mm``: ``torch._int_mm`` (s8 x s8 -> s32), the int8 limit ``benchmarks/runtimes.py`` uses.

Rates are in T(FL)OP/s of the GEMM; ``rel_err`` is the int8 result's relative L2 error against fp32.

    .venv/bin/python benchmarks/int8_gemm.py            # ~1 min on 2 cores; JSON to results/int8_gemm.json
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
SHAPES = ((4096, 768, 3072), (4096, 3072, 768), (4096, 768, 768), (640, 768, 768))  # (M, K, N)


def seconds(fn, n: int = 20) -> float:
    for _ in range(3):
        fn()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n


def measure(m: int, k: int, n: int) -> dict:
    torch.manual_seed(0)
    x = torch.randn(m, k)
    w = torch.randn(n, k) * 0.05
    b = torch.randn(n)
    ref = torch.nn.functional.linear(x, w, b)
    w_scale = w.abs().amax(dim=1) / 127  # (N,) symmetric per output channel
    qw = torch.round(w / w_scale[:, None]).clamp(-128, 127).to(torch.int8)
    packed_q = torch.ops.onednn.qlinear_prepack(qw, [m, k])
    w_zero = torch.zeros(n, dtype=torch.int64)
    xb, wb, bb = x.to(torch.bfloat16), w.to(torch.bfloat16), b.to(torch.bfloat16)
    packed_bf16 = torch.ops.mkldnn._reorder_linear_weight(wb, None)
    static = torch.quantize_per_tensor_dynamic(x, torch.quint8, False)
    qx, x_scale, x_zero = static.int_repr(), static.q_scale(), static.q_zero_point()

    def qlinear(q, scale, zero):
        return torch.ops.onednn.qlinear_pointwise(q, scale, zero, packed_q, w_scale, w_zero, b, 1.0, 0,
                                                  torch.bfloat16, "none", [], "")

    def dynamic():
        xq = torch.quantize_per_tensor_dynamic(x, torch.quint8, False)
        return qlinear(xq.int_repr(), xq.q_scale(), xq.q_zero_point())

    a8 = torch.randint(-127, 127, (m, k), dtype=torch.int8)
    w8 = torch.randint(-127, 127, (k, n), dtype=torch.int8)
    variants = {
        "bf16": lambda: torch.ops.mkldnn._linear_pointwise(xb, packed_bf16, bb, "none", [], "none"),
        "int8 gemm": lambda: qlinear(qx, x_scale, x_zero),
        "int8 + dynamic quant": dynamic,
        "int_mm": lambda: torch._int_mm(a8, w8),
    }
    row = {"m": m, "k": k, "n": n}
    for name, fn in variants.items():
        row[f"{name} T/s"] = round(2 * m * k * n / seconds(fn) / 1e12, 3)
        if name != "int_mm":
            row[f"{name} rel_err"] = round(float((fn().float() - ref).norm() / ref.norm()), 4)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=HERE / "results", help="where int8_gemm.json goes")
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads (default: all CPUs)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")
    rows = []
    for shape in SHAPES:
        rows.append(measure(*shape))
        print(json.dumps(rows[-1]), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    result = {"threads": torch.get_num_threads(), "torch": torch.__version__, "rows": rows}
    (args.out / "int8_gemm.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
