"""Injected randomness for branches, tags, Call-IDs and nonces (callbridge SIP spec §3).

The core never calls a random generator of its own: it asks an :class:`IdSource`. Production
uses :class:`SecretIdSource` (``secrets``); tests use :class:`SeededIdSource` so every branch
and tag is reproducible.
"""

from __future__ import annotations

import random
import secrets
from typing import Protocol

from callbridge.sip.headers import BRANCH_COOKIE


class IdSource(Protocol):
    """A source of random hexadecimal tokens."""

    def token(self, nbits: int) -> str:
        """``nbits`` random bits as lower-case hex (rounded up to whole nibbles)."""
        ...


class SecretIdSource:
    """Cryptographically strong tokens (``secrets.token_hex``)."""

    def token(self, nbits: int) -> str:
        return secrets.token_hex((nbits + 7) // 8)


class SeededIdSource:
    """Deterministic tokens for tests."""

    def __init__(self, seed: int = 0) -> None:
        self._rng = random.Random(seed)

    def token(self, nbits: int) -> str:
        nibbles = (nbits + 3) // 4
        return f"{self._rng.getrandbits(nibbles * 4):0{nibbles}x}"


def new_branch(ids: IdSource) -> str:
    """A branch with the RFC 3261 magic cookie and 64 random bits (§8.1.1.7)."""
    return BRANCH_COOKIE + ids.token(64)


def new_tag(ids: IdSource) -> str:
    """A From/To tag with at least 32 random bits (§19.3); callbridge uses 64."""
    return ids.token(64)


def new_call_id(ids: IdSource, host: str) -> str:
    """A globally unique Call-ID (§8.1.1.4)."""
    return f"{ids.token(128)}@{host}"
