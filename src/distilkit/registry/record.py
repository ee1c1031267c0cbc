"""``--register NAME`` of ``distill``, ``finetune`` and ``evaluate``: a run's model directory, registered."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from distilkit.errors import UserError
from distilkit.registry.refs import check_token

# Training by-products that are not part of the model: resume state and event logs.
SKIPPED_DIRS = ("checkpoints", "tensorboard")


def check_register(name: str | None, alias: str | None) -> None:
    """Validate ``--register``/``--register-alias`` before a run starts (UserError: exit 2, one line)."""
    if alias is not None and name is None:
        raise UserError("--register-alias needs --register NAME")
    if name is not None:
        check_token(name, "--register")
    if alias is not None:
        check_token(alias, "--register-alias")
        if alias == "latest":
            raise UserError("--register-alias latest is implicit (the newest version) and cannot be set")


def is_main_process() -> bool:
    """Rank 0 of a distributed launch (or a single process): the one that registers."""
    return os.environ.get("RANK", "0") == "0"


def _dataset(path: str) -> str:
    local = Path(path).expanduser()
    return str(local.resolve()) if local.exists() else path


def register_run(
    directory: str | os.PathLike,
    name: str,
    *,
    command: str,
    task: str | None = None,
    config: dict[str, Any] | None = None,
    datasets: Sequence[str | os.PathLike | None] = (),
    metrics: dict[str, Any] | None = None,
    alias: str | None = None,
) -> str:
    """Register the model ``directory`` a ``command`` run wrote (or scored) as ``name``; return
    ``NAME@VERSION``.

    The entry carries ``config`` (default: the directory's ``config.yaml``), the ``datasets`` (local
    paths made absolute) and ``metrics`` (default: the directory's ``metrics.json``). ``checkpoints/``
    and ``tensorboard/`` are left out of the artifact.
    """
    import yaml

    from distilkit.registry.store import Registry, RegistryError

    src = Path(directory).expanduser().resolve()
    if not (src / "config.json").is_file():
        raise RegistryError(f"{src} is not a model directory (no config.json)")
    if config is None and (src / "config.yaml").is_file():
        config = yaml.safe_load((src / "config.yaml").read_text(encoding="utf-8"))
    if metrics is None and (src / "metrics.json").is_file():
        metrics = json.loads((src / "metrics.json").read_text(encoding="utf-8"))
    extra = {"source": str(src), "registered_by": command, "config": config, "metrics": metrics}
    with tempfile.TemporaryDirectory(prefix="distilkit-register-") as tmp:
        # A view of the model directory by symlinks (the store copies the bytes), without the skipped dirs.
        for root, dirs, files in os.walk(src):
            rel = Path(root).relative_to(src)
            if rel == Path("."):
                dirs[:] = [d for d in dirs if d not in SKIPPED_DIRS]
            (Path(tmp) / rel).mkdir(parents=True, exist_ok=True)
            for file in files:
                os.symlink(Path(root) / file, Path(tmp) / rel / file)
        entry = Registry().register(
            tmp, name, task=task, datasets=[_dataset(str(d)) for d in datasets if d is not None],
            aliases=[alias] if alias else [], extra=extra,
        )
    return f"{entry.name}@{entry.version}"
