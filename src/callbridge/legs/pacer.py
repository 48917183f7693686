"""The 20 ms clock of one leg, and the shared media tick that wakes every leg's clock.

A :class:`Pacer` calls ``on_tick(n)`` for frame *n* at ``t0 + n × FRAME_SECONDS`` on the
injected clock's monotonic time base (absolute deadlines, so it never drifts). A late wake-up
runs the overdue ticks in a burst of at most ``MAX_BURST`` and skips older ones, telling the
callback how many were skipped so timestamps can advance (the same rule the RTP sender uses,
spec ``sip.md`` §10).

Each pacer is its leg's one *logical* owner of the playout clock: its own ``t0``, frame index,
burst/skip rule and counters. What wakes it is shared (decision 031): one :class:`MediaTicker`
per event loop and clock keeps every running pacer in buckets of a 1 ms grid and arms **one**
loop timer for the earliest non-empty bucket, instead of one sleeping task per leg. A pacer
sits in the bucket of the first grid point at or after its next deadline, so it is woken at
most one grid step late (and never early beyond the clock's ``TIMER_SLACK``), and legs keep the
random phases of their calls' arrivals: the work of one wake-up is that of the legs due in that
millisecond, not of every leg. Ticks run in the context (``contextvars``) of the code that
started the pacer, as they did in the pacer's own task, so logs keep their call id.
"""

from __future__ import annotations

import asyncio
import contextvars
import heapq
import math
from collections.abc import Callable
from typing import Final

from callbridge.media.clock import TIMER_SLACK, Clock, SystemClock, TimerHandle
from callbridge.media.constants import FRAME_SECONDS

#: Overdue ticks run back to back after a late wake-up; older ones are skipped.
MAX_BURST = 3
#: Grid of the shared media tick: pacers due within one grid step share one wake-up.
GRID_PER_SECOND: Final = 1000
#: Tolerance for float rounding when a time is put on the grid (seconds × grid).
_GRID_EPSILON: Final = 1e-6

TickCallback = Callable[[int], None]


def _no_tick(n: int) -> None:
    """The callback of a released pacer."""


def _grid_at_or_after(t: float) -> int:
    return math.ceil(t * GRID_PER_SECOND - _GRID_EPSILON)


