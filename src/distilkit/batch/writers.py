"""Output files written one chunk at a time so that a kill never leaves a torn row behind.

- A local JSONL or CSV output: each chunk is appended with one ``write`` of complete lines, then
  ``fsync``. ``--resume`` scans the file, drops a torn tail (an unterminated line, a line that does
  not parse) and keeps complete rows up to the last whole chunk, so the resumed run re-predicts
  exactly the chunks an uninterrupted run would and the final file is the same.
- Parquet (which cannot be appended to), and JSONL or CSV on any other filesystem (object stores
  cannot append either): each chunk is its own part file in ``OUTPUT.partial/`` (written to a
  temporary name, then moved: a part is whole or absent). When the run ends the parts are joined
  into ``OUTPUT`` (again via a move) and the folder is removed. A joined JSONL/CSV file has the
  bytes an append-only run writes; a joined Parquet file has one row group per chunk. ``--resume``
  keeps every whole part, and moves a finished or stopped run's ``OUTPUT`` back into part 0.

Output rows are ``{"id", "prediction", "error"}``; CSV and Parquet hold the prediction as a JSON
string, and CSV writes a null error as an empty field.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any, BinaryIO

from distilkit.batch.storage import Location
from distilkit.errors import UserError

COLUMNS = ("id", "prediction", "error")
Scan = tuple[list[int], list[bool], list[Any]]  # end offset, is-error and id of each complete row


def open_output(path: str | Path | Location, fmt: str, *, resume: bool, overwrite: bool,
                id_type: Any = None) -> OutputFile:
    """The writer for ``path`` (a local path or a Location) in format ``fmt``; refuses to clobber an output.

    Raises:
        UserError: the output exists and neither ``--resume`` nor ``--overwrite`` was given.
    """
    location = Location.of(path)
    if fmt == "parquet":
        out: OutputFile = ParquetOutput(location, id_type)
    elif location.is_local:
        out = LineOutput(location, CODECS[fmt])
    else:
        out = LinePartsOutput(location, CODECS[fmt])
    if out.exists() and not resume:
        if not overwrite:
            raise UserError(
                f"--output {location.text} exists; pass --resume to continue it or --overwrite to replace it"
            )
        out.remove()
    return out


def append(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd`` and make it durable (the chunk is on disk when this returns)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    os.fsync(fd)


# --- line formats: how rows become bytes, and how a file's complete rows are found -------------------
class JsonlCodec:
    extension = ".jsonl"
    header = b""

    @staticmethod
    def encode(rows: list[dict[str, Any]]) -> bytes:
        return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8")

    @staticmethod
    def scan(f: BinaryIO) -> Scan:
        ends, errors, ids, offset = [], [], [], 0
        for line in f:
            if not line.endswith(b"\n"):
                break  # torn last line
            try:
                row = json.loads(line)
            except ValueError:
                break
            if not isinstance(row, dict) or set(row) != set(COLUMNS):
                break
            offset += len(line)
            ends.append(offset)
            errors.append(row["error"] is not None)
            ids.append(row["id"])
        return ends, errors, ids


def _csv_bytes(records: list[list[Any]]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(records)
    return buf.getvalue().encode("utf-8")


class CsvCodec:
    extension = ".csv"
    header = _csv_bytes([list(COLUMNS)])

    @staticmethod
    def encode(rows: list[dict[str, Any]]) -> bytes:
        return _csv_bytes(
            [
                [
                    row["id"],
                    "" if row["prediction"] is None else json.dumps(row["prediction"], ensure_ascii=False),
                    row["error"] or "",
                ]
                for row in rows
            ]
        )

    @staticmethod
    def scan(f: BinaryIO) -> Scan:
        """Complete records after a complete header (none without one); offsets count the header."""
        data = f.read()
        consumed = 0

        def lines():  # csv.reader pulls exactly the lines of one record, so ``consumed`` ends it
            nonlocal consumed
            for line in io.BytesIO(data):
                consumed += len(line)
                yield line.decode("utf-8", errors="surrogateescape")

        ends, errors, ids = [], [], []
        reader = csv.reader(lines(), strict=True)
        try:
            if next(reader, None) != list(COLUMNS) or data[consumed - 1:consumed] != b"\n":
                return [], [], []  # no complete header: the file starts again
            for record in reader:
                if len(record) != len(COLUMNS) or data[consumed - 1:consumed] != b"\n":
                    break
                ends.append(consumed)
                errors.append(record[2] != "")
                ids.append(record[0])
        except csv.Error:  # e.g. the file ends inside a quoted field
            pass
        return ends, errors, ids


CODECS = {"jsonl": JsonlCodec, "csv": CsvCodec}


# --- writers ------------------------------------------------------------------------------------------
class OutputFile:
    """Base of the writers: ``resume(chunk)`` -> (rows kept, errors among them); ``write``; ``close``."""

    def __init__(self, location: Location):
        self.location = location
        self.last_id: Any = None  # id of the last kept row (to check a resumed output matches its input)

    def exists(self) -> bool:
        return self.location.exists()

    def remove(self) -> None:
        self.location.remove()

    def resume(self, chunk: int) -> tuple[int, int]:
        raise NotImplementedError

    def write(self, rows: list[dict[str, Any]]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Finish the output (a parted output joins its parts)."""


