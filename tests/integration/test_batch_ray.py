"""``--engine ray`` on a local 2-worker Ray: the local engine's bytes (error rows included), through URIs
and other pyarrow filesystems, and after a kill -9 resumed with ``--resume``."""

from __future__ import annotations

import json
import os

import pyarrow.fs as pafs
import pytest

pytest.importorskip("ray.data", reason="Ray is optional: pip install 'distilkit[ray]'")

from test_batch_predict import TEXTS, cli, kill_9_when, read_output, write_input

from distilkit.batch import BatchConfig, predict_file

# Each test starts a local Ray (~10 s). CI runs one case of each behaviour; the other file formats and
# filesystems are marked slow (run them with -m slow).
pytestmark = [pytest.mark.ray]
SLOW = pytest.mark.slow

# Rows both readers turn into error rows: a malformed JSON line; a CSV record with a field too many and
# one that is not UTF-8 (Ray's own CSV reader failed the whole run on these).
BAD_ROWS = {"jsonl": b"{not json\n\n", "csv": b"r-a,a,b\n\nr-b,\xff\n"}


def write_input_with_bad_rows(path, rows):
    write_input(path, rows)
    with path.open("ab") as f:
        f.write(BAD_ROWS[path.suffix.lstrip(".")])


@pytest.mark.parametrize("fmt, out_fmt", [("jsonl", "jsonl"), pytest.param("csv", "parquet", marks=SLOW)])
def test_ray_engine_with_two_workers_writes_the_local_engines_bytes(tmp_path, tiny_model, fmt, out_fmt):
    src = tmp_path / f"in.{fmt}"
    write_input_with_bad_rows(src, [{"id": f"r{i}", "text": TEXTS[i % len(TEXTS)]} for i in range(60)])
    common = ["predict", "fill-mask", "--model", str(tiny_model("fill-mask")), "--dtype", "float32",
              "--batch-size", "16"]
    local = cli(*common, "--input", str(src), "--output", str(tmp_path / f"local.{out_fmt}"))
    assert local.returncode == 0, local.stderr
    ray = cli(*common, "--input", f"file://{src}", "--output", f"file://{tmp_path}/ray.{out_fmt}",
              "--engine", "ray", "--num-workers", "2")
    assert ray.returncode == 0, ray.stderr[-3000:]
    bad = (["malformed JSON: Expecting property name enclosed in double quotes at column 2"]
           if fmt == "jsonl" else
           ["malformed CSV row: 3 fields, the header has 2", "unreadable row: not valid UTF-8"])
    assert json.loads(ray.stdout.strip().splitlines()[-1])["rows"] == 60 + len(bad)
    assert (tmp_path / f"ray.{out_fmt}").read_bytes() == (tmp_path / f"local.{out_fmt}").read_bytes()
    assert [r["error"] for r in read_output(tmp_path / f"ray.{out_fmt}")[60:]] == bad


@pytest.fixture
def ray_in_this_process(monkeypatch):
    import ray

    # the actors' threads, as in the CLI runs it is compared with
    monkeypatch.setenv("DISTILKIT_NUM_THREADS", "1")
    yield
    ray.shutdown()


@SLOW
def test_ray_engine_reads_and_writes_another_pyarrow_filesystem(tmp_path, tiny_model, ray_in_this_process):
    (tmp_path / "sub").mkdir()
    src = tmp_path / "sub" / "in.csv"
    write_input_with_bad_rows(src, [{"id": f"r{i}", "text": TEXTS[i % len(TEXTS)]} for i in range(40)])
    model = str(tiny_model("fill-mask"))
    local = cli("predict", "fill-mask", "--model", model, "--dtype", "float32", "--batch-size", "8",
                "--input", str(src), "--output", str(tmp_path / "local.jsonl"))
    assert local.returncode == 0, local.stderr
    # not the local filesystem's type
    fs = pafs.SubTreeFileSystem(str(tmp_path / "sub"), pafs.LocalFileSystem())
    summary = predict_file(BatchConfig("fill-mask", model, "in.csv", "out.jsonl", dtype="float32",
                                       batch_size=8, engine="ray", filesystem=fs))
    assert (summary.rows, summary.errors) == (42, sum(r["error"] is not None for r in read_output(
        tmp_path / "local.jsonl")))
    assert (tmp_path / "sub" / "out.jsonl").read_bytes() == (tmp_path / "local.jsonl").read_bytes()
    # the parts were joined and removed
    assert sorted(os.listdir(tmp_path / "sub")) == ["in.csv", "out.jsonl"]


@pytest.mark.parametrize("fmt, out_fmt", [pytest.param("jsonl", "jsonl", marks=SLOW), ("csv", "parquet")])
def test_ray_resume_after_kill_9_equals_an_uninterrupted_run(tmp_path, tiny_model, fmt, out_fmt):
    src = tmp_path / f"in.{fmt}"
    rows = [{"id": i, "text": f"row {i} is the [MASK] of a city" if i % 97 else ""} for i in range(60000)]
    write_input_with_bad_rows(src, rows)
    args = ["predict", "fill-mask", "--model", str(tiny_model("fill-mask")), "--input", str(src),
            "--dtype", "float32", "--batch-size", "100", "-p", "top_k=1"]
    killed = tmp_path / f"killed.{out_fmt}"
    parts = tmp_path / f"killed.{out_fmt}.partial"
    kill_9_when(lambda: (killed.exists() and killed.stat().st_size > 20000) if out_fmt == "jsonl"
                else (parts.exists() and len(os.listdir(parts)) > 2),
                *args, "--engine", "ray", "--output", str(killed))
    resumed = cli(*args, "--engine", "ray", "--output", str(killed), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    summary = json.loads(resumed.stdout.strip().splitlines()[-1])
    total = len(rows) + (1 if fmt == "jsonl" else 2)
    assert 0 < summary["resumed_rows"] < total and summary["rows"] == total
    whole = tmp_path / f"whole.{out_fmt}"  # uninterrupted, on the local engine: the same bytes again
    assert cli(*args, "--output", str(whole)).returncode == 0
    assert killed.read_bytes() == whole.read_bytes() and not parts.exists()
