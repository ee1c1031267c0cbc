"""Output files written one chunk at a time so that a kill never leaves a torn row behind.

- JSONL and CSV: each chunk is appended with one ``write`` of complete lines, then ``fsync``.
  ``--resume`` scans the file, drops a torn tail (an unterminated line, a line that does not
  parse) and keeps complete rows up to the last whole chunk, so the resumed run re-predicts
  exactly the chunks an uninterrupted run would and the final file is the same.
- Parquet cannot be appended to, so each chunk is its own part file in ``OUTPUT.partial/``
  (written to a temporary name, fsynced, then renamed: a part is whole or absent). When the run
  ends the parts are joined, one row group per chunk, into ``OUTPUT`` (again via a rename) and
  the directory is removed. Until then ``OUTPUT.partial/`` is a valid Parquet dataset.

Output rows are ``{"id", "prediction", "error"}``; CSV and Parquet hold the prediction as a JSON
string, and CSV writes a null error as an empty field.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from pathlib import Path
from typing import Any

COLUMNS = ("id", "prediction", "error")


def open_output(path: str | Path, fmt: str, *, resume: bool, overwrite: bool, id_type: Any = None) -> OutputFile:
    """The writer for ``path`` in format ``fmt``; refuses to clobber an existing output by accident.

    Raises:
        ValueError: the output exists and neither ``--resume`` nor ``--overwrite`` was given.
    """
    cls = {"jsonl": JsonlOutput, "csv": CsvOutput, "parquet": ParquetOutput}[fmt]
    out = cls(Path(path), id_type) if fmt == "parquet" else cls(Path(path))
    if out.exists() and not resume:
        if not overwrite:
            raise ValueError(f"--output {path} exists; pass --resume to continue it or --overwrite to replace it")
        out.remove()
    return out


def append(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd`` and make it durable (the chunk is on disk when this returns)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    os.fsync(fd)


class OutputFile:
    """Base of the three writers: ``resume(chunk)`` -> (rows kept, errors among them); ``write``; ``close``."""

    def __init__(self, path: Path):
        self.path = path
        self.last_id: Any = None  # id of the last kept row (to check a resumed output matches its input)

    def exists(self) -> bool:
        return self.path.exists()

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)

    def write(self, rows: list[dict[str, Any]]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Finish the output (Parquet joins its parts)."""


class _LineOutput(OutputFile):
    """Shared by JSONL and CSV: an append-only file of complete lines."""

    def resume(self, chunk: int) -> tuple[int, int]:
        ends, errors, ids = self._scan() if self.path.exists() else ([], [], [])
        keep = len(ends) // chunk * chunk
        offset = ends[keep - 1] if keep else 0
        self.last_id = ids[keep - 1] if keep else None
        if self.path.exists():
            os.truncate(self.path, offset)
        self._open()
        return keep, sum(errors[:keep])

    def _open(self) -> None:
        fresh = not self.path.exists() or self.path.stat().st_size == 0
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        if fresh:
            append(self.fd, self._header())

    def _header(self) -> bytes:
        return b""

    def close(self) -> None:
        os.close(self.fd)


class JsonlOutput(_LineOutput):
    def _scan(self) -> tuple[list[int], list[bool], list[Any]]:
        ends, errors, ids, offset = [], [], [], 0
        with self.path.open("rb") as f:
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

    def write(self, rows: list[dict[str, Any]]) -> None:
        text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        append(self.fd, text.encode("utf-8"))


class CsvOutput(_LineOutput):
    def _header(self) -> bytes:
        return self._encode([list(COLUMNS)])

    @staticmethod
    def _encode(records: list[list[Any]]) -> bytes:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(records)
        return buf.getvalue().encode("utf-8")

    def _scan(self) -> tuple[list[int], list[bool], list[Any]]:
        data = self.path.read_bytes()
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
                os.truncate(self.path, 0)  # no complete header: start the file again
                return [], [], []
            for record in reader:
                if len(record) != len(COLUMNS) or data[consumed - 1:consumed] != b"\n":
                    break
                ends.append(consumed)
                errors.append(record[2] != "")
                ids.append(record[0])
        except csv.Error:  # e.g. the file ends inside a quoted field
            pass
        return ends, errors, ids

    def write(self, rows: list[dict[str, Any]]) -> None:
        records = [
            [row["id"], "" if row["prediction"] is None else json.dumps(row["prediction"], ensure_ascii=False),
             row["error"] or ""]
            for row in rows
        ]
        append(self.fd, self._encode(records))


class ParquetOutput(OutputFile):
    def __init__(self, path: Path, id_type: Any = None):
        import pyarrow as pa

        super().__init__(path)
        self.parts = Path(str(path) + ".partial")
        self.schema = pa.schema([("id", id_type or pa.int64()), ("prediction", pa.string()), ("error", pa.string())])
        self.count = 0

    def exists(self) -> bool:
        return self.path.exists() or self.parts.exists()

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
        shutil.rmtree(self.parts, ignore_errors=True)

    def resume(self, chunk: int) -> tuple[int, int]:
        import pyarrow.parquet as pq

        self.parts.mkdir(exist_ok=True)
        if self.path.exists() and not any(self.parts.glob("part-*.parquet")):
            os.replace(self.path, self.parts / "part-000000.parquet")  # a finished or stopped run's file
        for tmp in self.parts.glob("*.tmp"):
            tmp.unlink()
        rows = errors = 0
        for part in sorted(self.parts.glob("part-*.parquet")):
            try:
                table = pq.read_table(part, columns=["id", "error"])
            except Exception:  # noqa: BLE001 - pyarrow raises several types for a damaged file; renames make this rare
                part.unlink()
                continue
            rows += table.num_rows
            errors += table.num_rows - table.column("error").null_count
            self.last_id = table.column("id")[-1].as_py() if table.num_rows else self.last_id
            self.count += 1
        return rows, errors

    def write(self, rows: list[dict[str, Any]]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        ids = [row["id"] for row in rows]
        if pa.types.is_string(self.schema.field("id").type):
            ids = [i if isinstance(i, str) else json.dumps(i) for i in ids]
        table = pa.table(
            [ids, [None if r["prediction"] is None else json.dumps(r["prediction"], ensure_ascii=False) for r in rows],
             [r["error"] for r in rows]],
            schema=self.schema,
        )
        part = self.parts / f"part-{self.count:06d}.parquet"
        tmp = part.with_suffix(".tmp")
        pq.write_table(table, tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, part)
        self.count += 1

    def close(self) -> None:
        """Join the parts (one row group each) into OUTPUT with a rename; remove OUTPUT.partial/."""
        import pyarrow.parquet as pq

        tmp = Path(str(self.path) + ".tmp")
        with pq.ParquetWriter(tmp, self.schema) as writer:
            for part in sorted(self.parts.glob("part-*.parquet")):
                writer.write_table(pq.read_table(part, schema=self.schema))
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        shutil.rmtree(self.parts)