class MediaTicker:
    """One timer for every running :class:`Pacer` of an event loop and clock.

    Obtain it with :func:`ticker_for`; pacers register themselves on :meth:`Pacer.start`.
    """

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._buckets: dict[int, list[Pacer]] = {}
        self._heap: list[int] = []
        self._timer: TimerHandle | None = None
        self._timer_slot: int | None = None
        self._firing = False
        self.active = 0
        #: Timer wake-ups so far (each runs every pacer due by then).
        self.wakeups = 0

    def _add(self, pacer: Pacer, slot: int) -> None:
        bucket = self._buckets.get(slot)
        if bucket is not None:
            bucket.append(pacer)
            return
        self._buckets[slot] = [pacer]
        heapq.heappush(self._heap, slot)
        if not self._firing and (self._timer_slot is None or slot < self._timer_slot):
            self._arm(slot)

    def _arm(self, slot: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_slot = slot
        self._timer = self._clock.call_at(slot / GRID_PER_SECOND, self._fire)

    def _register(self, pacer: Pacer, slot: int) -> None:
        self.active += 1
        self._add(pacer, slot)

    def _unregister(self) -> None:
        self.active -= 1
        if self.active == 0:  # nothing left to wake: drop stale entries and the timer
            self._buckets.clear()
            self._heap.clear()
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self._timer_slot = None

    def poll(self) -> None:
        """Run the due pacers now if the earliest bucket's time has come.

        For hot I/O paths (one call per received RTP datagram): an event loop runs the
        callbacks of every socket that became ready before it looks at its timers again, so
        with hundreds of legs one iteration's datagrams (tens of microseconds each) would hold
        every tick back by milliseconds. Polling here bounds that lateness by one callback.
        Costs one clock read when nothing is due.
        """
        slot = self._timer_slot
        if slot is None or self._firing:
            return
        if self._clock.monotonic() + TIMER_SLACK >= slot / GRID_PER_SECOND:
            if self._timer is not None:
                self._timer.cancel()
            self._fire()

    def _fire(self) -> None:
        self._timer = self._timer_slot = None
        self.wakeups += 1
        now = self._clock.monotonic()
        # Every bucket whose grid time has come (within the clock's slack of a deadline).
        limit = math.floor((now + TIMER_SLACK) * GRID_PER_SECOND + _GRID_EPSILON)
        heap, buckets = self._heap, self._buckets
        self._firing = True
        try:
            while heap and heap[0] <= limit:
                slot = heapq.heappop(heap)
                for pacer in buckets.pop(slot):
                    if pacer._slot == slot:  # else stopped or restarted since it was filed
                        pacer._wake(now, self)
        finally:  # (a tick's exceptions are caught in _wake; this is for BaseException)
            self._firing = False
            if heap:
                self._arm(heap[0])


#: Tickers by event loop, then by clock (every ``SystemClock`` is the same clock).
_TICKERS: dict[asyncio.AbstractEventLoop, dict[object, MediaTicker]] = {}


def ticker_for(clock: Clock) -> MediaTicker:
    """The shared media tick of the running event loop for ``clock``."""
    loop = asyncio.get_running_loop()
    per_loop = _TICKERS.get(loop)
    if per_loop is None:
        for old in [lp for lp in _TICKERS if lp.is_closed()]:
            del _TICKERS[old]
        per_loop = _TICKERS[loop] = {}
    key: object = SystemClock if type(clock) is SystemClock else clock
    ticker = per_loop.get(key)
    if ticker is None:
        ticker = per_loop[key] = MediaTicker(clock)
    return ticker


class Pacer:
    """Runs ``on_tick`` every 20 ms until stopped. One pacer per leg (its playout clock)."""

    def __init__(self, clock: Clock, on_tick: TickCallback, *, name: str = "pacer") -> None:
        self._clock = clock
        self._on_tick = on_tick
        self.name = name
        self._ticker: MediaTicker | None = None
        self._context: contextvars.Context | None = None
        self._t0 = 0.0
        self._n = 0
        #: Grid slot this pacer is filed under while running, ``None`` when stopped.
        self._slot: int | None = None
        self.ticks = 0
        self.skipped = 0

    @property
    def running(self) -> bool:
        return self._slot is not None

    @property
    def ticker(self) -> MediaTicker | None:
        """The shared tick waking this pacer (``None`` before the first :meth:`start`)."""
        return self._ticker

    @property
    def t0(self) -> float:
        """When frame 0 was due (monotonic): frame *n* is due at ``t0 + n × FRAME_SECONDS``."""
        return self._t0

    def start(self) -> None:
        """Frame 0 is due now; later frames every 20 ms. No-op while running."""
        if self._slot is not None:
            return
        if self._on_tick is _no_tick:
            raise RuntimeError(f"pacer {self.name!r} was released")
        ticker = self._ticker = ticker_for(self._clock)
        self._context = contextvars.copy_context()
        self._t0 = self._clock.monotonic()
        self._n = 0
        self._slot = _grid_at_or_after(self._t0)
        ticker._register(self, self._slot)

    async def stop(self) -> None:
        """No tick runs after this returns. Idempotent; :meth:`start` may run again."""
        self._halt()

    def release(self) -> None:
        """Stop for good and drop the callback and context (usually a bound method of the
        pacer's owner, which holds the pacer: a reference cycle). Idempotent; a released
        pacer must not be started again."""
        self._halt()
        self._on_tick = _no_tick
        self._context = None

    def _halt(self) -> None:
        if self._slot is not None and self._ticker is not None:
            self._slot = None
            self._ticker._unregister()

    def _wake(self, now: float, ticker: MediaTicker) -> None:
        n, t0 = self._n, self._t0
        # Last frame whose time has come; a wake-up within the clock's slack of a deadline
        # counts as on time (otherwise a millisecond-timer loop would spin re-sleeping). The
        # bucket was due, so frame n is too (guards against float rounding).
        due = int((now - t0 + TIMER_SLACK) / FRAME_SECONDS)
        if due < n:
            due = n
        if due - n >= MAX_BURST:
            skip = due - n - MAX_BURST + 1
            self.skipped += skip
            n += skip
        slot = self._slot
        context = self._context
        assert context is not None
        try:
            while n <= due:
                self._n = n + 1
                context.run(self._on_tick, n)
                self.ticks += 1
                n += 1
                if self._slot != slot:  # the tick stopped (or restarted) this pacer
                    return
        except Exception as exc:
            self._halt()
            asyncio.get_running_loop().call_exception_handler(
                {"message": f"pacer {self.name!r} stopped: its tick raised", "exception": exc}
            )
            return
        # _grid_at_or_after(t0 + n * FRAME_SECONDS), inline: runs for every tick of every leg.
        slot = self._slot = math.ceil((t0 + n * FRAME_SECONDS) * GRID_PER_SECOND - _GRID_EPSILON)
        ticker._add(self, slot)
