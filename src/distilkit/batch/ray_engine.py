"""The Ray engine: the same Predictor in a Ray Data actor pool (``map_batches``, one model per actor).

The driver cuts the input into spans of whole chunks (``InputFile.spans``: first row, byte
offset, row count, found with the local engine's reader). Each actor reads the spans it is given
straight from the input's filesystem with that same reader, so blank lines, malformed JSON or CSV
rows and row numbers are exactly the local engine's, and predicts them chunk by chunk with
``predict_rows``. The driver writes the results, in input order, with the same atomic writers.
Chunks start at the same rows as the local engine's (also after ``--resume``, which starts the
spans after the kept rows), so both engines write the same file. Ray is optional
(``pip install 'distilkit[ray]'``) and imported only here.
"""

from __future__ import annotations

import os
import pickle
import sys
import time
from collections.abc import Iterator
from typing import Any

from distilkit.batch.config import BatchConfig
from distilkit.batch.local import BatchSummary, check_resumed, chunks, open_files, progress_bar, record_chunk
from distilkit.batch.readers import InputFile
from distilkit.batch.rows import Columns, predict_rows
from distilkit.batch.storage import Location
from distilkit.errors import UserError

# Chunks per Ray task: enough to amortise a task, few enough that every actor gets several tasks.
MAX_SPAN_CHUNKS = 16
# Output rows cross the Ray object store pickled: each value keeps its exact Python type (an id
# stays an int or a str), where an Arrow column would force one type on every row.


def import_ray() -> Any:
    """Import Ray, or say how to install it."""
    try:
        import ray
        import ray.data
    except ImportError as err:
        raise UserError(f"--engine ray needs Ray Data: pip install 'distilkit[ray]' ({err})") from err
    return ray


class PredictActor:
    """One Ray actor: loads the model once, then reads spans of the input and predicts them chunk by chunk."""

    def __init__(self, model: dict[str, Any], params: dict[str, Any], columns: Columns, source: Location,
                 fmt: str, chunk: int):
        from distilkit.inference.predictor import Predictor

        self.predictor = Predictor.from_ref(**model)
        self.params = params
        self.columns = columns
        self.source = InputFile(source, fmt)
        self.chunk = chunk

    def __call__(self, batch: Any) -> Iterator[Any]:
        import pyarrow as pa

        for first, offset, count in zip(*(batch.column(c).to_pylist() for c in ("first", "offset", "rows")),
                                        strict=True):
            for rows in chunks(self.source.rows(first, offset, first + count), self.chunk):
                results = predict_rows(self.predictor, rows, self.params, self.columns)
                yield pa.table({"index": pa.array([r.index for r in rows], pa.int64()),
                                "result": pa.array([pickle.dumps(r) for r in results], pa.binary())})


def start_ray(ray: Any, workers: int) -> None:
    """Connect to ``RAY_ADDRESS``, or start a local Ray with one CPU per actor (and one to spare)."""
    if not ray.is_initialized():
        address = os.environ.get("RAY_ADDRESS")
        cpus = None if address else max(os.cpu_count() or 1, workers + 1)
        ray.init(address=address, num_cpus=cpus, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True  # output rows in input order
    ctx.enable_progress_bars = False


def predicted_rows(ray: Any, config: BatchConfig, source: InputFile, columns: Columns, task: str,
                   spans: list[tuple[int, int | None, int]]) -> Any:
    """The Ray dataset of output rows (``index``, pickled ``result``) for ``spans`` of the input, in order."""
    threads = int(
        os.environ.get("DISTILKIT_NUM_THREADS") or max(1, (os.cpu_count() or 1) // config.num_workers)
    )
    ref = (
        os.path.abspath(config.model) if os.path.isdir(config.model) else config.model
    )  # actors' cwd may differ
    model = {"model": ref, "task": task, "dummy_weights": config.dummy_weights, "dtype": config.dtype,
             "device": config.device, "compile": config.compile, "backend": config.backend,
             "num_threads": threads,
             "calibration": os.path.abspath(config.calibration) if config.calibration else None}
    items = [{"first": first, "offset": offset, "rows": rows} for first, offset, rows in spans]
    return ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
        PredictActor, batch_size=1, batch_format="pyarrow", num_cpus=1,
        compute=ray.data.ActorPoolStrategy(size=config.num_workers),
        fn_constructor_kwargs={"model": model, "params": dict(config.params), "columns": columns,
                               "source": source.location, "fmt": source.format, "chunk": config.batch_size},
    )


def run_ray(config: BatchConfig) -> BatchSummary:
    """Predict every row of ``config.input`` into ``config.output`` on a Ray actor pool.

    The input must be readable from every Ray node: a URI, or a path on a filesystem they share.

    Raises:
        UserError: Ray is missing, or a bad flag, URI, column or existing output.
        MaxErrorsExceeded: more than ``config.max_errors`` rows failed (the output so far is valid).
    """
    from distilkit.models import canonical_task

    ray = import_ray()
    task = canonical_task(config.task)
    source, columns, out = open_files(config, task)
    done, errors = out.resume(config.batch_size)
    if done:
        check_resumed(out.last_id, columns.row_id(next(source.rows(done - 1))), config)
    chunk_spans = source.spans(done, config.batch_size)
    group = max(1, min(MAX_SPAN_CHUNKS, len(chunk_spans) // (4 * config.num_workers)))
    spans = [(part[0][0], part[0][1], sum(rows for _, _, rows in part))
             for part in (chunk_spans[i:i + group] for i in range(0, len(chunk_spans), group))]
    show = sys.stderr.isatty() if config.progress is None else config.progress
    start, summary = time.perf_counter(), BatchSummary(done, errors, done, 0.0, str(config.output))
    with progress_bar(show, done + sum(rows for _, _, rows in spans), done) as advance:
        if spans:  # else every row is already in the output
            start_ray(ray, config.num_workers)
            predicted = predicted_rows(ray, config, source, columns, task, spans)
            for batch in predicted.iter_batches(batch_size=config.batch_size, batch_format="pyarrow"):
                index = batch.column("index").to_pylist()
                if index != list(range(summary.rows, summary.rows + len(index))):
                    raise RuntimeError(
                        f"Ray returned rows {index[0]}..{index[-1]} where row {summary.rows} was "
                        f"due; the output holds rows 0..{summary.rows - 1}: rerun with --resume"
                    )
                rows = [pickle.loads(r) for r in batch.column("result").to_pylist()]
                record_chunk(out, summary, rows, start, advance, config.max_errors)
    out.close()
    summary.seconds = time.perf_counter() - start
    return summary
