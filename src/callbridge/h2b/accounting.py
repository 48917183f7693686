"""Accounting of H2B sessions (migration 0004): one row per ended session.

Each row keeps the workspace, the client's references (``custom_id``, ``session_id``), the
channel id, the codec, the number of recognitions and the milliseconds of audio that went to
the recognizer (the billable "recognized audio"). The REST listing comes with the platform API.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select

from callbridge.h2b.engine import SessionRecord
from callbridge.store import tables
from callbridge.store.store import Store

__all__ = ["H2BSessionRow", "list_sessions", "record_session"]


@dataclass(frozen=True, slots=True)
class H2BSessionRow:
    """A stored H2B session."""

    id: uuid.UUID
    workspace_id: uuid.UUID
    channel_id: str
    custom_id: str
    session_id: str
    audio_codec: str
    recognitions: int
    recognized_ms: int
    tm_open: datetime
    tm_close: datetime

    @property
    def recognized_seconds(self) -> float:
        """Recognized audio in seconds."""
        return self.recognized_ms / 1000.0


def _dt(epoch_ms: int) -> datetime:
    return datetime.fromtimestamp(epoch_ms / 1000.0, tz=UTC)


async def record_session(
    store: Store, workspace_id: uuid.UUID, record: SessionRecord
) -> H2BSessionRow:
    """Insert the accounting row of an ended session."""
    row = H2BSessionRow(
        id=uuid.uuid4(),
        workspace_id=workspace_id,
        channel_id=record.channel_id[:96],
        custom_id=record.custom_id[:128],
        session_id=record.session_id[:128],
        audio_codec=record.audio_codec,
        recognitions=record.recognitions,
        recognized_ms=record.recognized_ms,
        tm_open=_dt(record.opened_ms),
        tm_close=_dt(max(record.opened_ms, record.closed_ms)),
    )
    async with store.session() as session, session.begin():
        await session.execute(
            tables.h2b_sessions.insert().values(
                id=row.id,
                workspace_id=row.workspace_id,
                channel_id=row.channel_id,
                custom_id=row.custom_id,
                session_id=row.session_id,
                audio_codec=row.audio_codec,
                recognitions=row.recognitions,
                recognized_ms=row.recognized_ms,
                tm_open=row.tm_open,
                tm_close=row.tm_close,
            )
        )
    return row


async def list_sessions(store: Store, workspace_id: uuid.UUID) -> list[H2BSessionRow]:
    """The workspace's sessions, oldest first."""
    t = tables.h2b_sessions
    async with store.session() as session:
        result = await session.execute(
            select(t).where(t.c.workspace_id == workspace_id).order_by(t.c.tm_open, t.c.id)
        )
        return [
            H2BSessionRow(
                id=r.id,
                workspace_id=r.workspace_id,
                channel_id=r.channel_id,
                custom_id=r.custom_id,
                session_id=r.session_id,
                audio_codec=r.audio_codec,
                recognitions=r.recognitions,
                recognized_ms=r.recognized_ms,
                tm_open=r.tm_open,
                tm_close=r.tm_close,
            )
            for r in result
        ]
