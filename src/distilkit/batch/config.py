"""The settings of one batch-prediction run (``distilkit predict --input ... --output ...``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distilkit.batch.storage import is_uri, ref_path
from distilkit.errors import UserError

FORMATS = ("jsonl", "csv", "parquet")
ENGINES = ("local", "ray")
EXTENSIONS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv", ".parquet": "parquet",
              ".pq": "parquet"}


def format_from_path(path: str | Path) -> str | None:
    """The format a file name or URI implies (``data.csv`` -> ``csv``), or None for an unknown extension."""
    return EXTENSIONS.get(Path(ref_path(path).rstrip("/")).suffix.lower())


@dataclass(frozen=True)
class BatchConfig:
    """One file-to-file prediction run; every field is a ``distilkit predict`` flag.

    Raises:
        UserError: naming the flag, for a value that cannot work (checked before any model loads).
    """

    task: str
    """fill-mask | question-answering | text-classification | token-classification."""
    model: str
    """Model directory, hub id or registry reference."""
    input: str | Path
    """Predict every row of this JSONL/CSV/Parquet file: a path or a URI (s3://bucket/in.jsonl, gs://...,
    hdfs://..., file:///abs/in.csv)."""
    output: str | Path
    """Output file, a path or a URI like --input (format from its extension, else the input's); written
    chunk by chunk, each chunk whole or absent."""
    input_format: str | None = None
    """jsonl | csv | parquet (default: the input's extension)."""
    output_format: str | None = None
    """jsonl | csv | parquet (default: the output's extension, else the input format)."""
    text_column: str | None = None
    """Text column (default: text, else input_string, the cards' samples)."""
    question_column: str = "question"
    """question-answering: the question column."""
    context_column: str = "context"
    """question-answering: the context column."""
    id_column: str = "id"
    """Id column copied to the output's id (rows without it get their 0-based row number)."""
    params: dict[str, Any] = field(default_factory=dict)
    """Task parameters, as for positional prediction (the command line's --param k=v)."""
    batch_size: int = 256
    """Rows read, predicted and written together (one atomic write per chunk)."""
    max_errors: int | None = None
    """Stop with exit 1 once more rows than this failed (default: never)."""
    resume: bool = False
    """Continue an interrupted --output after its last complete chunk (either engine); the result
    equals an uninterrupted run."""
    overwrite: bool = False
    """Replace an existing --output instead of refusing."""
    engine: str = "local"
    """local | ray (Ray Data actor pool; every Ray node must read --input: a URI or a shared path).
    Both write the same output."""
    num_workers: int = 2
    """Ray actors, one model each (--engine ray)."""
    dummy_weights: bool = False
    """Seeded random weights of the model's real architecture."""
    dtype: str = "auto"
    """auto (the engine for the hardware, printed at start: bfloat16 where the CPU or GPU is fast at it,
    else float32 - on ONNX Runtime when installed) | float32 | bfloat16 | float16 | int8 (int8 GEMMs
    on CPU: PyTorch's oneDNN engine where the CPU has VNNI/AMX, calibrated at load; else, or with
    --backend onnx, ONNX Runtime's dynamic int8 graph, exported once into $DISTILKIT_HOME/cache)."""
    calibration: str | None = None
    """--dtype int8: a text file of your domain, one text per line, whose activation ranges set the
    int8 engine's static scales (default: a few built-in English texts)."""
    device: str | None = None
    """cpu | cuda | cuda:N (default: cuda if present)."""
    compile: bool = False
    """torch.compile the encoder (~20 s warm-up; measured slower than the default engine on AVX512-BF16
    CPUs)."""
    backend: str | None = None
    """torch | onnx (default: onnx for a `distilkit export onnx` directory; onnx on a model directory
    runs its fp32 graph - int8 with --dtype int8 -, exported once into $DISTILKIT_HOME/cache)."""
    progress: bool | None = None
    """Show a progress bar (default: when stderr is a terminal)."""
    filesystem: Any = None
    """A ``pyarrow.fs.FileSystem`` that ``input`` and ``output`` are paths on (Python API only; the CLI
    takes URIs). With ``--engine ray`` the Ray workers read the input through it, so it must reach the
    same files."""

    def __post_init__(self) -> None:
        if self.input_format is not None and self.input_format not in FORMATS:
            raise UserError(f"--input-format must be one of {', '.join(FORMATS)}, got {self.input_format!r}")
        if self.output_format is not None and self.output_format not in FORMATS:
            raise UserError(f"output format must be one of {', '.join(FORMATS)}, got {self.output_format!r}")
        if self.backend not in (None, "torch", "onnx"):
            raise UserError(f"--backend must be torch or onnx, got {self.backend!r}")
        if self.engine not in ENGINES:
            raise UserError(f"--engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        if self.batch_size < 1:
            raise UserError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.max_errors is not None and self.max_errors < 0:
            raise UserError(f"--max-errors must be >= 0, got {self.max_errors}")
        if self.num_workers < 1:
            raise UserError(f"--num-workers must be >= 1, got {self.num_workers}")
        if self.resume and self.overwrite:
            raise UserError("--resume and --overwrite exclude each other")
        if self.filesystem is None and not is_uri(self.input):  # URIs are checked when they are opened
            if not is_uri(self.output) and Path(self.input).resolve() == Path(self.output).resolve():
                raise UserError("--output must differ from --input")
            if not Path(self.input).is_file():
                raise UserError(f"--input {self.input}: no such file")
        if self.resolved_input_format() is None:
            raise UserError(f"cannot tell the format of --input {self.input} from its extension; "
                             f"pass --input-format {'|'.join(FORMATS)}")

    def resolved_input_format(self) -> str | None:
        """The input format: ``--input-format`` or the input's extension."""
        return self.input_format or format_from_path(self.input)

    def resolved_output_format(self) -> str:
        """The output format: explicit, else the output's extension, else the input's format."""
        found = self.output_format or format_from_path(self.output)
        return found or self.resolved_input_format()  # type: ignore[return-value]
