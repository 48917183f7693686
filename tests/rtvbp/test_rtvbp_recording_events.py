"""RTVBP ``recording.start``/``recording.stop`` drive real recordings, and application events
become domain events on the bus — callbridge as voice against the SDK over real loopback
sockets and the real clock (RTVBP spec §6.2)."""

from __future__ import annotations

import asyncio
import uuid
import wave
from pathlib import Path

import pytest
from rtvbp_harness import act, start_call, wait_for

import callbridge.rtvbp.action  # noqa: F401  (registers rtvbp_bridge)
from callbridge.bus.base import Event
from callbridge.calls.service import CallService
from callbridge.legs.file_leg import FileLeg
from callbridge.media.clock import SystemClock
from callbridge.media.tones import tone
from callbridge.recordings.model import EndReason, RecordingStatus
from callbridge.recordings.service import RecordingService
from callbridge.rtvbp import catalog as c
from callbridge.rtvbp.sdk import HandlerServer, RemoteError, RtvbpHandler


@pytest.fixture
async def recordings(rt_service: CallService, tmp_path: Path) -> RecordingService:
    recs = RecordingService(rt_service.store, rt_service.bus, SystemClock(), tmp_path / "data")
    recs.attach(rt_service)
    return recs


class Recorder(RtvbpHandler):
    async def on_start(self, init: c.SessionInitializeRequest) -> None:
        self.rec_id = await self.start_recording(["customer=ada", "vip"])
        await asyncio.sleep(0.6)
        await self.stop_recording(self.rec_id)
        self.errors: list[tuple[int, str]] = []
        for bad in ("no-such-recording", str(uuid.uuid4())):
            try:
                await self.stop_recording(bad)
            except RemoteError as exc:
                self.errors.append((exc.code, exc.message))
        await self.hangup("done")


async def test_recording_start_and_stop_over_the_bridge(
    rt_service: CallService, recordings: RecordingService
) -> None:
    async with HandlerServer(Recorder) as server:
        leg = FileLeg("rec", SystemClock(), play=tone(440, 3000))
        live = await start_call(rt_service, leg, [act("rtvbp_bridge", url=server.url)])
        await asyncio.wait_for(live.ended.wait(), 6)
        handler = server.handlers[0]
    assert isinstance(handler, Recorder)
    assert handler.errors == [(400, "unknown recording id"), (400, "unknown recording id")]
    row = await rt_service.store.recordings.get(live.call.workspace_id, uuid.UUID(handler.rec_id))
    assert row is not None and row.reference_id == live.id
    assert row.tags == {"customer": "ada", "vip": ""}
    assert row.status is RecordingStatus.ENDED and row.end_reason is EndReason.STOP
    assert 550 <= row.duration_ms <= 1500  # the handler waited 0.6 s between start and stop
    with wave.open(str(recordings.path_of(row)), "rb") as w:
        assert (w.getnchannels(), w.getframerate(), w.getnframes()) == (
            2,
            8000,
            row.duration_ms * 8,
        )
        left = w.readframes(w.getnframes())[0::4]
    assert any(left)  # the caller's tone is on the left channel


class Talker(RtvbpHandler):
    async def on_start(self, init: c.SessionInitializeRequest) -> None:
        self.input_transcript("I need help")
        self.output_transcript_delta("Sure, ")
        self.output_transcript_delta("how can I help?")
        self.output_transcript_done()
        self.tool_call("lookup_order")
        self.speech_started("sender")  # nothing is playing: no barge-in
        await self.ping()  # (the voice handled the events above before the audio arrives)
        self.send_audio(b"\x10\x10" * 16000)  # 2 s of agent audio, sent ahead of real time
        await asyncio.sleep(0.5)
        self.output_transcript_delta("Your order")
        self.speech_started("sender")  # the caller talks over the agent: barge-in
        await self.clear()
        self.output_transcript_done("")
        await self.ping()  # every event before it has been dispatched by the voice
        await self.hangup("done")


