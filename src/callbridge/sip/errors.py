"""Errors raised by the sans-I/O SIP core.

Every malformed input ends in one of these exception types, never in a ``ValueError``,
``IndexError`` or ``UnicodeError`` from deep inside the parser. A :class:`SipParseError`
carries the status code the UA answers a malformed *request* with (RFC 3261 §8.2.2, §21.4:
400 for bad syntax, 505 for an unsupported version, 513 for an oversized message) and a reason
phrase naming the problem; malformed *responses* are simply dropped by the caller.
"""

from __future__ import annotations


class SipError(Exception):
    """Base class of every error the SIP core raises on purpose."""


class SipParseError(SipError):
    """A message, header or URI that does not follow the RFC 3261 §25 grammar.

    ``status`` is the response code a UAS sends back when the bad message is a request;
    ``reason`` is a short phrase naming the problem (used as the reason phrase).
    """

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        #: Raw headers parsed before the error (name, value), when the start line and header
        #: section could be split; lets the transport build a 400 with the request's Via.
        self.raw_headers: list[tuple[str, str]] | None = None
        #: True when the faulty message was a request (a UAS answers it), False for a response
        #: (dropped), None when the start line itself could not be classified.
        self.is_request: bool | None = None
        #: The request's method when the start line could be read (an ACK is never answered).
        self.method: str | None = None


class TransactionError(SipError):
    """Illegal use of a transaction: an event its current state does not accept."""


class AuthError(SipError):
    """A digest challenge or credentials that cannot be used."""


class SdpError(SipError):
    """A session description that cannot be parsed."""


class NegotiationError(SdpError):
    """Offer/answer failed: no common codec. The UA maps it to 488 (RFC 3261 §13.3.1.3)."""
