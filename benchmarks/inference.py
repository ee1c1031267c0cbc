"""Inference throughput: distilkit vs the transformers pipelines on real shapes, one run, JSON + PNG.

    python benchmarks/inference.py                # full run (~7 min on 2 cores)
    python benchmarks/inference.py --quick        # smaller workloads, a smoke check

Workloads (real configs/tokenizers from ../shared/models, dummy weights; speed does not depend
on weight values): fill-mask on distilbert-base-cased, 512 sentences of ~20 tokens and 128 of
~120 tokens cut from WikiText-2 with one word masked; question-answering on
distilbert-base-cased-distilled-squad, 300 SQuAD v1.1 dev questions with their contexts.

The peer is ``transformers.pipeline`` at its best ``batch_size`` (default fp32, and bf16 for
reference). transformers 5 has no question-answering pipeline, so the QA peer is 4.57.1's,
run in a side environment (``bash benchmarks/setup_peer.sh`` makes ``.venv-peer``).
Efficiency = achieved useful model FLOP/s ÷ the bf16 GEMM peak measured in the same run (``gemm_flops``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from workloads import fill_mask_texts, squad_questions

DEFAULT_SHARED = HERE.parent.parent / "shared"
PEER_BATCH_SIZES = (1, 8, 32, 64)


def cpu_name() -> str:
    """The CPU model name from /proc/cpuinfo (the architecture name elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def gemm_flops(dtype: torch.dtype, n: int = 2048, reps: int = 10) -> float:
    """The machine's practical GEMM peak in ``dtype``, FLOP/s: the faster of ``torch.matmul`` and
    oneDNN's GEMM on a prepacked weight (``runtime.prepack_linears``'s kernel), best of 3, n x n.

    Both count: on AMD CPUs the MKL GEMM behind ``torch.matmul`` runs fp32 at about half the rate
    of oneDNN's, so a matmul-only "peak" would be exceeded by the engines that use oneDNN.
    """
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    candidates = [lambda: a @ b]
    if torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise"):
        packed = torch.ops.mkldnn._reorder_linear_weight(b, None)
        candidates.append(lambda: torch.ops.mkldnn._linear_pointwise(a, packed, None, "none", [], ""))
    best = float("inf")
    for fn in candidates:
        for _ in range(3):
            fn()
        for _ in range(3):
            t = time.perf_counter()
            for _ in range(reps):
                fn()
            best = min(best, time.perf_counter() - t)
    return 2 * n**3 * reps / best


def encoder_dims(config) -> tuple[int, int, int]:
    """(layers, hidden, ffn) of a DistilBERT/BERT/RoBERTa config."""
    if hasattr(config, "dim"):
        return config.n_layers, config.dim, config.hidden_dim
    return config.num_hidden_layers, config.hidden_size, config.intermediate_size


def useful_flops(config, lengths: list[int], mlm_positions: int = 0) -> float:
    """The forward FLOPs an answer needs, on unpadded sequences.

    QA (``mlm_positions=0``) needs every position of every layer. Fill-mask (one mask per
    sequence, ``mlm_positions`` = the number of sequences) needs the last layer's output and the
    vocabulary head only at the masks: every token's keys and values there, the rest of that
    layer (query, attention, output projection, feed-forward) for the mask rows alone.
    """
    layers, h, f = encoder_dims(config)

    def layer(t: int, rows: int) -> int:  # ``rows`` of ``t`` tokens computed in full
        return 4 * t * h * h + 4 * rows * h * h + 4 * rows * h * f + 4 * rows * t * h

    if not mlm_positions:
        return sum(layers * layer(t, t) for t in lengths)
    if mlm_positions != len(lengths):
        raise ValueError("fill-mask FLOPs assume one mask per sequence")
    encoder = sum((layers - 1) * layer(t, t) + layer(t, 1) for t in lengths)
    return encoder + mlm_positions * (2 * h * h + 2 * h * config.vocab_size)


def best_time(fn, repeats: int = 2) -> float:
    """Fastest of ``repeats`` timed calls (after the caller's warm-up)."""
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def peer_fill_mask(model, tokenizer, texts: list[str], batch_sizes, dtype: torch.dtype) -> dict:
    """Time transformers.pipeline("fill-mask") at each batch size; return all and the best."""
    from transformers import pipeline

    peer_model = model.to(dtype)
    pipe = pipeline("fill-mask", model=peer_model, tokenizer=tokenizer, device=-1)
    pipe(texts[:8], batch_size=8)  # warm-up
    seconds = {}
    for bs in batch_sizes:
        t = time.perf_counter()
        pipe(texts, batch_size=bs)
        seconds[bs] = time.perf_counter() - t
        print(f"  peer fill-mask {dtype} batch_size={bs}: {len(texts) / seconds[bs]:.1f} seq/s",
              file=sys.stderr)
    best = min(seconds, key=seconds.get)
    return {"seconds_by_batch_size": seconds, "best_batch_size": best, "seconds": seconds[best]}


def peer_python(arg: str | None) -> str | None:
    """The interpreter with transformers 4.57.1 for the QA peer, if one is available."""
    for cand in (arg, os.environ.get("DISTILKIT_QA_PEER_PYTHON"),
                 str(HERE.parent / ".venv-peer" / "bin" / "python")):
        if cand and Path(cand).exists():
            return cand
    return None


def run_fill_mask(args, shared: Path, peak: float) -> list[dict]:
    from distilkit.inference.predictor import Predictor

    ref = shared / "models" / "distilbert-base-cased"
    predictor = Predictor.from_ref(ref, "fill-mask", dummy_weights=True, dtype=args.dtype)
    results, inputs = [], []
    for name, n, tokens in (("fill-mask ~20 tok", args.short, 20), ("fill-mask ~120 tok", args.long, 120)):
        texts = fill_mask_texts(shared, predictor.tokenizer, n, tokens)
        lengths = [len(f) for f in predictor.prepare(texts).features]
        flops = useful_flops(predictor.model.config, lengths, mlm_positions=len(texts))
        predictor.predict(texts[:32])  # warm-up
        ours = best_time(lambda texts=texts: predictor.predict(texts))
        print(f"{name}: distilkit {n / ours:.1f} seq/s", file=sys.stderr)
        fp32_model = predictor.model.float()  # same weights, the peer's default precision
        peer = peer_fill_mask(fp32_model, predictor.tokenizer, texts, args.peer_batch_sizes, torch.float32)
        peer_bf16 = peer_fill_mask(fp32_model, predictor.tokenizer, texts, [peer["best_batch_size"]],
                                   torch.bfloat16)
        predictor.model.to(predictor.dtype)
        results.append(report(name, n, lengths, flops, ours, peer, peer_bf16, peak))
        inputs.append((texts, flops))
    if args.compile:
        add_compiled(args, ref, "fill-mask", results, inputs, peak)
    return results


def run_question_answering(args, shared: Path, peak: float) -> dict:
    from distilkit.inference.predictor import Predictor

    ref = shared / "models" / "distilbert-base-cased-distilled-squad"
    predictor = Predictor.from_ref(ref, "question-answering", dummy_weights=True, dtype=args.dtype)
    rows = squad_questions(shared, args.qa)
    items = [{"question": r["question"], "context": r["context"]} for r in rows]
    features = predictor.prepare(items).features
    lengths = [len(f) for f in features]
    long_contexts = sum(len(predictor.tokenizer(r["context"], verbose=False)["input_ids"]) > 384
                        for r in rows)
    flops = useful_flops(predictor.model.config, lengths)
    predictor.predict(items[:16])
    ours = best_time(lambda items=items: predictor.predict(items))
    print(f"question-answering: distilkit {len(items) / ours:.1f} q/s", file=sys.stderr)
    peer = peer_bf16 = None
    python = peer_python(args.peer_python)
    if python is None:
        print("  QA peer skipped: no transformers 4.57.1 environment (bash benchmarks/setup_peer.sh)",
              file=sys.stderr)
    else:
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(items, f)
        cmd = [python, str(HERE / "qa_peer.py"), "--model", str(ref), "--questions", f.name]
        peer = run_qa_peer(cmd + ["--batch-sizes", ",".join(map(str, args.peer_batch_sizes))])
        peer_bf16 = run_qa_peer(cmd + ["--batch-sizes", str(peer["best_batch_size"]), "--dtype", "bfloat16"])
        os.unlink(f.name)
        print(f"  peer QA (transformers {peer['transformers']}): {len(items) / peer['seconds']:.1f} q/s",
              file=sys.stderr)
    row = report("question-answering", len(items), lengths, flops, ours, peer, peer_bf16, peak)
    row["windows"] = len(features)
    row["contexts_over_384_tokens"] = long_contexts
    if args.compile:
        add_compiled(args, ref, "question-answering", [row], [(items, flops)], peak)
    return row


def add_compiled(args, ref: Path, task: str, rows: list[dict], inputs: list[tuple], peak: float) -> None:
    """Measure distilkit with ``compile=True`` (a fresh model, so no peer ever runs compiled code)."""
    from distilkit.inference.predictor import Predictor

    predictor = Predictor.from_ref(ref, task, dummy_weights=True, dtype=args.dtype, compile=True)
    t = time.perf_counter()
    predictor.predict(inputs[0][0][:16])  # the first batch pays for compilation
    warmup = time.perf_counter() - t
    for row, (items, flops) in zip(rows, inputs, strict=True):
        predictor.predict(items[:64])
        ours = best_time(lambda items=items: predictor.predict(items))
        print(f"{row['workload']}: distilkit compiled {len(items) / ours:.1f} seq/s", file=sys.stderr)
        row["distilkit_compiled_seq_per_s"] = round(len(items) / ours, 2)
        row["distilkit_compiled_fraction_of_bf16_peak"] = round(flops / ours / peak, 3)
        row["compile_warmup_s"] = round(warmup, 1)
        if row.get("peer_seq_per_s"):
            row["speedup_compiled"] = round(row["distilkit_compiled_seq_per_s"] / row["peer_seq_per_s"], 2)


def run_qa_peer(cmd: list[str]) -> dict:
    """Run benchmarks/qa_peer.py in the peer environment; its last stdout line is JSON."""
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def report(name, n, lengths, flops, ours, peer, peer_bf16, peak) -> dict:
    """One workload's JSON row: throughput of both, ratio, achieved FLOP/s and share of the peak."""
    row = {
        "workload": name,
        "sequences": n,
        "mean_tokens": round(sum(lengths) / len(lengths), 1),
        "distilkit_seq_per_s": round(n / ours, 2),
        "distilkit_tflops": round(flops / ours / 1e12, 4),
        "distilkit_fraction_of_bf16_peak": round(flops / ours / peak, 3),
    }
    if peer is not None:
        row.update({
            "peer": ("transformers.pipeline fp32"
                     + (f" ({peer['transformers']})" if "transformers" in peer else "")),
            "peer_best_batch_size": peer["best_batch_size"],
            "peer_seq_per_s": round(n / peer["seconds"], 2),
            "peer_seq_per_s_by_batch_size": {str(k): round(n / v, 2)
                                             for k, v in peer["seconds_by_batch_size"].items()},
            "speedup": round(peer["seconds"] / ours, 2),
            "peer_tflops": round(flops / peer["seconds"] / 1e12, 4),
        })
    if peer_bf16 is not None:
        row["peer_bf16_seq_per_s"] = round(n / peer_bf16["seconds"], 2)
        row["speedup_vs_peer_bf16"] = round(peer_bf16["seconds"] / ours, 2)
    return row


def plot(rows: list[dict], path: Path) -> None:
    """Bars of throughput relative to the fp32 pipeline per workload, labelled with sequences/s."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.4))
    width = 0.2
    series = (("pipeline fp32 (best batch size)", "peer_seq_per_s", "#9e9e9e"),
              ("pipeline bf16", "peer_bf16_seq_per_s", "#cfcfcf"),
              ("distilkit", "distilkit_seq_per_s", "#2a7ab9"),
              ("distilkit compile=True", "distilkit_compiled_seq_per_s", "#14466e"))
    for i, row in enumerate(rows):
        base = row.get("peer_seq_per_s") or row["distilkit_seq_per_s"]
        for j, (label, key, color) in enumerate(series):
            value = row.get(key)
            if value is None:
                continue
            x = i + (j - 1.5) * width
            ax.bar(x, value / base, width, color=color, label=label if i == 0 else None)
            ax.text(x, value / base, f"{value / base:.1f}×\n{value:.0f}/s", ha="center", va="bottom",
                    fontsize=8)
    ax.set_xticks(range(len(rows)), [r["workload"] for r in rows])
    ax.set_ylabel("throughput relative to the fp32 pipeline")
    top = max(max(r["distilkit_seq_per_s"], r.get("distilkit_compiled_seq_per_s", 0))
              / (r.get("peer_seq_per_s") or 1) for r in rows)
    ax.set_ylim(0, top * 1.3)
    ax.set_title("distilkit vs transformers.pipeline, 2 CPU cores (labels: sequences/s)")
    ax.legend(frameon=False, loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=DEFAULT_SHARED, help="path of ../shared")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="where inference.json/.png go")
    parser.add_argument("--dtype", default="auto", help="distilkit precision (auto = bf16 where fast)")
    parser.add_argument("--peer-python", help="python with transformers==4.57.1 for the QA peer")
    parser.add_argument("--quick", action="store_true", help="small workloads (smoke check, not for quoting)")
    parser.add_argument("--no-compile", dest="compile", action="store_false",
                        help="skip the compile=True runs")
    args = parser.parse_args()
    args.short, args.long, args.qa = (64, 16, 30) if args.quick else (512, 128, 300)
    args.peer_batch_sizes = (1, 8) if args.quick else PEER_BATCH_SIZES
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from distilkit.inference import runtime

    threads = runtime.set_threads()
    peak_bf16 = gemm_flops(torch.bfloat16)
    peak_fp32 = gemm_flops(torch.float32)
    print(f"GEMM peak: bf16 {peak_bf16 / 1e12:.2f} TFLOP/s, fp32 {peak_fp32 / 1e12:.2f}", file=sys.stderr)
    rows = (run_fill_mask(args, args.shared, peak_bf16)
            + [run_question_answering(args, args.shared, peak_bf16)])
    import transformers

    summary = {
        "machine": {"cpu": cpu_name(), "threads": threads,
                    "bf16_gemm_tflops": round(peak_bf16 / 1e12, 3),
                    "fp32_gemm_tflops": round(peak_fp32 / 1e12, 3)},
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "quick": args.quick,
        "workloads": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "inference.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot(rows, args.out / "inference.png")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
