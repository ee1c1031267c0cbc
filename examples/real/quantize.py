"""Quantisation on real models: what torch bf16, torch int8, ONNX fp32 and ONNX int8 cost and give, per model.

    .venv/bin/python examples/real/quantize.py                 # after distill_tasks.py (minutes: README)
    .venv/bin/python examples/real/quantize.py --quick         # smoke run on runs/real-quick, < 5 min
    .venv/bin/python examples/real/quantize.py --budget-min 9  # stop after ~9 min; run again to go on

For each task's fine-tuned models in the run folder (the teacher, and the distilled student once
distill_tasks.py has run; a missing teacher is trained with the same command as there):

- torch fp32 and torch bf16: ``distilkit evaluate --dtype float32|bfloat16``;
- torch int8: ``distilkit evaluate --dtype int8`` (PyTorch's oneDNN int8 engine, calibrated at load on
  distilkit's built-in texts; on a CPU without VNNI/AMX this is ONNX Runtime's int8 graph instead);
- ONNX fp32: ``distilkit export onnx`` (its logits checked against PyTorch within 1e-4), evaluated;
- ONNX int8: ``distilkit export onnx --quantize int8`` (dynamic quantization), evaluated.

Reported per variant: the task metric on the same test set, size on disk (bf16 and torch int8 have no
file of their own: distilkit converts the fp32 weights at load, so their size is what the weights
take in memory: bf16, or int8 encoder GEMMs with the rest in bf16), items/s
through the Predictor on the same test inputs, and the share of test predictions that differ
from fp32's (labels, word tags or answer texts). Writes ``OUT/quantize.json`` and ``OUT/quantize.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

from common import (
    TASKS,
    BudgetReached,
    Runner,
    inputs_for,
    items_per_second,
    open_run,
    read_predictions,
    score,
    show,
    study_models,
    study_parser,
    train_teacher,
)

VARIANTS = ("torch fp32", "torch bf16", "torch int8", "ONNX fp32", "ONNX int8")
TAGS = {"torch fp32": "float32", "torch bf16": "bfloat16", "torch int8": "int8", "ONNX fp32": "onnx-fp32",
        "ONNX int8": "onnx-int8"}
INT8_VARIANTS = ("torch int8", "ONNX int8")


def parse_args() -> argparse.Namespace:
    p = study_parser(__doc__, TASKS)
    p.add_argument("--teacher-lr", type=float, default=1e-4, help="learning rate of a teacher trained here")
    p.add_argument("--batch-size", type=int, default=32, help="batch of a teacher trained here")
    p.add_argument("--speed-inputs", type=int, default=128, help="test inputs timed per task (QA: half)")
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)), help="CPU threads")
    p.add_argument("--budget-min", type=float, default=None, help="stop after about this many minutes")
    p.add_argument("--models", default="teacher,distilled student", help="which of each task's models")
    p.add_argument("--quick", action="store_true", help="smoke run on the quick run folder, 64 test examples")
    return p.parse_args()


def main() -> int:
    args = parse_args()
    out, runner, files = open_run(args, args.threads)
    results = {"settings": {"quick": args.quick, "threads": args.threads}, "tasks": {}}
    try:
        for key in args.tasks.split(","):
            task = TASKS[key]
            print(f"\n===== {task.title}", flush=True)
            train_teacher(runner, args.shared, out / key, task, files[key]["train"], args.quick,
                          args.teacher_lr, args.batch_size)
            results["tasks"][key] = {name: study(args, runner, out / key, key, model, files[key]["test"])
                                     for name, model in study_models(out, key).items()
                                     if name in args.models.split(",")}
    except BudgetReached:
        print(f"\n--budget-min {args.budget_min} reached: finished steps are kept; run the same command "
              "again to continue", flush=True)
        return 3
    results["minutes"] = round(
        runner.minutes("export") + runner.minutes("evaluate") + runner.minutes("speed"), 1
    )
    (out / "quantize.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    table = results_table(results)
    (out / "quantize.md").write_text(table, encoding="utf-8")
    print("\n" + table + f"\nresults in {out / 'quantize.json'} and {out / 'quantize.md'}")
    return 0


def export(runner: Runner, model: Path, target: Path, int8: bool) -> dict:
    """``distilkit export onnx`` (reused when done); returns its report."""
    report = target / "distilkit_export.json"
    if not report.exists():
        args = ["export", "onnx", "--model", str(model), "--output", str(target), "--overwrite"]
        runner.record(f"export {target}",
                      runner.run(args + (["--quantize", "int8"] if int8 else []), in_process=True))
    else:
        show(["export", "onnx", "--model", str(model), "--output", str(target)],
             note="(done before; reusing it)")
    return json.loads(report.read_text())


def study(args: argparse.Namespace, runner: Runner, root: Path, key: str, model: Path, test: Path) -> dict:
    """The four variants of one model: metric, size, speed, predictions changed vs fp32."""
    from distilkit.inference.predictor import Predictor

    task = TASKS[key]
    limit = 64 if args.quick else None
    onnx = {"ONNX fp32": root / "onnx" / f"{model.name}-fp32",
            "ONNX int8": root / "onnx" / f"{model.name}-int8"}
    reports = {name: export(runner, model, path, name.endswith("int8")) for name, path in onnx.items()}
    weights = (model / "model.safetensors").stat().st_size
    sources = {"torch fp32": (model, "float32"), "torch bf16": (model, "bfloat16"),
               "torch int8": (model, "int8"), "ONNX fp32": (onnx["ONNX fp32"], "float32"),
               "ONNX int8": (onnx["ONNX int8"], "float32")}
    sizes = {"torch fp32": weights, "torch bf16": weights // 2, "torch int8": int8_bytes(model),
             **{n: (p / "model.onnx").stat().st_size for n, p in onnx.items()}}
    n = 32 if args.quick else (
        args.speed_inputs // 2 if task.task == "question-answering" else args.speed_inputs
    )
    items = inputs_for(task, test, n)
    rows, reference = {}, None
    for name in VARIANTS:
        path, dtype = sources[name]
        metrics = root / "eval" / f"{model.name}-{TAGS[name]}.json"  # torch fp32: the distillation study's
        summary = runner.evaluate(task, path, test, metrics, dtype=dtype, limit=limit)
        predicted = read_predictions(metrics)
        reference = reference or predicted
        changed = sum(a != b for a, b in zip(predicted, reference)) / len(reference)
        rows[name] = {"score": score(summary, task), "size_mb": round(sizes[name] / 1e6, 1),
                      "changed_vs_fp32": round(changed, 4)}
    show(["(speed)", (f"{', '.join(VARIANTS)}: {len(items)} test inputs through the Predictor, "
                      f"{args.threads} threads")])
    start = time.perf_counter()
    predictors = {name: Predictor.from_ref(str(path), task.task, dtype=dtype, num_threads=args.threads)
                  for name, (path, dtype) in sources.items()}
    for name, (per_s, model_per_s) in items_per_second(predictors, items, repeats=3).items():
        rows[name].update(items_per_s=round(per_s, 1), model_items_per_s=round(model_per_s, 1))
        print(f"   {name}: {task.metric} {rows[name]['score']:.4f}, {rows[name]['items_per_s']}/s")
    runner.record(f"speed {root / model.name}", time.perf_counter() - start)
    int8_parity = reports["ONNX int8"]["parity"].get("int8", {})
    return {"metric": task.metric_name, "variants": rows, "export_parity": {
        "fp32_max_abs_diff": reports["ONNX fp32"]["parity"]["float32"]["max_abs_diff"],
        "int8_agreement": {k: v for k, v in int8_parity.items() if k != "shapes"}}}


def int8_bytes(model: Path) -> int:
    """Bytes of ``model``'s weights as the torch int8 engine holds them: the encoder layers' GEMM
    weights in int8, every other tensor in bf16."""
    from safetensors import safe_open

    from distilkit.inference.quantized import is_encoder_gemm_weight

    total = 0
    with safe_open(model / "model.safetensors", framework="pt") as f:
        for name in f.keys():  # noqa: SIM118 - safe_open has no iterator
            shape = f.get_slice(name).get_shape()
            total += math.prod(shape) * (1 if is_encoder_gemm_weight(name, len(shape)) else 2)
    return total


def results_table(results: dict) -> str:
    lines = [
        "| task (metric) | model | " + " | ".join(VARIANTS) + " | int8 cost (torch / ONNX) "
        "| int8 changes (torch / ONNX) |",
        "|---|---|" + "---|" * len(VARIANTS) + "---|---|",
    ]
    for key, models in results["tasks"].items():
        for name, r in models.items():
            v = r["variants"]
            cells = [f"{fmt(v[n]['score'])}, {v[n]['size_mb']:.0f} MB, {v[n]['items_per_s']:.0f}/s"
                     for n in VARIANTS]
            cost = " / ".join(f"{v[n]['score'] - v['torch fp32']['score']:+.4f}" for n in INT8_VARIANTS)
            changes = " / ".join(f"{100 * v[n]['changed_vs_fp32']:.1f}%" for n in INT8_VARIANTS)
            lines.append(f"| {TASKS[key].title} ({r['metric']}) | {name} | " + " | ".join(cells)
                         + f" | {cost} | {changes} |")
    lines += ["", ("Each cell: score on the test set, size on disk (bf16: in memory), items/s through the "
                   f"Predictor ({results['settings']['threads']} threads, same inputs). int8 cost: int8 "
                   "score minus fp32 score (torch int8 / ONNX int8); int8 changes: test predictions "
                   "that differ from fp32's."), ""]
    return "\n".join(lines)


def fmt(score: float) -> str:
    return f"{score:.2f}" if score > 1 else f"{score:.4f}"


if __name__ == "__main__":
    sys.exit(main())
