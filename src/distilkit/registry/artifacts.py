"""Content-addressed artifact files: the manifest of a model directory (path -> sha256, size), its hash,
and the check of a directory against it. Pure file work: the registry store decides where they live."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_CHUNK = 1 << 20


def hash_file(path: Path) -> str:
    """SHA-256 hex digest of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def walk_files(directory: Path) -> Iterator[tuple[str, Path]]:
    """(relative posix path, path) of the regular files under ``directory``; hidden files and dirs skipped."""
    for path in sorted(directory.rglob("*")):
        rel = path.relative_to(directory)
        if not any(part.startswith(".") for part in rel.parts) and path.is_file():
            yield rel.as_posix(), path


def copy_hashed(source: Path, target: Path) -> dict[str, dict[str, Any]]:
    """Copy every file of ``source`` into ``target``, hashing the bytes written; returns the manifest."""
    files: dict[str, dict[str, Any]] = {}
    for rel, path in walk_files(source):
        dest = target / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        digest, size = hashlib.sha256(), 0
        with open(path, "rb") as src, open(dest, "wb") as out:
            while chunk := src.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
                size += len(chunk)
            out.flush()
            os.fsync(out.fileno())
        files[rel] = {"sha256": digest.hexdigest(), "size": size}
    return files


def content_sha256(files: dict[str, dict[str, Any]]) -> str:
    """Hash of the manifest in ``sha256sum`` format (``<sha>  <path>`` lines, sorted by path)."""
    lines = "".join(f"{files[rel]['sha256']}  {rel}\n" for rel in sorted(files))
    return hashlib.sha256(lines.encode()).hexdigest()


def verify_files(directory: Path, files: dict[str, dict[str, Any]]) -> list[str]:
    """Problems of ``directory`` against the manifest ``files`` (missing, modified, added); [] when intact."""
    if not directory.is_dir():
        return [f"artifact directory {directory} is missing"]
    present = dict(walk_files(directory))
    problems = []
    for rel in sorted(files):
        if rel not in present:
            problems.append(f"{rel} is missing")
        elif hash_file(present[rel]) != files[rel]["sha256"]:
            problems.append(f"{rel} was modified (sha256 differs from the manifest)")
    problems += [f"{rel} was added" for rel in sorted(present.keys() - files.keys())]
    return problems
