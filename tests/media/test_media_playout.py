from __future__ import annotations

import asyncio
import random

import pytest

from callbridge.media import (
    BYTES_PER_SECOND,
    FRAME_BYTES,
    FRAME_SECONDS,
    FRAMES_PER_SECOND,
    SILENCE_FRAME,
    ClearResult,
    Mark,
    PlayoutBuffer,
    PlayoutOverflow,
    PlayoutTick,
    VirtualClock,
    bytes_for_ms,
)
from callbridge.observability.metrics import PLAYOUT_UNDERRUNS


def _audio(n: int, seed: int = 0) -> bytes:
    # Never all-zero, so audio can be told apart from silence padding.
    return bytes((b | 1) for b in random.Random(seed).randbytes(n))


def test_empty_tick_is_silence() -> None:
    buf = PlayoutBuffer()
    t = buf.tick()
    assert t.pcm is SILENCE_FRAME
    assert t.audio_bytes == 0
    assert t.marks == []
    assert not t.underrun


def test_exact_frames_in_order() -> None:
    buf = PlayoutBuffer()
    data = _audio(FRAME_BYTES * 3)
    buf.enqueue(data)
    out = [buf.tick() for _ in range(3)]
    assert b"".join(t.pcm for t in out) == data
    assert all(t.audio_bytes == FRAME_BYTES and not t.underrun for t in out)
    assert buf.queued_bytes == 0
    assert buf.played_bytes_total == len(data)


def test_partial_frame_padded_and_underrun() -> None:
    buf = PlayoutBuffer(count_underruns=False)
    buf.enqueue(_audio(100))
    t = buf.tick()
    assert len(t.pcm) == FRAME_BYTES
    assert t.pcm[100:] == bytes(FRAME_BYTES - 100)
    assert t.audio_bytes == 100
    assert t.underrun
    t2 = buf.tick()
    assert t2.pcm == SILENCE_FRAME and not t2.underrun


def test_underrun_metric_counted() -> None:
    before = PLAYOUT_UNDERRUNS._value.get()
    buf = PlayoutBuffer()
    buf.enqueue(_audio(10))
    assert buf.tick().underrun
    assert PLAYOUT_UNDERRUNS._value.get() == before + 1


def test_odd_bytes_carried() -> None:
    buf = PlayoutBuffer()
    data = _audio(FRAME_BYTES)
    buf.enqueue(data[:101])
    assert buf.queued_bytes == 100
    buf.enqueue(data[101:])
    assert buf.queued_bytes == FRAME_BYTES
    assert buf.tick().pcm == data


def test_input_types_accepted() -> None:
    buf = PlayoutBuffer()
    data = _audio(FRAME_BYTES)
    buf.enqueue(bytearray(data[:100]))
    buf.enqueue(memoryview(data[100:]))
    assert buf.tick().pcm == data


def test_frame_spanning_many_chunks() -> None:
    buf = PlayoutBuffer()
    data = _audio(FRAME_BYTES * 2)
    for i in range(0, len(data), 30):
        buf.enqueue(data[i : i + 30])
    assert buf.tick().pcm + buf.tick().pcm == data


async def test_clear_after_one_second_in_virtual_time() -> None:
    clock = VirtualClock()
    buf = PlayoutBuffer()
    buf.enqueue(_audio(3 * BYTES_PER_SECOND))
    buf.mark("prompt-end")
    buf.enqueue(b"")  # an empty enqueue is a no-op
    assert buf.queued_seconds == pytest.approx(3.0)
    ticks: list[PlayoutTick] = []

    async def clock_owner() -> None:
        # The leg's pacing loop: absolute deadlines, one tick per 20 ms.
        start = clock.monotonic()
        for n in range(1, FRAMES_PER_SECOND + 1):
            await clock.sleep_until(start + n * FRAME_SECONDS)
            ticks.append(buf.tick())

    t0 = clock.monotonic()
    task = asyncio.create_task(clock_owner())
    await clock.advance(1.0)
    await task
    assert clock.monotonic() - t0 == pytest.approx(1.0)
    assert len(ticks) == 50
    assert all(t.audio_bytes == FRAME_BYTES and t.marks == [] for t in ticks)
    result = buf.clear()
    assert result == ClearResult(2 * BYTES_PER_SECOND, [Mark("prompt-end", "cleared")])
    assert result.dropped_bytes == 32000
    assert buf.queued_bytes == 0
    assert buf.pending_marks == []
    assert buf.played_bytes_total == BYTES_PER_SECOND
    assert buf.tick().pcm is SILENCE_FRAME


def test_clear_exact_bytes_mid_frame() -> None:
    buf = PlayoutBuffer()
    buf.enqueue(_audio(1000))
    buf.enqueue(b"\x01")  # dangling half sample: not audio, not counted
    buf.tick()
    assert buf.clear().dropped_bytes == 1000 - FRAME_BYTES
    buf.enqueue(b"\x02\x03")  # carry was dropped too: this is one whole sample
    assert buf.queued_bytes == 2


def test_mark_on_empty_buffer_fires_next_tick() -> None:
    buf = PlayoutBuffer()
    buf.mark("m")
    assert buf.pending_marks == ["m"]
    t = buf.tick()
    assert t.marks == [Mark("m", "played")]
    assert t.pcm is SILENCE_FRAME


