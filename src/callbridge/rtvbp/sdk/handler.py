"""The handler API of the RTVBP application SDK (RTVBP spec §7).

Write a handler by subclassing :class:`RtvbpHandler` and overriding the callbacks you need;
the server creates one instance per connection::

    class Echo(RtvbpHandler):
        async def on_audio(self, frame: bytes) -> None:
            self.send_audio(frame)

Callbacks (all optional, all ``async``): :meth:`on_start` (after the initialize response),
:meth:`on_audio` (each 320-byte caller frame, in order), :meth:`on_dtmf`, :meth:`on_hangup`
(the call ended), :meth:`on_session_updated`, :meth:`on_audio_info`, :meth:`on_terminate`
(the voice ends the session), :meth:`on_end` (the session is over, whatever the reason).
Defaults (§7): ``session.initialize`` echoes the first offered codec this handler supports
(:meth:`select_codec`), or answers 400 ``no supported audio codec``; ``ping`` is answered per
§3.2; ``session.terminate`` is answered ``{}`` and the session closes.

Requests to the voice are awaitables returning typed results or raising
:class:`~callbridge.rtvbp.errors.RemoteError`, ``RequestTimeout`` or ``SessionClosed``;
calling them before the initialize response has been sent raises ``NotInitialized``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from typing import Any

import structlog

from callbridge.media.clock import Clock, SystemClock
from callbridge.rtvbp import catalog as c
from callbridge.rtvbp.connection import Connection, wall_ms
from callbridge.rtvbp.errors import RemoteError
from callbridge.rtvbp.sdk.audio import DEFAULT_LEAD_SECONDS, AudioSender
from callbridge.rtvbp.session import InboundEvent, InboundRequest

log = structlog.get_logger("callbridge.rtvbp.sdk")

#: Inbound caller frames queued for ``on_audio`` at most (10 s); older ones are dropped.
MAX_AUDIO_QUEUE = 500


class RtvbpHandler:
    """Base class of an application handler. One instance serves one session."""

    #: Codecs this handler accepts, in preference order (the SDK's audio path is L16/8000/1).
    SUPPORTED_CODECS: Sequence[str] = ("L16/8000/1",)

    def __init__(self) -> None:
        self._conn: Connection | None = None
        self._sender: AudioSender | None = None
        # Caller frames waiting for on_audio: a deque and one event (an asyncio.Queue costs
        # a future and a loop look-up per frame, 50 times a second per session).
        self._audio_queue: deque[bytes] = deque()
        self._audio_ready = asyncio.Event()
        self._audio_task: asyncio.Task[None] | None = None
        self._start_task: asyncio.Task[None] | None = None
        self.audio_dropped = 0
        self.init: c.SessionInitializeRequest | None = None
        self.codec: c.AudioCodec | None = None
        self.profile = "rtvbp.v1"

    # -- callbacks to override ----------------------------------------------------------------
    def select_codec(self, offers: Sequence[c.AudioCodec]) -> c.AudioCodec | None:
        """The first offered codec this handler supports (echoed verbatim), else ``None``."""
        for offer in offers:
            if offer.id in self.SUPPORTED_CODECS:
                return offer
        return None

    async def initialize(self, init: c.SessionInitializeRequest) -> c.SessionInitializeResponse:
        """Answer ``session.initialize``. Default: echo :meth:`select_codec`'s choice, or 400
        ``no supported audio codec`` (never ``null``, §4). Raise ``RemoteError`` to refuse."""
        codec = self.select_codec(init.audio_codec_offerings)
        if codec is None:
            raise RemoteError(400, "no supported audio codec")
        return c.SessionInitializeResponse(codec)

    async def on_start(self, init: c.SessionInitializeRequest) -> None:
        """The session is active: ``init`` has the call and application data."""

    async def on_audio(self, frame: bytes) -> None:
        """One 20 ms caller frame (320 bytes, L16/8000 mono little-endian)."""

    async def on_dtmf(self, event: c.DtmfEvent) -> None:
        """The caller released a key."""

    async def on_hangup(self, event: c.CallHangupEvent) -> None:
        """The phone call ended (a ``session.terminate`` follows)."""

    async def on_session_updated(self, event: c.SessionUpdatedEvent) -> None:
        """The voice confirmed the codec."""

    async def on_audio_info(self, event: c.AudioInfoEvent) -> None:
        """Periodic throughput counters."""

    async def on_terminate(self, reason: str) -> None:
        """The voice ends the session (after this the SDK answers ``{}`` and closes)."""

    async def on_end(self) -> None:
        """The session is over (closed or failed)."""

    # -- audio --------------------------------------------------------------------------------
    def send_audio(self, pcm: bytes) -> None:
        """Queue agent audio of any length; sent as exact 320-byte frames, paced."""
        self._require_sender().write(pcm)

    def flush_audio(self) -> None:
        """Pad and send the trailing partial frame (end of an utterance)."""
        self._require_sender().flush()

    def drop_unsent_audio(self) -> int:
        """Drop agent audio not yet sent to the voice; returns the bytes dropped."""
        return self._sender.clear() if self._sender is not None else 0

    @property
    def unsent_audio_bytes(self) -> int:
        return self._sender.unsent_bytes if self._sender is not None else 0

    async def clear(self) -> int:
        """Drop local unsent audio and ask the voice to drop its unplayed audio (its ``len``)."""
        self.drop_unsent_audio()
        result = await self._request("audio.buffer.clear", c.AudioBufferClearRequest())
        assert isinstance(result, c.AudioBufferClearResponse)
        return result.len

    async def barge_in(self, origin: str = "sender") -> int:
        """Barge-in (§4): drop unsent audio, emit ``audio.speech.started``, clear the voice's
        buffer; returns the bytes the voice discarded."""
        self.drop_unsent_audio()
        self.speech_started(origin)
        return await self.clear()

    # -- requests to the voice ----------------------------------------------------------------
    async def hangup(self, reason: str = "normal") -> None:
        """Hang up the call (terminal: the session closes after the answer)."""
        await self._request("call.hangup", c.CallHangupRequest(reason))

    async def move(
        self, application_id: str | None = None, reason: str | None = None
    ) -> str | None:
        """Leave this node of the call flow; returns ``next_application_id`` when known."""
        result = await self._request(
            "application.move", c.ApplicationMoveRequest(reason, application_id)
        )
        assert isinstance(result, c.ApplicationMoveResponse)
        return result.next_application_id

    async def set(self, data: dict[str, Any]) -> None:
        """Merge ``data`` into the call's variables."""
        await self._request("session.set", c.SessionSetRequest(dict(data)))

    async def get(self, *keys: str) -> dict[str, Any]:
        """The call's variables named ``keys`` (all of them without keys)."""
        result = await self._request("session.get", c.SessionGetRequest(tuple(keys)))
        assert isinstance(result, c.SessionGetResponse)
        return result.values

    async def start_recording(self, tags: Sequence[str] | None = None) -> str:
        result = await self._request(
            "recording.start", c.RecordingStartRequest(tuple(tags) if tags is not None else None)
        )
        assert isinstance(result, c.RecordingStartResponse)
        return result.id

    async def stop_recording(self, recording_id: str) -> None:
        await self._request("recording.stop", c.RecordingStopRequest(recording_id))

    async def ping(self, data: Any = c.ABSENT, rtt: int | None = None) -> c.PingResponse:
        result = await self._request("ping", c.PingRequest(wall_ms(self._clock), rtt, data))
        assert isinstance(result, c.PingResponse)
        return result

    # -- events to the voice ------------------------------------------------------------------
    def speech_started(self, origin: str = "sender") -> None:
        self._event("audio.speech.started", c.AudioSpeechStartedEvent(origin))

    def input_transcript(self, text: str) -> None:
        """One finalized caller utterance."""
        self._event("input.transcript", c.InputTranscriptEvent(text))

    def output_transcript_delta(self, delta: str) -> None:
        self._event("output.transcript.delta", c.OutputTranscriptDeltaEvent(delta))

    def output_transcript_done(self, text: str | None = None) -> None:
        self._event("output.transcript.done", c.OutputTranscriptDoneEvent(text))

    def tool_call(self, name: str) -> None:
        self._event("agent.tool.call", c.AgentToolCallEvent(name))

    # -- session facts ------------------------------------------------------------------------
    @property
    def call(self) -> c.CallInfo | None:
        return self.init.call if self.init is not None else None

    @property
    def connection(self) -> Connection:
        if self._conn is None:
            raise RuntimeError("the handler is not bound to a session")
        return self._conn

    @property
    def _clock(self) -> Clock:
        return self._conn.clock if self._conn is not None else SystemClock()

    # -- plumbing used by the server ----------------------------------------------------------
    def _require_sender(self) -> AudioSender:
        if self._sender is None:
            raise RuntimeError("the handler is not bound to a session")
        return self._sender

    async def _request(self, method: str, params: c.Payload) -> c.Payload:
        return await self.connection.request(method, params)

    def _event(self, name: str, data: c.Payload) -> None:
        self.connection.event(name, data)

    def _bind(self, conn: Connection, lead_seconds: float = DEFAULT_LEAD_SECONDS) -> None:
        self._conn = conn
        self._sender = AudioSender(conn.send_audio, conn.clock, lead_seconds=lead_seconds)
        self._audio_task = asyncio.create_task(self._audio_loop(), name="rtvbp-sdk-audio")

    def _on_audio_frame(self, frame: bytes) -> None:
        if len(self._audio_queue) >= MAX_AUDIO_QUEUE:
            self._audio_queue.popleft()
            self.audio_dropped += 1
        self._audio_queue.append(frame)
        self._audio_ready.set()

    async def _audio_loop(self) -> None:
        queue = self._audio_queue
        while True:
            if not queue:
                self._audio_ready.clear()
                await self._audio_ready.wait()
                continue
            try:
                await self.on_audio(queue.popleft())
            except Exception:
                log.exception("on_audio failed")

    async def _shutdown(self) -> None:
        if self._sender is not None:
            await self._sender.stop()
        if self._audio_task is not None:
            self._audio_task.cancel()
            await asyncio.gather(self._audio_task, return_exceptions=True)
        try:
            await self.on_end()
        except Exception:
            log.exception("on_end failed")

    async def _handle_request(self, req: InboundRequest) -> c.Payload | None:
        if req.method == "session.initialize":
            assert isinstance(req.params, c.SessionInitializeRequest)
            if self.init is not None:
                raise RemoteError(400, "session already initialized")
            answer = await self.initialize(req.params)
            self.init, self.codec = req.params, answer.audio_codec or c.L16_8000_1
            # Audio is bound before the response is sent (§5.2 step 2).
            assert self._sender is not None
            self._sender.start()
            asyncio.get_running_loop().call_soon(self._spawn_start)
            return answer
        if req.method == "ping":
            assert isinstance(req.params, c.PingRequest)
            t2 = wall_ms(self._clock)
            return c.PingResponse(
                req.params.t0,
                max(req.received_ms, 1),
                max(t2, 1),
                t2 - req.params.t0,
                req.params.data,
            )
        if req.method == "session.terminate":
            assert isinstance(req.params, c.SessionTerminateRequest)
            await self.on_terminate(req.params.reason)
            return c.EmptyResponse()
        raise RemoteError(501, f"unknown method: {req.method}")  # pragma: no cover

    def _spawn_start(self) -> None:
        assert self.init is not None
        init = self.init

        async def start() -> None:
            try:
                await self.on_start(init)
            except Exception:
                log.exception("on_start failed")

        task = asyncio.create_task(start(), name="rtvbp-sdk-on-start")
        self._start_task = task

    async def _handle_event(self, ev: InboundEvent) -> None:
        data = ev.data
        if isinstance(data, c.DtmfEvent):
            await self.on_dtmf(data)
        elif isinstance(data, c.CallHangupEvent):
            await self.on_hangup(data)
        elif isinstance(data, c.SessionUpdatedEvent):
            await self.on_session_updated(data)
        elif isinstance(data, c.AudioInfoEvent):
            await self.on_audio_info(data)
