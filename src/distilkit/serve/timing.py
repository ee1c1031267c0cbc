"""The ``Server-Timing`` response header: ``name;dur=<ms>`` entries that browsers and clients read.

Routes may set per-stage entries (``tokenize;dur=1.2, forward;dur=8.0``); the guard middleware
appends ``total`` to whatever the response carries, so no entry replaces another.
"""

from __future__ import annotations

from typing import Any

HEADER = b"server-timing"


def timing_entry(name: str, seconds: float) -> str:
    """One entry, ``name;dur=12.3`` (milliseconds, 0.1 ms resolution)."""
    return f"{name};dur={seconds * 1e3:.1f}"


def append_timing(message: dict[str, Any], name: str, seconds: float) -> dict[str, Any]:
    """Return an ASGI ``http.response.start`` message with ``name;dur=..`` added to its Server-Timing.

    An existing Server-Timing header gets the entry appended (``, name;dur=..``); otherwise the
    header is added. The message given is not modified.
    """
    entry = timing_entry(name, seconds).encode()
    headers = list(message.get("headers", []))
    for i in range(len(headers) - 1, -1, -1):
        key, value = headers[i]
        if key.lower() == HEADER:
            headers[i] = (key, value + b", " + entry if value.strip() else entry)
            break
    else:
        headers.append((HEADER, entry))
    return {**message, "headers": headers}
