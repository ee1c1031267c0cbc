"""The registry store: SQLite (WAL) catalog of immutable versions over content-addressed artifact directories.

Layout under ``DISTILKIT_HOME`` (default ``~/.distilkit``)::

    registry.db              versions, aliases (one row per name@version; deleted versions stay as tombstones)
    artifacts/<sha256>/      one model directory per content hash (sha256 of the manifest), never edited
    tmp/<pid>-<hex>/         registrations in progress; left behind only by a crash, swept by the next one

Register copies and hashes outside any lock, then takes the write lock (BEGIN IMMEDIATE), picks the
version, renames the finished directory into ``artifacts/`` and commits: a crash at any point leaves
either a complete, committed version or none (at worst an unreferenced artifact directory).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import sqlite3
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from distilkit.errors import UserError
from distilkit.registry.refs import LATEST, RegistryRef, check_token, require_ref

SCHEMA = """
CREATE TABLE IF NOT EXISTS versions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    task TEXT NOT NULL,
    content_sha256 TEXT NOT NULL,
    created_at TEXT NOT NULL,
    deleted_at TEXT,
    meta TEXT NOT NULL,
    UNIQUE (name, version)
);
CREATE TABLE IF NOT EXISTS aliases (
    name TEXT NOT NULL,
    alias TEXT NOT NULL,
    version TEXT NOT NULL,
    PRIMARY KEY (name, alias)
);
"""

# Test hook: "STEP=SECONDS" sleeps at STEP ("copied" or "renamed", i.e. inside the transaction) so a
# test can kill the process there. It announces the pause on stderr.
PAUSE_ENV = "DISTILKIT_REGISTRY_TEST_PAUSE"
_CHUNK = 1 << 20
_BUSY_RETRIES = 20


class RegistryError(UserError):
    """A registry request that cannot be served (unknown name/version, immutable version, alias in use)."""


class ArtifactIntegrityError(RegistryError):
    """A registered artifact whose files no longer match the SHA-256 manifest recorded at registration."""


def default_home() -> Path:
    """``$DISTILKIT_HOME`` or ``~/.distilkit``."""
    return Path(os.environ.get("DISTILKIT_HOME") or Path.home() / ".distilkit").expanduser()


@dataclass
class Entry:
    """One registered version: identity, task, content hash, card fields (``meta``), aliases, artifact
    path."""

    name: str
    version: str
    task: str
    content_sha256: str
    created_at: str
    path: str
    aliases: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Flat JSON view (``show``): identity first, then the card fields."""
        data = asdict(self)
        return {**{k: v for k, v in data.items() if k != "meta"}, **data["meta"]}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _pause(step: str) -> None:
    wanted, _, seconds = os.environ.get(PAUSE_ENV, "").partition("=")
    if wanted == step:
        print(f"registry: paused at {step}", file=sys.stderr, flush=True)
        time.sleep(float(seconds or 60))


