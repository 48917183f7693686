"""Injectable clocks.

Everything that waits or timestamps takes a :class:`Clock`, so timing logic is tested in
virtual time: :class:`VirtualClock` jumps from deadline to deadline instantly and
deterministically, while :class:`SystemClock` uses the real monotonic and wall clocks.

Contract shared by both implementations:

* ``monotonic()`` never goes backwards; it is the time base of every deadline.
* ``time()`` is wall-clock epoch seconds, for timestamps shown to users.
* ``sleep_until(deadline)`` returns at ``deadline``: never earlier than
  ``deadline - TIMER_SLACK`` (event loops with millisecond timers, such as uvloop, may wake a
  little early; re-sleeping would cost a whole extra timer tick), and a deadline in the past
  returns at once after one scheduling point, so loops never starve the event loop.
* ``call_at(deadline, callback)`` runs a plain callback at ``deadline`` (same timing rules as
  ``sleep_until``, a past deadline runs on the next loop iteration) and returns a handle whose
  ``cancel()`` stops it. It costs no task: the shared media tick
  (:class:`~callbridge.legs.pacer.MediaTicker`) uses it to wake every leg's pacer.
* Pacing loops use absolute deadlines (``t0 + n * period``), never relative sleeps, so they
  do not drift.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from typing import Protocol

#: How early a real-clock ``sleep_until`` may return (uvloop's timers have 1 ms resolution).
#: Code that acts "when a deadline has passed" treats anything within this slack as passed.
TIMER_SLACK = 0.001


class TimerHandle(Protocol):
    """What :meth:`Clock.call_at` returns."""

    def cancel(self) -> None: ...


class Clock(Protocol):
    """A source of time and a way to wait for it."""

    def monotonic(self) -> float:
        """Seconds on a monotonic time base."""
        ...

    def time(self) -> float:
        """Wall-clock seconds since the Unix epoch."""
        ...

    async def sleep(self, delay: float) -> None:
        """Wait ``delay`` seconds (``<= 0`` yields once)."""
        ...

    async def sleep_until(self, deadline: float) -> None:
        """Wait until ``monotonic() >= deadline``."""
        ...

    def call_at(self, deadline: float, callback: Callable[[], object]) -> TimerHandle:
        """Run ``callback()`` once ``monotonic() >= deadline`` (on the running event loop)."""
        ...


class SystemClock:
    """The real clock: ``time.monotonic`` / ``time.time`` and ``asyncio.sleep``."""

    # The C functions themselves, not Python wrappers: the media path reads the clock for
    # every packet and every frame, and a wrapper doubles the cost of each read.
    monotonic = staticmethod(time.monotonic)
    time = staticmethod(time.time)

    async def sleep(self, delay: float) -> None:
        await asyncio.sleep(max(0.0, delay))

    async def sleep_until(self, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        # Measured against the loop's own clock (the same monotonic base as time.monotonic()
        # on asyncio and uvloop): the timer then fires when the loop sees the deadline, with
        # no re-sleeping. On uvloop that can be up to TIMER_SLACK early in real time
        # (millisecond timers, loop time cached per iteration); see TIMER_SLACK.
        await asyncio.sleep(max(0.0, deadline - loop.time()))

    def call_at(self, deadline: float, callback: Callable[[], object]) -> TimerHandle:
        # The loop's clock is time.monotonic() (asyncio and uvloop): a loop timer, no task.
        return asyncio.get_running_loop().call_at(deadline, callback)


class _VirtualTimer:
    """A callback parked on a :class:`VirtualClock` (what its ``call_at`` returns)."""

    __slots__ = ("_callback", "_done")

    def __init__(self, callback: Callable[[], object]) -> None:
        self._callback = callback
        self._done = False

    def cancel(self) -> None:
        self._done = True

    def done(self) -> bool:
        return self._done

    def fire(self) -> None:
        if not self._done:
            self._done = True
            self._callback()


class VirtualClock:
    """A clock that only moves when told to.

    Sleepers park on futures ordered by deadline. :meth:`advance` moves time forward deadline by
    deadline, waking each sleeper and letting the event loop run until it is quiet before moving
    on, so a 3-second scenario runs in milliseconds and always in the same order.
    """

    #: Scheduling points given to woken tasks after each step of :meth:`advance`.
    SETTLE_ROUNDS = 20

    def __init__(self, start: float = 1000.0, wall_start: float = 1_800_000_000.0) -> None:
        self._now = start
        self._wall_offset = wall_start - start
        self._sleepers: list[tuple[float, int, asyncio.Future[None] | _VirtualTimer]] = []
        self._counter = itertools.count()

    def monotonic(self) -> float:
        return self._now

    def time(self) -> float:
        return self._now + self._wall_offset

    async def sleep(self, delay: float) -> None:
        await self.sleep_until(self._now + delay)

    async def sleep_until(self, deadline: float) -> None:
        if deadline <= self._now:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (deadline, next(self._counter), fut))
        await fut

    def call_at(self, deadline: float, callback: Callable[[], object]) -> TimerHandle:
        if deadline <= self._now:
            return asyncio.get_running_loop().call_soon(callback)
        timer = _VirtualTimer(callback)
        heapq.heappush(self._sleepers, (deadline, next(self._counter), timer))
        return timer

    @property
    def pending(self) -> int:
        """Number of sleepers (and timers) still waiting."""
        return sum(1 for _, _, f in self._sleepers if not f.done())

    def next_deadline(self) -> float | None:
        """The earliest deadline of a live sleeper, or ``None``."""
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)  # cancelled sleepers
        return self._sleepers[0][0] if self._sleepers else None

    async def settle(self) -> None:
        """Let runnable tasks run until they block again."""
        for _ in range(self.SETTLE_ROUNDS):
            await asyncio.sleep(0)

    async def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, waking every sleeper due on the way, in order."""
        if seconds < 0:
            raise ValueError("a clock cannot go backwards")
        target = self._now + seconds
        await self.settle()
        while True:
            nxt = self.next_deadline()
            if nxt is None or nxt > target:
                break
            self._now = max(self._now, nxt)
            while self._sleepers and self._sleepers[0][0] <= self._now:
                _, _, item = heapq.heappop(self._sleepers)
                if isinstance(item, _VirtualTimer):
                    item.fire()
                elif not item.done():
                    item.set_result(None)
            await self.settle()
        self._now = target
        await self.settle()

    async def run_until(self, predicate: object, *, limit: float, step: float = 0.02) -> None:
        """Advance in ``step`` increments until ``predicate()`` is true; raise after ``limit``."""
        if not callable(predicate):
            raise TypeError("predicate must be callable")
        end = self._now + limit
        while not predicate():
            if self._now >= end:
                raise TimeoutError(f"condition not met within {limit} virtual seconds")
            await self.advance(step)
