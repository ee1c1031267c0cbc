"""``registry import``: fetch a hub model (or take it from the HF cache) and register it with its card
fields."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from distilkit.registry.refs import check_token
from distilkit.registry.store import Entry, Registry, RegistryError

# What a PyTorch/tokenizer model directory needs; skips TF/Flax/Rust/ONNX weights the DistilBERT repos
# also hold.
ALLOW_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "README.md"]


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes", "on"}


def card_metadata(directory: Path) -> dict[str, Any]:
    """license / datasets / language from the YAML front matter of the hub README, when there is one."""
    readme = directory / "README.md"
    if not readme.is_file():
        return {}
    text = readme.read_text(encoding="utf-8", errors="replace")
    if not text.startswith("---"):
        return {}
    import yaml

    try:
        front = yaml.safe_load(text.split("---", 2)[1]) or {}
    except yaml.YAMLError:
        return {}

    def as_list(value: Any) -> list[str]:
        return [str(v) for v in value] if isinstance(value, list) else [str(value)] if value else []

    return {"license": front.get("license"), "datasets": as_list(front.get("datasets")),
            "languages": as_list(front.get("language"))}


def import_from_hub(registry: Registry, hub_id: str, name: str | None = None, **fields: Any) -> Entry:
    """Download ``hub_id`` (offline: take it from the HF cache) and register it; card fields from its README.

    Raises:
        RegistryError: the model is neither downloadable nor cached.
    """
    from huggingface_hub import snapshot_download

    name = check_token(name or hub_id.rsplit("/", 1)[-1], "--name")
    try:
        local = snapshot_download(hub_id, local_files_only=_offline(), allow_patterns=ALLOW_PATTERNS)
    except Exception as err:  # hub errors come in many classes (offline, 404, gated, network)
        why = ("the hub is offline (HF_HUB_OFFLINE=1) and it is not in the cache" if _offline()
               else (str(err).strip().splitlines() or [type(err).__name__])[0][:200])
        raise RegistryError(f"cannot import {hub_id!r}: {why}; register a local copy instead with "
                            "`distilkit registry register DIR --name NAME --hub-id ID`") from err
    found = card_metadata(Path(local))
    merged = {key: fields.get(key) or found.get(key) for key in ("license", "datasets", "languages")}
    return registry.register(local, name, hub_id=hub_id,
                             **{**fields, **{k: v for k, v in merged.items() if v}})
