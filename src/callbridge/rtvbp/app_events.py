"""Application events of an RTVBP bridge → domain events on the bus (RTVBP spec §6.2).

What the handler tells callbridge about the conversation becomes the platform's own events, in
the shapes of the platform API spec (§9 transcripts, §15.2 transcript frames, §16 Voicebip
payloads), so the REST and streaming faces can serve them without knowing RTVBP:

==========================  ==================================================================
RTVBP event                 bus event (topic ``ws.<workspace>.<resource>.<id>.<type>``)
==========================  ==================================================================
``input.transcript``        ``transcript_created`` on ``transcript.<transcript id>``:
                            direction ``in``, role ``user``, ``is_final`` true, new turn
``output.transcript.delta`` ``transcript_partial`` on ``call.<call id>``: direction ``out``,
                            role ``agent``, ``is_final`` false, ``message`` = the turn's text
                            so far, ``delta`` = this piece
``output.transcript.done``  ``transcript_created`` on ``transcript.<transcript id>``:
                            direction ``out``, role ``agent``, ``is_final`` true; ``message``
                            = ``text`` when present (``""`` included), else the deltas
``audio.speech.started``    ``call_barge_in`` on ``call.<call id>`` — only while handler
                            audio is queued for the caller (agent audio playing)
``agent.tool.call``         ``tool_invocation`` on ``call.<call id>``
==========================  ==================================================================

Transcript objects carry the §9 fields (``id, customer_id, transcribe_id, direction, message,
tm_transcript, offset_ms, tm_create``; ``transcribe_id`` is the nil UUID: these transcripts
come from the application, not from a callbridge transcribe; ``offset_ms`` counts from the
start of the bridge session) plus ``call_id, turn_id, role, is_final, ts, source`` for the live
faces. ``turn_id`` (``trn_…``) is stable across the partials and the final of one agent turn.
Transcripts are not stored yet (there is no transcripts table); the bus is their only outlet.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

import structlog

from callbridge.bus.base import make_topic
from callbridge.calls.serialize import format_ts, utc_now_from
from callbridge.flows.model import NIL_UUID
from callbridge.media.clock import Clock
from callbridge.rtvbp import catalog as c
from callbridge.rtvbp.session import InboundEvent

if TYPE_CHECKING:
    from callbridge.calls.service import CallService, LiveCall

log = structlog.get_logger("callbridge.rtvbp.app_events")

#: Longest agent turn text kept while accumulating deltas (bounded memory per bridge).
MAX_TURN_CHARS: Final = 64 * 1024
_EPOCH_ONE: Final = datetime(1, 1, 1)  # zone-less: the reference encoding adds the Z


def iso_ms(ts: datetime) -> str:
    """ISO 8601 UTC with milliseconds: ``2026-02-21T10:05:02.233Z``."""
    ts = ts.astimezone(UTC)
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def tm_transcript(offset_ms: int) -> str:
    """The reference encoding of an offset: counted from ``0001-01-01T00:00:00Z`` (§9)."""
    moment = _EPOCH_ONE + timedelta(milliseconds=offset_ms)
    return moment.isoformat(timespec="microseconds") + "Z"


def new_turn_id() -> str:
    return "trn_" + uuid.uuid4().hex


class ApplicationEvents:
    """Publishes one bridge's application events; one instance per bridge session."""

    def __init__(
        self,
        service: CallService,
        live: LiveCall,
        session_id: str,
        clock: Clock,
        agent_audio_queued: Callable[[], int],
    ) -> None:
        self.service = service
        self.live = live
        self.session_id = session_id
        self.clock = clock
        self._agent_audio_queued = agent_audio_queued
        self._started = clock.monotonic()
        self._agent_turn: str | None = None
        self._agent_text = ""
        self._agent_offset = 0
        self._last_agent_turn: str | None = None
        self.published = 0

    def _offset_ms(self) -> int:
        return max(0, int((self.clock.monotonic() - self._started) * 1000))

    def _now(self) -> datetime:
        return utc_now_from(self.clock.time())

    async def handle(self, ev: InboundEvent) -> None:
        """Translate and publish ``ev`` (events without a domain meaning are ignored)."""
        data = ev.data
        if isinstance(data, c.InputTranscriptEvent):
            await self._transcript("in", data.delta, new_turn_id(), self._offset_ms())
        elif isinstance(data, c.OutputTranscriptDeltaEvent):
            await self._agent_delta(data.delta)
        elif isinstance(data, c.OutputTranscriptDoneEvent):
            await self._agent_done(data.text)
        elif isinstance(data, c.AudioSpeechStartedEvent):
            await self._speech_started(data.origin)
        elif isinstance(data, c.AgentToolCallEvent):
            await self._call_event("tool_invocation", {"name": data.name})

    # -- transcripts --------------------------------------------------------------------------
    def _base(self) -> dict[str, Any]:
        return {
            "customer_id": str(self.live.call.workspace_id),
            "call_id": str(self.live.id),
        }

    async def _transcript(self, direction: str, text: str, turn_id: str, offset_ms: int) -> None:
        now = self._now()
        transcript_id = str(uuid.uuid4())
        data = {
            "id": transcript_id,
            "customer_id": str(self.live.call.workspace_id),
            "transcribe_id": str(NIL_UUID),
            "direction": direction,
            "message": text,
            "tm_transcript": tm_transcript(offset_ms),
            "offset_ms": offset_ms,
            "tm_create": format_ts(now),
            "call_id": str(self.live.id),
            "turn_id": turn_id,
            "role": "user" if direction == "in" else "agent",
            "is_final": True,
            "ts": iso_ms(now),
            "source": "rtvbp",
        }
        await self._publish("transcript", transcript_id, "transcript_created", data)

    async def _agent_delta(self, delta: str) -> None:
        if self._agent_turn is None:
            self._agent_turn = new_turn_id()
            self._agent_text = ""
            self._agent_offset = self._offset_ms()
        if len(self._agent_text) + len(delta) <= MAX_TURN_CHARS:
            self._agent_text += delta
        now = self._now()
        data = self._base() | {
            "turn_id": self._agent_turn,
            "direction": "out",
            "role": "agent",
            "message": self._agent_text,
            "delta": delta,
            "is_final": False,
            "offset_ms": self._agent_offset,
            "ts": iso_ms(now),
            "source": "rtvbp",
        }
        await self._publish("call", str(self.live.id), "transcript_partial", data)

    async def _agent_done(self, text: str | None) -> None:
        turn = self._agent_turn or new_turn_id()
        offset = self._agent_offset if self._agent_turn is not None else self._offset_ms()
        final = self._agent_text if text is None else text
        self._agent_turn = None
        self._agent_text = ""
        self._last_agent_turn = turn
        await self._transcript("out", final, turn, offset)

    # -- barge-in and tools -------------------------------------------------------------------
    async def _speech_started(self, origin: str) -> None:
        queued = self._agent_audio_queued()
        if queued <= 0:
            return  # nothing was playing: not a barge-in
        turn = self._agent_turn or self._last_agent_turn or ""
        await self._call_event(
            "call_barge_in", {"turn_id": turn, "origin": origin, "queued_bytes": queued}
        )

    async def _call_event(self, event_type: str, extra: dict[str, Any]) -> None:
        data = self._base() | extra | {"ts": iso_ms(self._now()), "source": "rtvbp"}
        await self._publish("call", str(self.live.id), event_type, data)

    async def _publish(
        self, resource: str, resource_id: str, event_type: str, data: dict[str, Any]
    ) -> None:
        wid = str(self.live.call.workspace_id)
        try:
            await self.service.bus.publish(
                make_topic(wid, resource, resource_id, event_type),
                event_type,
                data,
                workspace_id=wid,
            )
            self.published += 1
        except Exception:  # a closed bus must not break the bridge
            log.exception("could not publish an application event", event_type=event_type)
