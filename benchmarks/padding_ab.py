"""What skipping padding buys: the encoder on each batch's real tokens vs on the padded batch.

    python benchmarks/padding_ab.py                       # bf16 (the default here), int8, fp32 (~12 min)
    python benchmarks/padding_ab.py --dtypes auto --quick # a smoke check

``Predictor.run_batch`` runs the encoder's layers on the batch's real tokens only
(``selective.skip_padding``): the GEMMs never see padding, only attention pads the rows back into
sequences. How much that saves depends on how much padding a batch holds, so the workloads are
the two ways batches are made:

- *as they arrive* (a server's scheduler takes requests in arrival order): fill-mask texts in a
  fixed shuffled order, cut into batches of 8 or 32 rows: ~20-token WikiText-2 sentences (17-23
  tokens, the serving benchmark's), ~120-token paragraph prefixes, and a mix of the two (one text
  in five long);
- *planned* (``Predictor.run``, offline callers): rows sorted by length into token-budgeted
  batches, where little padding is left: 512 fill-mask sentences, 150 SQuAD v1.1 dev questions.

One process per dtype, one Predictor (distilbert-base-cased shapes, dummy weights), both modes
timed alternately round after round (``Predictor.skips_padding`` switched), best round each.
Writes ``padding_ab.json``.
"""

from __future__ import annotations

import argparse
import functools
import json
import random
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from inference import cpu_name
from workloads import fill_mask_texts, squad_questions

from distilkit.inference.predictor import Predictor

DEFAULT_SHARED = HERE.parent.parent / "shared"


def alternate(predictor: Predictor, work, items: int, rounds: int) -> dict:
    """Items/s of ``work()`` with padding skipped (``real``) and run (``padded``), best round each."""
    seen: dict[str, list[float]] = {"padded": [], "real": []}
    for _ in range(rounds):
        for mode, times in seen.items():
            predictor.skips_padding = mode == "real"
            start = time.perf_counter()
            work()
            times.append(items / (time.perf_counter() - start))
    predictor.skips_padding = True
    best = {mode: round(max(v), 1) for mode, v in seen.items()}
    return {**best, "ratio": round(best["real"] / best["padded"], 3),
            "rounds": {mode: [round(x, 1) for x in v] for mode, v in seen.items()}}


def arriving(predictor: Predictor, texts: list[str], rows: int, rounds: int) -> dict:
    """Batches of ``rows`` texts in the order given (no sorting), as a server's passes take them."""
    features = predictor.prepare(texts, {"top_k": 5}).features
    batches = [features[i:i + rows] for i in range(0, len(features), rows)]
    lengths = [[len(f) for f in b] for b in batches]
    padded = sum(len(b) * max(n) for b, n in zip(batches, lengths, strict=True))
    result = alternate(predictor, lambda: [predictor.run_batch(b) for b in batches], len(features), rounds)
    return {"rows_per_batch": rows, "padding_share": round(1 - sum(map(sum, lengths)) / padded, 3), **result}


def one_dtype(shared: Path, dtype: str, sizes: tuple[int, int, int, int], rounds: int) -> tuple[str, dict]:
    """Every workload on one engine: (its precision, {workload: result})."""
    n_short, n_long, n_sorted, n_qa = sizes
    models = shared / "models"
    fm = Predictor.from_ref(models / "distilbert-base-cased", "fill-mask", dummy_weights=True, dtype=dtype)
    short = fill_mask_texts(shared, fm.tokenizer, n_short, 20)
    long = fill_mask_texts(shared, fm.tokenizer, n_long, 120)
    mixed = short[: n_short // 2] + long[: n_short // 8]
    random.Random(0).shuffle(mixed)
    rows = {"fill-mask ~20 tokens, 8 per batch": arriving(fm, short, 8, rounds),
            "fill-mask ~20 tokens, 32 per batch": arriving(fm, short, 32, rounds),
            "fill-mask ~120 tokens, 8 per batch": arriving(fm, long, 8, rounds),
            "fill-mask, 1 in 5 texts ~120 tokens, 32 per batch": arriving(fm, mixed, 32, rounds)}
    planned = fm.prepare(fill_mask_texts(shared, fm.tokenizer, n_sorted, 20), {"top_k": 5}).features
    rows[f"fill-mask {n_sorted} x ~20 tokens, planned (run)"] = alternate(
        fm, functools.partial(fm.run, planned), len(planned), rounds)
    qa = Predictor.from_ref(models / "distilbert-base-cased-distilled-squad", "question-answering",
                            dummy_weights=True, dtype=dtype)
    questions = qa.prepare(squad_questions(shared, n_qa)).features
    rows[f"QA, {n_qa} SQuAD questions, planned (run)"] = alternate(
        qa, functools.partial(qa.run, questions), n_qa, rounds)
    return str(fm.engine.precision), rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=DEFAULT_SHARED)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--dtypes", default="auto,int8,float32")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    sizes = (64, 16, 64, 20) if args.quick else (256, 64, 512, 150)
    result = {"cpu": cpu_name(), "rounds": args.rounds, "by_dtype": {}}
    for dtype in args.dtypes.split(","):
        precision, rows = one_dtype(args.shared, dtype, sizes, args.rounds)
        result["by_dtype"][precision] = rows
        for name, row in rows.items():
            print(f"{precision:>9} {name}: real tokens {row['real']} vs padded {row['padded']} "
                  f"items/s ({row['ratio']}x)", file=sys.stderr, flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "padding_ab.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