def test_mark_fires_on_tick_emitting_last_byte() -> None:
    buf = PlayoutBuffer(count_underruns=False)
    buf.enqueue(_audio(FRAME_BYTES + 2))
    buf.mark("a")
    buf.mark("b")
    assert buf.tick().marks == []
    t = buf.tick()
    assert [m.name for m in t.marks] == ["a", "b"]
    assert all(m.status == "played" for m in t.marks)


def test_marks_at_frame_boundary() -> None:
    buf = PlayoutBuffer()
    buf.enqueue(_audio(FRAME_BYTES))
    buf.mark("one")
    buf.enqueue(_audio(FRAME_BYTES))
    buf.mark("two")
    assert buf.tick().marks == [Mark("one", "played")]
    assert buf.tick().marks == [Mark("two", "played")]


@pytest.mark.parametrize("seed", range(40))
def test_marks_never_fire_early(seed: int) -> None:
    rng = random.Random(seed)
    buf = PlayoutBuffer(max_lead_seconds=60.0, count_underruns=False)
    position = 0  # whole-sample bytes enqueued so far
    carry = 0
    mark_at: dict[str, int] = {}
    for i in range(rng.randrange(1, 60)):
        n = rng.choice([0, 1, 2, 3, 17, 159, 160, 320, 321, 999, rng.randrange(0, 3000)])
        buf.enqueue(_audio(n, seed * 1000 + i))
        position += (carry + n) // 2 * 2
        carry = (carry + n) % 2
        if rng.random() < 0.5:
            name = f"m{i}"
            buf.mark(name)
            mark_at[name] = position
        # Interleave ticks with enqueues, as a live producer does.
        for _ in range(rng.randrange(0, 3)):
            before = buf.played_bytes_total
            t = buf.tick()
            after = buf.played_bytes_total
            assert after - before == t.audio_bytes
            for m in t.marks:
                assert m.status == "played"
                # Never early: all audio queued before the mark has been emitted ...
                assert mark_at[m.name] <= after
            for name in buf.pending_marks:
                # ... and never late: a mark whose audio is all out does not stay pending.
                assert mark_at[name] > after
    fired: list[str] = []
    while buf.queued_bytes or buf.pending_marks:
        before = buf.played_bytes_total
        t = buf.tick()
        for m in t.marks:
            assert before <= mark_at[m.name] <= buf.played_bytes_total
            fired.append(m.name)
    assert buf.played_bytes_total == position
    # Marks come out in the order they were placed.
    assert fired == [n for n in sorted(mark_at, key=lambda k: int(k[1:])) if n in fired]


def test_mark_not_fired_when_audio_remains_in_frame() -> None:
    buf = PlayoutBuffer()
    buf.enqueue(_audio(FRAME_BYTES + 100))
    buf.mark("x")
    t = buf.tick()
    assert t.marks == []
    assert buf.pending_marks == ["x"]


def test_lead_limit() -> None:
    buf = PlayoutBuffer(max_lead_seconds=1.0)
    assert buf.max_lead_bytes == BYTES_PER_SECOND
    buf.enqueue(_audio(BYTES_PER_SECOND - FRAME_BYTES))
    with pytest.raises(PlayoutOverflow, match="nothing was enqueued") as exc:
        buf.enqueue(_audio(FRAME_BYTES + 2))
    assert exc.value.queued_bytes == BYTES_PER_SECOND - FRAME_BYTES
    assert exc.value.incoming_bytes == FRAME_BYTES + 2
    assert exc.value.max_lead_bytes == BYTES_PER_SECOND
    assert isinstance(exc.value, Exception)
    # Nothing of the refused chunk was enqueued; exactly filling the limit is allowed.
    assert buf.queued_bytes == BYTES_PER_SECOND - FRAME_BYTES
    buf.enqueue(_audio(FRAME_BYTES))
    assert buf.queued_bytes == BYTES_PER_SECOND
    buf.tick()
    buf.enqueue(_audio(FRAME_BYTES))  # room again after a tick


def test_lead_limit_keeps_carry() -> None:
    buf = PlayoutBuffer(max_lead_seconds=0.02)
    buf.enqueue(b"\x05")
    with pytest.raises(PlayoutOverflow):
        buf.enqueue(_audio(FRAME_BYTES + 2))
    buf.enqueue(b"\x06")
    assert buf.queued_bytes == 2
    assert buf.tick().pcm[:2] == b"\x05\x06"


@pytest.mark.parametrize("lead", [0, -1.0, float("nan")])
def test_invalid_lead(lead: float) -> None:
    with pytest.raises(ValueError):
        PlayoutBuffer(max_lead_seconds=lead)


def test_default_lead_is_ten_seconds() -> None:
    buf = PlayoutBuffer()
    buf.enqueue(bytes(bytes_for_ms(10_000)))
    with pytest.raises(PlayoutOverflow):
        buf.enqueue(bytes(2))


def test_long_run_consistency() -> None:
    rng = random.Random(9)
    buf = PlayoutBuffer(max_lead_seconds=600.0, count_underruns=False)
    sent = bytearray()
    got = bytearray()
    for i in range(2000):
        if rng.random() < 0.6:
            chunk = _audio(rng.randrange(0, 700) * 2, i)
            buf.enqueue(chunk)
            sent += chunk
        t = buf.tick()
        got += t.pcm[: t.audio_bytes]
        assert len(t.pcm) == FRAME_BYTES
    while buf.queued_bytes:
        t = buf.tick()
        got += t.pcm[: t.audio_bytes]
    assert got == sent
