"""Parse registry references: ``name@version``, ``name:alias`` and ``name`` (= ``name:latest``)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from distilkit.errors import UserError

# Names, versions and aliases share one alphabet; no "/" so hub ids like "org/model" never parse.
TOKEN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
_TOKEN_RE = re.compile(TOKEN)
_REF_RE = re.compile(rf"(?P<name>{TOKEN})(?:@(?P<version>{TOKEN})|:(?P<alias>{TOKEN}))?")

LATEST = "latest"


@dataclass(frozen=True)
class RegistryRef:
    """A parsed reference: exactly one of ``version`` and ``alias`` is set (a bare name is ``:latest``)."""

    name: str
    version: str | None = None
    alias: str | None = None
    explicit: bool = True  # False for a bare name, which may also be a hub id

    def __str__(self) -> str:
        return f"{self.name}@{self.version}" if self.version is not None else f"{self.name}:{self.alias}"


def parse_ref(text: str) -> RegistryRef | None:
    """Return the reference ``text`` names, or None when it is not registry-shaped (a path, ``org/model``)."""
    match = _REF_RE.fullmatch(text.strip())
    if match is None:
        return None
    if match["version"] is not None:
        return RegistryRef(match["name"], version=match["version"])
    if match["alias"] is not None:
        return RegistryRef(match["name"], alias=match["alias"])
    return RegistryRef(match["name"], alias=LATEST, explicit=False)


def require_ref(text: str, *, versioned: bool = False) -> RegistryRef:
    """Parse ``text`` for a registry command; UserError naming the expected forms when it does not parse.

    Args:
        text: ``name@version``, ``name:alias`` or ``name``.
        versioned: only ``name@version`` is accepted (alias and delete target one immutable version).
    """
    ref = parse_ref(text)
    if ref is None or (versioned and ref.version is None):
        forms = "NAME@VERSION" if versioned else "NAME@VERSION, NAME:ALIAS or NAME"
        raise UserError(f"{text!r} is not a registry reference; expected {forms} (letters, digits, . _ -)")
    return ref


def check_token(value: str, what: str) -> str:
    """Validate a name, version or alias; UserError naming the flag-level ``what`` when invalid."""
    if not _TOKEN_RE.fullmatch(value):
        raise UserError(
            f"{what} {value!r} is invalid: use letters, digits, '.', '_' or '-' (max 128, no '/', '@', ':')"
        )
    return value
