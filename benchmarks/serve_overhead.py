"""The server's own CPU per request: ``distilkit serve``'s app with the model's forward pass replaced
by a lookup, so that what is measured is HTTP, routing, JSON, tokenizing, queueing and decoding.

    python benchmarks/serve_overhead.py                      # 8 clients, 3 rounds of 8 s (~1 min)
    python benchmarks/serve_overhead.py --clients 32 --rounds 5

Why it matters: on two cores the event loop runs beside the model's OpenMP team, and each 0.1 ms
of its CPU per request cost ~4-5% of the throughput at 32-128 clients (``benchmarks/serve.py``:
0.4 ms of busy work added per request took 15-21% of int8's req/s). Timing the loop through the
full benchmark drowns it in the model; here the model costs almost nothing.

The app (the real one: ``serve.app.create_app``, distilbert-base-cased's tokenizer and fill-mask
handler) runs in this process under uvicorn (uvloop, httptools) with ``run_batch`` answering each
feature with one fixed probability row of the real vocabulary, its top k picked as a pass picks
them (``tasks.fill_mask.pick_top_k``, on the model thread as usual). ``benchmarks/serve.py``'s
aiohttp client runs in another process on WikiText-2 sentences, fill-mask, top 5. Per round: CPU
ms per request of the event loop's thread and of the whole server process, and req/s (what the loop
alone can answer here); the median over the rounds. Writes results/serve_overhead.json (``--name``).
An older release runs it too (``PYTHONPATH=OLD/src``; its passes hand decode the probabilities).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
DEFAULT_SHARED = HERE.parent.parent / "shared"


def client(port: int, shared: Path, clients: int, seconds: float, rounds: int, pipe) -> None:
    """The load generator (another process): a warm-up, then one measured load per round."""
    from serve import load
    from transformers import AutoTokenizer
    from workloads import fill_mask_texts

    tokenizer = AutoTokenizer.from_pretrained(shared / "models" / "distilbert-base-cased")
    texts = fill_mask_texts(shared, tokenizer, 256, 20)
    url = f"http://127.0.0.1:{port}/models/mlm"
    asyncio.run(load(url, texts, clients, 2, 10**9))
    for _ in range(rounds):
        pipe.send("ready")
        pipe.recv()
        pipe.send(asyncio.run(load(url, texts, clients, seconds, 10**9)))


def thread_cpu_seconds(native_id: int) -> float:
    """user + system CPU seconds of one thread of this process."""
    thread = next(t for t in psutil.Process().threads() if t.id == native_id)
    return thread.user_time + thread.system_time


def lookup_predictor(shared: Path):
    """distilbert-base-cased's fill-mask Predictor whose passes answer from one probability row."""
    import torch

    from distilkit.inference.predictor import Predictor

    try:
        from distilkit.tasks.fill_mask import pick_top_k
    except ImportError:  # a release whose passes return the probabilities (decode picks the top k)
        pick_top_k = None

    predictor = Predictor.from_ref(shared / "models" / "distilbert-base-cased", "fill-mask",
                                   dtype="float32", dummy_weights=True)
    vocab = predictor.handler.vocab_size
    row = torch.from_numpy(np.random.default_rng(0).random((1, vocab), dtype=np.float32)).softmax(-1)
    mask_id = predictor.handler.mask_id

    def run_batch(features):
        counts = [f.input_ids.count(mask_id) for f in features]
        if pick_top_k is None:
            return [row.expand(n, vocab).numpy() for n in counts]
        return pick_top_k(row.expand(sum(counts), vocab), counts, [f.data.get("top_k") for f in features])

    predictor.run_batch = run_batch
    return predictor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=DEFAULT_SHARED)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--port", type=int, default=8123)
    parser.add_argument("--name", default="serve_overhead", help="output file stem")
    args = parser.parse_args()

    import uvicorn

    from distilkit import __version__
    from distilkit.serve.app import create_app
    from distilkit.serve.settings import ServeSettings

    app = create_app(ServeSettings(port=args.port), {"mlm": lookup_predictor(args.shared)})
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=args.port, log_level="warning"))
    ours, theirs = mp.get_context("spawn").Pipe()
    load_process = mp.get_context("spawn").Process(
        target=client, args=(args.port, args.shared, args.clients, args.seconds, args.rounds, theirs))
    rounds: list[dict] = []
    loop_thread = threading.get_native_id()  # uvicorn's event loop runs on this (the main) thread

    def drive() -> None:
        try:
            while not server.started:
                time.sleep(0.05)
            load_process.start()
            for _ in range(args.rounds):
                ours.recv()
                loop_cpu, cpu = thread_cpu_seconds(loop_thread), time.process_time()
                ours.send("go")
                row = ours.recv()
                n = max(row["requests"], 1)
                loop_ms = (thread_cpu_seconds(loop_thread) - loop_cpu) / n * 1e3
                rounds.append({"req_per_s": row["req_per_s"], "p50_ms": row["p50_ms"],
                               "errors": row["errors"], "loop_cpu_ms_per_request": round(loop_ms, 3),
                               "server_cpu_ms_per_request": round((time.process_time() - cpu) / n * 1e3, 3)})
                print(json.dumps(rounds[-1]), file=sys.stderr, flush=True)
            load_process.join()
        finally:
            server.should_exit = True

    threading.Thread(target=drive, daemon=True).start()
    server.run()
    if len(rounds) < args.rounds:
        raise SystemExit("the load generator stopped early; see the lines above")
    result = {"version": __version__, "clients": args.clients, "seconds_per_round": args.seconds,
              "date": time.strftime("%Y-%m-%d"), "rounds": rounds,
              "median": {k: statistics.median(r[k] for r in rounds)
                         for k in ("loop_cpu_ms_per_request", "server_cpu_ms_per_request", "req_per_s")}}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
