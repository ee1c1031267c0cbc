"""The local engine: read chunks -> validate and predict each row -> append -> progress, in one loop."""

from __future__ import annotations

import itertools
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from distilkit.batch.config import BatchConfig
from distilkit.batch.readers import InputFile
from distilkit.batch.rows import Columns, InputRow, predict_rows
from distilkit.batch.storage import resolve_files
from distilkit.batch.writers import open_output
from distilkit.errors import UserError


@dataclass
class BatchSummary:
    """What a run did: output rows and errors in total, rows kept from a previous run, speed."""

    rows: int
    errors: int
    resumed_rows: int
    seconds: float
    output: str
    status: str = "ok"

    def as_dict(self) -> dict[str, Any]:
        new = self.rows - self.resumed_rows
        return {
            "rows": self.rows,
            "errors": self.errors,
            "resumed_rows": self.resumed_rows,
            "seconds": round(self.seconds, 3),
            "rows_per_s": round(new / self.seconds, 2) if self.seconds else 0.0,
            "output": self.output,
            "status": self.status,
        }


class MaxErrorsExceeded(RuntimeError):
    """More rows failed than ``--max-errors`` allows; the output holds every chunk written so far."""

    def __init__(self, summary: BatchSummary, limit: int):
        super().__init__(f"{summary.errors} rows failed, more than --max-errors {limit}; "
                         f"{summary.rows} rows are in {summary.output}")
        self.summary = summary


def chunks(rows: Iterator[InputRow], size: int) -> Iterator[list[InputRow]]:
    """Consecutive lists of ``size`` rows (the last may be shorter)."""
    while chunk := list(itertools.islice(rows, size)):
        yield chunk


def parquet_id_type(source: InputFile, columns: Columns) -> Any:
    """The Arrow type of the output id: the input's (Parquet), string for ids read from text, else int64."""
    import pyarrow as pa

    if source.format == "parquet":
        return source.arrow_type(columns.id) or pa.int64()
    if source.format == "csv":
        return pa.string() if columns.id in source.header else pa.int64()  # type: ignore[operator]
    first = next((r for r in source.rows(0) if r.data is not None), None)
    value = None if first is None else first.data.get(columns.id)  # type: ignore[union-attr]
    return pa.string() if isinstance(value, str) else pa.int64()


@contextmanager
def progress_bar(enabled: bool, total: int | None, done: int):
    """A rich progress bar on stderr (rows, rows/s, ETA); a no-op callable when disabled."""
    if not enabled:
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TaskProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class RateColumn(ProgressColumn):
        def render(self, task: Any) -> Text:
            return Text(f"{task.speed or 0:.0f} rows/s")

    columns = (TextColumn("predict"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(), RateColumn(),
               TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task("rows", total=total, completed=done)
        yield lambda n: bar.advance(task, n)


def run_local(config: BatchConfig, predictor: Any = None) -> BatchSummary:
    """Predict every row of ``config.input`` into ``config.output`` in this process.

    Raises:
        UserError: a bad flag, parameter, column, URI or existing output (before any row is predicted).
        MaxErrorsExceeded: more than ``config.max_errors`` rows failed (the output so far is valid).
    """
    from distilkit.inference.predictor import Predictor
    from distilkit.models import canonical_task

    task = canonical_task(config.task)
    source, columns, out = open_files(config, task)
    if predictor is None:
        predictor = Predictor.from_ref(
            config.model,
            task,
            dummy_weights=config.dummy_weights,
            dtype=config.dtype,
            device=config.device,
            compile=config.compile,
            backend=config.backend,
            calibration=config.calibration,
        )
    predictor.handler.check_params(config.params)  # a bad --param fails before any row
    params = dict(config.params)
    done, errors = out.resume(config.batch_size)
    rows = source.rows(max(done - 1, 0))
    if done:
        check_resumed(out.last_id, columns.row_id(next(rows)), config)
    show = sys.stderr.isatty() if config.progress is None else config.progress
    start = time.perf_counter()
    summary = BatchSummary(done, errors, done, 0.0, str(config.output))
    with progress_bar(show, source.count_rows() if show else None, done) as advance:
        for chunk in chunks(rows, config.batch_size):
            record_chunk(out, summary, predict_rows(predictor, chunk, params, columns), start, advance,
                         config.max_errors)
    out.close()
    summary.seconds = time.perf_counter() - start
    return summary


def open_files(config: BatchConfig, task: str) -> tuple[InputFile, Columns, Any]:
    """The run's input file, resolved columns and output writer (both engines): the checks that need no
    model.

    Raises:
        UserError: a URI that cannot be opened, a missing column, an output that exists.
    """
    source_at, out_at = resolve_files(config)
    source = InputFile(source_at, config.resolved_input_format())  # type: ignore[arg-type]
    columns = Columns.from_config(config, task).check_header(source.header)
    out_format = config.resolved_output_format()
    id_type = parquet_id_type(source, columns) if out_format == "parquet" else None
    out = open_output(out_at, out_format, resume=config.resume, overwrite=config.overwrite, id_type=id_type)
    return source, columns, out


def record_chunk(out: Any, summary: BatchSummary, results: list[dict], start: float,
                 advance: Any, max_errors: int | None) -> None:
    """Write one chunk of output rows and account for it; past ``max_errors`` stop the run.

    Raises:
        MaxErrorsExceeded: the run's error count passed ``max_errors`` (the output stays valid).
    """
    out.write(results)
    summary.rows += len(results)
    summary.errors += sum(r["error"] is not None for r in results)
    summary.seconds = time.perf_counter() - start
    advance(len(results))
    if max_errors is not None and summary.errors > max_errors:
        out.close()
        summary.status = "max_errors_exceeded"
        raise MaxErrorsExceeded(summary, max_errors)


def check_resumed(last_id: Any, input_id: Any, config: BatchConfig) -> None:
    """Refuse to resume an output whose last kept row is not the input's row at that position."""
    if str(last_id) != str(input_id):
        raise UserError(
            f"--resume: the last row of {config.output} has id {last_id!r} but that input row has id "
            f"{input_id!r}; is it the output of another input? Use --overwrite to start again"
        )
