"""Parity on real weights: distilkit vs the transformers pipelines (fp32) on the fine-tuned real models.

    .venv/bin/python examples/real/parity.py            # on runs/real (after distill_tasks.py)
    .venv/bin/python examples/real/parity.py --quick    # on runs/real-quick, < 5 min

For each task's fine-tuned models in the run folder (the teacher, and the distilled student once
distill_tasks.py has run; a missing teacher is trained with the same command as there), the same
fp32 weights and the same test inputs go through ``distilkit.pipeline`` and ``transformers.pipeline``:

- text-classification (SST-2, emotion): top-1, and every label (``top_k=None``);
- token-classification (CoNLL-2003): each ``aggregation_strategy`` (none, simple, first, average, max);
- question-answering (SQuAD articles 39-48): the default and ``top_k=3``, against transformers
  4.57.1 (the last release with a QA pipeline) run in ``.venv-peer`` (``bash benchmarks/setup_peer.sh``);
  without it this task is reported as not compared;
- fill-mask: no real model here has a masked-LM head (all-MiniLM-L6-v2 is a bare encoder).

An input matches when every label, word, offset and answer span is identical and every score is
within 1e-4. Writes ``OUT/parity.json`` and ``OUT/parity.md``; exits 1 when a compared input differs.
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

from common import (
    ROOT,
    TASKS,
    BudgetReached,
    inputs_for,
    open_run,
    show,
    study_models,
    study_parser,
    train_teacher,
)

TOL = 1e-4
PEER = ROOT / ".venv-peer" / "bin" / "python"
PARAMS = {
    "text-classification": [{}, {"top_k": None}],
    "token-classification": [
        {"aggregation_strategy": s} for s in ("none", "simple", "first", "average", "max")
    ],
    "question-answering": [{}, {"top_k": 3}],
}


def parse_args() -> argparse.Namespace:
    p = study_parser(__doc__, TASKS)
    p.add_argument("--inputs", type=int, default=300, help="test inputs per task (QA: a third)")
    p.add_argument("--teacher-lr", type=float, default=1e-4, help="learning rate of a teacher trained here")
    p.add_argument("--batch-size", type=int, default=32, help="batch of a teacher trained here")
    p.add_argument("--budget-min", type=float, default=None, help="stop after about this many minutes")
    p.add_argument("--quick", action="store_true", help="smoke run on the quick run folder, 16 inputs")
    return p.parse_args()


def main() -> int:
    args = parse_args()
    out, runner, files = open_run(args)
    start, rows = time.perf_counter(), []
    try:
        for key in args.tasks.split(","):
            task = TASKS[key]
            train_teacher(runner, args.shared, out / key, task, files[key]["train"], args.quick,
                          args.teacher_lr, args.batch_size)
            n = 16 if args.quick else (
                args.inputs // 3 if task.task == "question-answering" else args.inputs
            )
            items = inputs_for(task, files[key]["test"], n)
            for name, model in study_models(out, key).items():
                rows.extend(compare(task, key, name, model, items))
    except BudgetReached:
        print("\n--budget-min reached: trainings are kept; run the same command again to continue",
              flush=True)
        return 3
    rows.append({"task": "fill-mask", "data": "-", "model": "-", "params": "-", "inputs": 0,
                 "matching": None, "max_score_diff": None,
                 "reference": "not compared: no real model with a masked-LM head here"})
    results = {"tolerance": TOL, "rows": rows, "seconds": round(time.perf_counter() - start, 1)}
    (out / "parity.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    table = results_table(rows)
    (out / "parity.md").write_text(table, encoding="utf-8")
    print("\n" + table + f"\nresults in {out / 'parity.json'} and {out / 'parity.md'}")
    return 0 if all(r["matching"] in (None, r["inputs"]) for r in rows) else 1  # None: not compared


def compare(task, key: str, name: str, model: Path, items: list) -> list[dict]:
    """One row per parameter set: how many inputs give identical outputs, and the largest score gap."""
    import distilkit

    ours = distilkit.pipeline(task.task, model=str(model), dtype="float32")
    reference, version = reference_outputs(task.task, model, items)
    rows = []
    for params, ref in zip(PARAMS[task.task], reference, strict=True):
        if ref is None:
            rows.append(row(task, key, name, params, items, None, None, version))
            continue
        if task.task == "question-answering":
            got = ours(question=[i["question"] for i in items], context=[i["context"] for i in items],
                       **params)
            got = [g if isinstance(g, list) else [g] for g in got]
        else:
            got = ours(items, **params)
        checks = [same(g, r) for g, r in zip(got, ref, strict=True)]
        matching = sum(ok for ok, _ in checks)
        rows.append(row(task, key, name, params, items, matching, max(d for _, d in checks), version))
        print(f"   {key} {name} {params}: {matching}/{len(items)} identical, max score diff "
              f"{rows[-1]['max_score_diff']:.2e}", flush=True)
    return rows


def row(task, key, name, params, items, matching, diff, version) -> dict:
    return {"task": task.task, "data": TASKS[key].title, "model": name, "params": json.dumps(params),
            "inputs": len(items), "matching": matching, "max_score_diff": diff, "reference": version}


def reference_outputs(task: str, model: Path, items: list) -> tuple[list, str]:
    """transformers' outputs per parameter set (None where no reference is available) and its version."""
    import transformers

    if task != "question-answering":
        pipe = transformers.pipeline(task, model=str(model), device=-1)
        return [pipe(items, **params) for params in PARAMS[task]], f"transformers {transformers.__version__}"
    if not PEER.exists():
        print(f"   no {PEER}: QA is not compared (bash benchmarks/setup_peer.sh makes it)")
        return [None] * len(PARAMS[task]), "not compared: no .venv-peer (benchmarks/setup_peer.sh)"
    show(["(reference)", f"{PEER} examples/real/peer_qa.py: transformers 4.57.1's QA pipeline"])
    with tempfile.TemporaryDirectory() as tmp:
        request, answer = Path(tmp) / "request.json", Path(tmp) / "answer.json"
        request.write_text(json.dumps({"model": str(model), "questions": [i["question"] for i in items],
                                       "contexts": [i["context"] for i in items], "params": PARAMS[task]}))
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
        subprocess.run([str(PEER), str(Path(__file__).with_name("peer_qa.py")), str(request), str(answer)],
                       check=True, env=env)
        done = json.loads(answer.read_text())
    return done["grid"], f"transformers {done['version']}"


