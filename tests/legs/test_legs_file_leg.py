"""The file/loopback leg in virtual time: plays as the caller, records what it hears,
presses keys on schedule, hangs up or answers by itself, writes a WAV recording."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from callbridge.calls.model import HangupBy, HangupReason, IllegalTransition
from callbridge.legs.base import DtmfEvent, LegEnd, LegState
from callbridge.legs.file_leg import FileLeg, ScheduledDigit
from callbridge.media.clock import VirtualClock
from callbridge.media.constants import FRAME_BYTES, SILENCE_FRAME
from callbridge.media.tones import tone
from callbridge.media.wav import read_wav, write_wav


class Recorder:
    """A LegListener that keeps everything it is told."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.dtmf: list[DtmfEvent] = []
        self.states: list[tuple[LegState, LegEnd | None]] = []

    def on_leg_audio(self, frame: bytes) -> None:
        self.frames.append(frame)

    def on_leg_dtmf(self, event: DtmfEvent) -> None:
        self.dtmf.append(event)

    def on_leg_state(self, state: LegState, end: LegEnd | None) -> None:
        self.states.append((state, end))


def counter_source() -> tuple[list[bytes], object]:
    sent: list[bytes] = []

    def source() -> bytes:
        frame = np.full(160, len(sent) + 1, dtype="<i2").tobytes()
        sent.append(frame)
        return frame

    return sent, source


async def test_incoming_leg_rings_then_streams_file_and_records(tmp_path: Path) -> None:
    clock = VirtualClock()
    voice = tone(440, 100) + b"\x01\x00" * 40  # 100 ms tone + 5 ms: last frame is partial
    wav = tmp_path / "caller.wav"
    write_wav(wav, voice)
    rec_path = tmp_path / "heard.wav"
    leg = FileLeg("l1", clock, play=wav, record_path=rec_path)
    listener = Recorder()
    sent, source = counter_source()
    leg.attach(listener, source)  # type: ignore[arg-type]
    await leg.start()
    assert leg.state is LegState.RINGING
    await clock.advance(0.1)
    assert listener.frames == []  # no media before answer
    await leg.answer()
    await leg.answer()  # idempotent
    await clock.advance(0.2)
    got = b"".join(listener.frames)
    assert len(listener.frames) == 11  # frames 0..10 at t=0..200 ms
    assert got[: len(voice)] == voice
    assert got[len(voice) : 6 * FRAME_BYTES] == bytes(6 * FRAME_BYTES - len(voice))
    assert listener.frames[-1] == SILENCE_FRAME
    assert bytes(leg.recorded) == b"".join(sent)
    await leg.hangup()
    assert leg.state is LegState.ENDED
    assert leg.end == LegEnd(HangupReason.NORMAL, HangupBy.LOCAL)
    assert read_wav(rec_path) == b"".join(sent)
    assert [s for s, _ in listener.states] == [LegState.RINGING, LegState.ANSWERED, LegState.ENDED]
    await leg.hangup()  # idempotent


async def test_scheduled_dtmf_and_remote_hangup() -> None:
    clock = VirtualClock()
    leg = FileLeg(
        "l2",
        clock,
        dtmf=[ScheduledDigit(0.30, "5", 80), ScheduledDigit(0.10, "*", 100)],
        hangup_after=0.5,
    )
    listener = Recorder()
    leg.attach(listener, lambda: SILENCE_FRAME)
    await leg.start()
    t_answer = clock.time()
    await leg.answer()
    await clock.advance(1.0)
    assert [d.digit for d in listener.dtmf] == ["*", "5"]
    assert listener.dtmf[0].pressed_at == pytest.approx(t_answer + 0.10)
    assert listener.dtmf[0].duration_ms == 100
    assert listener.dtmf[1].duration_ms == 80
    assert leg.state is LegState.ENDED
    assert leg.end == LegEnd(HangupReason.NORMAL, HangupBy.REMOTE)
    assert leg.recorded_seconds == pytest.approx(0.5, abs=0.021)


async def test_outgoing_leg_answers_after_delay() -> None:
    clock = VirtualClock()
    leg = FileLeg("l3", clock, outgoing=True, answer_after=1.0)
    listener = Recorder()
    leg.attach(listener, lambda: SILENCE_FRAME)
    await leg.start()
    assert leg.state is LegState.DIALING
    await clock.advance(0)  # the far end's "180 Ringing" arrives asynchronously
    assert leg.state is LegState.RINGING
    with pytest.raises(RuntimeError, match="far end"):
        await leg.answer()
    await clock.advance(0.99)
    assert leg.state is LegState.RINGING
    await clock.advance(0.02)
    assert leg.state is LegState.ANSWERED
    assert [s for s, _ in listener.states] == [
        LegState.DIALING,
        LegState.RINGING,
        LegState.ANSWERED,
    ]
    await leg.hangup(HangupReason.BUSY)
    assert leg.end == LegEnd(HangupReason.BUSY, HangupBy.LOCAL)


async def test_outgoing_leg_that_never_answers_and_abandon() -> None:
    clock = VirtualClock()
    leg = FileLeg("l4", clock, outgoing=True, answer_after=None, abandon_after=2.0)
    leg.attach(Recorder(), lambda: SILENCE_FRAME)
    await leg.start()
    assert leg.state is LegState.DIALING
    await clock.advance(2.1)
    assert leg.state is LegState.ENDED
    assert leg.end == LegEnd(HangupReason.NORMAL, HangupBy.REMOTE)


async def test_send_dtmf_is_recorded_with_timing() -> None:
    clock = VirtualClock()
    leg = FileLeg("l5", clock)
    leg.attach(Recorder(), lambda: SILENCE_FRAME)
    await leg.start()
    await leg.answer()
    import asyncio

    task = asyncio.create_task(leg.send_dtmf("12#", duration_ms=100, interval_ms=50))
    await clock.advance(1.0)
    await task
    assert [d.digit for d in leg.sent_digits] == ["1", "2", "#"]
    gaps = [b.at - a.at for a, b in zip(leg.sent_digits, leg.sent_digits[1:], strict=False)]
    assert gaps == [pytest.approx(0.15), pytest.approx(0.15)]
    with pytest.raises(ValueError, match="invalid DTMF digit 'X'"):
        await leg.send_dtmf("1X")
    await leg.hangup()


async def test_bad_inputs_are_refused(tmp_path: Path) -> None:
    clock = VirtualClock()
    with pytest.raises(ValueError, match="even number"):
        FileLeg("b1", clock, play=b"\x00\x01\x02")
    with pytest.raises(ValueError, match="invalid DTMF"):
        FileLeg("b2", clock, dtmf=[ScheduledDigit(0.1, "Z")])
    with pytest.raises(ValueError, match="exactly one key"):
        FileLeg("b3", clock, dtmf=[ScheduledDigit(0.1, "12")])
    leg = FileLeg("b4", clock)
    leg.attach(Recorder(), lambda: SILENCE_FRAME)
    await leg.start()
    await leg.hangup()
    with pytest.raises(IllegalTransition):
        leg._set_state(LegState.ANSWERED)
