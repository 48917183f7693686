"""Domain types of authentication: workspaces (the spec's *customer*) and access keys.

These are plain immutable values handed out by the store. An :class:`AccessKey` never holds
the plaintext token nor its hash: the plaintext exists only in the create response, and the
hash stays inside the store.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Workspace:
    """A tenant. Every resource belongs to exactly one workspace (``customer_id`` on the wire)."""

    id: uuid.UUID
    name: str
    tm_create: datetime


@dataclass(frozen=True, slots=True)
class AccessKey:
    """An access key's metadata (platform API spec §3).

    ``token_prefix`` is the first 11 characters of the token (``vb_`` + 8), enough to
    recognise a key in a list without revealing it. ``tm_expire`` is ``None`` for a key that
    never expires; ``tm_delete`` is set once the key was (soft) deleted. All datetimes are
    timezone-aware UTC.
    """

    id: uuid.UUID
    workspace_id: uuid.UUID
    name: str
    detail: str
    token_prefix: str
    tm_expire: datetime | None
    tm_create: datetime
    tm_update: datetime
    tm_delete: datetime | None = None

    def is_usable(self, now: datetime) -> bool:
        """True when the key is neither deleted nor expired at ``now`` (aware UTC)."""
        if self.tm_delete is not None:
            return False
        return self.tm_expire is None or self.tm_expire > now
