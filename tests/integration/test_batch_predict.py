"""``distilkit predict --input/--output`` end to end: formats, order, ids, errors, URIs, kill + resume."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from distilkit.batch import BatchConfig, MaxErrorsExceeded, predict_file
from distilkit.inference.predictor import Predictor

TEXTS = ["the [MASK] of France", "  ", "Paris is a [MASK] city", "no mask here", "a [MASK] and a [MASK]",
         "Paris <mask>", "today is a [MASK] day", "[MASK]"]
ERRORS = {1: "text is empty", 3: "it has no mask token; this model's mask token is [MASK]",
          5: "it has <mask>, but this model's mask token is [MASK]"}


ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "DISTILKIT_NUM_THREADS": "1"}


def cli(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "distilkit", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=ENV,
        check=False,
        **kw,
    )


def kill_9_when(ready, *args: str, timeout: float = 120) -> None:
    """Run ``distilkit ARGS``; SIGKILL it as soon as ``ready()`` is true (mid-run: it must not have ended)."""
    proc = subprocess.Popen([sys.executable, "-m", "distilkit", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=ENV, start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None and not ready():
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be killed; make the input larger"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    try:  # what it started in its session (a local Ray's helpers) goes too
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def write_input(path, rows):
    fmt = path.suffix.lstrip(".")
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    elif fmt == "csv":
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    else:
        pq.write_table(pa.Table.from_pylist(rows), path)


def read_output(path):
    """Output rows as dicts with the prediction decoded, whatever the format."""
    fmt = path.suffix.lstrip(".")
    if fmt == "jsonl":
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    if fmt == "csv":
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        return [{"id": r["id"], "prediction": json.loads(r["prediction"]) if r["prediction"] else None,
                 "error": r["error"] or None} for r in rows]
    return [{**r, "prediction": None if r["prediction"] is None else json.loads(r["prediction"])}
            for r in pq.read_table(path).to_pylist()]


@pytest.fixture(scope="module")
def predictor(tiny_model):
    return Predictor.from_ref(tiny_model("fill-mask"), "fill-mask", dtype="float32")


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_every_row_gives_one_output_row_in_order_with_its_id_and_error(tmp_path, predictor, fmt):
    src, dst = tmp_path / f"in.{fmt}", tmp_path / f"out.{fmt}"
    write_input(src, [{"id": f"r{i}", "text": t} for i, t in enumerate(TEXTS)])
    config = BatchConfig("fill-mask", "unused", src, dst, params={"top_k": 2}, batch_size=3)
    summary = predict_file(config, predictor)
    out = read_output(dst)
    assert (summary.rows, summary.errors) == (len(TEXTS), len(ERRORS))
    assert [r["id"] for r in out] == [f"r{i}" for i in range(len(TEXTS))]
    assert {i: r["error"] for i, r in enumerate(out) if r["error"]} == ERRORS
    for i, text in enumerate(TEXTS):
        if i in ERRORS:
            assert out[i]["prediction"] is None
            continue
        (expected,) = predictor.predict([text], {"top_k": 2})
        assert _tokens(out[i]["prediction"]) == _tokens(expected)
    assert len(out[4]["prediction"]) == 2 and len(out[4]["prediction"][0]) == 2  # two masks: one list each


def test_rows_without_ids_get_row_numbers_and_the_cards_input_string_column(tmp_path, predictor):
    src, dst = tmp_path / "in.csv", tmp_path / "out.csv"
    write_input(
        src, [{"input_string": "Paris is the [MASK] of France."}, {"input_string": "Today is a <mask> day!"}]
    )
    predict_file(BatchConfig("fill-mask", "unused", src, dst), predictor)
    out = read_output(dst)
    assert [r["id"] for r in out] == ["0", "1"]
    assert len(out[0]["prediction"]) == 5 and out[1]["error"].startswith("it has <mask>")


def test_max_errors_stops_after_the_chunk_that_exceeds_it_and_leaves_valid_output(tmp_path, predictor):
    src, dst = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_input(src, [{"text": "a [MASK]" if i % 4 else ""} for i in range(40)])  # errors at 0, 4, 8, ...
    with pytest.raises(MaxErrorsExceeded) as stop:
        predict_file(BatchConfig("fill-mask", "unused", src, dst, batch_size=5, max_errors=3), predictor)
    out = read_output(dst)
    assert stop.value.summary.rows == len(out) == 15  # the 4th error is row 12: its chunk 10-14 is the last
    assert [r["id"] for r in out] == list(range(15)) and stop.value.summary.errors == 4


def _tokens(prediction: list) -> list[str]:
    """The candidate tokens of a fill-mask prediction, one list over all of its masks."""
    lists = prediction if isinstance(prediction[0], list) else [prediction]
    return [c["token"] for candidates in lists for c in candidates]


def test_cli_file_mode_prints_a_json_summary_and_exits_1_past_max_errors(tmp_path, tiny_model):
    src = tmp_path / "in.jsonl"
    write_input(src, [{"text": t} for t in TEXTS])
    model = str(tiny_model("fill-mask"))
    ok = cli(
        "predict", "fill-mask", "--model", model, "--input", str(src), "--output", str(tmp_path / "a.jsonl")
    )
    assert ok.returncode == 0, ok.stderr
    summary = json.loads(ok.stdout.strip().splitlines()[-1])
    assert (summary["rows"], summary["errors"], summary["status"]) == (8, 3, "ok") and "rows_per_s" in summary
    assert "\x1b[" not in ok.stderr  # no progress bar when stderr is not a terminal
    stop = cli(
        "predict",
        "fill-mask",
        "--model",
        model,
        "--input",
        str(src),
        "--output",
        str(tmp_path / "b.jsonl"),
        "--max-errors",
        "1",
        "--batch-size",
        "2",
    )
    assert stop.returncode == 1 and "more than --max-errors 1" in stop.stderr
    assert json.loads(stop.stdout)["status"] == "max_errors_exceeded"
    assert len(read_output(tmp_path / "b.jsonl")) == 4  # chunks [0,1] and [2,3]: the 2nd error is row 3
    again = cli(
        "predict", "fill-mask", "--model", model, "--input", str(src), "--output", str(tmp_path / "a.jsonl")
    )
    assert again.returncode == 2 and "--resume" in again.stderr
    both = cli(
        "predict", "fill-mask", "--model", model, "--input", str(src), "--output", "x.jsonl", "a [MASK]"
    )
    assert both.returncode == 2 and "not both" in both.stderr


def test_question_answering_reads_question_and_context_columns(tmp_path, tiny_model):
    src, dst = tmp_path / "in.parquet", tmp_path / "out.parquet"
    write_input(
        src, [{"qid": 7, "q": "Who?", "c": "Ann lives in Paris."}, {"qid": 8, "q": "Where?", "c": None}]
    )
    out = cli(
        "predict",
        "question-answering",
        "--model",
        str(tiny_model("question-answering")),
        "--input",
        str(src),
        "--output",
        str(dst),
        "--question-column",
        "q",
        "--context-column",
        "c",
        "--id-column",
        "qid",
    )
    assert out.returncode == 0, out.stderr
    rows = read_output(dst)
    assert [r["id"] for r in rows] == [7, 8]
    assert set(rows[0]["prediction"]) == {"score", "start", "end", "answer"} and rows[0]["error"] is None
    assert rows[1]["error"] == "expected a string (context), got NoneType"


@pytest.mark.parametrize("fmt", ["jsonl", pytest.param("parquet", marks=pytest.mark.slow)])
def test_resume_after_kill_9_equals_an_uninterrupted_run(tmp_path, tiny_model, fmt):
    src = tmp_path / f"in.{fmt}"
    write_input(
        src, [{"id": i, "text": f"row {i} is the [MASK] of a city" if i % 97 else ""} for i in range(30000)]
    )
    model = str(tiny_model("fill-mask"))
    args = [
        "predict",
        "fill-mask",
        "--model",
        model,
        "--input",
        str(src),
        "--dtype",
        "float32",
        "--batch-size",
        "100",
        "-p",
        "top_k=1",
    ]
    killed = tmp_path / f"killed.{fmt}"
    progress = killed if fmt == "jsonl" else tmp_path / f"killed.{fmt}.partial"
    kill_9_when(
        lambda: (
            progress.exists()
            and (progress.stat().st_size > 20000 if fmt == "jsonl" else len(os.listdir(progress)) > 2)
        ),
        *args,
        "--output",
        str(killed),
    )
    partial = len(killed.read_text().splitlines()) if fmt == "jsonl" else len(os.listdir(progress))
    resumed = cli(*args, "--output", str(killed), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert 0 < summary["resumed_rows"] < 30000 and summary["rows"] == 30000 and summary["errors"] == 310
    whole = tmp_path / f"whole.{fmt}"
    assert cli(*args, "--output", str(whole)).returncode == 0
    if fmt == "jsonl":
        assert partial > 0 and killed.read_bytes() == whole.read_bytes()
    else:
        assert pq.read_table(killed).equals(pq.read_table(whole))
        assert not progress.exists()


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_uris_and_other_pyarrow_filesystems_get_the_bytes_of_a_local_run(tmp_path, predictor, fmt):
    src = tmp_path / f"in.{fmt}"
    write_input(src, [{"id": f"r{i}", "text": TEXTS[i % len(TEXTS)]} for i in range(20)])
    run = {"task": "fill-mask", "model": "unused", "params": {"top_k": 2}, "batch_size": 3}
    predict_file(BatchConfig(input=src, output=tmp_path / f"local.{fmt}", **run), predictor)
    local = (tmp_path / f"local.{fmt}").read_bytes()
    predict_file(BatchConfig(input=f"file://{src}", output=f"file://{tmp_path}/uri.{fmt}", **run), predictor)
    assert (tmp_path / f"uri.{fmt}").read_bytes() == local
    memory = pytest.importorskip("fsspec.implementations.memory")
    for fs in (pafs.SubTreeFileSystem(str(tmp_path), pafs.LocalFileSystem()),
               pafs.PyFileSystem(pafs.FSSpecHandler(memory.MemoryFileSystem()))):
        fs.create_dir(tmp_path.name)
        with fs.open_output_stream(f"{tmp_path.name}/in.{fmt}") as f:
            f.write(src.read_bytes())
        out = f"{tmp_path.name}/other.{fmt}"
        summary = predict_file(
            BatchConfig(input=f"{tmp_path.name}/in.{fmt}", output=out, filesystem=fs, **run), predictor
        )
        with fs.open_input_stream(out) as f:
            assert f.read() == local and summary.rows == 20
        assert fs.get_file_info(out + ".partial").type == pafs.FileType.NotFound


def test_cli_file_mode_honours_backend(tmp_path, tiny_model):
    """--backend reaches the loader with --input as it does with TEXT... (it used to be dropped):
    both run the model's cached ONNX Runtime graph and say so on stderr."""
    src = tmp_path / "in.jsonl"
    write_input(src, [{"text": "a [MASK]"}])
    model = str(tiny_model("fill-mask"))
    for mode in (["--input", str(src), "--output", str(tmp_path / "o.jsonl")], ["a [MASK]"]):
        done = cli("predict", "fill-mask", "--model", model, "--backend", "onnx", *mode)
        assert done.returncode == 0, done.stderr
        assert "engine: ONNX Runtime float32 (requested)" in done.stderr
    assert (tmp_path / "o.jsonl").exists()


def test_cli_refuses_a_uri_it_cannot_open_in_one_line_with_exit_2(tmp_path, tiny_model):
    src = tmp_path / "in.jsonl"
    write_input(src, [{"text": "a [MASK]"}])
    model = str(tiny_model("fill-mask"))
    unknown = cli(
        "predict", "fill-mask", "--model", model, "--input", "nope://bucket/in.jsonl", "--output", "o.jsonl"
    )
    unreachable = "s3://bucket/out.jsonl?endpoint_override=127.0.0.1:9&scheme=http&region=us-east-1"
    down = cli("predict", "fill-mask", "--model", model, "--input", str(src), "--output", unreachable)
    for done, flag, reason in ((unknown, "--input nope://", "Unrecognized filesystem"),
                               (down, f"--output {unreachable}", "Could not connect")):
        assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
        assert done.stderr.startswith(f"error: {flag}") and reason in done.stderr
