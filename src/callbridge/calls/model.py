"""The call model shared by every face of callbridge (SIP, RTVBP, REST, live streams).

A call's status only moves forward (platform API spec §6.2)::

    dialing ──► ringing ──► progressing ──► terminating ──► hangup
       │           │             └──────────────────────────► hangup
       └──► canceling ◄──┘ (outgoing, before answer) ─────────► hangup

Incoming calls start at ``ringing``. The transition table below is the single source of truth;
an illegal move raises :class:`IllegalTransition`.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class IllegalTransition(Exception):
    """A state machine was asked to make a move its table does not allow."""

    def __init__(self, machine: str, current: enum.Enum, target: enum.Enum) -> None:
        super().__init__(f"{machine}: illegal transition {current.value} -> {target.value}")
        self.current = current
        self.target = target


class CallStatus(enum.StrEnum):
    DIALING = "dialing"
    RINGING = "ringing"
    PROGRESSING = "progressing"
    TERMINATING = "terminating"
    CANCELING = "canceling"
    HANGUP = "hangup"


CALL_TRANSITIONS: dict[CallStatus, frozenset[CallStatus]] = {
    CallStatus.DIALING: frozenset(
        {
            CallStatus.RINGING,
            CallStatus.PROGRESSING,
            CallStatus.CANCELING,
            CallStatus.TERMINATING,
            CallStatus.HANGUP,
        }
    ),
    CallStatus.RINGING: frozenset(
        {CallStatus.PROGRESSING, CallStatus.CANCELING, CallStatus.TERMINATING, CallStatus.HANGUP}
    ),
    CallStatus.PROGRESSING: frozenset({CallStatus.TERMINATING, CallStatus.HANGUP}),
    CallStatus.TERMINATING: frozenset({CallStatus.HANGUP}),
    CallStatus.CANCELING: frozenset({CallStatus.HANGUP}),
    CallStatus.HANGUP: frozenset(),
}

#: Statuses in which the call is still live (not ended).
LIVE_STATUSES: frozenset[CallStatus] = frozenset(
    {CallStatus.DIALING, CallStatus.RINGING, CallStatus.PROGRESSING}
)


def check_call_transition(current: CallStatus, target: CallStatus) -> None:
    """Raise :class:`IllegalTransition` unless ``current -> target`` is in the table."""
    if target not in CALL_TRANSITIONS[current]:
        raise IllegalTransition("call", current, target)


class HangupReason(enum.StrEnum):
    """Why a call ended (platform API spec §6.2); ``NONE`` while live."""

    NONE = ""
    NORMAL = "normal"
    FAILED = "failed"
    BUSY = "busy"
    CANCEL = "cancel"
    TIMEOUT = "timeout"
    NOANSWER = "noanswer"
    DIALOUT = "dialout"
    AMD = "amd"


class HangupBy(enum.StrEnum):
    NONE = ""
    REMOTE = "remote"
    LOCAL = "local"


class Direction(enum.StrEnum):
    INCOMING = "incoming"
    OUTGOING = "outgoing"


@dataclass(slots=True)
class Address:
    """A call party (platform API spec §5); ``type`` is ``tel``, ``extension``, ``sip``, …"""

    type: str
    target: str = ""
    target_name: str = ""
    name: str = ""
    detail: str = ""

    def to_dict(self) -> dict[str, str]:
        return {
            "type": self.type,
            "target": self.target,
            "target_name": self.target_name,
            "name": self.name,
            "detail": self.detail,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Address:
        return cls(
            type=str(data.get("type", "")),
            target=str(data.get("target", "")),
            target_name=str(data.get("target_name", "")),
            name=str(data.get("name", "")),
            detail=str(data.get("detail", "")),
        )


@dataclass(slots=True)
class Call:
    """One call as persisted in the store and shown by every API.

    ``variables`` are the flow variables (string views for ``${var}`` substitution); ``tm_*``
    are timezone-aware UTC datetimes, ``None`` when the moment has not happened.
    """

    id: uuid.UUID
    workspace_id: uuid.UUID
    direction: Direction
    source: Address
    destination: Address
    status: CallStatus
    tm_create: datetime
    tm_update: datetime
    hangup_reason: HangupReason = HangupReason.NONE
    hangup_by: HangupBy = HangupBy.NONE
    flow_id: uuid.UUID | None = None
    activeflow_id: uuid.UUID | None = None
    action: dict[str, Any] = field(default_factory=dict)
    variables: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    tm_ringing: datetime | None = None
    tm_progressing: datetime | None = None
    tm_hangup: datetime | None = None
    tm_delete: datetime | None = None

    @property
    def is_live(self) -> bool:
        return self.status in LIVE_STATUSES
