"""The Server-Timing header: ``total`` is added, or appended after the stage entries routes set."""

from __future__ import annotations

from distilkit.serve.timing import append_timing, timing_entry


def start(*headers: tuple[bytes, bytes]) -> dict:
    return {"type": "http.response.start", "status": 200, "headers": list(headers)}


def test_entry_is_milliseconds_with_one_decimal():
    assert timing_entry("total", 0.01234) == "total;dur=12.3"


def test_header_is_added_when_the_response_has_none():
    message = start((b"content-type", b"application/json"))
    out = append_timing(message, "total", 0.002)
    assert out["headers"] == [(b"content-type", b"application/json"), (b"server-timing", b"total;dur=2.0")]
    assert message["headers"] == [(b"content-type", b"application/json")]  # the original is left alone


def test_total_is_appended_to_stage_entries_not_replacing_them():
    message = start((b"Server-Timing", b"tokenize;dur=0.4, forward;dur=8.1"), (b"content-length", b"2"))
    out = append_timing(message, "total", 0.0101)
    assert out["headers"][0] == (b"Server-Timing", b"tokenize;dur=0.4, forward;dur=8.1, total;dur=10.1")
    assert len(out["headers"]) == 2
