"""Serving: distilkit serve vs a plain FastAPI + transformers.pipeline endpoint, loopback only.

    python benchmarks/serve.py            # 1/8/32 clients, <= 400 requests or 40 s per level (~2 min)
    python benchmarks/serve.py --quick    # a smoke check

Both servers run distilbert-base-cased fill-mask (real config and tokenizer from ../shared,
dummy weights) in their own process on 127.0.0.1; clients send one WikiText-2 sentence per
request (Hugging Face format: {"inputs": text}) with 1, 8 and 32 concurrent connections.
Prints JSON (requests/s, p50/p95/p99 latency per level, ratios) and writes serve.{json,png}.
The load generator shares the machine's cores with the server under test (both servers alike).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from workloads import fill_mask_texts  # noqa: E402

DEFAULT_SHARED = HERE.parent.parent / "shared"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A server process on a free loopback port, logging to a temp file, stopped on exit."""

    def __init__(self, cmd: list[str], health: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.TemporaryFile("w+")
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        self.proc = subprocess.Popen([c.format(port=self.port) for c in cmd], stdout=self.log,
                                     stderr=subprocess.STDOUT, env=env)
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"server exited: {self.log.read()[-2000:]}")
            try:
                if httpx.get(self.url + health, timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.3)
        raise RuntimeError("server did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(60)
        self.log.close()


async def load(url: str, texts: list[str], clients: int, requests: int, seconds: float) -> dict:
    """``clients`` connections send single-sentence requests until ``requests`` or ``seconds``."""
    latencies: list[float] = []
    errors = 0
    sent = 0
    stop_at = time.perf_counter() + seconds

    async def client(i: int) -> None:
        nonlocal sent, errors
        async with httpx.AsyncClient(timeout=120) as http:
            while sent < requests and time.perf_counter() < stop_at:
                text = texts[sent % len(texts)]
                sent += 1
                t = time.perf_counter()
                r = await http.post(url, json={"inputs": text})
                latencies.append(time.perf_counter() - t)
                errors += r.status_code != 200

    start = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    elapsed = time.perf_counter() - start
    ms = np.array(latencies) * 1000
    return {"clients": clients, "requests": len(latencies), "errors": errors,
            "req_per_s": round(len(latencies) / elapsed, 2), "p50_ms": round(float(np.percentile(ms, 50)), 1),
            "p95_ms": round(float(np.percentile(ms, 95)), 1), "p99_ms": round(float(np.percentile(ms, 99)), 1)}


def measure(name: str, server: Server, path: str, texts: list[str], args) -> list[dict]:
    url = server.url + path
    asyncio.run(load(url, texts, 4, 16, 60))  # warm-up
    rows = []
    for clients in args.levels:
        row = asyncio.run(load(url, texts, clients, args.requests, args.seconds))
        print(f"{name} {clients:>2} clients: {row['req_per_s']} req/s p50 {row['p50_ms']} ms "
              f"p99 {row['p99_ms']} ms errors {row['errors']}", file=sys.stderr)
        rows.append(row)
    return rows


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.8))
    for name, color in (("baseline", "#9e9e9e"), ("distilkit", "#2a7ab9")):
        rows = result[name]
        clients = [r["clients"] for r in rows]
        left.plot(clients, [r["req_per_s"] for r in rows], "o-", color=color, label=name)
        right.plot(clients, [r["p99_ms"] for r in rows], "o-", color=color, label=name)
    left.set(xlabel="concurrent clients", ylabel="requests / s", xscale="log", title="throughput (higher is better)")
    right.set(xlabel="concurrent clients", ylabel="p99 latency (ms)", xscale="log", yscale="log",
              title="p99 latency (lower is better)")
    for ax in (left, right):
        ax.set_xticks(result["levels"], [str(c) for c in result["levels"]])
        ax.legend(frameon=False)
    fig.suptitle("distilkit serve vs FastAPI + transformers.pipeline (fill-mask, 2 CPU cores)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=DEFAULT_SHARED)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    args.levels = [1, 8, 32]
    args.requests, args.seconds = (48, 10) if args.quick else (400, 40)
    model = args.shared / "models" / "distilbert-base-cased"
    from transformers import AutoTokenizer

    texts = fill_mask_texts(args.shared, AutoTokenizer.from_pretrained(model), 256, 20)
    result = {"levels": args.levels, "model": "distilbert-base-cased (dummy weights)",
              "requests_per_level": args.requests, "seconds_per_level": args.seconds}
    baseline = Server([sys.executable, str(HERE / "baseline_server.py"), "--model", str(model), "--port", "{port}"],
                      "/health")
    try:
        result["baseline"] = measure("baseline", baseline, "/predict", texts, args)
    finally:
        baseline.stop()
    ours = Server([sys.executable, "-m", "distilkit", "serve", "--model", f"mlm={model}", "--dummy-weights",
                   "--port", "{port}"], "/ready")
    try:
        result["distilkit"] = measure("distilkit", ours, "/models/mlm", texts, args)
    finally:
        ours.stop()
    result["ratios"] = [{"clients": b["clients"], "throughput": round(d["req_per_s"] / b["req_per_s"], 2),
                         "p50": round(d["p50_ms"] / b["p50_ms"], 2), "p99": round(d["p99_ms"] / b["p99_ms"], 2)}
                        for b, d in zip(result["baseline"], result["distilkit"], strict=True)]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "serve.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(result, args.out / "serve.png")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
