"""Serving: distilkit serve vs LitServe, Ray Serve and a FastAPI + pipeline endpoint, loopback only.

    python benchmarks/serve.py                                   # everything (~11 min on 2 cores)
    python benchmarks/serve.py --peers distilkit,litserve --levels 1,32
    python benchmarks/serve.py --soak 180                        # distilkit at 32 clients, RSS over time
    python benchmarks/serve.py --long-share 0.2                  # mixed lengths: serve_mixed.json
    python benchmarks/serve.py --quick                           # a smoke check

One run, one weights directory, one client, one set of sentences: random weights of
distilbert-base-cased's real architecture are saved once to a temp dir (with the real tokenizer
from ../shared) and every server loads them; clients send one WikiText-2 sentence per request
(``{"inputs": text}``, fill-mask, top-5 answers) with 1, 8, 32 and 128 concurrent connections
(aiohttp, keep-alive). ``--long-share P``: a share P of the requests are ~120-token paragraph
prefixes instead, mixed among the ~20-token sentences (traffic of mixed lengths, where a batch
of requests as they arrive is padded to its longest). The servers:

- distilkit: ``distilkit serve --model mlm=DIR`` (defaults: bf16 here, max batch 64);
- distilkit-int8: the same with ``--dtype int8`` (PyTorch's oneDNN int8 engine), for comparison;
- litserve: LitServe with dynamic batching (max batch 32), ``benchmarks/serve_peers/``;
- ray: Ray Serve with ``@serve.batch`` (max batch 32), ``benchmarks/serve_peers/``;
- baseline: a FastAPI app calling ``transformers.pipeline`` per request (``baseline_server.py``).

Also measured in the same run: the in-process Predictor on the same sentences (all at once, and
one at a time), at the start and again right after each of distilkit's levels (``in_process_now``),
and the model alone in passes of 1-64 random sentences (``by_pass_rows``): a level's ``ceiling`` is
the most the model does in passes no larger than that level's clients, over the best peer's req/s,
the ratio a server with no overhead of its own could reach there.
Writes serve.json and serve.png (or serve_soak.json); prints JSON. The load generator shares the
machine's cores with the server under test (every server alike); the CPU time of both is recorded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import httpx
import numpy as np
import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from workloads import fill_mask_texts

DEFAULT_SHARED = HERE.parent.parent / "shared"
PEERS = ("distilkit", "distilkit-int8", "litserve", "ray", "baseline")
OURS = ("distilkit", "distilkit-int8")
PASS_ROWS = (1, 4, 8, 16, 32, 64)  # pass sizes the in-process model is timed at (``InProcess.by_pass_rows``)
STAGE = re.compile(r'distilkit_stage_seconds_(sum|count)\{model="mlm",stage="(\w+)"\} (\S+)')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A server process on a free loopback port, logging to a temp file, stopped on exit."""

    def __init__(self, cmd: list[str], ready: str, path: str, start_timeout: float = 240):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.path = path
        self.log = tempfile.TemporaryFile("w+")  # noqa: SIM115  (lives as long as the server)
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        self.proc = subprocess.Popen([c.format(port=self.port) for c in cmd], stdout=self.log,
                                     stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.time() + start_timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"server exited: {self.log.read()[-3000:]}")
            try:
                if httpx.post(self.url + ready, json={"inputs": "a [MASK] ."}, timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"{cmd} did not start")

    def cpu_seconds(self) -> float:
        """User + system CPU seconds of the server process and every process it started."""
        try:
            root = psutil.Process(self.proc.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return float("nan")
        total = 0.0
        for proc in procs:
            try:
                times = proc.cpu_times()
            except psutil.NoSuchProcess:  # a worker that ended meanwhile
                continue
            total += times.user + times.system
        return total

    def rss_mb(self) -> float:
        """Resident memory of the server process (the one that answers HTTP), in MB."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        os.killpg(self.proc.pid, 15)  # the whole group: Ray and LitServe start worker processes
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, 9)
        self.log.close()


def servers(model: Path) -> dict[str, tuple[list[str], str, str]]:
    """name -> (command, readiness path, prediction path)."""
    py = sys.executable
    return {
        "distilkit": ([py, "-m", "distilkit", "serve", "--model", f"mlm={model}", "--port", "{port}"],
                      "/models/mlm", "/models/mlm"),
        "distilkit-int8": ([py, "-m", "distilkit", "serve", "--model", f"mlm={model}", "--dtype", "int8",
                            "--port", "{port}"], "/models/mlm", "/models/mlm"),
        "litserve": ([py, str(HERE / "serve_peers" / "litserve_server.py"), "--model", str(model), "--port",
                      "{port}"], "/predict", "/predict"),
        "ray": ([py, str(HERE / "serve_peers" / "ray_server.py"), "--model", str(model), "--port", "{port}"],
                "/predict", "/predict"),
        "baseline": ([py, str(HERE / "baseline_server.py"), "--model", str(model), "--port", "{port}"],
                     "/predict", "/predict"),
    }


async def load(url: str, texts: list[str], clients: int, seconds: float, max_requests: int) -> dict:
    """``clients`` keep-alive connections send one sentence per request for ``seconds``."""
    latencies: list[float] = []
    errors = 0
    sent = 0
    stop_at = time.perf_counter() + seconds

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal sent, errors
        while sent < max_requests and time.perf_counter() < stop_at:
            text = texts[sent % len(texts)]
            sent += 1
            t = time.perf_counter()
            try:
                async with session.post(url, json={"inputs": text}) as r:
                    await r.read()
                    errors += r.status != 200
            except (TimeoutError, aiohttp.ClientError):
                errors += 1
            latencies.append(time.perf_counter() - t)

    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        start = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(clients)))
        elapsed = time.perf_counter() - start
    ms = np.array(latencies) * 1000
    return {"clients": clients, "requests": len(latencies), "errors": errors,
            "req_per_s": round(len(latencies) / elapsed, 1), "p50_ms": round(float(np.percentile(ms, 50)), 1),
            "p99_ms": round(float(np.percentile(ms, 99)), 1)}


def stage_split(url: str) -> dict[str, float]:
    """Per-stage seconds (sum) and counts from distilkit's /metrics."""
    out: dict[str, float] = {}
    for kind, stage, value in STAGE.findall(httpx.get(url + "/metrics").text):
        out[f"{stage}_{kind}"] = float(value)
    return out


def stage_ms(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Mean ms per observation of each stage between two scrapes."""
    stages = {k.rsplit("_", 1)[0] for k in after}
    out = {}
    for stage in sorted(stages):
        count = after.get(f"{stage}_count", 0) - before.get(f"{stage}_count", 0)
        if count:
            total = after[f"{stage}_sum"] - before.get(f"{stage}_sum", 0)
            out[stage] = round(1000 * total / count, 2)
    return out


def measure(name: str, server: Server, texts: list[str], args, local: InProcess | None = None) -> list[dict]:
    """Every level against ``server``; with ``local``, the in-process Predictor is timed again right
    after each level (``in_process_now``: single-sentence p50 after 1 client, throughput after the
    others), so the server's share of it compares two figures of the same minute."""
    url = server.url + server.path
    asyncio.run(load(url, texts, 4, 3, 10**9))  # warm-up
    rows = []
    for clients in args.levels:
        asyncio.run(load(url, texts, clients, 1.5, 10**9))  # this level's connections, discarded
        before = stage_split(server.url) if name in OURS else {}
        cpu, client_cpu, wall = server.cpu_seconds(), time.process_time(), time.perf_counter()
        row = asyncio.run(load(url, texts, clients, args.seconds, args.requests))
        # Where the two cores went: the server's processes and this load generator (CPU ms per request).
        wall, n = time.perf_counter() - wall, max(row["requests"], 1)
        row["server_cpu_ms_per_request"] = round(1000 * (server.cpu_seconds() - cpu) / n, 2)
        row["client_cpu_ms_per_request"] = round(1000 * (time.process_time() - client_cpu) / n, 2)
        row["client_cpu_share"] = round((time.process_time() - client_cpu) / (wall * os.cpu_count()), 3)
        if name in OURS:
            row["stage_ms"] = stage_ms(before, stage_split(server.url))
        if local is not None:
            row["in_process_now"] = ({"single_p50_ms": local.single_p50_ms()} if clients == 1
                                     else local.throughput(repeats=2))
        print(f"{name} {clients:>3} clients: {row['req_per_s']} req/s p50 {row['p50_ms']} ms "
              f"p99 {row['p99_ms']} ms errors {row['errors']}"
              + (f"; in process now {row['in_process_now']}" if local is not None else ""), file=sys.stderr)
        rows.append(row)
    return rows


class InProcess:
    """The Predictor on the same sentences in this process, kept loaded so that it can be timed
    again next to each of distilkit's levels (the VM's speed drifts within a run)."""

    def __init__(self, model: Path, texts: list[str], dtype: str = "auto"):
        from distilkit.inference.predictor import Predictor

        self.texts = texts
        self.predictor = Predictor.from_ref(model, "fill-mask", dtype=dtype)
        self.predictor.predict(texts[:64])

    def throughput(self, repeats: int = 3) -> dict:
        """All the sentences at once: sentences/s and CPU ms per sentence, best of ``repeats``."""
        best, cpu = float("inf"), float("inf")
        for _ in range(repeats):
            start, start_cpu = time.perf_counter(), time.process_time()
            self.predictor.predict(self.texts)
            best = min(best, time.perf_counter() - start)
            cpu = min(cpu, time.process_time() - start_cpu)
        return {"sentences_per_s": round(len(self.texts) / best, 1),
                "cpu_ms_per_sentence": round(1000 * cpu / len(self.texts), 2)}

    def single_p50_ms(self, n: int = 200) -> float:
        """Median latency of one sentence at a time."""
        single = []
        for text in self.texts[:n]:
            start = time.perf_counter()
            self.predictor.predict([text])
            single.append(time.perf_counter() - start)
        return round(1000 * float(np.median(single)), 2)

    def by_pass_rows(self, sizes: tuple[int, ...] = PASS_ROWS, rows_per_size: int = 480) -> dict[str, float]:
        """Sentences/s of the model alone in passes of k random sentences (``Predictor.run_batch``, as
        the server runs them): what a server whose passes hold k rows could answer at most."""
        features = self.predictor.prepare(self.texts).features
        rng = random.Random(0)
        out = {}
        for k in sizes:
            plans = [rng.sample(features, k) for _ in range(max(8, rows_per_size // k))]
            for plan in plans[:3]:
                self.predictor.run_batch(plan)
            start = time.perf_counter()
            for plan in plans:
                self.predictor.run_batch(plan)
            out[str(k)] = round(len(plans) * k / (time.perf_counter() - start), 1)
        return out

    def summary(self) -> dict:
        return {**self.throughput(), "engine": self.predictor.engine.describe(),
                "single_p50_ms": self.single_p50_ms(), "by_pass_rows": self.by_pass_rows()}


def mixed_lengths(short: list[str], long: list[str], share: float, n: int = 256) -> list[str]:
    """``n`` texts, a ``share`` of them from ``long`` spread evenly among ``short`` (a fixed order)."""
    out, debt = [], 0.0
    for i in range(n):
        debt += share
        if debt >= 1:
            debt -= 1
            out.append(long[i % len(long)])
        else:
            out.append(short[i % len(short)])
    return out


def save_weights(shared: Path, out: Path) -> Path:
    """Random weights of distilbert-base-cased's real architecture + its real tokenizer, saved once."""
    import torch
    from transformers import AutoConfig, AutoModelForMaskedLM, AutoTokenizer

    source = shared / "models" / "distilbert-base-cased"
    torch.manual_seed(0)
    AutoModelForMaskedLM.from_config(AutoConfig.from_pretrained(source)).save_pretrained(out)
    AutoTokenizer.from_pretrained(source).save_pretrained(out)
    return out


def soak(server: Server, texts: list[str], seconds: float, clients: int = 32, every: float = 10,
         settle_pct: float = 1.0, max_warmup: float = 120) -> dict:
    """``clients`` for ``seconds``: throughput, errors and the server's RSS sampled every ``every`` s.

    First a warm-up under the same load until the RSS has settled (the last ``every`` seconds grew it by
    less than ``settle_pct`` %, after at least 20 s; ``max_warmup`` s at most): allocator pools and the
    kernels' per-shape caches fill while new batch shapes keep arriving, and a leak is growth after that.
    The warm-up's samples are reported beside the soak's.
    """
    url = server.url + server.path

    def step(phase: str, began: float) -> tuple[dict, float, float]:
        """``every`` seconds of load; the row, the RSS after it and the seconds since ``began``."""
        row = asyncio.run(load(url, texts, clients, every, 10**9))
        rss, elapsed = round(server.rss_mb(), 1), time.perf_counter() - began
        print(f"{phase} {elapsed:5.0f} s: {row['req_per_s']} req/s, RSS {rss} MB, errors {row['errors']}",
              file=sys.stderr)
        return row, rss, elapsed

    warmup, began = [round(server.rss_mb(), 1)], time.perf_counter()
    while True:
        _, rss, elapsed = step("warm-up", began)
        warmup.append(rss)
        settled = elapsed >= 20 and 100 * (warmup[-1] - warmup[-2]) / warmup[-2] < settle_pct
        if settled or elapsed >= max_warmup:
            break
    samples, rows = [], []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        row, rss, _ = step("soak", start)
        rows.append(row)
        samples.append(rss)
    first = warmup[-1]  # the RSS as the soak starts
    return {"clients": clients, "seconds": round(time.perf_counter() - start),
            "warmup_seconds": round(elapsed), "warmup_rss_mb": warmup, "rss_mb": samples,
            "rss_change_pct": round(100 * (samples[-1] - first) / first, 2),
            "rss_max_change_pct": round(100 * max(abs(s - first) for s in samples) / first, 2),
            **peak_drift(samples, every),
            "requests": sum(r["requests"] for r in rows), "errors": sum(r["errors"] for r in rows),
            "req_per_s": round(float(np.mean([r["req_per_s"] for r in rows])), 1),
            "p99_ms_worst": max(r["p99_ms"] for r in rows)}


def peak_drift(samples: list[float], every: float, window: float = 60) -> dict:
    """Growth of the RSS's peaks: the highest sample of the last ``window`` seconds against that of the
    first. The server hands free heap back every few seconds, so single samples swing with where they
    fall between two hand-backs; a leak raises the peaks."""
    n = max(1, round(window / every))
    first, last = max(samples[:n]), max(samples[-n:])
    return {"rss_peak_first_mb": first, "rss_peak_last_mb": last,
            "rss_peak_drift_pct": round(100 * (last - first) / first, 2)}


def summarize(result: dict) -> None:
    """Ratios against the best other server at each level, and the server's own overhead.

    ``vs_best_peer`` is distilkit's default (bf16 here); ``vs_best_peer_int8`` its ``--dtype int8``.
    """
    others = {k: v for k, v in result["servers"].items() if k not in OURS}
    for name, suffix in (("distilkit", ""), ("distilkit-int8", "_int8")):
        rows, key = result["servers"].get(name), "vs_best_peer" + suffix
        if not rows or not others:
            continue
        result[key] = []
        for i, row in enumerate(rows):
            best = max(others, key=lambda k: others[k][i]["req_per_s"])
            lowest_p99 = min(v[i]["p99_ms"] for v in others.values())
            ratio = round(row["req_per_s"] / others[best][i]["req_per_s"], 2)
            entry = {"clients": row["clients"], "best_peer": best, "throughput": ratio,
                     "p99_ours_ms": row["p99_ms"], "p99_lowest_peer_ms": lowest_p99}
            curve = (result.get("in_process" + suffix) or {}).get("by_pass_rows")
            if curve:  # the model alone in passes no larger than the clients: no server could do more
                most = max(v for k, v in curve.items() if int(k) <= row["clients"])
                entry["ceiling"] = round(most / others[best][i]["req_per_s"], 2)
            result[key].append(entry)
    for name, suffix in (("distilkit", ""), ("distilkit-int8", "_int8")):
        rows, inproc = result["servers"].get(name), result.get("in_process" + suffix)
        if not rows or not inproc:
            continue
        by_level = {r["clients"]: r for r in rows}
        # Against the run's first in-process figures, and (``_now``) against those timed next to the level.
        if 32 in by_level:
            row = by_level[32]
            share = row["req_per_s"] / inproc["sentences_per_s"]
            result["share_of_in_process_at_32" + suffix] = round(share, 3)
            if "in_process_now" in row:
                now = row["req_per_s"] / row["in_process_now"]["sentences_per_s"]
                result["share_of_in_process_at_32_now" + suffix] = round(now, 3)
        if 1 in by_level:
            row = by_level[1]
            result["p50_over_in_process_at_1_ms" + suffix] = round(row["p50_ms"] - inproc["single_p50_ms"], 2)
            if "in_process_now" in row:
                now = row["p50_ms"] - row["in_process_now"]["single_p50_ms"]
                result["p50_over_in_process_at_1_ms_now" + suffix] = round(now, 2)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"distilkit": "#2a7ab9", "distilkit-int8": "#1b9e77", "litserve": "#7b4fa8", "ray": "#e08a1e",
              "baseline": "#9e9e9e"}
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for name, rows in result["servers"].items():
        clients = [r["clients"] for r in rows]
        left.plot(clients, [r["req_per_s"] for r in rows], "o-", color=colors[name], label=name)
        right.plot(clients, [r["p99_ms"] for r in rows], "o-", color=colors[name], label=name)
    if "in_process" in result:
        left.axhline(result["in_process"]["sentences_per_s"], ls="--", color="#2a7ab9", lw=1,
                     label="distilkit Predictor in process")
    if "in_process_int8" in result:
        left.axhline(result["in_process_int8"]["sentences_per_s"], ls="--", color="#1b9e77", lw=1,
                     label="the same, int8")
    left.set(xlabel="concurrent clients", ylabel="requests / s", xscale="log",
             title="throughput (higher is better)")
    right.set(xlabel="concurrent clients", ylabel="p99 latency (ms)", xscale="log", yscale="log",
              title="p99 latency (lower is better)")
    for ax in (left, right):
        ax.set_xticks(result["levels"], [str(c) for c in result["levels"]])
        ax.legend(frameon=False, fontsize=8)
    mix = (f"; {result['long_share']:.0%} of them ~120 tokens, the rest ~20"
           if result.get("long_share") else "")
    fig.suptitle(f"fill-mask serving, one text per request{mix} (distilbert-base-cased, 2 CPU cores)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=DEFAULT_SHARED)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--peers", default=",".join(PEERS), help=f"comma-separated, from {','.join(PEERS)}")
    parser.add_argument("--levels", default="1,8,32,128")
    parser.add_argument("--seconds", type=float, default=12, help="measured seconds per level")
    parser.add_argument("--requests", type=int, default=3000, help="at most this many requests per level")
    parser.add_argument("--no-in-process", action="store_true")
    parser.add_argument("--soak", type=float, default=0,
                        help="instead: distilkit at 32 clients for this long")
    parser.add_argument("--long-share", type=float, default=0.0,
                        help="share of requests with ~120-token texts among the ~20-token ones")
    parser.add_argument("--name", default=None,
                        help="output file stem (default: serve, serve_mixed or serve_soak)")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    args.levels = [int(c) for c in args.levels.split(",")]
    peers = [p for p in args.peers.split(",") if p]
    if args.quick:
        args.levels, args.seconds = [1, 8], 3
    with tempfile.TemporaryDirectory() as tmp:
        model = save_weights(args.shared, Path(tmp) / "distilbert-base-cased-random")
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model)
        texts = fill_mask_texts(args.shared, tokenizer, 256, 20)
        if args.long_share > 0:
            texts = mixed_lengths(texts, fill_mask_texts(args.shared, tokenizer, 64, 120), args.long_share)
        commands = servers(model)
        if args.soak:
            server = Server(*commands["distilkit"])
            try:
                result = {"soak": soak(server, texts, args.soak)}
            finally:
                server.stop()
            args.name = args.name or "serve_soak"
        else:
            result = {"levels": args.levels, "seconds_per_level": args.seconds, "servers": {},
                      "long_share": args.long_share,
                      "model": "distilbert-base-cased architecture, random weights (one directory for all)"}
            local: dict[str, InProcess] = {}
            if not args.no_in_process:
                for name, dtype, suffix in (("distilkit", "auto", ""), ("distilkit-int8", "int8", "_int8")):
                    if name in peers or not suffix:
                        local[name] = InProcess(model, texts, dtype)
                        result["in_process" + suffix] = local[name].summary()
                        print(f"in process ({dtype}): {result['in_process' + suffix]}", file=sys.stderr)
            for name in peers:
                try:  # a peer that does not start is reported, and the others still run
                    server = Server(*commands[name])
                except RuntimeError as err:
                    result.setdefault("failed", {})[name] = str(err)[-2000:]
                    print(f"{name} did not start: {err}", file=sys.stderr)
                    continue
                try:
                    result["servers"][name] = measure(name, server, texts, args, local.get(name))
                finally:
                    server.stop()
            summarize(result)
    args.name = args.name or ("serve_mixed" if args.long_share > 0 else "serve")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    if result.get("servers"):
        plot(result, args.out / f"{args.name}.png")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
