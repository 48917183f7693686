"""The recordings repository (migration 0003): ``store.recordings``.

Same conventions as every :class:`~callbridge.store.repos.ScopedRepository`: newest first,
``get`` answers ``None`` for another workspace's row. The association between a call and its
recordings lives here (``reference_id``): the call model has no ``recording_ids`` column yet,
so :meth:`RecordingRepository.list_for` is how a call's recordings are found.
"""

from __future__ import annotations

import builtins
import uuid
from typing import Any

from sqlalchemy import Row, select

from callbridge.recordings.model import EndReason, Recording, RecordingStatus
from callbridge.store import tables
from callbridge.store.repos import ScopedRepository, _require_aware


class RecordingRepository(ScopedRepository[Recording]):
    """Recordings of calls."""

    _table = tables.recordings
    _noun = "recording"

    def _values(self, item: Recording) -> dict[str, Any]:
        return {
            "reference_type": item.reference_type,
            "reference_id": item.reference_id,
            "status": RecordingStatus(item.status).value,
            "format": item.format,
            "filename": item.filename,
            "tags": dict(item.tags),
            "duration_ms": int(item.duration_ms),
            "end_reason": EndReason(item.end_reason).value,
            "activeflow_id": item.activeflow_id,
            "on_end_flow_id": item.on_end_flow_id,
            "tm_start": _require_aware(item.tm_start, "tm_start"),
            "tm_end": _require_aware(item.tm_end, "tm_end"),
            "tm_update": _require_aware(item.tm_update, "tm_update"),
            "tm_delete": _require_aware(item.tm_delete, "tm_delete"),
        }

    def _from_row(self, row: Row[Any]) -> Recording:
        m = row._mapping
        return Recording(
            id=m["id"],
            workspace_id=m["workspace_id"],
            reference_type=m["reference_type"],
            reference_id=m["reference_id"],
            filename=m["filename"],
            tm_create=m["tm_create"],
            tm_update=m["tm_update"],
            status=RecordingStatus(m["status"]),
            format=m["format"],
            tags={str(k): str(v) for k, v in (m["tags"] or {}).items()},
            duration_ms=int(m["duration_ms"]),
            end_reason=EndReason(m["end_reason"]),
            activeflow_id=m["activeflow_id"],
            on_end_flow_id=m["on_end_flow_id"],
            tm_start=m["tm_start"],
            tm_end=m["tm_end"],
            tm_delete=m["tm_delete"],
        )

    async def list_for(
        self, workspace_id: uuid.UUID, reference_type: str, reference_id: uuid.UUID
    ) -> builtins.list[Recording]:
        """Non-deleted recordings of one reference (a call), oldest first."""
        t = self._table
        stmt = (
            select(t)
            .where(
                t.c.workspace_id == workspace_id,
                t.c.reference_type == reference_type,
                t.c.reference_id == reference_id,
                t.c.tm_delete.is_(None),
            )
            .order_by(t.c.tm_create)
        )
        async with self._sessions() as session:
            rows = (await session.execute(stmt)).all()
        return [self._from_row(r) for r in rows]
