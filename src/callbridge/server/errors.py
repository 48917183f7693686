"""The JSON error envelope of the HTTP API (platform-api.md §1-§2) and request ids.

Every error response body is::

    {"error": {"status": "<STATUS>", "reason": "<REASON>", "message": "<text>",
               "request_id": "<id>", "details": [...]}}

``details`` is present only when there are details. Route code raises :class:`ApiError`;
the handlers installed by ``create_app`` turn it, Starlette's ``HTTPException`` and request
validation errors into this envelope.
"""

from __future__ import annotations

import re
import secrets
import string
from collections.abc import Mapping, Sequence
from typing import Any

from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse

REQUEST_ID_HEADER = "X-Request-Id"
_REQUEST_ID_OK = re.compile(r"[A-Za-z0-9._-]{1,64}")
_ID_ALPHABET = string.ascii_letters + string.digits

# HTTP status -> (envelope status, default reason) for errors raised without an explicit one.
_DEFAULTS: dict[int, tuple[str, str]] = {
    400: ("INVALID_ARGUMENT", "INVALID_ARGUMENT"),
    401: ("UNAUTHENTICATED", "AUTHENTICATION_REQUIRED"),
    402: ("PAYMENT_REQUIRED", "PAYMENT_REQUIRED"),
    403: ("PERMISSION_DENIED", "PERMISSION_DENIED"),
    404: ("NOT_FOUND", "RESOURCE_NOT_FOUND"),
    405: ("INVALID_ARGUMENT", "METHOD_NOT_ALLOWED"),
    409: ("FAILED_PRECONDITION", "STATE_INVALID"),
    413: ("INVALID_ARGUMENT", "REQUEST_BODY_TOO_LARGE"),
    415: ("INVALID_ARGUMENT", "UNSUPPORTED_MEDIA_TYPE"),
    429: ("RESOURCE_EXHAUSTED", "RATE_LIMIT_EXCEEDED"),
    500: ("INTERNAL", "INTERNAL"),
    503: ("UNAVAILABLE", "SERVICE_UNAVAILABLE"),
}


class ApiError(Exception):
    """An error answered with the JSON envelope.

    ``status``/``reason`` default from ``http_status`` (404 → ``NOT_FOUND``/
    ``RESOURCE_NOT_FOUND`` …). ``headers`` are added to the response (e.g. ``Retry-After``).
    """

    def __init__(
        self,
        http_status: int,
        message: str,
        *,
        reason: str | None = None,
        status: str | None = None,
        details: Sequence[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        default_status, default_reason = defaults_for(http_status)
        self.http_status = http_status
        self.message = message
        self.status = status or default_status
        self.reason = reason or default_reason
        self.details = list(details) if details else None
        self.headers = headers


def defaults_for(http_status: int) -> tuple[str, str]:
    """Envelope ``(status, reason)`` used for ``http_status`` when none is given."""
    if http_status in _DEFAULTS:
        return _DEFAULTS[http_status]
    return _DEFAULTS[500] if http_status >= 500 else _DEFAULTS[400]


def new_request_id() -> str:
    """``req_`` followed by 26 random letters and digits."""
    return "req_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(26))


def accept_request_id(value: str | None) -> str:
    """The client's ``X-Request-Id`` when it is 1-64 bytes of ``[A-Za-z0-9._-]``, else a new id."""
    if value is not None and _REQUEST_ID_OK.fullmatch(value):
        return value
    return new_request_id()


def request_id_of(conn: HTTPConnection) -> str:
    """The request id the request-id middleware assigned to this request/WebSocket."""
    state = conn.scope.get("state") or {}
    rid = state.get("request_id")
    return rid if isinstance(rid, str) else new_request_id()


def error_body(
    request_id: str,
    status: str,
    reason: str,
    message: str,
    details: Sequence[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The envelope as a JSON-ready dict."""
    error: dict[str, Any] = {
        "status": status,
        "reason": reason,
        "message": message,
        "request_id": request_id,
    }
    if details:
        error["details"] = list(details)
    return {"error": error}


def error_response(
    request_id: str,
    http_status: int,
    message: str,
    *,
    reason: str | None = None,
    status: str | None = None,
    details: Sequence[dict[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """A JSON response carrying the envelope (the request-id header is added by middleware)."""
    default_status, default_reason = defaults_for(http_status)
    body = error_body(
        request_id, status or default_status, reason or default_reason, message, details
    )
    return JSONResponse(body, status_code=http_status, headers=headers)