def hash_file(path: Path) -> str:
    """SHA-256 hex digest of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _walk(directory: Path) -> Iterator[tuple[str, Path]]:
    """(relative posix path, path) of the regular files under ``directory``; hidden files and dirs skipped."""
    for path in sorted(directory.rglob("*")):
        rel = path.relative_to(directory)
        if not any(part.startswith(".") for part in rel.parts) and path.is_file():
            yield rel.as_posix(), path


def _copy_hashed(source: Path, target: Path) -> dict[str, dict[str, Any]]:
    """Copy every file of ``source`` into ``target``, hashing the bytes written; returns the manifest."""
    files: dict[str, dict[str, Any]] = {}
    for rel, path in _walk(source):
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
    present = dict(_walk(directory))
    problems = []
    for rel in sorted(files):
        if rel not in present:
            problems.append(f"{rel} is missing")
        elif hash_file(present[rel]) != files[rel]["sha256"]:
            problems.append(f"{rel} was modified (sha256 differs from the manifest)")
    problems += [f"{rel} was added" for rel in sorted(present.keys() - files.keys())]
    return problems


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Registry:
    """A registry rooted at ``home``: ``register``, ``get``, ``list``, ``set_alias``, ``delete``,
    ``resolve``."""

    def __init__(self, home: str | os.PathLike | None = None):
        self.home = Path(home).expanduser() if home is not None else default_home()
        self.db_path = self.home / "registry.db"
        self.artifacts = self.home / "artifacts"
        self.tmp = self.home / "tmp"

    def exists(self) -> bool:
        """Whether anything was ever registered here (reads never create the store)."""
        return self.db_path.is_file()

    # -- database -------------------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        self.home.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.db_path, timeout=30, isolation_level=None)
        conn.row_factory = sqlite3.Row
        self._retry(lambda: conn.execute("PRAGMA journal_mode=WAL"))
        conn.execute("PRAGMA synchronous=FULL")
        if conn.execute("PRAGMA user_version").fetchone()[0] == 0:
            with self._transaction(conn):
                for statement in filter(str.strip, SCHEMA.split(";")):
                    conn.execute(statement)
                conn.execute("PRAGMA user_version=1")
        return conn

    @staticmethod
    def _retry(action: Any) -> Any:
        """Run ``action``; on SQLITE_BUSY/LOCKED beyond the 30 s busy timeout, back off and retry."""
        for attempt in range(_BUSY_RETRIES):
            try:
                return action()
            except sqlite3.OperationalError as err:
                if "locked" not in str(err) and "busy" not in str(err) or attempt == _BUSY_RETRIES - 1:
                    raise
                time.sleep(random.uniform(0.01, 0.05) * (attempt + 1))
        raise AssertionError("unreachable")

    @contextmanager
    def _transaction(self, conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE (the write lock up front: two writers never pick the same version) ... COMMIT."""
        self._retry(lambda: conn.execute("BEGIN IMMEDIATE"))
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self._retry(lambda: conn.execute("COMMIT"))

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        conn = self._connect()
        try:
            with self._transaction(conn):
                yield conn
        finally:
            conn.close()

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        if not self.exists():
            raise RegistryError(
                f"the registry at {self.home} is empty; add a model with `distilkit registry register`"
            )
        conn = self._connect()
        try:
            yield conn
        finally:
            conn.close()

    # -- writes ---------------------------------------------------------------------------------------
    def register(
        self,
        source: str | os.PathLike,
        name: str,
        *,
        version: str | None = None,
        task: str | None = None,
        license: str | None = None,
        datasets: Sequence[str] = (),
        languages: Sequence[str] = (),
        hub_id: str | None = None,
        description: str | None = None,
        limitations: str | None = None,
        aliases: Sequence[str] = (),
        extra: dict[str, Any] | None = None,
    ) -> Entry:
        """Copy the model directory ``source`` into the store as ``name@version`` (atomic, immutable).

        Args:
            source: model directory in Hugging Face layout (config.json, weights, tokenizer files).
            name: model name; version: default the next integer for this name.
            task: pipeline tag; default read from ``config.architectures``.
            license, datasets, languages, hub_id, description, limitations: card fields.
            aliases: aliases to point at the new version (``latest`` is implicit).
            extra: more JSON fields for the entry (e.g. a training config).

        Raises:
            RegistryError: not a model directory, invalid name, or ``name@version`` already registered.
        """
        from distilkit.registry.card import describe_model_dir

        src = Path(source).expanduser()
        if not (src / "config.json").is_file():
            raise RegistryError(f"{src} is not a model directory (no config.json)")
        check_token(name, "--name")
        if version is not None:
            check_token(version, "--version")
        for alias in aliases:
            self._check_alias(alias)
        self._sweep_tmp()
        work = self.tmp / f"{os.getpid()}-{uuid.uuid4().hex}"
        work.mkdir(parents=True)
        try:
            files = _copy_hashed(src, work)
            described = describe_model_dir(work, files, task)
            _pause("copied")
            sha = content_sha256(files)
            meta = {
                "license": license,
                "languages": list(languages),
                "datasets": list(datasets),
                "hub_id": hub_id,
                "description": description,
                "limitations": limitations,
                **described,
                "files": files,
                "source": str(src.resolve()),
                **(extra or {}),
            }
            with self._write() as conn:
                version = self._next_version(conn, name, version)
                self._place(work, sha, files)
                _pause("renamed")
                conn.execute(
                    "INSERT INTO versions (name, version, task, content_sha256, created_at, meta) "
                    "VALUES (?,?,?,?,?,?)",
                    (name, version, meta.pop("task"), sha, _now(), json.dumps(meta, sort_keys=True)),
                )
                for alias in aliases:
                    conn.execute("INSERT OR REPLACE INTO aliases VALUES (?,?,?)", (name, alias, version))
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return self.get(RegistryRef(name, version=version))

    def _next_version(self, conn: sqlite3.Connection, name: str, version: str | None) -> str:
        rows = {
            r["version"]: r["deleted_at"]
            for r in conn.execute("SELECT version, deleted_at FROM versions WHERE name=?", (name,))
        }
        if version is None:
            return str(1 + max((int(v) for v in rows if v.isdigit()), default=0))
        if version in rows:
            why = (
                "was deleted, and version numbers are never reused"
                if rows[version]
                else "is already registered"
            )
            raise RegistryError(
                f"{name}@{version} {why}; versions are immutable: register with another --version"
            )
        return version

    def _place(self, work: Path, sha: str, files: dict[str, dict[str, Any]]) -> None:
        """Move the finished copy to ``artifacts/<sha>`` (under the write lock); reuse an intact identical
        one."""
        final = self.artifacts / sha
        if final.exists():
            if not verify_files(final, files):
                return
            final.rename(self.tmp / f"{os.getpid()}-{uuid.uuid4().hex}-stale")  # tampered copy: replace it
        self.artifacts.mkdir(parents=True, exist_ok=True)
        work.rename(final)

    def _check_alias(self, alias: str) -> None:
        check_token(alias, "alias")
        if alias == LATEST:
            raise RegistryError("'latest' is implicit (the newest version) and cannot be set")

    def _sweep_tmp(self) -> None:
        """Remove work directories of registrations whose process is gone (crashed or killed)."""
        if not self.tmp.is_dir():
            return
        for child in self.tmp.iterdir():
            pid = child.name.split("-", 1)[0]
            if not pid.isdigit() or not _pid_alive(int(pid)) or child.name.endswith("-stale"):
                shutil.rmtree(child, ignore_errors=True)

    def set_alias(self, ref: str | RegistryRef, alias: str) -> Entry:
        """Point ``alias`` at the version ``ref`` (``name@version``); an existing alias moves."""
        ref = require_ref(ref, versioned=True) if isinstance(ref, str) else ref
        self._check_alias(alias)
        with self._write() as conn:
            self._row(conn, ref)
            conn.execute("INSERT OR REPLACE INTO aliases VALUES (?,?,?)", (ref.name, alias, ref.version))
        return self.get(ref)

    def delete(self, ref: str | RegistryRef, *, force: bool = False) -> None:
        """Delete ``name@version`` (its number stays taken); refused while an alias points at it unless
        ``force``."""
        ref = require_ref(ref, versioned=True) if isinstance(ref, str) else ref
        trash = self.tmp / f"{os.getpid()}-{uuid.uuid4().hex}-deleted"
        moved = False
        with self._write() as conn:
            row = self._row(conn, ref)
            pointing = [
                r["alias"]
                for r in conn.execute(
                    "SELECT alias FROM aliases WHERE name=? AND version=? ORDER BY alias",
                    (ref.name, ref.version),
                )
            ]
            if pointing and not force:
                raise RegistryError(
                    f"{ref} is the target of alias {', '.join(pointing)}; move the alias with "
                    "`distilkit registry alias NAME@OTHER ALIAS` or pass --force")
            conn.execute("DELETE FROM aliases WHERE name=? AND version=?", (ref.name, ref.version))
            conn.execute("UPDATE versions SET deleted_at=? WHERE id=?", (_now(), row["id"]))
            shared = conn.execute(
                "SELECT COUNT(*) FROM versions WHERE content_sha256=? AND deleted_at IS NULL",
                (row["content_sha256"],),
            ).fetchone()[0]
            final = self.artifacts / row["content_sha256"]
            if not shared and final.exists():
                self.tmp.mkdir(parents=True, exist_ok=True)
                final.rename(trash)
                moved = True
        if moved:
            shutil.rmtree(trash, ignore_errors=True)

    # -- reads ----------------------------------------------------------------------------------------
    def _row(self, conn: sqlite3.Connection, ref: RegistryRef) -> sqlite3.Row:
        """The live row ``ref`` names; RegistryError saying what exists otherwise."""
        live = conn.execute(
            "SELECT * FROM versions WHERE name=? AND deleted_at IS NULL ORDER BY id", (ref.name,)
        ).fetchall()
        if ref.version is not None:
            version = ref.version
        elif ref.alias == LATEST:
            if not live:
                raise RegistryError(f"no model named {ref.name!r} in the registry at {self.home}; "
                                    "`distilkit registry list` shows what is there")
            return live[-1]
        else:
            hit = conn.execute(
                "SELECT version FROM aliases WHERE name=? AND alias=?", (ref.name, ref.alias)
            ).fetchone()
            if hit is None:
                known = [
                    r["alias"]
                    for r in conn.execute(
                        "SELECT alias FROM aliases WHERE name=? ORDER BY alias", (ref.name,)
                    )
                ]
                raise RegistryError(
                    f"{ref.name} has no alias {ref.alias!r} (aliases: {', '.join([LATEST, *known])})"
                )
            version = hit["version"]
        for row in live:
            if row["version"] == version:
                return row
        if not live:
            raise RegistryError(f"no model named {ref.name!r} in the registry at {self.home}; "
                                "`distilkit registry list` shows what is there")
        raise RegistryError(
            f"{ref.name} has no version {version!r} (versions: {', '.join(r['version'] for r in live)})"
        )

    def _entry(self, conn: sqlite3.Connection, row: sqlite3.Row) -> Entry:
        aliases = [
            r["alias"]
            for r in conn.execute(
                "SELECT alias FROM aliases WHERE name=? AND version=? ORDER BY alias",
                (row["name"], row["version"]),
            )
        ]
        newest = conn.execute(
            "SELECT MAX(id) FROM versions WHERE name=? AND deleted_at IS NULL", (row["name"],)
        ).fetchone()[0]
        if newest == row["id"]:
            aliases.insert(0, LATEST)
        return Entry(
            name=row["name"],
            version=row["version"],
            task=row["task"],
            content_sha256=row["content_sha256"],
            created_at=row["created_at"],
            path=str(self.artifacts / row["content_sha256"]),
            aliases=aliases,
            meta=json.loads(row["meta"]),
        )

    def get(self, ref: str | RegistryRef) -> Entry:
        """The entry ``ref`` names (``name@version``, ``name:alias`` or ``name``), without verifying files."""
        ref = require_ref(ref) if isinstance(ref, str) else ref
        with self._read() as conn:
            return self._entry(conn, self._row(conn, ref))

    def list(self, name: str | None = None) -> list[Entry]:
        """Live entries in registration order, optionally of one name."""
        if not self.exists():
            return []
        with self._read() as conn:
            rows = conn.execute("SELECT * FROM versions WHERE deleted_at IS NULL AND (? IS NULL OR name=?) "
                                "ORDER BY name, id", (name, name)).fetchall()
            return [self._entry(conn, row) for row in rows]

    def verify(self, entry: Entry) -> None:
        """Check every artifact file against the manifest; ArtifactIntegrityError naming the files
        otherwise."""
        problems = verify_files(Path(entry.path), entry.meta["files"])
        if problems:
            raise ArtifactIntegrityError(
                f"registry artifact {entry.name}@{entry.version} failed SHA-256 verification: "
                f"{'; '.join(problems)} "
                f"(in {entry.path}); refusing to load it. Restore the files or register the model again"
            )

    def resolve(self, ref: str | RegistryRef) -> Entry:
        """The entry ``ref`` names, after verifying its files (what loading a registry reference calls)."""
        entry = self.get(ref)
        self.verify(entry)
        return entry

    def check(self) -> list[str]:
        """Consistency problems of the whole store (SQLite integrity, missing artifacts, dangling aliases)."""
        if not self.exists():
            return []
        with self._read() as conn:
            problems = [r[0] for r in conn.execute("PRAGMA integrity_check") if r[0] != "ok"]
            for row in conn.execute("SELECT * FROM versions WHERE deleted_at IS NULL"):
                if not (self.artifacts / row["content_sha256"]).is_dir():
                    problems.append(
                        f"{row['name']}@{row['version']}: artifact {row['content_sha256']} is missing"
                    )
            for row in conn.execute(
                "SELECT a.name, a.alias, a.version FROM aliases a LEFT JOIN versions v ON "
                "a.name=v.name AND a.version=v.version AND v.deleted_at IS NULL WHERE v.id IS NULL"
            ):
                problems.append(
                    f"alias {row['name']}:{row['alias']} points at missing version {row['version']}"
                )
        return problems
