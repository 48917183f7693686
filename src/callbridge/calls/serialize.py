"""JSON views of the call model, shaped like the platform API (spec ``platform-api.md`` §1, §6.2).

Timestamps are RFC 3339 UTC with microseconds (``2026-02-21T10:05:02.233415Z``); call objects
omit ``tm_*`` keys that have not happened. These dicts are what the bus carries and what the
REST API will return, so every face shows the same object.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from callbridge.calls.model import Call
from callbridge.flows.model import NIL_UUID, Activeflow

#: The nil UUID as text (``str(uuid)`` is Python code: computed once, not per event).
_NIL = str(NIL_UUID)


def format_ts(ts: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SS.ffffffZ`` in UTC."""
    # isoformat (C, no format-string parsing) with the "+00:00" of a UTC time spelt "Z".
    return ts.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def utc_now_from(epoch_seconds: float) -> datetime:
    """A timezone-aware UTC datetime for wall-clock ``epoch_seconds`` (from the injected clock)."""
    return datetime.fromtimestamp(epoch_seconds, tz=UTC)


def _uuid_or_nil(value: uuid.UUID | None) -> str:
    return str(value) if value else _NIL


def call_to_dict(call: Call) -> dict[str, Any]:
    """The platform API's call object."""
    out: dict[str, Any] = {
        "id": str(call.id),
        "customer_id": str(call.workspace_id),
        "owner_type": "",
        "owner_id": _NIL,
        "flow_id": _uuid_or_nil(call.flow_id),
        "activeflow_id": _uuid_or_nil(call.activeflow_id),
        "type": "flow",
        "master_call_id": _NIL,
        "chained_call_ids": [],
        "recording_id": _NIL,
        "recording_ids": [],
        "groupcall_id": _NIL,
        "source": call.source.to_dict(),
        "destination": call.destination.to_dict(),
        "status": call.status.value,
        "action": call.action,
        "metadata": call.metadata,
        "direction": call.direction.value,
        "mute_direction": "",
        "hangup_by": call.hangup_by.value,
        "hangup_reason": call.hangup_reason.value,
        "tm_create": format_ts(call.tm_create),
        "tm_update": format_ts(call.tm_update),
    }
    for key in ("tm_ringing", "tm_progressing", "tm_hangup", "tm_delete"):
        value = getattr(call, key)
        if value is not None:
            out[key] = format_ts(value)
    return out


def activeflow_to_dict(flow: Activeflow) -> dict[str, Any]:
    """The platform API's activeflow object."""
    return {
        "id": str(flow.id),
        "customer_id": str(flow.workspace_id),
        "flow_id": _uuid_or_nil(flow.flow_id),
        "status": flow.status.value,
        "reference_type": flow.reference_type,
        "reference_id": str(flow.reference_id),
        "current_action": flow.current_action.to_dict() if flow.current_action else {},
        "forward_action_id": _uuid_or_nil(flow.forward_action_id),
        "executed_actions": flow.executed_actions,
        "tm_create": format_ts(flow.tm_create),
        "tm_update": format_ts(flow.tm_update),
        "tm_delete": format_ts(flow.tm_delete) if flow.tm_delete else "9999-01-01T00:00:00.000000Z",
    }
