"""Runtimes: distilkit against ONNX Runtime (optimum) and OpenVINO (optimum-intel) within each
precision class, with the machine's GEMM limits measured in the same run. JSON + PNG.

    bash benchmarks/setup_runtimes.sh             # once: the peers' environment, .venv-rt
    python benchmarks/runtimes.py                 # full run, two rounds (~35 min on 2 cores)
    python benchmarks/runtimes.py --quick         # small workloads, one round (a smoke check)

Workloads as benchmarks/inference.py: fill-mask on distilbert-base-cased (512 WikiText-2
sentences of ~20 tokens, 128 paragraph cuts of ~120 tokens, one word masked) and extractive QA
on distilbert-base-cased-distilled-squad (300 SQuAD v1.1 dev questions with their contexts).
The real configs and tokenizers come from ../shared/models; the weights are random (speed does not
depend on their values), written once into one directory that every stack loads.

Classes: exact fp32 (distilkit PyTorch fp32, distilkit on its ONNX fp32 export, optimum ORT O3,
OpenVINO f32), bf16 (distilkit bf16, OpenVINO bf16) and int8 (distilkit int8 - PyTorch's oneDNN int8
engine on this CPU -, distilkit on its ONNX Runtime int8 graph, optimum ORT dynamic int8 for
AVX512-VNNI, OpenVINO NNCF int8). Each stack runs in its own process, one at a time;
``--rounds 2`` runs every stack twice (the VM drifts; both rounds are reported). Agreement is
each stack's share of decisions (fill-mask top-1, QA span) equal to distilkit fp32's on the same
weights; random weights make decisions fragile, so it is a check that a stack computes the same
function, and the accuracy cost of int8 on trained weights is in examples/real/quantize.py.
Efficiency: useful model FLOP/s (unpadded tokens; for fill-mask the last layer's queries, attention,
output and feed-forward and the vocabulary projection at the masks only: the work an answer needs,
``inference.useful_flops``) over the class's limit (fp32 / bf16 GEMM TFLOP/s, int8 ``torch._int_mm`` TOPS).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from inference import cpu_name, gemm_flops, useful_flops
from workloads import fill_mask_texts, squad_questions

DEFAULT_SHARED = HERE.parent.parent / "shared"
CLASSES = {
    "fp32": ["distilkit-float32", "distilkit-float32-onnx", "ort-fp32", "ov-f32"],
    "bf16": ["distilkit-bfloat16", "ov-bf16"],
    "int8": ["distilkit-int8", "distilkit-int8-onnx", "ort-int8", "ov-int8"],
}
REFERENCE = "distilkit-float32"
MODELS = {"fill-mask": "distilbert-base-cased", "question-answering": "distilbert-base-cased-distilled-squad"}


def int8_ops(n: int = 2048, reps: int = 10) -> float:
    """Best-of-3 int8 ops/s of an n x n ``torch._int_mm`` (int32 accumulation)."""
    a = torch.randint(-128, 127, (n, n), dtype=torch.int8)
    b = torch.randint(-128, 127, (n, n), dtype=torch.int8)
    for _ in range(3):
        torch._int_mm(a, b)
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(reps):
            torch._int_mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 * reps / best


def limits() -> dict[str, float]:
    """The machine's GEMM limits per class, ops/s (measured now: the VM's speed drifts)."""
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    return {"fp32": gemm_flops(torch.float32), "bf16": gemm_flops(torch.bfloat16), "int8": int8_ops()}


def write_models(shared: Path, work: Path) -> None:
    """The two models with seeded random weights, saved once: the one weights directory of every stack."""
    from distilkit.models import load_model, save_model_dir

    for task, name in MODELS.items():
        loaded = load_model(shared / "models" / name, task, dummy_weights=True, seed=0, dtype=torch.float32)
        save_model_dir(loaded.model, loaded.tokenizer, work / "models" / task)


def write_workloads(shared: Path, work: Path, quick: bool) -> dict:
    """Timed inputs, the calibration inputs of the static int8 peer (disjoint seed), token lengths."""
    from distilkit.inference.predictor import Predictor

    short, long, qa = (64, 16, 30) if quick else (512, 128, 300)
    fm = Predictor.from_ref(work / "models" / "fill-mask", "fill-mask", dtype="float32")
    qa_pred = Predictor.from_ref(work / "models" / "question-answering", "question-answering",
                                 dtype="float32")
    questions = squad_questions(shared, qa + 100)
    workloads = {
        "fill-mask ~20 tok": {"task": "fill-mask",
                              "items": fill_mask_texts(shared, fm.tokenizer, short, 20)},
        "fill-mask ~120 tok": {"task": "fill-mask",
                               "items": fill_mask_texts(shared, fm.tokenizer, long, 120)},
        "question-answering": {"task": "question-answering", "items": [
            {"question": q["question"], "context": q["context"]} for q in questions[:qa]]},
    }
    for w in workloads.values():
        pred = fm if w["task"] == "fill-mask" else qa_pred
        lengths = [len(f) for f in pred.prepare(w["items"]).features]
        masks = len(w["items"]) if w["task"] == "fill-mask" else 0
        w["windows"] = len(lengths)
        w["mean_tokens"] = round(sum(lengths) / len(lengths), 1)
        w["flops"] = useful_flops(pred.model.config, lengths, mlm_positions=masks)
    calibration = {
        "fill-mask": fill_mask_texts(shared, fm.tokenizer, 100, 40, seed=1),
        "question-answering": [{"question": q["question"], "context": q["context"]} for q in questions[qa:]],
    }
    spec = {"workloads": workloads, "calibration": calibration}
    (work / "workloads.json").write_text(json.dumps(spec))
    return spec


def peers_python(arg: str | None) -> str | None:
    default = HERE.parent / ".venv-rt" / "bin" / "python"
    for cand in (arg, os.environ.get("DISTILKIT_RUNTIMES_PYTHON"), str(default)):
        if cand and Path(cand).exists():
            return cand
    return None


def run_stack(stack: str, python: str, work: Path, rnd: int, args) -> dict | None:
    cmd = [python, str(HERE / "runtime_stacks.py"), "--stack", stack, "--work", str(work),
           "--round", str(rnd), "--repeats", str(args.repeats), "--batch-sizes", args.batch_sizes]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "DISTILKIT_HOME": str(work / "home")}
    t = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    sys.stderr.write(proc.stderr if proc.returncode else "".join(
        line + "\n" for line in proc.stderr.splitlines() if line.startswith("  ")))
    if proc.returncode:
        print(f"{stack}: failed (exit {proc.returncode}); left out", file=sys.stderr)
        return None
    print(f"{stack} round {rnd}: {time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)
    return json.loads((work / "results" / f"{stack}-{rnd}.json").read_text())


def agreement(a: list, b: list) -> float:
    return round(sum(x == y for x, y in zip(a, b, strict=True)) / len(a), 3)


def summarise(spec: dict, runs: dict[str, list[dict]], peaks: dict[str, float]) -> list[dict]:
    """One row per (workload, class): every stack's throughput per round, ratio to the best peer."""
    rows = []
    for name, w in spec["workloads"].items():
        n = len(w["items"])
        reference = runs.get(REFERENCE, [{}])[0].get("workloads", {}).get(name, {}).get("decisions")
        for cls, stacks in CLASSES.items():
            row = {"workload": name, "class": cls, "items": n, "windows": w["windows"],
                   "mean_tokens": w["mean_tokens"], "stacks": {}}
            for stack in stacks:
                if stack not in runs:
                    continue
                per_round = [r["workloads"][name] for r in runs[stack]]
                rates = [round(n / r["seconds"], 2) for r in per_round]
                best = min(r["seconds"] for r in per_round)
                row["stacks"][stack] = {
                    "per_s_by_round": rates, "per_s": max(rates), "batch_size": per_round[0]["batch_size"],
                    "fraction_of_limit": round(w["flops"] / best / peaks[cls], 3),
                    "agreement_with_fp32": (agreement(per_round[0]["decisions"], reference)
                                            if reference else None),
                }
            ours = {s: v for s, v in row["stacks"].items() if s.startswith("distilkit")}
            peers = {s: v for s, v in row["stacks"].items() if not s.startswith("distilkit")}
            if ours and peers:
                mine = max(ours, key=lambda s: ours[s]["per_s"])
                peer = max(peers, key=lambda s: peers[s]["per_s"])
                row["best_distilkit"], row["best_peer"] = mine, peer
                row["ratio"] = round(ours[mine]["per_s"] / peers[peer]["per_s"], 2)
                row["ratio_by_round"] = [
                    round(a / b, 2) for a, b in zip(ours[mine]["per_s_by_round"],
                                                    peers[peer]["per_s_by_round"], strict=False)]
            rows.append(row)
    return rows


