"""The leg pacer: 50 ticks per second on absolute deadlines; late wake-ups burst then skip."""

from __future__ import annotations

from callbridge.legs.pacer import MAX_BURST, Pacer
from callbridge.media.clock import VirtualClock


async def test_pacer_ticks_fifty_times_a_second() -> None:
    clock = VirtualClock()
    ticks: list[int] = []
    pacer = Pacer(clock, ticks.append)
    pacer.start()
    await clock.advance(1.0)
    await pacer.stop()
    # frame 0 at t0, frame 50 at t0 + 1 s: 51 deadlines fall within [t0, t0 + 1 s]
    assert ticks == list(range(51))
    assert pacer.skipped == 0
    assert not pacer.running


async def test_pacer_late_wakeup_bursts_and_skips() -> None:
    clock = VirtualClock()
    ticks: list[int] = []
    pacer = Pacer(clock, ticks.append)
    pacer.start()
    await clock.advance(0.0)
    assert ticks == [0]
    # The process stalls for 200 ms: the clock jumps without waking the sleeper on time.
    clock._now += 0.200
    await clock.advance(0.0)
    assert ticks[1:] == [8, 9, 10]  # at most MAX_BURST overdue frames, older ones skipped
    assert len(ticks) - 1 == MAX_BURST
    assert pacer.skipped == 7
    await clock.advance(0.02)
    assert ticks[-1] == 11
    await pacer.stop()


async def test_pacer_stop_is_idempotent() -> None:
    clock = VirtualClock()
    pacer = Pacer(clock, lambda n: None)
    await pacer.stop()
    pacer.start()
    await pacer.stop()
    await pacer.stop()