async def test_application_events_become_bus_events(rt_service: CallService) -> None:
    sub = rt_service.bus.subscribe("", maxsize=10_000)
    async with HandlerServer(Talker, lead_seconds=3.0) as server:
        leg = FileLeg("talk", SystemClock())
        live = await start_call(rt_service, leg, [act("rtvbp_bridge", url=server.url)])
        await asyncio.wait_for(live.ended.wait(), 6)
    events: list[Event] = []
    while sub.qsize():
        events.append(await sub.get(timeout=1))
    wanted = {"transcript_created", "transcript_partial", "call_barge_in", "tool_invocation"}
    app = [e for e in events if e.type in wanted]
    wid, call_id = str(live.call.workspace_id), str(live.id)
    assert [e.type for e in app] == [
        "transcript_created",
        "transcript_partial",
        "transcript_partial",
        "transcript_created",
        "tool_invocation",
        "transcript_partial",
        "call_barge_in",
        "transcript_created",
    ]
    user, p1, p2, agent, tool, p3, barge, empty = (e.data for e in app)
    common = {"customer_id": wid, "call_id": call_id, "source": "rtvbp"}
    for data in (user, p1, p2, agent, tool, p3, barge, empty):
        assert common.items() <= data.items()
        assert data["ts"].endswith("Z") and len(data["ts"]) == len("2026-01-01T00:00:00.000Z")
    assert app[0].topic == f"ws.{wid}.transcript.{user['id']}.transcript_created"
    assert app[1].topic == f"ws.{wid}.call.{call_id}.transcript_partial"
    # input.transcript → a final caller transcript (platform API §9 shape + stream fields).
    assert user["direction"] == "in" and user["role"] == "user" and user["is_final"] is True
    assert user["message"] == "I need help" and user["transcribe_id"] == str(uuid.UUID(int=0))
    assert isinstance(user["offset_ms"], int)
    assert user["tm_transcript"].startswith("0001-01-01T00:00:")
    assert user["tm_create"].endswith("Z")
    # output.transcript.delta/done → agent partials, then the final with the accumulated text.
    assert (p1["message"], p1["delta"], p1["is_final"]) == ("Sure, ", "Sure, ", False)
    assert p2["message"] == "Sure, how can I help?" and p2["direction"] == "out"
    assert p1["turn_id"] == p2["turn_id"] == agent["turn_id"] and p1["turn_id"].startswith("trn_")
    assert agent["message"] == "Sure, how can I help?" and agent["is_final"] is True
    assert agent["direction"] == "out" and agent["role"] == "agent" and "offset_ms" in agent
    assert tool["name"] == "lookup_order"
    # audio.speech.started while agent audio plays → barge-in on the current agent turn.
    assert barge["turn_id"] == p3["turn_id"] != p1["turn_id"]
    assert barge["origin"] == "sender" and barge["queued_bytes"] > 0
    # done with "" is an empty final, distinct from "keep the deltas".
    assert empty["message"] == "" and empty["turn_id"] == p3["turn_id"]
    sub.close()


async def test_recording_without_a_service_is_501(rt_service: CallService) -> None:
    class Asker(RtvbpHandler):
        async def on_start(self, init: c.SessionInitializeRequest) -> None:
            try:
                await self.start_recording()
            except RemoteError as exc:
                self.answer = (exc.code, exc.message)
            await self.hangup("done")

    async with HandlerServer(Asker) as server:
        leg = FileLeg("none", SystemClock())
        live = await start_call(rt_service, leg, [act("rtvbp_bridge", url=server.url)])
        await asyncio.wait_for(live.ended.wait(), 6)
        await wait_for(lambda: bool(server.handlers), 2)
        handler = server.handlers[0]
    assert isinstance(handler, Asker)
    assert handler.answer[0] == 501 and "no recording service" in handler.answer[1]