class LineOutput(OutputFile):
    """A local JSONL or CSV output: an append-only file of complete lines, fsynced per chunk."""

    def __init__(self, location: Location, codec: Any):
        super().__init__(location)
        self.path = Path(location.path)
        self.codec = codec

    def resume(self, chunk: int) -> tuple[int, int]:
        if self.path.exists():
            with self.path.open("rb") as f:
                ends, errors, ids = self.codec.scan(f)
        else:
            ends, errors, ids = [], [], []
        keep = len(ends) // chunk * chunk
        offset = ends[keep - 1] if keep else 0
        self.last_id = ids[keep - 1] if keep else None
        if self.path.exists():
            os.truncate(self.path, offset)
        fresh = not self.path.exists() or self.path.stat().st_size == 0
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        if fresh:
            append(self.fd, self.codec.header)
        return keep, sum(errors[:keep])

    def write(self, rows: list[dict[str, Any]]) -> None:
        append(self.fd, self.codec.encode(rows))

    def close(self) -> None:
        os.close(self.fd)


class PartsOutput(OutputFile):
    """An output kept as one part file per chunk in ``OUTPUT.partial/`` and joined into OUTPUT at the end."""

    extension = ""

    def __init__(self, location: Location):
        super().__init__(location)
        self.parts = location.with_suffix_added(".partial")
        self.count = 0

    def exists(self) -> bool:
        return self.location.exists() or self.parts.exists()

    def remove(self) -> None:
        self.location.remove()
        self.parts.remove_tree()

    def resume(self, chunk: int) -> tuple[int, int]:
        self.parts.make_dir()
        if self.location.exists() and not self._part_files():
            self._adopt(chunk)  # a finished or stopped run's file becomes part 0
        for tmp in self.parts.glob("*.tmp"):  # writes a kill interrupted
            tmp.remove()
        rows = errors = 0
        parts = self._part_files()
        for i, part in enumerate(parts):
            counted = self._count(part)
            if counted is None:  # a damaged part (renames make this rare): it and what follows go
                for later in parts[i:]:
                    later.remove()
                break
            rows, errors, self.last_id, self.count = rows + counted[0], errors + counted[1], counted[2], i + 1
        return rows, errors

    def write(self, rows: list[dict[str, Any]]) -> None:
        (self.parts / f"part-{self.count:06d}{self.extension}").write_atomic(self._encode(rows))
        self.count += 1

    def close(self) -> None:
        """Join the parts into OUTPUT (via ``OUTPUT.tmp`` and a move); remove ``OUTPUT.partial/``."""
        tmp = self.location.with_suffix_added(".tmp")
        with tmp.open_write() as f:
            self._join(f, self._part_files())
        tmp.move_to(self.location)
        self.parts.remove_tree()

    def _part_files(self) -> list[Location]:
        return self.parts.glob(f"part-*{self.extension}")

    def _adopt(self, chunk: int) -> None:
        raise NotImplementedError

    def _count(self, part: Location) -> tuple[int, int, Any] | None:
        """(rows, errors, last id) of a part, or None when it is damaged."""
        raise NotImplementedError

    def _encode(self, rows: list[dict[str, Any]]) -> bytes:
        raise NotImplementedError

    def _join(self, f: BinaryIO, parts: list[Location]) -> None:
        raise NotImplementedError


