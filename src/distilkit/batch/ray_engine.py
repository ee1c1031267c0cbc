"""The Ray engine: the same Predictor in a Ray Data actor pool (``map_batches``, one model per actor).

Ray reads the input (local paths or any filesystem Ray supports), the actors validate and
predict rows with ``predict_rows`` exactly as the local engine does, and the driver streams the
results, in input order, into the same atomic per-chunk writers. Ray is optional
(``pip install 'distilkit[ray]'``) and imported only here.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from distilkit.batch.config import BatchConfig
from distilkit.batch.local import BatchSummary, parquet_id_type, progress_bar, record_chunk
from distilkit.batch.readers import InputFile, parse_jsonl_line
from distilkit.batch.rows import Columns, InputRow, predict_rows
from distilkit.batch.writers import open_output

NO_ID = None  # the actors do not know global row numbers; the driver fills them in


def import_ray() -> Any:
    """Import Ray, or say how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as err:
        raise ValueError(f"--engine ray needs Ray Data: pip install 'distilkit[ray]' ({err})") from err
    return ray


class PredictActor:
    """One Ray actor: loads the model once, then predicts batches of rows into output columns."""

    def __init__(self, config: BatchConfig, task: str, columns: Columns, num_threads: int):
        from distilkit.inference.predictor import Predictor

        self.predictor = Predictor.from_ref(config.model, task, dummy_weights=config.dummy_weights, dtype=config.dtype,
                                            device=config.device, compile=config.compile, num_threads=num_threads)
        self.params = dict(config.params)
        self.columns = columns
        self.jsonl = config.resolved_input_format() == "jsonl"

    def __call__(self, batch: Any) -> dict[str, list]:
        if self.jsonl:  # read_text gives raw lines: parse them here, so a malformed line is one error row
            lines = batch.column("text").to_pylist()
            rows = [parse_jsonl_line(NO_ID, line) for line in lines]  # type: ignore[arg-type]
        else:
            rows = [InputRow(NO_ID, data) for data in batch.to_pylist()]  # type: ignore[arg-type]
        results = predict_rows(self.predictor, rows, self.params, self.columns)
        return {
            "id": [None if r["id"] is NO_ID else json.dumps(r["id"]) for r in results],
            "prediction": [None if r["prediction"] is None else json.dumps(r["prediction"]) for r in results],
            "error": [r["error"] for r in results],
        }


def read_dataset(ray: Any, config: BatchConfig, source: InputFile | None) -> Any:
    """The input as a Ray dataset (JSONL as raw lines, CSV with every column as a string)."""
    fmt, path = config.resolved_input_format(), str(config.input)
    if fmt == "jsonl":
        return ray.data.read_text(path)
    if fmt == "parquet":
        return ray.data.read_parquet(path)
    import pyarrow as pa
    import pyarrow.csv as pacsv

    header = source.header if source is not None else []
    convert = pacsv.ConvertOptions(column_types={name: pa.string() for name in header or []},
                                   strings_can_be_null=False)
    return ray.data.read_csv(path, convert_options=convert)


def run_ray(config: BatchConfig) -> BatchSummary:
    """Predict every row of ``config.input`` into ``config.output`` on a Ray actor pool.

    Raises:
        ValueError: Ray is missing, ``--resume`` was given, or a bad flag/column/existing output.
        MaxErrorsExceeded: more than ``config.max_errors`` rows failed (the output so far is valid).
    """
    from distilkit.models import canonical_task

    if config.resume:
        raise ValueError("--resume works with --engine local only; rerun with --engine local --resume")
    ray = import_ray()
    task = canonical_task(config.task)
    source = InputFile(config.input, config.resolved_input_format()) if Path(config.input).is_file() else None  # type: ignore[arg-type]
    columns = Columns.from_config(config, task).check_header(None if source is None else source.header)
    out_format = config.resolved_output_format()
    id_type = parquet_id_type(source, columns) if out_format == "parquet" and source is not None else None
    out = open_output(config.output, out_format, resume=False, overwrite=config.overwrite, id_type=id_type)
    out.resume(config.batch_size)
    if not ray.is_initialized():
        address = os.environ.get("RAY_ADDRESS")
        # A local Ray needs a CPU beyond the actors' for its read tasks, or reading waits forever.
        cpus = None if address else max(os.cpu_count() or 1, config.num_workers + 1)
        ray.init(address=address, num_cpus=cpus, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
    show = sys.stderr.isatty() if config.progress is None else config.progress
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True  # output rows in input order
    ctx.enable_progress_bars = False
    threads = int(os.environ.get("DISTILKIT_NUM_THREADS") or max(1, (os.cpu_count() or 1) // config.num_workers))
    predicted = read_dataset(ray, config, source).map_batches(
        PredictActor, fn_constructor_kwargs={"config": config, "task": task, "columns": columns,
                                             "num_threads": threads},
        batch_size=config.batch_size, batch_format="pyarrow", concurrency=config.num_workers, num_cpus=1,
    )
    start, summary = time.perf_counter(), BatchSummary(0, 0, 0, 0.0, str(config.output))
    with progress_bar(show, source.count_rows() if show and source else None, 0) as advance:
        for batch in predicted.iter_batches(batch_size=config.batch_size, batch_format="pyarrow"):
            rows = [
                {"id": summary.rows + i if rid is None else json.loads(rid),
                 "prediction": None if pred is None else json.loads(pred), "error": err}
                for i, (rid, pred, err) in enumerate(zip(*(batch.column(c).to_pylist() for c in
                                                           ("id", "prediction", "error")), strict=True))
            ]
            record_chunk(out, summary, rows, start, advance, config.max_errors)
    out.close()
    summary.seconds = time.perf_counter() - start
    return summary
