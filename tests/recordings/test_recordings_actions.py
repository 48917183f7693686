"""The ``recording_start`` / ``recording_stop`` flow actions through the real activeflow runner
(store on SQLite and PostgreSQL, virtual time)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from recordings_helpers import read_stereo, start_call

import callbridge.recordings.actions  # noqa: F401  (registers the actions)
from callbridge.bus.inprocess import InProcessBus
from callbridge.calls.service import CallService
from callbridge.flows.actions import validate_actions
from callbridge.flows.model import Action, ActionError
from callbridge.legs.file_leg import FileLeg, ScheduledDigit
from callbridge.media.clock import VirtualClock
from callbridge.media.tones import beep, tone
from callbridge.recordings.actions import RECORDING_VARIABLE, parse_start_options
from callbridge.recordings.model import EndReason, Recording
from callbridge.recordings.service import RecordingService

Until = Callable[[Callable[[], bool], float], Awaitable[None]]


@pytest.fixture
async def recordings(
    service: CallService, bus: InProcessBus, clock: VirtualClock, tmp_path: Path
) -> AsyncIterator[RecordingService]:
    recs = RecordingService(service.store, bus, clock, tmp_path / "data")
    recs.attach(service)
    yield recs
    await recs.shutdown(5.0)


async def _run_flow(
    service: CallService, until: Until, leg: FileLeg, actions: list[Action], limit: float = 8.0
) -> list[Recording]:
    wid = (await service.store.workspaces.create("flows")).id
    live = await start_call(service, leg, actions, wid)
    await until(lambda: live.ended.is_set(), limit)
    rows = await service.store.recordings.list_for(wid, "call", live.id)
    assert rows and live.variables[RECORDING_VARIABLE] == str(rows[-1].id)
    return rows


async def test_recording_start_with_duration_and_beep(
    service: CallService, recordings: RecordingService, until: Until
) -> None:
    leg = FileLeg("caller", service.clock, play=tone(440, 4000))
    rows = await _run_flow(
        service,
        until,
        leg,
        [
            Action("recording_start", {"duration": 1, "beep_start": True, "format": "wav"}),
            Action("sleep", {"duration": 2000}),
            Action("hangup"),
        ],
    )
    (rec,) = rows
    await until(lambda: not recordings.active(), 2.0)
    row = await service.store.recordings.get(rec.workspace_id, rec.id)
    assert row is not None and row.end_reason is EndReason.DURATION and row.duration_ms == 1000
    params, _, right = read_stereo(recordings.path_of(row))
    assert params.nchannels == 2 and params.nframes == 8000
    assert beep() in right.tobytes()
    # The caller heard the beep too.
    assert beep() in bytes(leg.recorded)


async def test_end_of_key_stops_the_recording(
    service: CallService, recordings: RecordingService, until: Until
) -> None:
    leg = FileLeg(
        "caller", service.clock, play=tone(440, 4000), dtmf=[ScheduledDigit(1.0, "#", 100)]
    )
    rows = await _run_flow(
        service,
        until,
        leg,
        [
            Action("answer"),
            Action("recording_start", {"end_of_key": "#"}),
            Action("sleep", {"duration": 2500}),
        ],
    )
    await until(lambda: not recordings.active(), 2.0)
    row = await service.store.recordings.get(rows[0].workspace_id, rows[0].id)
    assert row is not None and row.end_reason is EndReason.KEY
    # The key was released 1.1 s after answer (the flow's own steps take a little virtual time
    # while their rows are written, so the recording starts slightly after the answer).
    assert 0 < row.duration_ms <= 1120


async def test_recording_stop_action(
    service: CallService, recordings: RecordingService, until: Until
) -> None:
    leg = FileLeg("caller", service.clock, play=tone(440, 4000))
    rows = await _run_flow(
        service,
        until,
        leg,
        [
            Action("answer"),
            Action("recording_start", {}),
            Action("sleep", {"duration": 600}),
            Action("recording_stop"),
            Action("sleep", {"duration": 500}),
        ],
    )
    row = await service.store.recordings.get(rows[0].workspace_id, rows[0].id)
    assert row is not None and row.end_reason is EndReason.STOP
    # At least the 600 ms sleep between start and stop (plus the virtual time that passes
    # while the runner records its steps); well before the hangup 500 ms later.
    assert 580 <= row.duration_ms < 1100
    assert recordings.path_of(row).is_file()


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ({"format": "mp3"}, "option 'format'"),
        ({"format": "flac"}, "option 'format'"),
        ({"end_of_key": "5"}, "option 'end_of_key'"),
        ({"duration": -1}, "option 'duration'"),
        ({"end_of_silence": "2"}, "option 'end_of_silence'"),
        ({"beep_start": "yes"}, "option 'beep_start'"),
        ({"on_end_flow_id": "nope"}, "option 'on_end_flow_id'"),
    ],
)
def test_recording_start_options_are_validated(option: dict[str, object], message: str) -> None:
    with pytest.raises(ActionError, match=message):
        validate_actions([Action("recording_start", option)])


def test_recording_start_defaults() -> None:
    assert parse_start_options({}) == {
        "duration_seconds": None,
        "end_of_silence_seconds": None,
        "end_of_key": None,
        "beep_start": False,
        "on_end_flow_id": None,
    }
    parsed = parse_start_options({"duration": 0, "end_of_key": "any", "end_of_silence": 2.5})
    assert parsed["duration_seconds"] is None and parsed["end_of_key"] == "any"
    assert parsed["end_of_silence_seconds"] == 2.5
