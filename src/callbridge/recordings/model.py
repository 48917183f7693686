"""The recording model (platform API spec §6.2–§6.3, §8.1).

A recording belongs to one workspace and references what was recorded (``reference_type``
``call`` and the call id). Its status only moves forward::

    recording ──► ended

``end_reason`` says why it ended: ``stop`` (API, RTVBP or ``recording_stop``), ``hangup`` (the
call ended), ``duration`` (its own or the service's maximum length), ``key`` (``end_of_key``),
``silence`` (``end_of_silence``), ``error`` (the file could not be written) or ``shutdown``.

The audio is a 2-channel 16-bit PCM WAV at 8 kHz: left = the caller (what the leg received),
right = the platform (what the leg played to the caller). ``filename`` is the file's path
relative to the data directory: ``recordings/<workspace_id>/<id>.wav``.

``tags`` is a string map. RTVBP's ``recording.start`` sends a list of strings: ``"k=v"``
becomes ``{"k": "v"}``, a bare ``"label"`` becomes ``{"label": ""}`` (:func:`tags_from_list`).
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from callbridge.calls.model import IllegalTransition
from callbridge.calls.serialize import format_ts

#: Only WAV is produced in the first release (spec §8.1: ``mp3|ogg`` later).
FORMATS: Final = ("wav",)
#: Formats the spec names for later releases: refused with a clear message for now.
LATER_FORMATS: Final = ("mp3", "ogg")
#: Channels of a recording file: left = caller, right = platform.
CHANNELS: Final = 2
#: Longest tag key/value and most tags per recording (bounded input).
MAX_TAGS: Final = 64
MAX_TAG_LENGTH: Final = 256


class RecordingStatus(enum.StrEnum):
    RECORDING = "recording"
    ENDED = "ended"


RECORDING_TRANSITIONS: dict[RecordingStatus, frozenset[RecordingStatus]] = {
    RecordingStatus.RECORDING: frozenset({RecordingStatus.ENDED}),
    RecordingStatus.ENDED: frozenset(),
}


class EndReason(enum.StrEnum):
    NONE = ""
    STOP = "stop"
    HANGUP = "hangup"
    DURATION = "duration"
    KEY = "key"
    SILENCE = "silence"
    ERROR = "error"
    SHUTDOWN = "shutdown"


def check_recording_transition(current: RecordingStatus, target: RecordingStatus) -> None:
    """Raise :class:`IllegalTransition` unless ``current -> target`` is in the table."""
    if target not in RECORDING_TRANSITIONS[current]:
        raise IllegalTransition("recording", current, target)


def tags_from_list(tags: Iterable[str]) -> dict[str, str]:
    """RTVBP's tag list as the recording's map (``"k=v"`` → ``k: v``; ``"x"`` → ``x: ""``).

    :class:`ValueError` for more than :data:`MAX_TAGS` tags, an empty key or an over-long tag.
    """
    out: dict[str, str] = {}
    for tag in tags:
        if len(out) >= MAX_TAGS:
            raise ValueError(f"at most {MAX_TAGS} tags")
        if len(tag) > MAX_TAG_LENGTH:
            raise ValueError(f"tags are at most {MAX_TAG_LENGTH} characters")
        key, _, value = tag.partition("=")
        if not key:
            raise ValueError(f"tag {tag!r} has an empty key")
        out[key] = value
    return out


def check_tags(tags: dict[str, Any]) -> dict[str, str]:
    """Validate a tag map (string keys and values, bounded); returns a copy."""
    if len(tags) > MAX_TAGS:
        raise ValueError(f"at most {MAX_TAGS} tags")
    out: dict[str, str] = {}
    for key, value in tags.items():
        if not isinstance(key, str) or not key or not isinstance(value, str):
            raise ValueError("tags must map non-empty strings to strings")
        if len(key) > MAX_TAG_LENGTH or len(value) > MAX_TAG_LENGTH:
            raise ValueError(f"tags are at most {MAX_TAG_LENGTH} characters")
        out[key] = value
    return out


def relative_filename(workspace_id: uuid.UUID, recording_id: uuid.UUID) -> str:
    """Where a recording's file lives, relative to the data directory."""
    return f"recordings/{workspace_id}/{recording_id}.wav"


@dataclass(slots=True)
class Recording:
    """One recording as persisted in the store."""

    id: uuid.UUID
    workspace_id: uuid.UUID
    reference_type: str
    reference_id: uuid.UUID
    filename: str
    tm_create: datetime
    tm_update: datetime
    status: RecordingStatus = RecordingStatus.RECORDING
    format: str = "wav"
    tags: dict[str, str] = field(default_factory=dict)
    duration_ms: int = 0
    end_reason: EndReason = EndReason.NONE
    activeflow_id: uuid.UUID | None = None
    on_end_flow_id: uuid.UUID | None = None
    tm_start: datetime | None = None
    tm_end: datetime | None = None
    tm_delete: datetime | None = None

    @property
    def is_active(self) -> bool:
        return self.status is RecordingStatus.RECORDING


def recording_to_dict(rec: Recording) -> dict[str, Any]:
    """The JSON form of a recording (bus events now, the REST API later).

    Unset ``tm_*`` keys are omitted, like the call object's.
    """
    out: dict[str, Any] = {
        "id": str(rec.id),
        "customer_id": str(rec.workspace_id),
        "reference_type": rec.reference_type,
        "reference_id": str(rec.reference_id),
        "status": rec.status.value,
        "format": rec.format,
        "filename": rec.filename,
        "tags": dict(rec.tags),
        "duration_ms": rec.duration_ms,
        "end_reason": rec.end_reason.value,
        "activeflow_id": str(rec.activeflow_id) if rec.activeflow_id else "",
        "on_end_flow_id": str(rec.on_end_flow_id) if rec.on_end_flow_id else "",
        "tm_create": format_ts(rec.tm_create),
        "tm_update": format_ts(rec.tm_update),
    }
    for key in ("tm_start", "tm_end", "tm_delete"):
        value = getattr(rec, key)
        if value is not None:
            out[key] = format_ts(value)
    return out