def plot(rows: list[dict], path: Path) -> None:
    """Per workload, bars of every stack's throughput grouped by class, labelled with items/s."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r["workload"] for r in rows))
    fig, axes = plt.subplots(1, len(names), figsize=(5.2 * len(names), 4.6), squeeze=False)
    colors = {"fp32": "#9e9e9e", "bf16": "#6aa0cf", "int8": "#e08a3c"}
    for ax, name in zip(axes[0], names, strict=True):
        x, ticks, labels = 0.0, [], []
        for row in (r for r in rows if r["workload"] == name):
            for stack, v in row["stacks"].items():
                ours = stack.startswith("distilkit")
                ax.bar(x, v["per_s"], color=colors[row["class"]], edgecolor="black" if ours else "none",
                       linewidth=1.5, hatch="" if ours else "//")
                ax.text(x, v["per_s"], f"{v['per_s']:.0f}", ha="center", va="bottom", fontsize=7)
                ticks.append(x)
                labels.append(stack.replace("distilkit-", "dk-"))
                x += 1
            x += 0.6
        ax.set_xticks(ticks, labels, rotation=60, ha="right", fontsize=7)
        ax.set_title(name, fontsize=10)
        ax.set_ylabel("items / s")
    fig.suptitle("distilkit (outlined) vs ONNX Runtime and OpenVINO, per precision class, 2 CPU cores")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=DEFAULT_SHARED, help="path of ../shared")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="where runtimes.json/.png go")
    parser.add_argument("--peers-python", help="python of the peers' environment (default .venv-rt)")
    parser.add_argument("--rounds", type=int, default=2, help="times every stack is run (both reported)")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per workload inside a round")
    parser.add_argument("--batch-sizes", default="8,32", help="peer batch sizes tried per workload")
    parser.add_argument("--stacks", help="comma-separated subset of the stacks")
    parser.add_argument("--quick", action="store_true", help="small workloads, one round (not for quoting)")
    parser.add_argument("--work", type=Path, help="keep models/exports here (default: a temporary directory)")
    args = parser.parse_args()
    if args.quick:
        args.rounds = 1
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    stacks = [s for cls in CLASSES.values() for s in cls]
    if args.stacks:
        stacks = [s for s in stacks if s in args.stacks.split(",")]
    python = peers_python(args.peers_python)
    if python is None:
        print("peers skipped: no peers' environment (bash benchmarks/setup_runtimes.sh)", file=sys.stderr)
        stacks = [s for s in stacks if s.startswith("distilkit")]
    peaks = limits()
    print("limits: " + ", ".join(f"{k} {v / 1e12:.2f} T/s" for k, v in peaks.items()), file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        if not (work / "workloads.json").exists():
            write_models(args.shared, work)
            write_workloads(args.shared, work, args.quick)
        spec = json.loads((work / "workloads.json").read_text())
        runs: dict[str, list[dict]] = {}
        for rnd in range(1, args.rounds + 1):
            for stack in stacks:
                exe = sys.executable if stack.startswith("distilkit") else python
                result = run_stack(stack, exe, work, rnd, args)
                if result is not None:
                    runs.setdefault(stack, []).append(result)
        rows = summarise(spec, runs, peaks)
        prepare = {s: r[0]["prepare_s"] for s, r in runs.items()}
    import onnxruntime
    import transformers

    versions = {"torch": torch.__version__, "transformers": transformers.__version__,
                "onnxruntime": onnxruntime.__version__}
    if python:
        code = ("import json, importlib.metadata as m; print(json.dumps({p: m.version(p) for p in "
                "('optimum', 'optimum-onnx', 'optimum-intel', 'onnxruntime', 'openvino', 'nncf', "
                "'transformers')}))")
        out = subprocess.run([python, "-c", code], capture_output=True, text=True, check=False)
        versions["peers"] = json.loads(out.stdout)
    summary = {
        "machine": {"cpu": cpu_name(), "threads": len(os.sched_getaffinity(0)),
                    **{f"{k}_limit_tops": round(v / 1e12, 3) for k, v in peaks.items()}},
        "versions": versions, "quick": args.quick, "rounds": args.rounds,
        "prepare_s": prepare, "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "runtimes.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot(rows, args.out / "runtimes.png")
    for row in rows:
        if "ratio" in row:
            print(f"{row['workload']:>20} {row['class']:>4}: {row['best_distilkit']} / {row['best_peer']} = "
                  f"{row['ratio']}x {row['ratio_by_round']}", file=sys.stderr)


if __name__ == "__main__":
    main()
