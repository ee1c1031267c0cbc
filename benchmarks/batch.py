"""Batch prediction throughput: ``distilkit predict --input/--output`` vs in-process and a plain loop.

    python benchmarks/batch.py                 # 2000 WikiText-2 sentences (~25 tokens, one [MASK] each)
    python benchmarks/batch.py --rows 300      # a quick run
    python benchmarks/batch.py --ray           # also --engine ray with 2 workers (needs distilkit[ray])

Model: the real distilbert-base-cased architecture and tokenizer from ../shared/models with dummy
weights (speed does not depend on the weights). The rows are written to a temporary JSONL at run
time. Measured in one run on one machine:
- ``cli``: ``distilkit predict fill-mask --input rows.jsonl --output out.jsonl`` as a subprocess;
  rows/s of its prediction loop (its JSON summary: read, validate, predict, write, fsync) and of
  the whole command (model loading included);
- ``in_process``: ``Predictor.predict`` on all rows at once, no file I/O (the ceiling);
- ``plain_loop``: a loop over ``transformers.pipeline("fill-mask")``, one row at a time, writing
  JSONL (what users write first), fp32.
Prints JSON; targets: cli >= 3x plain_loop, cli loop >= 90% of in_process.
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from workloads import fill_mask_texts


def run_cli(ref: Path, src: Path, dst: Path, *extra: str) -> dict:
    """Run ``distilkit predict`` on ``src``; return its summary plus the command's wall time."""
    cmd = [sys.executable, "-m", "distilkit", "predict", "fill-mask", "--model", str(ref), "--dummy-weights",
           "--input", str(src), "--output", str(dst), "--overwrite", *extra]
    t = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t
    if done.returncode != 0:
        raise SystemExit(f"distilkit predict failed: {done.stderr[-2000:]}")
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    return {**summary, "wall_seconds": round(wall, 3), "wall_rows_per_s": round(summary["rows"] / wall, 2)}


def plain_loop(ref: Path, texts: list[str], dst: Path) -> float:
    """rows/s of a per-row ``transformers.pipeline`` loop writing JSONL (fp32, same architecture)."""
    import torch
    from transformers import pipeline

    from distilkit.models import load_model

    loaded = load_model(ref, "fill-mask", dummy_weights=True, dtype=torch.float32)
    pipe = pipeline("fill-mask", model=loaded.model, tokenizer=loaded.tokenizer, device=-1)
    pipe(texts[:4])  # warm-up
    t = time.perf_counter()
    with dst.open("w", encoding="utf-8") as f:
        for i, text in enumerate(texts):
            f.write(json.dumps({"id": i, "prediction": pipe(text)}) + "\n")
    return len(texts) / (time.perf_counter() - t)


def in_process(ref: Path, texts: list[str]) -> float:
    """rows/s of ``Predictor.predict`` over all rows (same dtype policy as the CLI: auto)."""
    from distilkit.inference.predictor import Predictor

    predictor = Predictor.from_ref(ref, "fill-mask", dummy_weights=True)
    predictor.predict(texts[:32])  # warm-up
    t = time.perf_counter()
    predictor.predict(texts)
    return len(texts) / (time.perf_counter() - t)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--tokens", type=int, default=25, help="about this many tokens per row")
    parser.add_argument("--shared", type=Path, default=HERE.parent.parent / "shared")
    parser.add_argument("--ray", action="store_true", help="also run --engine ray --num-workers 2")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer

    ref = args.shared / "models" / "distilbert-base-cased"
    texts = fill_mask_texts(args.shared, AutoTokenizer.from_pretrained(ref), args.rows, args.tokens)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "rows.jsonl"
        src.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts)),
                       encoding="utf-8")
        cli = run_cli(ref, src, Path(tmp) / "out.jsonl")
        print(f"cli: {cli['rows_per_s']} rows/s (loop), {cli['wall_rows_per_s']} rows/s (wall)",
              file=sys.stderr)
        ours = in_process(ref, texts)
        print(f"in-process: {ours:.1f} rows/s", file=sys.stderr)
        plain = plain_loop(ref, texts, Path(tmp) / "plain.jsonl")
        print(f"plain loop: {plain:.1f} rows/s", file=sys.stderr)
        ray = (run_cli(ref, src, Path(tmp) / "ray.jsonl", "--engine", "ray", "--num-workers", "2")
               if args.ray else None)
    print(json.dumps({
        "rows": len(texts), "tokens_per_row": args.tokens, "cpus": len(os.sched_getaffinity(0)),
        "cli": cli, "in_process_rows_per_s": round(ours, 2), "plain_loop_rows_per_s": round(plain, 2),
        "cli_vs_plain_loop": round(cli["rows_per_s"] / plain, 2),
        "cli_loop_vs_in_process": round(cli["rows_per_s"] / ours, 3),
        "cli_wall_vs_in_process": round(cli["wall_rows_per_s"] / ours, 3),
        "ray_2_workers": ray,
    }, indent=2))


if __name__ == "__main__":
    main()
