"""Readers and writers without a model: error rows, spans, torn tails, chunk-aligned resume, parts."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from distilkit.batch.config import BatchConfig
from distilkit.batch.readers import InputFile
from distilkit.batch.storage import Location
from distilkit.batch.writers import open_output


def rows_of(n, error_every=3):
    return [{"id": i, "prediction": [{"score": i / 10}], "error": "bad" if i % error_every == 0 else None}
            for i in range(n)]


def test_jsonl_reader_turns_unreadable_lines_into_error_rows_and_skips_blank_lines(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"text": "a"}\n\n{oops\n"just a string"\n\xff\xfe\n{"text": "b"}\n')
    rows = list(InputFile(path, "jsonl").rows())
    assert [r.index for r in rows] == [0, 1, 2, 3, 4]
    assert rows[0].data == {"text": "a"} and rows[4].data == {"text": "b"}
    assert rows[1].error.startswith("malformed JSON")
    assert "expected a JSON object" in rows[2].error
    assert "not valid UTF-8" in rows[3].error
    assert [r.index for r in InputFile(path, "jsonl").rows(3)] == [3, 4]


def test_csv_reader_flags_rows_with_the_wrong_field_count_and_keeps_quoted_newlines(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text('id,text\n1,"two\nlines"\n2,a,b\n3,c\n', encoding="utf-8")
    source = InputFile(path, "csv")
    rows = list(source.rows())
    assert source.header == ["id", "text"]
    assert rows[0].data == {"id": "1", "text": "two\nlines"}
    assert rows[1].error == "malformed CSV row: 3 fields, the header has 2"
    assert rows[2].data == {"id": "3", "text": "c"}


def test_parquet_reader_starts_at_a_row_inside_a_later_row_group(tmp_path):
    path = tmp_path / "in.parquet"
    pq.write_table(pa.table({"text": [f"t{i}" for i in range(10)]}), path, row_group_size=3)
    source = InputFile(path, "parquet")
    assert source.count_rows() == 10
    assert [r.data["text"] for r in source.rows(7)] == ["t7", "t8", "t9"]
    assert [r.index for r in source.rows(7)] == [7, 8, 9]


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_resume_drops_a_torn_tail_and_keeps_whole_chunks(tmp_path, fmt):
    path = tmp_path / f"out.{fmt}"
    out = open_output(path, fmt, resume=False, overwrite=False)
    assert out.resume(4) == (0, 0)
    rows = rows_of(10)
    for start in (0, 4, 8):
        out.write(rows[start:start + 4])
    out.close()
    complete = path.read_bytes()
    path.write_bytes(complete[:-7])  # tear the last line (row 9)
    out = open_output(path, fmt, resume=True, overwrite=False)
    kept, errors = out.resume(4)
    assert (kept, errors) == (8, 3)  # rows 0..7 are two whole chunks; errors at 0, 3, 6
    assert str(out.last_id) == "7"
    out.write(rows[8:])
    out.close()
    assert path.read_bytes() == complete


def test_csv_resume_treats_a_file_ending_inside_a_quoted_field_as_torn(tmp_path):
    path = tmp_path / "out.csv"
    out = open_output(path, "csv", resume=False, overwrite=False)
    out.resume(1)
    out.write(rows_of(2))
    out.close()
    text = path.read_text(encoding="utf-8")
    path.write_text(text + '2,"[{""score"":\n', encoding="utf-8")  # torn right after a line end
    out = open_output(path, "csv", resume=True, overwrite=False)
    assert out.resume(1)[0] == 2
    out.close()
    assert path.read_text(encoding="utf-8") == text


def test_existing_output_is_refused_without_resume_or_overwrite(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_text("x\n")
    with pytest.raises(ValueError, match="pass --resume to continue it or --overwrite"):
        open_output(path, "jsonl", resume=False, overwrite=False)
    open_output(path, "jsonl", resume=False, overwrite=True)
    assert not path.exists()


def test_parquet_parts_are_joined_on_close_and_resumed_from(tmp_path):
    path = tmp_path / "out.parquet"
    out = open_output(path, "parquet", resume=False, overwrite=False, id_type=pa.int64())
    out.resume(4)
    rows = rows_of(10)
    out.write(rows[:4])
    out.write(rows[4:8])
    Path(out.parts.path, "part-000002.tmp").write_bytes(b"half a part")  # a write the kill interrupted
    out = open_output(path, "parquet", resume=True, overwrite=False, id_type=pa.int64())
    assert out.resume(4) == (8, 3) and out.last_id == 7
    out.write(rows[8:])
    out.close()
    table = pq.read_table(path)
    assert not out.parts.exists()
    assert table.column("id").to_pylist() == list(range(10))
    assert [json.loads(p) for p in table.column("prediction").to_pylist()] == [r["prediction"] for r in rows]
    assert pq.ParquetFile(path).metadata.num_row_groups == 3  # one row group per chunk


def test_config_names_the_flag_of_a_bad_value(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text("")
    with pytest.raises(ValueError, match="--batch-size must be >= 1"):
        BatchConfig("fill-mask", "m", src, tmp_path / "o.jsonl", batch_size=0)
    (tmp_path / "in.txt").write_text("")
    with pytest.raises(ValueError, match="--input-format"):
        BatchConfig("fill-mask", "m", tmp_path / "in.txt", tmp_path / "o.jsonl")
    with pytest.raises(ValueError, match="--engine must be one of"):
        BatchConfig("fill-mask", "m", src, tmp_path / "o.jsonl", engine="spark")
    assert BatchConfig("fill-mask", "m", src, tmp_path / "o.csv").resolved_output_format() == "csv"
    assert BatchConfig("fill-mask", "m", src, tmp_path / "o.out").resolved_output_format() == "jsonl"


# Pieces of JSONL and CSV files, good and bad: blank lines, CRLF, a bare CR, quoted newlines,
# wrong field counts, bytes that are not UTF-8, a NUL (csv.Error), an unterminated quote.
JSONL_PIECES = [b'{"text": "a"}\n', b"\n", b"  \r\n", b"{oops\n", b'"str"\n', b"\xff\xfe\n",
                b'{"text": "b"}\r\n', b'{"text": "caf\xc3\xa9"}\n', b'{"text": "no end"}']
CSV_PIECES = [b"1,a\n", b"2,b\r\n", b"\n", b'3,"two\nlines"\n', b"4,a,b\n", b"5\n", b"6,\xff\n", b"7,\x00\n",
              b'8,"x""y"\n', b"9,c\r", b'10,"open\n', b"11,last"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fmt=st.sampled_from(["jsonl", "csv"]), picks=st.lists(st.integers(0, 11), max_size=14),
       start=st.integers(0, 15), size=st.integers(1, 6))
def test_spans_read_on_their_own_give_exactly_the_rows_of_a_whole_read(tmp_path, fmt, picks, start, size):
    pieces = JSONL_PIECES if fmt == "jsonl" else CSV_PIECES
    path = tmp_path / f"in.{fmt}"
    path.write_bytes((b"" if fmt == "jsonl" else b"id,text\n")
                     + b"".join(pieces[i % len(pieces)] for i in picks))
    source = InputFile(path, fmt)
    whole = list(source.rows())
    spans = source.spans(start, size)
    assert all(rows == size for _, _, rows in spans[:-1])
    assert sum(rows for _, _, rows in spans) == len(whole[start:])
    assert [row for first, offset, rows in spans
            for row in source.rows(first, offset, first + rows)] == whole[start:]


def test_parquet_spans_need_no_offsets_and_stop_where_asked(tmp_path):
    path = tmp_path / "in.parquet"
    pq.write_table(pa.table({"text": [f"t{i}" for i in range(10)]}), path, row_group_size=3)
    source = InputFile(path, "parquet")
    assert source.spans(2, 4) == [(2, None, 4), (6, None, 4)]
    assert [r.index for r in source.rows(6, None, 8)] == [6, 7]


def other_filesystems(tmp_path):
    """A pyarrow filesystem that is not the local one (a sub-tree), and fsspec's in-memory one if
    installed."""
    (tmp_path / "sub").mkdir()
    yield pafs.SubTreeFileSystem(str(tmp_path / "sub"), pafs.LocalFileSystem())
    memory = pytest.importorskip("fsspec.implementations.memory")
    yield pafs.PyFileSystem(pafs.FSSpecHandler(memory.MemoryFileSystem()))


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_outputs_on_other_filesystems_join_their_parts_into_the_local_bytes(tmp_path, fmt):
    rows = rows_of(10)
    local = open_output(tmp_path / f"local.{fmt}", fmt, resume=False, overwrite=False)
    local.resume(4)
    for start in (0, 4, 8):
        local.write(rows[start:start + 4])
    local.close()
    run = tmp_path.name  # fsspec's memory filesystem is one store for the whole process
    for fs in other_filesystems(tmp_path):
        where = Location(fs, f"{run}/out.{fmt}", f"out.{fmt}")
        out = open_output(where, fmt, resume=False, overwrite=False)
        out.resume(4)
        out.write(rows[:4])
        out.write(rows[4:8])  # then killed: no close, and a part half written
        with fs.open_output_stream(f"{run}/out.{fmt}.partial/part-000002.tmp") as f:
            f.write(b"half a part")
        out = open_output(where, fmt, resume=True, overwrite=False)
        assert out.resume(4) == (8, 3) and str(out.last_id) == "7"
        out.write(rows[8:])
        out.close()
        assert where.read_bytes() == (tmp_path / f"local.{fmt}").read_bytes()
        # no parts left
        assert [i.base_name for i in fs.get_file_info(pafs.FileSelector(run))] == [f"out.{fmt}"]


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_resuming_a_finished_output_on_another_filesystem_keeps_its_whole_chunks(tmp_path, fmt):
    rows = rows_of(10)
    fs = next(other_filesystems(tmp_path))
    where = Location(fs, f"out.{fmt}", f"out.{fmt}")
    out = open_output(where, fmt, resume=False, overwrite=False)
    out.resume(3)
    for start in range(0, 10, 3):
        out.write(rows[start:start + 3])
    out.close()
    finished = where.read_bytes()
    out = open_output(where, fmt, resume=True, overwrite=False)
    assert out.resume(4) == (8, 3)  # 10 rows read back as chunks of 4: two whole chunks
    out.write(rows[8:])
    out.close()
    assert where.read_bytes() == finished
