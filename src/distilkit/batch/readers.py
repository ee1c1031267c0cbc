"""Input files as streams of rows (JSONL, CSV, Parquet); a row that cannot be read is an error row.

Row numbers count data rows from 0 (blank lines in JSONL and CSV are not rows). A malformed
JSON line, a CSV record with the wrong number of fields or bytes that are not UTF-8 become an
``InputRow`` with ``error`` set, so the run goes on and the output keeps one row per input row.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from distilkit.batch.rows import InputRow

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # long contexts are legitimate fields


class InputFile:
    """One input file of a known format: its header (if it has one), rows from a given row, a row count."""

    def __init__(self, path: str | Path, fmt: str):
        self.path = Path(path)
        self.format = fmt
        self.header: list[str] | None = None
        self.id_type: Any = None  # the id column's Arrow type (Parquet input)
        if fmt == "csv":
            with self.path.open(newline="", encoding="utf-8", errors="surrogateescape") as f:
                self.header = next(csv.reader(f), None)
            if not self.header:
                raise ValueError(f"--input {self.path}: the CSV file has no header row")
        elif fmt == "parquet":
            import pyarrow.parquet as pq

            try:
                self._schema = pq.read_schema(self.path)
            except Exception as err:  # pyarrow raises ArrowInvalid/OSError for a file that is not Parquet
                raise ValueError(f"--input {self.path}: not a readable Parquet file ({err})") from err
            self.header = list(self._schema.names)

    def arrow_type(self, column: str) -> Any:
        """The Arrow type of ``column`` in a Parquet input, else None."""
        if self.format == "parquet" and column in self.header:  # type: ignore[operator]
            return self._schema.field(column).type
        return None

    def rows(self, start: int = 0) -> Iterator[InputRow]:
        """Rows from row number ``start`` on, in file order."""
        return {"jsonl": self._jsonl, "csv": self._csv, "parquet": self._parquet}[self.format](start)

    def count_rows(self) -> int:
        """The number of rows (cheap: Parquet metadata, or a byte scan of line ends; for progress only)."""
        if self.format == "parquet":
            import pyarrow.parquet as pq

            return pq.ParquetFile(self.path).metadata.num_rows
        lines = 0
        with self.path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                lines += block.count(b"\n")
        return max(0, lines - (1 if self.format == "csv" else 0))

    # --- formats ------------------------------------------------------------------------------------
    def _jsonl(self, start: int) -> Iterator[InputRow]:
        index = 0
        with self.path.open("rb") as f:
            for raw in f:
                if not raw.strip():
                    continue
                if index >= start:
                    yield parse_jsonl_line(index, raw)
                index += 1

    def _csv(self, start: int) -> Iterator[InputRow]:
        width = len(self.header)  # type: ignore[arg-type]
        with self.path.open(newline="", encoding="utf-8", errors="surrogateescape") as f:
            reader = csv.reader(f)
            next(reader)
            index = 0
            while True:
                try:
                    fields = next(reader)
                except StopIteration:
                    return
                except csv.Error as err:
                    row = InputRow(index, None, f"malformed CSV row: {err}")
                else:
                    if not fields:
                        continue
                    row = csv_row(index, self.header, fields, width)  # type: ignore[arg-type]
                if index >= start:
                    yield row
                index += 1

    def _parquet(self, start: int) -> Iterator[InputRow]:
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(self.path)
        first, groups = 0, []
        for g in range(pf.metadata.num_row_groups):  # skip whole row groups before ``start``
            n = pf.metadata.row_group(g).num_rows
            if first + n <= start and not groups:
                first += n
                continue
            groups.append(g)
        index = first
        for batch in pf.iter_batches(batch_size=1024, row_groups=groups):
            for data in batch.to_pylist():
                if index >= start:
                    yield InputRow(index, data)
                index += 1


def parse_jsonl_line(index: int, raw: bytes | str) -> InputRow:
    """One JSONL line -> a row (an object), or an error row saying why it is not one."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError as err:
        return InputRow(index, None, f"unreadable row: not valid UTF-8 ({err.reason} at byte {err.start})")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        return InputRow(index, None, f"malformed JSON: {err.msg} at column {err.colno}")
    if not isinstance(data, dict):
        return InputRow(index, None, f"malformed row: expected a JSON object, got {type(data).__name__}")
    return InputRow(index, data)


def csv_row(index: int, header: list[str], fields: list[str], width: int) -> InputRow:
    """One CSV record -> a row, or an error row (wrong field count, bytes that are not UTF-8)."""
    if len(fields) != width:
        return InputRow(index, None, f"malformed CSV row: {len(fields)} fields, the header has {width}")
    for value in fields:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # surrogateescape'd bytes: the file is not UTF-8 here
            return InputRow(index, None, "unreadable row: not valid UTF-8")
    return InputRow(index, dict(zip(header, fields, strict=True)))
