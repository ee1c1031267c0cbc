"""Backends: PyTorch fp32 / bf16 vs ONNX Runtime fp32 / int8 — throughput and model size, one run, JSON + PNG.

    python benchmarks/backends.py                 # full run (~6 min on 2 idle cores)
    python benchmarks/backends.py --quick         # smaller workloads, a smoke check

Models: the real configs/tokenizers in ../shared/models with dummy weights (speed does not
depend on weight values), exported with ``distilkit export onnx`` (fp32 and ``--quantize int8``)
into a temporary directory. Every backend runs through the same Predictor (same batching,
same decode), so the differences are the backends'. Workloads at two sequence lengths:
fill-mask on distilbert-base-cased (WikiText-2 sentences of ~20 and ~120 tokens, one mask);
question-answering on distilbert-base-cased-distilled-squad (SQuAD v1.1 dev questions with
the context cut to its first 40 words, and with the full context).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from inference import best_time, cpu_name, gemm_flops
from workloads import fill_mask_texts, squad_questions

DEFAULT_SHARED = HERE.parent.parent / "shared"
BACKENDS = ("torch-fp32", "torch-bf16", "onnx-fp32", "onnx-int8")


def workloads(shared: Path, quick: bool) -> list[dict]:
    """The four (task, model, inputs) workloads; sizes shrink with ``quick``."""
    from transformers import AutoTokenizer

    fm = shared / "models/distilbert-base-cased"
    qa = shared / "models/distilbert-base-cased-distilled-squad"
    tok = AutoTokenizer.from_pretrained(fm)
    scale = 4 if quick else 1
    questions = squad_questions(shared, 120 // scale)
    short = [{"question": q["question"], "context": " ".join(q["context"].split()[:40])} for q in questions]
    full = [{"question": q["question"], "context": q["context"]} for q in questions]
    return [
        {"name": "fill-mask ~20 tok", "task": "fill-mask", "model": fm,
         "items": fill_mask_texts(shared, tok, 256 // scale, 20)},
        {"name": "fill-mask ~120 tok", "task": "fill-mask", "model": fm,
         "items": fill_mask_texts(shared, tok, 64 // scale, 120)},
        {"name": "QA context 40 words", "task": "question-answering", "model": qa, "items": short},
        {"name": "QA full context", "task": "question-answering", "model": qa, "items": full},
    ]


def export_all(models: set[Path], work: Path) -> dict[tuple[Path, str], dict]:
    """Export every model fp32 and int8 (dummy weights); (model, precision) -> export report."""
    from distilkit.export import export_onnx

    reports = {}
    for model in sorted(models):
        for precision in ("fp32", "int8"):
            out = work / f"{model.name}-{precision}"
            t = time.perf_counter()
            reports[model, precision] = export_onnx(model, out, dummy_weights=True,
                                                    quantize="int8" if precision == "int8" else None)
            reports[model, precision]["dir"] = str(out)
            print(f"exported {model.name} {precision} in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    return reports


def predictor_for(backend: str, model: Path, reports: dict):
    """A Predictor for ``backend`` on ``model`` and its size in bytes (weights as stored/loaded)."""
    from distilkit.inference.predictor import Predictor

    if backend.startswith("torch"):
        dtype = "float32" if backend == "torch-fp32" else "bfloat16"
        pred = Predictor.from_ref(model, dummy_weights=True, dtype=dtype, device="cpu")
        size = sum(p.numel() * p.element_size() for p in pred.model.parameters())
        return pred, size
    report = reports[model, backend.split("-")[1]]
    pred = Predictor.from_ref(report["dir"], device="cpu")
    return pred, (Path(report["dir"]) / "model.onnx").stat().st_size


def run(args) -> dict:
    shared = args.shared
    loads = workloads(shared, args.quick)
    with tempfile.TemporaryDirectory() as tmp:
        reports = export_all({w["model"] for w in loads}, Path(tmp))
        rows = []
        for backend in BACKENDS:
            cache: dict[Path, tuple] = {}
            for w in loads:
                if w["model"] not in cache:
                    cache[w["model"]] = predictor_for(backend, w["model"], reports)
                pred, size = cache[w["model"]]
                pred.predict(w["items"][:8])  # warm-up
                seconds = best_time(lambda p=pred, items=w["items"]: p.predict(items), repeats=args.repeats)
                rows.append({"workload": w["name"], "task": w["task"], "backend": backend,
                             "items": len(w["items"]), "items_per_s": round(len(w["items"]) / seconds, 2),
                             "model_mb": round(size / 1e6, 1)})
                print(json.dumps(rows[-1]), file=sys.stderr)
        parity = {f"{m.name} {p}": r["parity"] for (m, p), r in reports.items()}
    return {"rows": rows, "export_parity": parity}


def plot(rows: list[dict], path: Path) -> None:
    """Grouped bars: items/s per workload for each backend, model size in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r["workload"] for r in rows))
    fig, ax = plt.subplots(figsize=(10, 4.5))
    width = 0.8 / len(BACKENDS)
    for i, backend in enumerate(BACKENDS):
        mine = {r["workload"]: r for r in rows if r["backend"] == backend}
        sizes = sorted({r["model_mb"] for r in mine.values()})
        xs = [j + i * width for j in range(len(names))]
        ax.bar(xs, [mine[n]["items_per_s"] for n in names], width,
               label=f"{backend} ({' / '.join(f'{s:.0f}' for s in sizes)} MB)")
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(names))], names)
    ax.set_ylabel("items / s (higher is better)")
    ax.set_title("distilkit Predictor by backend (dummy weights, real shapes)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=DEFAULT_SHARED, help="path of ../shared")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="where backends.json/.png go")
    parser.add_argument("--quick", action="store_true",
                        help="a quarter of the inputs (smoke check, not for quoting)")
    parser.add_argument("--repeats", type=int, default=2, help="timed repeats per cell (best is kept)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from distilkit.inference import runtime

    threads = runtime.set_threads()
    result = {
        "cpu": cpu_name(), "threads": threads, "load_average": os.getloadavg(),
        "fast_bf16": runtime.cpu_has_fast_bf16(), "quick": args.quick,
        "gemm_tflops": {"bf16": round(gemm_flops(torch.bfloat16) / 1e12, 3),
                          "fp32": round(gemm_flops(torch.float32) / 1e12, 3)},
        **run(args),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "backends.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(result["rows"], args.out / "backends.png")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