def same(ours, ref) -> tuple[bool, float]:
    """(identical apart from scores within TOL, largest score difference) of two pipeline outputs."""
    if isinstance(ref, list):
        if not isinstance(ours, list) or len(ours) != len(ref):
            return False, float("inf")
        checks = [same(a, b) for a, b in zip(ours, ref)]
        return all(ok for ok, _ in checks), max((d for _, d in checks), default=0.0)
    if not isinstance(ours, dict) or list(ours) != list(ref):
        return False, float("inf")
    diff = abs(float(ours["score"]) - float(ref["score"])) if "score" in ref else 0.0
    rest = all(ours[k] == ref[k] for k in ref if k != "score")
    return rest and diff <= TOL, diff


def results_table(rows: list[dict]) -> str:
    lines = ["| task | data | model | parameters | identical outputs | max score diff | reference |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        diff = "-" if r["max_score_diff"] is None else f"{r['max_score_diff']:.1e}"
        got = "-" if r["matching"] is None else f"{r['matching']}/{r['inputs']}"
        lines.append(f"| {r['task']} | {r['data']} | {r['model']} | `{r['params']}` | {got} | {diff} "
                     f"| {r['reference']} |")
    lines += ["", (f"Identical: the same labels, words, character offsets and answer spans in the same "
                   f"order, every score within {TOL:g} (fp32 weights on both sides, distilkit.pipeline vs "
                   f"transformers.pipeline)."),
              ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
