"""What ``pip install distilkit`` brings: the serving stack the benchmarks measure, and no peer."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
# What users would pick instead of distilkit, and the load generator: the bench extra only.
PEERS = ("litserve", "ray", "optimum", "openvino", "nncf", "aiohttp", "pyzmq")


def requirements(group: list[str]) -> dict[str, str]:
    """Project name (lower case) -> the whole requirement string."""
    return {re.match(r"[A-Za-z0-9_.-]+", r).group(0).lower(): r for r in group}


def project() -> dict:
    return tomllib.loads(PYPROJECT.read_text())["project"]


def test_runtime_dependencies_hold_no_peer_and_the_bench_extra_holds_the_serving_peers():
    runtime = requirements(project()["dependencies"])
    assert not set(PEERS) & set(runtime)
    bench = requirements(project()["optional-dependencies"]["bench"])
    assert {"litserve", "ray", "aiohttp"} <= set(bench)


def test_uvicorn_comes_with_uvloop_and_httptools():
    # Without the standard extra uvicorn serves with asyncio's loop and the pure-Python h11 parser,
    # not the stack the serving benchmark measured (the peers' extras bring uvicorn[standard]).
    uvicorn = requirements(project()["dependencies"])["uvicorn"]
    assert re.match(r"uvicorn\[[^\]]*\bstandard\b[^\]]*\]", uvicorn), uvicorn
