"""The store across processes: a register killed mid-way leaves no version; concurrent writers never
collide."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from distilkit.registry.store import PAUSE_ENV, Registry

# argv: home, go-file ("" = start at once), then model dirs to register one after the other as "m".
WRITER = """
import sys, time
from pathlib import Path
from distilkit.registry.store import Registry
import distilkit.models  # import torch before the start signal so the writers overlap
home, go, dirs = sys.argv[1], sys.argv[2], sys.argv[3:]
print("ready", file=sys.stderr, flush=True)
while go and not Path(go).exists():
    time.sleep(0.01)
for d in dirs:
    print(Registry(home).register(d, "m", task="fill-mask").version, flush=True)
"""


def start_writer(home: Path, dirs: list[Path], go: str = "", env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", WRITER, str(home), go, *map(str, dirs)], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


def wait_for_line(proc: subprocess.Popen, wanted: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stderr], [], [], 0.5)
        if ready:
            line = proc.stderr.readline()
            if wanted in line:
                return
            if not line and proc.poll() is not None:
                break
    proc.kill()
    raise AssertionError(f"writer never printed {wanted!r}; stderr: {proc.stderr.read()}")


@pytest.mark.parametrize("step", ["copied", "renamed"])
def test_register_killed_mid_way_leaves_no_half_registered_version(tmp_path, make_dir, step):
    home = tmp_path / "home"
    first = Registry(home).register(make_dir("one"), "m")
    second = make_dir("two", weights=b"second model")
    proc = start_writer(home, [second], env={PAUSE_ENV: f"{step}=120"})
    wait_for_line(proc, f"paused at {step}")  # files copied (and, for "renamed", inside the transaction)
    proc.kill()
    proc.wait(timeout=30)

    registry = Registry(home)
    assert [e.version for e in registry.list()] == ["1"]
    assert registry.check() == []
    assert registry.resolve("m").content_sha256 == first.content_sha256
    # The dead writer's copy is left behind: in tmp/, or (killed inside the transaction) as an artifact
    # no row names.
    assert len(list((home / "artifacts").iterdir())) == (2 if step == "renamed" else 1)
    assert any((home / "tmp").iterdir()) or step == "renamed"
    assert registry.register(second, "m").version == "2"  # ... and the next register sweeps it
    assert not any((home / "tmp").iterdir())
    registry.resolve("m@2")
    assert registry.check() == []


def test_concurrent_writers_neither_corrupt_nor_duplicate_versions(tmp_path, make_dir):
    home, go = tmp_path / "home", tmp_path / "go"
    shared, own = make_dir("shared"), [make_dir(f"own{i}", weights=f"w{i}".encode()) for i in range(4)]
    procs = [start_writer(home, [shared, own[i], shared], go=str(go)) for i in range(4)]  # 4 processes x 3
    for proc in procs:
        wait_for_line(proc, "ready")
    go.touch()
    printed = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        printed += out.split()

    registry = Registry(home)
    versions = [e.version for e in registry.list()]
    assert sorted(printed, key=int) == sorted(versions, key=int) == [str(v) for v in range(1, 13)]
    assert registry.check() == []
    assert len(list(registry.artifacts.iterdir())) == 5  # one shared + four own contents
    for version in versions:
        registry.resolve(f"m@{version}")
