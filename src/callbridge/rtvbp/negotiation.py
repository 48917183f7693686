"""``Sec-WebSocket-Protocol`` negotiation of RTVBP profiles (RTVBP spec §1.1).

Server side (the SDK's upgrade hook), executable as ``profiles/negotiation.json``:

1. no header offered → effective profile ``rtvbp.v1``, and **no** header echoed;
2. offers present → the first token of the *server's* preference list that was offered;
3. offers present, none supported → reject with 400 (``unsupported-profile``);
4. an empty token → reject with 400 (``invalid-token``).

Browser carrier: a ``bearer.<base64url-no-pad(token)>`` entry carries a credential; it is not
a profile, is never echoed, and is returned decoded (:attr:`Selection.bearer`).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Literal

__all__ = [
    "DEFAULT_PROFILE",
    "PROFILE_PREFERENCE",
    "NegotiationError",
    "Selection",
    "parse_offer",
    "select_profile",
]

#: Known profile tokens in the server's preference order (generated registry order).
PROFILE_PREFERENCE: Final = ("rtvbp.v1", "rtvbp.demo.v1", "rtvbp.webrtc.v1")
#: Effective profile of a client that offers nothing (legacy voices, §1.1 rule 1).
DEFAULT_PROFILE: Final = "rtvbp.v1"
#: Body of the 400 answer to an unacceptable offer.
UNSUPPORTED_BODY: Final = "Unsupported WebSocket subprotocol"

ErrorClass = Literal["unsupported-profile", "invalid-token"]


class NegotiationError(ValueError):
    """The offer must be rejected with HTTP 400; ``error_class`` names the vector class."""

    def __init__(self, error_class: ErrorClass, detail: str) -> None:
        super().__init__(detail)
        self.error_class: ErrorClass = error_class


@dataclass(frozen=True, slots=True)
class Selection:
    """The outcome: the token to echo (``None``: send no header), the effective profile."""

    token: str | None
    profile: str
    bearer: str | None = None


def parse_offer(header_values: Iterable[str]) -> list[str]:
    """Split ``Sec-WebSocket-Protocol`` header values into tokens (empty ones kept)."""
    tokens: list[str] = []
    for value in header_values:
        tokens.extend(part.strip() for part in value.split(","))
    return tokens


def _decode_bearer(token: str) -> str:
    raw = token[len("bearer.") :]
    try:
        if not raw:
            raise ValueError("empty credential")
        padded = raw + "=" * (-len(raw) % 4)
        return base64.b64decode(padded, altchars=b"-_", validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise NegotiationError("invalid-token", "malformed bearer subprotocol") from None


def select_profile(offered: Sequence[str], supported: Sequence[str] = ("rtvbp.v1",)) -> Selection:
    """Apply rules 1–4 of §1.1. ``supported`` is in the server's preference order."""
    bearer: str | None = None
    profiles: list[str] = []
    for token in offered:
        if not token:
            raise NegotiationError("invalid-token", "empty subprotocol token")
        if token.startswith("bearer."):
            bearer = _decode_bearer(token)
        else:
            profiles.append(token)
    if not offered:
        return Selection(None, DEFAULT_PROFILE)
    if not profiles:  # only a credential: rule 5 forbids a 101 without a token
        raise NegotiationError("unsupported-profile", UNSUPPORTED_BODY)
    for candidate in supported:
        if candidate in profiles:
            return Selection(candidate, candidate, bearer)
    raise NegotiationError("unsupported-profile", UNSUPPORTED_BODY)