class LinePartsOutput(PartsOutput):
    """JSONL or CSV on a filesystem without appends: parts hold complete lines (no header)."""

    def __init__(self, location: Location, codec: Any):
        super().__init__(location)
        self.codec = codec
        self.extension = codec.extension

    def _adopt(self, chunk: int) -> None:
        data = self.location.read_bytes()
        ends = self.codec.scan(io.BytesIO(data))[0]
        keep = len(ends) // chunk * chunk  # as a local resume does: whole chunks only
        if keep:
            (self.parts / f"part-000000{self.extension}").write_atomic(
                data[len(self.codec.header) : ends[keep - 1]]
            )
        self.location.remove()

    def _count(self, part: Location) -> tuple[int, int, Any] | None:
        data = self.codec.header + part.read_bytes()
        ends, errors, ids = self.codec.scan(io.BytesIO(data))
        if not ends or ends[-1] != len(data):
            return None
        return len(ends), sum(errors), ids[-1]

    def _encode(self, rows: list[dict[str, Any]]) -> bytes:
        return self.codec.encode(rows)

    def _join(self, f: BinaryIO, parts: list[Location]) -> None:
        f.write(self.codec.header)
        f.writelines(part.read_bytes() for part in parts)


class ParquetOutput(PartsOutput):
    """Parquet: parts are Parquet files of one chunk each; the joined file has one row group per chunk."""

    extension = ".parquet"

    def __init__(self, location: Location, id_type: Any = None):
        import pyarrow as pa

        super().__init__(location)
        self.schema = pa.schema(
            [("id", id_type or pa.int64()), ("prediction", pa.string()), ("error", pa.string())]
        )

    def _adopt(self, chunk: int) -> None:
        self.location.move_to(self.parts / "part-000000.parquet")

    def _count(self, part: Location) -> tuple[int, int, Any] | None:
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(part.path, columns=["id", "error"], filesystem=part.fs)
        except Exception:  # noqa: BLE001 - pyarrow raises several types for a damaged file
            return None
        if not table.num_rows:
            return 0, 0, self.last_id
        return (
            table.num_rows,
            table.num_rows - table.column("error").null_count,
            table.column("id")[-1].as_py(),
        )

    def _encode(self, rows: list[dict[str, Any]]) -> bytes:
        import pyarrow as pa
        import pyarrow.parquet as pq

        ids = [row["id"] for row in rows]
        if pa.types.is_string(self.schema.field("id").type):
            ids = [i if isinstance(i, str) else json.dumps(i) for i in ids]
        table = pa.table(
            [
                ids,
                [
                    None if r["prediction"] is None else json.dumps(r["prediction"], ensure_ascii=False)
                    for r in rows
                ],
                [r["error"] for r in rows],
            ],
            schema=self.schema,
        )
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        return sink.getvalue().to_pybytes()

    def _join(self, f: BinaryIO, parts: list[Location]) -> None:
        import pyarrow.parquet as pq

        with pq.ParquetWriter(f, self.schema) as writer:
            for part in parts:
                writer.write_table(pq.read_table(part.path, schema=self.schema, filesystem=part.fs))
