"""Model registry: immutable ``name@version`` entries in SQLite over a content-addressed artifact store."""

from __future__ import annotations

from distilkit.registry.refs import RegistryRef, parse_ref
from distilkit.registry.store import ArtifactIntegrityError, Registry, RegistryError, default_home

__all__ = ["ArtifactIntegrityError", "Registry", "RegistryError", "RegistryRef", "default_home", "parse_ref"]
