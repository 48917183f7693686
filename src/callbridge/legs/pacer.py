"""The 20 ms clock of one leg.

A :class:`Pacer` calls ``on_tick(n)`` for frame *n* at ``t0 + n × FRAME_SECONDS`` on the
injected clock's monotonic time base (absolute deadlines, so it never drifts). A late wake-up
runs the overdue ticks in a burst of at most ``MAX_BURST`` and skips older ones, telling the
callback how many were skipped so timestamps can advance (the same rule the RTP sender uses,
spec ``sip.md`` §10).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from callbridge.media.clock import TIMER_SLACK, Clock
from callbridge.media.constants import FRAME_SECONDS

#: Overdue ticks run back to back after a late wake-up; older ones are skipped.
MAX_BURST = 3

TickCallback = Callable[[int], None]


class Pacer:
    """Runs ``on_tick`` every 20 ms until stopped. One pacer per leg."""

    def __init__(self, clock: Clock, on_tick: TickCallback, *, name: str = "pacer") -> None:
        self._clock = clock
        self._on_tick = on_tick
        self._name = name
        self._task: asyncio.Task[None] | None = None
        self.ticks = 0
        self.skipped = 0

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self._name)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        t0 = self._clock.monotonic()
        n = 0
        while True:
            await self._clock.sleep_until(t0 + n * FRAME_SECONDS)
            now = self._clock.monotonic()
            # Last frame whose time has come; a wake-up within the clock's slack of a deadline
            # counts as on time (otherwise a millisecond-timer loop would spin re-sleeping).
            due = int((now - t0 + TIMER_SLACK) / FRAME_SECONDS)
            if due - n >= MAX_BURST:
                skip = due - n - MAX_BURST + 1
                self.skipped += skip
                n += skip
            while n <= due:
                self._on_tick(n)
                self.ticks += 1
                n += 1
