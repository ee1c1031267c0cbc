"""``--engine ray`` on a local 2-worker Ray: the same rows, ids, errors and predictions as the local engine."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("ray.data", reason="Ray is optional: pip install 'distilkit[ray]'")

from test_batch_predict import TEXTS, cli, read_output, write_input  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_ray_engine_with_two_workers_equals_the_local_engine(tmp_path, tiny_model, fmt):
    src = tmp_path / f"in.{fmt}"
    rows = [{"id": f"r{i}", "text": TEXTS[i % len(TEXTS)]} for i in range(60)]
    write_input(src, rows)
    if fmt == "jsonl":
        src.write_text(src.read_text() + "{not json\n")  # a malformed line is one error row on both engines
    model = str(tiny_model("fill-mask"))
    common = ["predict", "fill-mask", "--model", model, "--input", str(src), "--dtype", "float32", "--batch-size", "16"]
    local = cli(*common, "--output", str(tmp_path / f"local.{fmt}"))
    assert local.returncode == 0, local.stderr
    ray = cli(*common, "--output", str(tmp_path / f"ray.{fmt}"), "--engine", "ray", "--num-workers", "2")
    assert ray.returncode == 0, ray.stderr[-3000:]
    assert json.loads(ray.stdout.strip().splitlines()[-1])["rows"] == len(read_output(tmp_path / f"local.{fmt}"))
    got, want = read_output(tmp_path / f"ray.{fmt}"), read_output(tmp_path / f"local.{fmt}")
    assert [(r["id"], r["error"]) for r in got] == [(r["id"], r["error"]) for r in want]
    def flat(prediction):  # one list per mask when a text has several
        return sum(prediction, []) if isinstance(prediction[0], list) else prediction

    for g, w in zip(got, want, strict=True):
        if w["prediction"] is not None:
            g, w = flat(g["prediction"]), flat(w["prediction"])
            assert [c["token"] for c in g] == [c["token"] for c in w]
            assert [c["score"] for c in g] == pytest.approx([c["score"] for c in w], abs=1e-5)
