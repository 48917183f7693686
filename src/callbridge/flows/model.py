"""Flows, actions and activeflows (platform API spec §7).

An *action* is ``{id, next_id, type, option}``; a *flow* is a stored list of actions; an
*activeflow* is one running instance of a list of actions against a reference (a call).
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

NIL_UUID = uuid.UUID(int=0)
#: Reserved action ids (platform API spec §7).
ACTION_ID_START = uuid.UUID("00000000-0000-0000-0000-000000000001")
ACTION_ID_FINISH = uuid.UUID("00000000-0000-0000-0000-000000000002")
ACTION_ID_NEXT = uuid.UUID("00000000-0000-0000-0000-000000000003")


class ActionError(ValueError):
    """An action list or option is malformed; the message says which and why."""


@dataclass(slots=True)
class Action:
    """One step of a flow. ``next_id`` of ``None`` (or nil) means the next array element."""

    type: str
    option: dict[str, Any] = field(default_factory=dict)
    id: uuid.UUID = field(default_factory=uuid.uuid4)
    next_id: uuid.UUID | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "next_id": str(self.next_id or NIL_UUID),
            "type": self.type,
            "option": self.option,
        }

    @classmethod
    def from_dict(cls, data: Any) -> Action:
        """Build an action from its JSON form, generating an id when absent."""
        if not isinstance(data, dict):
            raise ActionError("an action must be a JSON object")
        type_ = data.get("type")
        if not isinstance(type_, str) or not type_:
            raise ActionError("an action needs a non-empty string 'type'")
        option = data.get("option")
        if option is None:
            option = {}
        if not isinstance(option, dict):
            raise ActionError(f"action {type_!r}: 'option' must be an object")
        try:
            raw_id = data.get("id")
            action_id = uuid.UUID(str(raw_id)) if raw_id else uuid.uuid4()
            if action_id == NIL_UUID:
                action_id = uuid.uuid4()
            raw_next = data.get("next_id")
            next_id = uuid.UUID(str(raw_next)) if raw_next else None
        except ValueError as exc:
            raise ActionError(f"action {type_!r}: id and next_id must be UUIDs") from exc
        if next_id == NIL_UUID:
            next_id = None
        return cls(type=type_, option=dict(option), id=action_id, next_id=next_id)


class ActiveflowStatus(enum.StrEnum):
    RUNNING = "running"
    ENDED = "ended"


@dataclass(slots=True)
class Activeflow:
    """A running (or finished) instance of an action list bound to a reference."""

    id: uuid.UUID
    workspace_id: uuid.UUID
    reference_type: str
    reference_id: uuid.UUID
    actions: list[Action]
    tm_create: datetime
    tm_update: datetime
    status: ActiveflowStatus = ActiveflowStatus.RUNNING
    flow_id: uuid.UUID | None = None
    current_action: Action | None = None
    forward_action_id: uuid.UUID | None = None
    executed_actions: list[dict[str, Any]] = field(default_factory=list)
    tm_delete: datetime | None = None
