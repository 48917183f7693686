from __future__ import annotations

import asyncio

import pytest

from callbridge.media import Clock, SystemClock, VirtualClock


async def test_virtual_clock_orders_sleepers() -> None:
    clock = VirtualClock(start=10.0, wall_start=1000.0)
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, delay: float) -> None:
        await clock.sleep(delay)
        woke.append((name, clock.monotonic()))

    tasks = [asyncio.create_task(sleeper(n, d)) for n, d in [("b", 0.2), ("a", 0.1), ("c", 5)]]
    await clock.advance(1.0)
    assert woke == [("a", pytest.approx(10.1)), ("b", pytest.approx(10.2))]
    assert clock.pending == 1
    assert clock.next_deadline() == pytest.approx(15.0)
    assert clock.time() == pytest.approx(1001.0)
    await clock.advance(4.0)
    await asyncio.gather(*tasks)
    assert woke[-1] == ("c", pytest.approx(15.0))
    assert clock.next_deadline() is None


async def test_virtual_clock_past_deadline_and_errors() -> None:
    clock = VirtualClock()
    await clock.sleep_until(clock.monotonic() - 1)
    with pytest.raises(ValueError):
        await clock.advance(-1)
    with pytest.raises(TypeError):
        await clock.run_until(True, limit=1)
    with pytest.raises(TimeoutError):
        await clock.run_until(lambda: False, limit=0.1)


async def test_virtual_clock_cancelled_sleeper_and_run_until() -> None:
    clock = VirtualClock()
    task = asyncio.create_task(clock.sleep(1))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert clock.next_deadline() is None
    hits: list[float] = []

    async def pacer() -> None:
        t0 = clock.monotonic()
        for n in range(1, 6):
            await clock.sleep_until(t0 + n * 0.02)
            hits.append(clock.monotonic() - t0)

    p = asyncio.create_task(pacer())
    await clock.run_until(lambda: len(hits) == 5, limit=1.0)
    await p
    assert hits == pytest.approx([0.02, 0.04, 0.06, 0.08, 0.10])


async def test_system_clock() -> None:
    clock: Clock = SystemClock()
    t0 = clock.monotonic()
    await clock.sleep(0.001)
    await clock.sleep(-1)
    await clock.sleep_until(clock.monotonic() + 0.001)
    assert clock.monotonic() >= t0 + 0.002
    assert clock.time() > 1_600_000_000


async def test_system_clock_wakes_within_slack_under_uvloop() -> None:
    """uvloop timers have millisecond resolution: a wake-up may come at most TIMER_SLACK
    early, never more (scheduling against a stale loop time used to make it much earlier)."""
    import time

    import uvloop

    from callbridge.media.clock import TIMER_SLACK, SystemClock

    async def run() -> float:
        clock = SystemClock()
        worst = 0.0
        t0 = time.monotonic()
        for n in range(1, 26):
            deadline = t0 + n * 0.02
            time.sleep(0.004)  # noqa: ASYNC251 - a busy loop iteration: the loop time goes stale
            await clock.sleep_until(deadline)
            worst = min(worst, time.monotonic() - deadline)
        return worst

    worst_early = await asyncio.to_thread(lambda: uvloop.run(run()))
    assert worst_early >= -TIMER_SLACK


async def test_system_clock_wakes_within_slack_on_asyncio() -> None:
    import time

    from callbridge.media.clock import TIMER_SLACK, SystemClock

    clock = SystemClock()
    t0 = time.monotonic()
    for n in range(1, 11):
        deadline = t0 + n * 0.02
        await clock.sleep_until(deadline)
        assert time.monotonic() >= deadline - TIMER_SLACK


async def test_virtual_clock_call_at_runs_callbacks_in_deadline_order() -> None:
    clock = VirtualClock(start=10.0)
    fired: list[tuple[str, float]] = []
    clock.call_at(10.2, lambda: fired.append(("b", clock.monotonic())))
    clock.call_at(10.1, lambda: fired.append(("a", clock.monotonic())))
    cancelled = clock.call_at(10.15, lambda: fired.append(("x", clock.monotonic())))
    cancelled.cancel()
    clock.call_at(9.0, lambda: fired.append(("past", clock.monotonic())))  # runs at once
    assert clock.pending == 2
    await clock.advance(0.0)
    assert fired == [("past", 10.0)]
    await clock.advance(1.0)
    assert fired[1:] == [("a", pytest.approx(10.1)), ("b", pytest.approx(10.2))]
    assert clock.next_deadline() is None


async def test_system_clock_call_at_uses_the_loop_timer() -> None:
    clock = SystemClock()
    done = asyncio.Event()
    deadline = clock.monotonic() + 0.01
    clock.call_at(deadline, done.set)
    async with asyncio.timeout(2.0):
        await done.wait()
    assert clock.monotonic() >= deadline - 0.0015
