"""Allocation of RTP/RTCP port pairs from a configured range (spec ``sip.md`` §10).

RTP uses an even port and RTCP the next odd one (RFC 3550 §11). The pool only does
bookkeeping; binding happens in the asyncio layer, which reports a port it could not bind
with :meth:`PortPool.release` ``(port, failed=True)`` so the pool tries it last next time.

Free ports are handed out in FIFO order and released ports go to the back of the line, so a
port just freed is reused as late as possible (stray packets of the previous call have time
to die out).
"""

from __future__ import annotations

from collections import deque
from typing import Final

__all__ = ["DEFAULT_RTP_PORTS", "PortPool", "PortPoolExhausted"]

#: Default range, inclusive (spec ``sip.md`` §10).
DEFAULT_RTP_PORTS: Final = (10000, 20000)


class PortPoolExhausted(RuntimeError):
    """Every even port of the range is in use."""


class PortPool:
    """Even RTP ports in ``[first, last]`` whose ``port + 1`` is also in range."""

    def __init__(self, first: int = DEFAULT_RTP_PORTS[0], last: int = DEFAULT_RTP_PORTS[1]) -> None:
        if not 1024 <= first <= last <= 65535:
            raise ValueError(f"RTP port range must lie within 1024-65535, got {first}-{last}")
        start = first + (first % 2)
        ports = range(start, last, 2)  # port + 1 <= last
        if not ports:
            raise ValueError(f"RTP port range {first}-{last} holds no even/odd port pair")
        self.first = first
        self.last = last
        self._free: deque[int] = deque(ports)
        self._in_use: set[int] = set()
        self._valid = frozenset(ports)

    @classmethod
    def parse(cls, text: str) -> PortPool:
        """A pool from ``"20000-20999"``; ``ValueError`` with the reason otherwise."""
        lo, sep, hi = text.partition("-")
        if not sep or not lo.strip().isdigit() or not hi.strip().isdigit():
            raise ValueError(f"RTP port range must look like 20000-20999, got {text!r}")
        return cls(int(lo), int(hi))

    @property
    def capacity(self) -> int:
        return len(self._valid)

    @property
    def available(self) -> int:
        return len(self._free)

    @property
    def in_use(self) -> frozenset[int]:
        return frozenset(self._in_use)

    def allocate(self) -> int:
        """An even RTP port (RTCP is ``port + 1``); raises :class:`PortPoolExhausted`."""
        if not self._free:
            raise PortPoolExhausted(
                f"no free RTP port in {self.first}-{self.last} ({self.capacity} pairs in use)"
            )
        port = self._free.popleft()
        self._in_use.add(port)
        return port

    def release(self, port: int) -> None:
        """Return ``port`` to the pool (to the back of the line). Releasing twice is a no-op;
        a port that was never part of the range raises ``ValueError``."""
        if port not in self._valid:
            raise ValueError(f"port {port} is not an RTP port of {self.first}-{self.last}")
        if port in self._in_use:
            self._in_use.discard(port)
            self._free.append(port)
