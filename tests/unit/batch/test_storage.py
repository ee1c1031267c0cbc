"""Resolving --input/--output: local paths, file:// URIs, other pyarrow filesystems, one-line errors."""

from __future__ import annotations

import os

import pyarrow.fs as pafs
import pytest

from distilkit.batch.config import BatchConfig, format_from_path
from distilkit.batch.storage import resolve, resolve_files


def test_paths_and_file_uris_are_local_and_other_filesystems_are_not(tmp_path):
    (tmp_path / "in.jsonl").write_text("{}\n")
    assert resolve("in.jsonl", "--input").path == os.path.abspath("in.jsonl")
    uri = resolve(f"file://{tmp_path}/in.jsonl", "--input")
    assert uri.is_local and uri.path == f"{tmp_path}/in.jsonl" and uri.is_file()
    sub = resolve("in.jsonl", "--input", pafs.SubTreeFileSystem(str(tmp_path), pafs.LocalFileSystem()))
    assert not sub.is_local and sub.is_file() and sub.read_bytes() == b"{}\n"


def test_a_uri_that_cannot_be_opened_is_one_line_naming_the_flag():
    # (an unreachable filesystem: tests/integration/test_batch_predict.py, through the CLI)
    with pytest.raises(ValueError) as err:
        resolve("nope://bucket/in.jsonl", "--output")
    message = str(err.value)
    assert message.startswith("--output nope://bucket/in.jsonl: cannot open it (Unrecognized filesystem type")
    assert "\n" not in message and "file:///" in message  # says what to pass instead


def test_uris_skip_the_local_checks_and_give_their_format_without_the_query(tmp_path):
    config = BatchConfig("fill-mask", "m", "s3://b/in.parquet?region=eu-west-1", tmp_path / "out.jsonl")
    assert config.resolved_input_format() == "parquet" and format_from_path("gs://b/x.csv") == "csv"
    (tmp_path / "in.jsonl").write_text("{}\n")
    same = BatchConfig("fill-mask", "m", tmp_path / "in.jsonl", f"file://{tmp_path}/in.jsonl")
    with pytest.raises(ValueError, match="--output must differ from --input"):
        resolve_files(same)
    missing = BatchConfig("fill-mask", "m", f"file://{tmp_path}/none.jsonl", tmp_path / "out.jsonl")
    with pytest.raises(ValueError, match="none.jsonl: no such file"):
        resolve_files(missing)
