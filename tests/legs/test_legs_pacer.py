"""The leg pacer: 50 ticks per second on absolute deadlines; late wake-ups burst then skip."""

from __future__ import annotations

import asyncio
import contextvars

import pytest

from callbridge.legs.pacer import MAX_BURST, Pacer, ticker_for
from callbridge.media.clock import SystemClock, VirtualClock


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


# -- the shared media tick (decision 031) ------------------------------------------------------


async def test_pacers_started_together_share_one_wakeup_per_frame() -> None:
    clock = VirtualClock()
    ticks: list[list[int]] = [[] for _ in range(50)]
    pacers = [Pacer(clock, t.append) for t in ticks]
    for pacer in pacers:
        pacer.start()
    ticker = ticker_for(clock)
    await clock.advance(1.0)
    assert all(t == list(range(51)) for t in ticks)
    assert ticker.wakeups == 51  # one timer for all fifty legs, not fifty
    assert ticker.active == 50
    for pacer in pacers:
        await pacer.stop()
    assert ticker.active == 0
    assert clock.pending == 0  # no timer left behind once nothing runs


async def test_each_pacer_keeps_its_own_phase_on_the_grid() -> None:
    clock = VirtualClock()
    at: dict[str, list[float]] = {"a": [], "b": []}
    a = Pacer(clock, lambda n: at["a"].append(clock.monotonic()))
    b = Pacer(clock, lambda n: at["b"].append(clock.monotonic()))
    t0 = clock.monotonic()
    a.start()
    await clock.advance(0.0073)  # b's call arrives 7.3 ms later
    b.start()
    await clock.advance(0.1)
    assert at["a"] == pytest.approx([t0 + 0.02 * n for n in range(6)])
    # b's frames are due at t0 + 7.3 ms + n × 20 ms; the grid wakes it at the next millisecond
    assert at["b"] == pytest.approx([t0 + 0.008 + 0.02 * n for n in range(5)])
    await a.stop()
    await b.stop()


async def test_a_failing_tick_stops_only_its_own_pacer() -> None:
    clock = VirtualClock()
    loop = asyncio.get_running_loop()
    errors: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    good: list[int] = []

    def bad(n: int) -> None:
        if n == 2:
            raise RuntimeError("boom")

    broken = Pacer(clock, bad, name="broken")
    healthy = Pacer(clock, good.append)
    broken.start()
    healthy.start()
    await clock.advance(0.1)
    assert not broken.running and broken.ticks == 2
    assert healthy.running and good == list(range(6))
    assert len(errors) == 1 and "broken" in str(errors[0]["message"])
    assert isinstance(errors[0]["exception"], RuntimeError)
    await healthy.stop()
    loop.set_exception_handler(None)


async def test_stop_inside_a_tick_and_restart_from_frame_zero() -> None:
    clock = VirtualClock()
    ticks: list[int] = []
    pacer: Pacer

    def on_tick(n: int) -> None:
        ticks.append(n)
        if n == 3:
            asyncio.get_running_loop().create_task(pacer.stop())
            pacer._halt()  # what stop() does synchronously: no tick after this one

    pacer = Pacer(clock, on_tick)
    pacer.start()
    await clock.advance(0.2)
    assert ticks == [0, 1, 2, 3] and not pacer.running
    ticks.clear()
    pacer.start()
    await clock.advance(0.04)
    assert ticks == [0, 1, 2]
    await pacer.stop()


async def test_ticks_run_in_the_context_of_the_code_that_started_the_pacer() -> None:
    clock = VirtualClock()
    call_id: contextvars.ContextVar[str] = contextvars.ContextVar("call_id", default="-")
    seen: dict[str, set[str]] = {"a": set(), "b": set()}
    pacers = []
    for name in ("a", "b"):
        call_id.set(name)
        pacer = Pacer(clock, lambda n, name=name: seen[name].add(call_id.get()))
        pacer.start()
        pacers.append(pacer)
    call_id.set("-")
    await clock.advance(0.1)
    assert seen == {"a": {"a"}, "b": {"b"}}
    for pacer in pacers:
        await pacer.stop()


async def test_system_clocks_share_one_ticker_per_loop() -> None:
    assert ticker_for(SystemClock()) is ticker_for(SystemClock())
    virtual = VirtualClock()
    assert ticker_for(virtual) is ticker_for(virtual) is not ticker_for(SystemClock())


async def test_real_clock_pacers_are_never_early() -> None:
    clock = SystemClock()
    stamps: list[list[tuple[int, float]]] = [[] for _ in range(20)]
    pacers = [Pacer(clock, lambda n, s=s: s.append((n, clock.monotonic()))) for s in stamps]
    starts = []
    for pacer in pacers:
        starts.append(clock.monotonic())
        pacer.start()
        await asyncio.sleep(0.0013)  # calls arrive at different phases
    await asyncio.sleep(0.2)
    for pacer in pacers:
        await pacer.stop()
    for t0, s in zip(starts, stamps, strict=True):
        assert len(s) >= 3 and s[0][0] == 0
        # absolute deadlines: frame n never runs before t0 + n × 20 ms (less the timer slack);
        # how late it runs depends on the host's load, so that is not asserted here
        assert all(t >= t0 + n * 0.02 - 0.0015 for n, t in s)


async def test_poll_runs_due_ticks_before_the_timer_would() -> None:
    """A hot I/O path polls the ticker: due ticks run at once, the timer does not repeat them."""
    clock = VirtualClock()
    ticks: list[int] = []
    pacer = Pacer(clock, ticks.append)
    pacer.start()
    await clock.advance(0.0)
    assert ticks == [0]
    ticker = pacer.ticker
    assert ticker is not None
    ticker.poll()  # nothing due yet: no tick
    assert ticks == [0]
    clock._now += 0.020  # frame 1's deadline passes while the loop is busy with I/O
    ticker.poll()
    assert ticks == [0, 1]
    wakeups = ticker.wakeups
    await clock.advance(0.0)  # the loop's timer for that bucket was cancelled: no repeat
    assert ticks == [0, 1] and ticker.wakeups == wakeups
    await clock.advance(0.020)
    assert ticks == [0, 1, 2]
    await pacer.stop()
    ticker.poll()  # stopped: nothing to run
    assert ticks == [0, 1, 2]
