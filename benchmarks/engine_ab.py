"""What each CPU kernel choice of the PyTorch engine buys: an in-process A/B on identical weights.

    python benchmarks/engine_ab.py                 # full run (~25 min on 2 cores)
    python benchmarks/engine_ab.py --quick         # small workloads, a smoke check

``Predictor.from_ref`` applies two CPU optimisations to a PyTorch model: ``runtime.prepack_linears``
(the encoder's GEMMs on weights held in oneDNN's blocked layout, the feed-forward GELU fused into the
first one) and, in bf16, ``runtime.use_bmm_attention`` (attention as two batched GEMMs). Runs in
separate processes differ by more than these gains on a VM whose speed drifts, so this benchmark
builds every variant in one process from the same weights and times them alternately, round after
round, on the workloads of ``benchmarks/inference.py`` (fill-mask 512 x ~20 and 128 x ~120 tokens on
distilbert-base-cased, 300 SQuAD v1.1 dev questions on distilbert-base-cased-distilled-squad; real
configs and tokenizers, dummy weights). Variants per dtype (float32, bfloat16):

- ``plain``: ``nn.Linear`` (``F.linear``) and PyTorch's fused attention (SDPA), as loaded;
- ``packed``: ``prepack_linears``;
- ``packed+bmm``: ``prepack_linears`` and ``use_bmm_attention``.

Reported per workload: items/s of each variant in each round, the ratio to ``plain`` (best round and
per round), and agreement with fp32 ``plain`` (fill-mask top-1 token, QA start/end) with the largest
score difference, so a faster variant that changes answers shows it. JSON in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from inference import cpu_name, gemm_flops
from workloads import fill_mask_texts, squad_questions

from distilkit.inference import runtime
from distilkit.inference.predictor import Predictor
from distilkit.models import load_model

DEFAULT_SHARED = HERE.parent.parent / "shared"
MODELS = {"fill-mask": "distilbert-base-cased", "question-answering": "distilbert-base-cased-distilled-squad"}
VARIANTS = ("plain", "packed", "packed+bmm")


def build(shared: Path, task: str, dtype: torch.dtype, variant: str) -> Predictor:
    """A Predictor on the task's model (seed-0 dummy weights) with ``variant``'s kernels."""
    loaded = load_model(shared / "models" / MODELS[task], task, dummy_weights=True, seed=0, dtype=dtype)
    predictor = Predictor(loaded)
    if variant != "plain":
        runtime.prepack_linears(predictor.model)
    if variant == "packed+bmm":
        runtime.use_bmm_attention(predictor.model)
    return predictor


def answer_key(task: str, out: dict | list) -> tuple:
    """What must not change: the top-1 token (fill-mask) or the span (QA)."""
    if task == "fill-mask":
        return (out[0]["token"],)
    return out["start"], out["end"]


def top_score(task: str, out: dict | list) -> float:
    return float(out[0]["score"] if task == "fill-mask" else out["score"])


def agreement(task: str, outs: list, refs: list) -> dict:
    same = sum(answer_key(task, o) == answer_key(task, r) for o, r in zip(outs, refs))
    diff = max(abs(top_score(task, o) - top_score(task, r)) for o, r in zip(outs, refs)
               if answer_key(task, o) == answer_key(task, r)) if same else None
    return {"agreement_with_fp32": round(same / len(refs), 4), "max_score_diff": diff}


def run_workload(task: str, items: list, predictors: dict[str, Predictor], rounds: int) -> dict:
    """Time every variant once per round, alternating; outputs of the last round kept for agreement."""
    for pred in predictors.values():
        pred.predict(items[:16])  # warm-up: packing, thread pools, first shapes
    per_s: dict[str, list[float]] = {name: [] for name in predictors}
    outputs: dict[str, list] = {}
    for r in range(rounds):
        for name, pred in predictors.items():
            t = time.perf_counter()
            outputs[name] = pred.predict(items)
            per_s[name].append(round(len(items) / (time.perf_counter() - t), 2))
        print(f"  round {r + 1}: " + ", ".join(f"{n} {v[-1]}/s" for n, v in per_s.items()), file=sys.stderr)
    ref = outputs["float32/plain"]
    result = {}
    for name, values in per_s.items():
        plain = per_s[name.split("/")[0] + "/plain"]
        result[name] = {
            "per_s_by_round": values,
            "per_s": max(values),
            "ratio_to_plain": round(max(values) / max(plain), 3),
            "ratio_to_plain_by_round": [round(v / p, 3) for v, p in zip(values, plain)],
            **agreement(task, outputs[name], ref),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=DEFAULT_SHARED, help="path of ../shared")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="where engine_ab.json goes")
    parser.add_argument("--dtypes", default="float32,bfloat16", help="comma-separated torch dtypes")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, from {VARIANTS}")
    parser.add_argument("--rounds", type=int, default=3, help="alternating timed rounds per workload")
    parser.add_argument("--quick", action="store_true", help="small workloads (smoke check, not for quoting)")
    args = parser.parse_args()
    runtime.set_threads(None)
    dtypes = [getattr(torch, d) for d in args.dtypes.split(",")]
    variants = [v for v in args.variants.split(",") if v]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}; choose from {VARIANTS}")
    if "plain" not in variants:
        variants.insert(0, "plain")
    short, long, qa = (32, 16, 24) if args.quick else (512, 128, 300)
    limits = {"fp32_gemm_tflops": gemm_flops(torch.float32) / 1e12,
              "bf16_gemm_tflops": gemm_flops(torch.bfloat16) / 1e12}
    print("limits: " + ", ".join(f"{k} {v:.2f}" for k, v in limits.items()), file=sys.stderr)
    rows = {}
    for task in MODELS:
        configs = [(torch.float32, "plain")] + [(dt, v) for dt in dtypes for v in variants
                                                 if (dt, v) != (torch.float32, "plain")]
        predictors = {f"{str(dt).removeprefix('torch.')}/{v}": build(args.shared, task, dt, v)
                      for dt, v in configs}  # fp32 plain is the reference either way
        tokenizer = next(iter(predictors.values())).tokenizer
        workloads = ({"fill-mask ~20 tok": fill_mask_texts(args.shared, tokenizer, short, 20),
                      "fill-mask ~120 tok": fill_mask_texts(args.shared, tokenizer, long, 120)}
                     if task == "fill-mask" else
                     {"question-answering": [{"question": q["question"], "context": q["context"]}
                                             for q in squad_questions(args.shared, qa)]})
        for name, items in workloads.items():
            print(f"{name} ({len(items)} items)", file=sys.stderr)
            rows[name] = run_workload(task, items, predictors, args.rounds)
        del predictors
    result = {"machine": {"cpu": cpu_name(), "threads": torch.get_num_threads(),
                          **{k: round(v, 3) for k, v in limits.items()}},
              "versions": {"torch": torch.__version__}, "quick": args.quick, "rounds": args.rounds,
              "workloads": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / ("engine_ab-quick.json" if args.quick else "engine_ab.json")
    path.write_text(json.dumps(result, indent=1) + "\n")
    for name, row in rows.items():
        print(name)
        for variant, r in row.items():
            print(f"  {variant:22s} {r['per_s']:8.1f}/s  x{r['ratio_to_plain']:.2f} of plain "
                  f"{r['ratio_to_plain_by_round']}  agreement {r['agreement_with_fp32']}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
