"""The recording service on a real store (SQLite and PostgreSQL), file legs and virtual time:
real 2-channel WAV files of what the caller said (left) and what the platform played (right)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from recordings_helpers import contains, drain_events, find_frame_offset, read_stereo, start_call

from callbridge.bus.inprocess import InProcessBus
from callbridge.calls.service import CallService, LiveCall
from callbridge.flows.model import Action
from callbridge.legs.file_leg import FileLeg, ScheduledDigit
from callbridge.media.clock import VirtualClock
from callbridge.media.tones import beep, tone
from callbridge.media.wav import WavWriter
from callbridge.recordings.model import EndReason, RecordingStatus
from callbridge.recordings.service import RecordingError, RecordingNotFound, RecordingService

Drive = Callable[[float], Awaitable[None]]
Until = Callable[[Callable[[], bool], float], Awaitable[None]]

CALLER_TONE = tone(440, 6000)


@pytest.fixture
async def recordings(
    service: CallService, bus: InProcessBus, clock: VirtualClock, tmp_path: Path
) -> AsyncIterator[RecordingService]:
    recs = RecordingService(service.store, bus, clock, tmp_path / "data")
    recs.attach(service)
    yield recs
    await recs.shutdown(5.0)


async def _live_call(
    service: CallService, leg: FileLeg, until: Until
) -> tuple[uuid.UUID, LiveCall]:
    wid = (await service.store.workspaces.create("rec")).id
    live = await start_call(
        service, leg, [Action("answer"), Action("sleep", {"duration": 60_000})], wid
    )
    await until(live.answered.is_set, 2.0)
    return wid, live


async def test_recording_of_a_file_leg_call_is_a_stereo_wav(
    service: CallService,
    bus: InProcessBus,
    recordings: RecordingService,
    drive: Drive,
    until: Until,
) -> None:
    leg = FileLeg("caller", service.clock, play=CALLER_TONE, hangup_after=3.0)
    wid, live = await _live_call(service, leg, until)
    sub = bus.subscribe(f"ws.{wid}.recording")
    start = asyncio.create_task(recordings.start(live, tags={"customer": "ada"}, beep_start=True))
    await until(start.done, 2.0)
    rec = start.result()
    assert rec.status is RecordingStatus.RECORDING and rec.tags == {"customer": "ada"}
    assert rec.filename == f"recordings/{wid}/{rec.id}.wav"
    # The leg hangs up by itself at 3 s: the recording stops with the call. (Virtual time runs
    # on while the file and the row are created, so the recording starts a little later.)
    await until(lambda: not recordings.active(), 4.0)
    final = await service.store.recordings.get(wid, rec.id)
    assert final is not None
    assert final.status is RecordingStatus.ENDED and final.end_reason is EndReason.HANGUP
    assert final.tm_end is not None and final.tags == {"customer": "ada"}
    assert await service.store.recordings.list_for(wid, "call", live.id) == [final]

    params, left, right = read_stereo(recordings.path_of(final))
    assert (params.nchannels, params.framerate, params.sampwidth) == (2, 8000, 2)
    assert params.nframes == final.duration_ms * 8 > 4000  # every frame on disk
    # Left: exactly what the caller's leg played, from where the recording began.
    offset = find_frame_offset(CALLER_TONE, left)
    assert offset is not None, "left channel is not the caller's audio"
    # Right: the platform's beep, played after the recording began.
    assert contains(right, beep()), "right channel lacks the beep"
    assert not contains(left, beep()[:800])

    events = [e.type for e in await drain_events(sub)]
    assert events == ["recording_started", "recording_finished"]


async def test_duration_limit_and_explicit_stop(
    service: CallService, recordings: RecordingService, drive: Drive, until: Until
) -> None:
    leg = FileLeg("caller", service.clock, play=CALLER_TONE)
    wid, live = await _live_call(service, leg, until)
    short = await recordings.start(live, duration_seconds=0.5)
    await until(lambda: not recordings.active(), 2.0)
    row = await service.store.recordings.get(wid, short.id)
    assert row is not None and row.end_reason is EndReason.DURATION and row.duration_ms == 500
    params, left, _ = read_stereo(recordings.path_of(row))
    assert params.nframes == 4000 and len(left) == 4000

    longer = await recordings.start(live)
    await drive(0.3)
    stopping = asyncio.create_task(recordings.stop(longer.id, call_id=live.id))
    await until(stopping.done, 2.0)
    stopped = stopping.result()
    assert stopped.end_reason is EndReason.STOP and 200 <= stopped.duration_ms <= 400
    # Stopping again returns the ended recording; unknown ids and other calls are refused.
    assert (await recordings.stop(longer.id)).status is RecordingStatus.ENDED
    with pytest.raises(RecordingNotFound):
        await recordings.stop(uuid.uuid4())
    with pytest.raises(RecordingNotFound):
        await recordings.stop(longer.id, call_id=uuid.uuid4())
    await service.hangup(live)
    with pytest.raises(RecordingError, match="ended"):
        await recordings.start(live)


async def test_end_of_key_and_end_of_silence(
    service: CallService, recordings: RecordingService, drive: Drive, until: Until
) -> None:
    leg = FileLeg(
        "caller", service.clock, play=tone(440, 1000), dtmf=[ScheduledDigit(0.6, "5", 80)]
    )
    wid, live = await _live_call(service, leg, until)
    by_key = await recordings.start(live, end_of_key="5")
    # The caller's tone ends at 1 s: 0.5 s of silence after it ends the second recording.
    by_silence = await recordings.start(live, end_of_silence_seconds=0.5)
    await until(lambda: not recordings.active(), 4.0)
    key_row = await service.store.recordings.get(wid, by_key.id)
    silence_row = await service.store.recordings.get(wid, by_silence.id)
    assert key_row is not None and key_row.end_reason is EndReason.KEY
    assert 0 < key_row.duration_ms <= 700  # the key was released 0.68 s after answer
    assert silence_row is not None and silence_row.end_reason is EndReason.SILENCE
    # Ends 0.5 s after the tone (1 s after answer) stopped.
    assert 500 <= silence_row.duration_ms <= 1520
    assert live.is_live


async def test_disk_errors_are_failure_events_not_call_failures(
    service: CallService,
    bus: InProcessBus,
    recordings: RecordingService,
    drive: Drive,
    until: Until,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    leg = FileLeg("caller", service.clock, play=CALLER_TONE)
    wid, live = await _live_call(service, leg, until)
    sub = bus.subscribe(f"ws.{wid}.recording")
    # The data directory cannot be created: start fails with a clear error and an event.
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    broken = RecordingService(service.store, bus, service.clock, blocker)
    with pytest.raises(RecordingError, match="cannot create"):
        await broken.start(live)
    failed = [e for e in await drain_events(sub) if e.type == "recording_failed"]
    assert len(failed) == 1 and "cannot create" in failed[0].data["error"]
    assert failed[0].data["status"] == "ended" and failed[0].data["end_reason"] == "error"

    # The disk fills up mid-recording (writes go to /dev/full: ENOSPC).
    monkeypatch.setattr(
        "callbridge.recordings.service.open_writer", lambda path: WavWriter("/dev/full", channels=2)
    )
    rec = await recordings.start(live)
    await until(lambda: not recordings.active(), 5.0)
    row = await service.store.recordings.get(wid, rec.id)
    assert row is not None and row.end_reason is EndReason.ERROR
    types = [(e.type, e.data.get("error", "")) for e in await drain_events(sub)]
    assert [t for t, _ in types] == ["recording_started", "recording_failed", "recording_finished"]
    assert "No space left" in types[1][1]
    await drive(0.5)
    assert live.is_live  # the call goes on
