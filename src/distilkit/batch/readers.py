"""Input files as streams of rows (JSONL, CSV, Parquet); a row that cannot be read is an error row.

Row numbers count data rows from 0 (blank lines in JSONL and CSV are not rows). A malformed
JSON line, a CSV record with the wrong number of fields or bytes that are not UTF-8 become an
``InputRow`` with ``error`` set, so the run goes on and the output keeps one row per input row.
``InputFile.spans`` cuts a file into runs of rows that read alone exactly as in a whole-file read
(the Ray engine's actors each read their own).
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from distilkit.batch.rows import InputRow
from distilkit.batch.storage import Location
from distilkit.errors import UserError

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # long contexts are legitimate fields


class InputFile:
    """One input file of a known format: its header (if it has one), rows from a given row, a row count.

    ``path`` is a local path or a Location (a file on any pyarrow filesystem).
    """

    def __init__(self, path: str | Path | Location, fmt: str):
        self.location = Location.of(path)
        self.format = fmt
        self.header: list[str] | None = None
        if fmt == "csv":
            with self._open_text() as f:
                self.header = next(csv.reader(f), None)
            if not self.header:
                raise UserError(f"--input {self.location.text}: the CSV file has no header row")
        elif fmt == "parquet":
            import pyarrow.parquet as pq

            try:
                self._schema = pq.read_schema(self.location.path, filesystem=self.location.fs)
            except Exception as err:  # pyarrow raises ArrowInvalid/OSError for a file that is not Parquet
                raise UserError(f"--input {self.location.text}: not a readable Parquet file ({err})") from err
            self.header = list(self._schema.names)

    def _open_text(self, offset: int = 0) -> TextIO:
        # newline="": csv handles line ends itself (quoted fields may hold newlines)
        return io.TextIOWrapper(self.location.open_read(offset), encoding="utf-8", errors="surrogateescape",
                                newline="")

    def _parquet_file(self) -> Any:
        import pyarrow.parquet as pq

        return pq.ParquetFile(self.location.path, filesystem=self.location.fs)

    def arrow_type(self, column: str) -> Any:
        """The Arrow type of ``column`` in a Parquet input, else None."""
        if self.format == "parquet" and column in self.header:  # type: ignore[operator]
            return self._schema.field(column).type
        return None

    def rows(self, start: int = 0, offset: int | None = None, stop: int | None = None) -> Iterator[InputRow]:
        """Rows ``start`` (a row number) up to ``stop`` (exclusive; None: the end), in file order.

        ``offset``, from ``spans``, is where row ``start`` begins in a JSONL or CSV file: reading
        seeks there instead of scanning the rows before it.
        """
        if self.format == "parquet":
            yield from itertools.islice(self._parquet(start), None if stop is None else max(stop - start, 0))
            return
        index = start if offset else 0  # offset 0 (or None) is the top of the file: row 0, or the CSV header
        for record, _ in self._records(offset or 0):
            if stop is not None and index >= stop:
                return
            if index >= start:
                yield self._row(index, record)
            index += 1

    def spans(self, start: int, size: int) -> list[tuple[int, int | None, int]]:
        """The rows from ``start`` on cut into spans of ``size`` rows: (first row, its offset, rows) each.

        One pass over the file with the reader ``rows`` uses, so a span read on its own (``rows(first,
        offset, first + rows)``) gives exactly the rows a whole-file read gives. Parquet needs no
        offsets (None): its row groups are found from the metadata.
        """
        if self.format == "parquet":
            total = self.count_rows()
            return [(first, None, min(size, total - first)) for first in range(start, total, size)]
        spans: list[list[Any]] = []
        for index, (_, begin) in enumerate(self._records(0)):
            if index >= start and (index - start) % size == 0:
                spans.append([index, begin, 0])
            if index >= start:
                spans[-1][2] += 1
        return [tuple(span) for span in spans]  # type: ignore[misc]

    def count_rows(self) -> int:
        """The number of rows (cheap: Parquet metadata, or a byte scan of line ends; for progress only)."""
        if self.format == "parquet":
            return self._parquet_file().metadata.num_rows
        lines = 0
        with self.location.open_read() as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                lines += block.count(b"\n")
        return max(0, lines - (1 if self.format == "csv" else 0))

    # --- formats ------------------------------------------------------------------------------------
    def _records(self, offset: int) -> Iterator[tuple[Any, int]]:
        """(record, byte offset it starts at) from ``offset`` on: a JSONL line, or CSV fields or csv.Error."""
        return self._jsonl_records(offset) if self.format == "jsonl" else self._csv_records(offset)

    def _row(self, index: int, record: Any) -> InputRow:
        if self.format == "jsonl":
            return parse_jsonl_line(index, record)
        if isinstance(record, csv.Error):
            return InputRow(index, None, f"malformed CSV row: {record}")
        return csv_row(index, self.header, record, len(self.header))  # type: ignore[arg-type]

    def _jsonl_records(self, offset: int) -> Iterator[tuple[bytes, int]]:
        with self.location.open_read(offset) as f:
            for raw in f:
                if raw.strip():  # a blank line is not a row
                    yield raw, offset
                offset += len(raw)

    def _csv_records(self, offset: int) -> Iterator[tuple[list[str] | csv.Error, int]]:
        consumed = offset

        def lines(
            f: TextIO,
        ) -> Iterator[str]:  # csv.reader pulls exactly one record's lines: count their bytes
            nonlocal consumed
            for line in f:
                consumed += len(line.encode("utf-8", errors="surrogateescape"))
                yield line

        with self._open_text(offset) as f:
            reader = csv.reader(lines(f))
            if offset == 0:
                next(reader)  # the header
            while True:
                begin = consumed
                try:
                    fields = next(reader)
                except StopIteration:
                    return
                except csv.Error as err:
                    yield err, begin
                    continue
                if fields:  # a blank line is not a row
                    yield fields, begin

    def _parquet(self, start: int) -> Iterator[InputRow]:
        pf = self._parquet_file()
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
