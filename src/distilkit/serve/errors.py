"""The server's one error format: ``{"error": {"code": ..., "message": ...}}`` with an HTTP status."""

from __future__ import annotations

from fastapi.responses import JSONResponse

STATUS_CODES = {400: "malformed_json", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed",
                413: "payload_too_large", 422: "invalid_request", 429: "queue_full", 499: "client_closed",
                503: "unavailable", 504: "timeout", 500: "internal_error"}

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "additionalProperties": False,
    "properties": {"error": {
        "type": "object",
        "required": ["code", "message"],
        "additionalProperties": False,
        "properties": {
            "code": {"type": "string", "description": "Stable machine-readable code, e.g. invalid_request"},
            "message": {"type": "string", "description": "What is wrong and what to do, naming the field"},
        },
    }},
}


class ApiError(Exception):
    """An error answered as ``{"error": {"code", "message"}}`` with an HTTP status."""

    def __init__(self, status: int, message: str, code: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message = status, message
        self.code = code or STATUS_CODES.get(status, "error")
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        return error_response(self.status, self.message, self.code, self.headers)


def error_response(status: int, message: str, code: str | None = None,
                   headers: dict | None = None) -> JSONResponse:
    """The one error body of the server."""
    body = {"error": {"code": code or STATUS_CODES.get(status, "error"), "message": message}}
    return JSONResponse(body, status_code=status, headers=headers)
