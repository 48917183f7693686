"""Exceptions an RTVBP application or voice sees when a request does not succeed (§2.3, §7)."""

from __future__ import annotations

from typing import Any

from callbridge.rtvbp.envelope import ABSENT, ErrorObject
from callbridge.rtvbp.session import NotInitialized, SessionClosed

__all__ = [
    "NotInitialized",
    "RemoteError",
    "RequestTimeout",
    "RtvbpError",
    "SessionClosed",
    "error_for",
]


class RtvbpError(Exception):
    """Base class of request failures."""


class RemoteError(RtvbpError):
    """The peer answered with an error object. Raise it from a handler to answer with it."""

    def __init__(self, code: int, message: str, data: Any = ABSENT) -> None:
        super().__init__(f"{code} {message}")
        self.code = code
        self.message = message
        self.data = data

    @classmethod
    def from_error(cls, error: ErrorObject) -> RemoteError:
        return cls(error.code, error.message, error.data)


class RequestTimeout(RtvbpError):
    """No response within the request timeout (5 s by default, §1.5)."""


def error_for(exc: BaseException) -> ErrorObject:
    """The response error for a handler exception: its own code for :class:`RemoteError`,
    else 500 with the error text (§2.3)."""
    if isinstance(exc, RemoteError):
        return ErrorObject(exc.code, exc.message, exc.data)
    return ErrorObject(500, str(exc) or type(exc).__name__)
