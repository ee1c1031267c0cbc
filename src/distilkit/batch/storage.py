"""Where batch files live: a local path, or a URI on any filesystem pyarrow supports.

``--input`` and ``--output`` take a path or a URI (``s3://bucket/key``, ``gs://bucket/key``,
``hdfs://host/path``, ``file:///abs/path``), resolved with ``pyarrow.fs.FileSystem.from_uri``.
A local file (a path, or a URI that resolves to the local filesystem) is read and written with
plain os calls: appends and renames are fsynced. On any other filesystem a file is only ever
written whole, to a temporary name and then moved into place, so a killed run leaves complete
files or none.
"""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

from distilkit.errors import UserError

URI_EXAMPLES = "s3://bucket/key, gs://bucket/key, hdfs://host/path or file:///abs/path"


def is_uri(ref: str | Path) -> bool:
    """Whether ``ref`` is a URI (``scheme://...``) rather than a local path."""
    return "://" in str(ref)


def ref_path(ref: str | Path) -> str:
    """The path part of a reference, for its extension: a URI loses its scheme, host and query."""
    return urlsplit(str(ref)).path if is_uri(ref) else str(ref)


def one_line(err: Exception) -> str:
    """The first line of an error's text (pyarrow's can run to pages)."""
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


@dataclass(frozen=True)
class Location:
    """One file (or folder) on a filesystem; ``fs`` is None for the local filesystem.

    ``text`` is how the user wrote it, for messages; ``path`` is what the filesystem takes.
    """

    fs: Any
    path: str
    text: str

    @classmethod
    def of(cls, ref: str | Path | Location) -> Location:
        """A Location as is, or a local path as one."""
        return ref if isinstance(ref, Location) else cls(None, os.path.abspath(ref), str(ref))

    @property
    def is_local(self) -> bool:
        return self.fs is None

    @property
    def name(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    def with_suffix_added(self, suffix: str) -> Location:
        """``out.parquet`` -> ``out.parquet.partial`` (for ``suffix=".partial"``)."""
        return Location(self.fs, self.path + suffix, self.text + suffix)

    def __truediv__(self, name: str) -> Location:
        return Location(self.fs, f"{self.path.rstrip('/')}/{name}", f"{self.text.rstrip('/')}/{name}")

    # --- queries ------------------------------------------------------------------------------------
    def _type_name(self) -> str:  # NotFound | File | Directory | Unknown
        return self.fs.get_file_info(self.path).type.name

    def exists(self) -> bool:
        return os.path.exists(self.path) if self.fs is None else self._type_name() != "NotFound"

    def is_file(self) -> bool:
        return os.path.isfile(self.path) if self.fs is None else self._type_name() == "File"

    def glob(self, pattern: str) -> list[Location]:
        """The entries of this folder whose names match ``pattern``, sorted by name."""
        if self.fs is None:
            return [Location.of(p) for p in sorted(Path(self.path).glob(pattern))]
        from pyarrow.fs import FileSelector

        infos = self.fs.get_file_info(FileSelector(self.path, allow_not_found=True))
        return sorted(
            (self / i.base_name for i in infos if fnmatch(i.base_name, pattern)), key=lambda loc: loc.path
        )

    # --- reading ------------------------------------------------------------------------------------
    def open_read(self, offset: int = 0) -> BinaryIO:
        """A buffered binary stream over the file from byte ``offset`` on (close it)."""
        if self.fs is None:
            f = open(self.path, "rb")  # noqa: SIM115 - the caller closes it
        elif offset:
            f = io.BufferedReader(self.fs.open_input_file(self.path), 1 << 20)  # random access, to seek
        else:
            return io.BufferedReader(self.fs.open_input_stream(self.path), 1 << 20)
        if offset:
            f.seek(offset)
        return f

    def read_bytes(self) -> bytes:
        with self.open_read() as f:
            return f.read()

    # --- writing ------------------------------------------------------------------------------------
    @contextmanager
    def open_write(self) -> Iterator[BinaryIO]:
        """Write the file from scratch; a local file is fsynced before this returns."""
        if self.fs is None:
            with open(self.path, "wb") as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
        else:
            with self.fs.open_output_stream(self.path) as f:
                yield f

    def write_atomic(self, data: bytes) -> None:
        """Write ``data`` to ``NAME.tmp`` next to the file, then move it into place: whole or absent."""
        tmp = Location(self.fs, os.path.splitext(self.path)[0] + ".tmp", self.text)
        with tmp.open_write() as f:
            f.write(data)
        tmp.move_to(self)

    def move_to(self, dest: Location) -> None:
        if self.fs is None:
            os.replace(self.path, dest.path)
        else:
            self.fs.move(self.path, dest.path)

    def make_dir(self) -> None:
        if self.fs is None:
            os.makedirs(self.path, exist_ok=True)
        else:
            self.fs.create_dir(self.path, recursive=True)

    def remove(self) -> None:
        """Delete the file if it exists."""
        if self.fs is None:
            Path(self.path).unlink(missing_ok=True)
        elif self.is_file():
            self.fs.delete_file(self.path)

    def remove_tree(self) -> None:
        """Delete the folder and everything in it, if it exists."""
        if self.fs is None:
            shutil.rmtree(self.path, ignore_errors=True)
        elif self.exists():
            self.fs.delete_dir(self.path)


def resolve(ref: str | Path, flag: str, filesystem: Any = None) -> Location:
    """The Location of a ``--input``/``--output`` value: a path on ``filesystem``, a URI, or a local path.

    Raises:
        UserError: naming the flag, for a URI whose scheme pyarrow does not know or whose
            filesystem cannot be reached (one line: what failed and what to pass instead).
    """
    text = str(ref)
    if filesystem is None and not is_uri(text):
        return Location.of(text)
    try:
        if filesystem is None:
            from pyarrow.fs import FileSystem, LocalFileSystem

            filesystem, path = FileSystem.from_uri(text)
            if isinstance(filesystem, LocalFileSystem):
                return Location(None, path, text)
        else:
            path = text
        location = Location(filesystem, path, text)
        location.exists()  # reach the filesystem now, not after the model has loaded
    except (OSError, ValueError) as err:  # pyarrow: ArrowInvalid (a ValueError) or OSError (network, auth)
        raise UserError(
            f"{flag} {text}: cannot open it ({one_line(err)}); pass a local path or a URI such as "
            f"{URI_EXAMPLES}"
        ) from err
    return location


def resolve_files(config: Any) -> tuple[Location, Location]:
    """The run's input and output Locations (``config``: a BatchConfig).

    Raises:
        UserError: a URI that cannot be opened, an input that is not a file, or output == input.
    """
    source = resolve(config.input, "--input", config.filesystem)
    out = resolve(config.output, "--output", config.filesystem)
    if not source.is_file():
        raise UserError(f"--input {config.input}: no such file")
    if type(source.fs) is type(out.fs) and source.path == out.path:
        raise UserError("--output must differ from --input")
    return source, out
