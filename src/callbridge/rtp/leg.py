"""``RtpLeg``: a SIP party's media as a :class:`~callbridge.legs.base.Leg` (asyncio shell).

The leg only moves bytes; all protocol state lives in :class:`~callbridge.rtp.session.RtpSession`.

* **Sockets before the answer.** The RTP (even port) and RTCP (port + 1) UDP sockets are bound
  in the constructor, with ports from the :class:`~callbridge.rtp.port_pool.PortPool`, so the
  port in our SDP is already bound when the offer/answer goes out and the kernel holds any
  packet that arrives before :meth:`RtpLeg.prepare` attaches them to the event loop.
* **One owner of the playout clock.** From :meth:`answered` to the end a
  :class:`~callbridge.legs.pacer.Pacer` ticks every 20 ms on the injected clock. Each tick pulls
  exactly one outbound frame (``_next_outbound``), has the session encode it (or a DTMF packet
  instead) and sends it; then pops one frame from the jitter buffer and, once the peer's media
  is flowing, delivers it (320 bytes) to the listener; then runs the session's timers and the
  RTCP schedule (a report every ``rtcp_interval`` seconds, BYE on stop).
* **Signalling is someone else's.** The SIP layer calls :meth:`set_remote` after offer/answer,
  :meth:`ringing`, :meth:`answered` and :meth:`ended`, and :meth:`set_direction` for hold. The
  leg's own :meth:`start`/:meth:`answer`/:meth:`hangup` call an optional
  :class:`LegSignalling` hook so the call service can drive a SIP leg like any other leg. This
  module does not import ``callbridge.sip``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
from array import array
from collections.abc import Iterator
from typing import Final, Protocol

from callbridge.calls.model import HangupBy, HangupReason
from callbridge.legs.base import Leg, LegEnd, LegState
from callbridge.legs.pacer import Pacer
from callbridge.media.clock import Clock, SystemClock
from callbridge.media.constants import FRAME_SECONDS, SILENCE_FRAME
from callbridge.rtp.port_pool import PortPool
from callbridge.rtp.session import (
    DEFAULT_DTMF_PT,
    PT_PCMU,
    Address,
    ByeReceived,
    DtmfReceived,
    Latched,
    LatchPolicy,
    MediaDirection,
    Quality,
    RtpEvent,
    RtpSession,
    RtpStats,
)

__all__ = ["LegSignalling", "RtpLeg"]

log = logging.getLogger(__name__)

#: Default RTCP report interval (spec ``sip.md`` §10).
RTCP_INTERVAL: Final = 5.0
#: Ports tried before giving up when some in the range are taken by other processes.
BIND_ATTEMPTS: Final = 16
#: Send-lateness samples kept for :attr:`RtpLeg.send_lateness` (1 minute of frames).
_LATENESS_SAMPLES: Final = 3_000


class SampleRing:
    """The last ``size`` float samples, oldest first when iterated.

    Kept in one ``array('d')``: no float object per sample and nothing for the garbage
    collector to walk (a ``deque`` of floats costs ~32 bytes a sample, and every full
    collection visited each one).
    """

    __slots__ = ("_buf", "_count", "_next", "_size")

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("a sample ring holds at least one sample")
        self._buf = array("d", bytes(8 * size))
        self._size = size
        self._next = 0
        self._count = 0

    def append(self, value: float) -> None:
        self._buf[self._next] = value
        self._next = (self._next + 1) % self._size
        if self._count < self._size:
            self._count += 1

    def clear(self) -> None:
        self._next = self._count = 0

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[float]:
        start = (self._next - self._count) % self._size
        for i in range(self._count):
            yield self._buf[(start + i) % self._size]


class LegSignalling(Protocol):
    """What the SIP layer does when the call service drives an RTP leg."""

    async def start(self, leg: RtpLeg) -> None: ...

    async def answer(self, leg: RtpLeg) -> None: ...

    async def hangup(self, leg: RtpLeg, reason: HangupReason) -> None: ...


def _address(addr: tuple[str | object, ...]) -> Address:
    """The (host, port) of a datagram's source, as RtpSession compares it."""
    if len(addr) == 2 and type(addr[0]) is str and type(addr[1]) is int:
        return addr  # type: ignore[return-value]  # IPv4: already (str, int), no new tuple
    return (str(addr[0]), int(str(addr[1])))  # IPv6 (host, port, flow, scope) and oddities


class _Endpoint(asyncio.DatagramProtocol):
    """The RTCP socket's protocol (and the base of the RTP one)."""

    def __init__(self, leg: RtpLeg) -> None:
        self._leg = leg
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        self._leg._on_rtcp(data, _address(addr))

    def error_received(self, exc: Exception) -> None:
        self._leg.send_errors += 1  # e.g. ICMP port unreachable from a peer that went away

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


class _RtpEndpoint(_Endpoint):
    """The RTP socket's protocol: 50 datagrams a second per call."""

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        leg = self._leg
        leg._on_rtp(data, _address(addr))
        # Let due ticks (of every leg) run between datagrams, not after the whole burst.
        ticker = leg._pacer.ticker
        if ticker is not None:
            ticker.poll()


def _bind_pair(pool: PortPool, host: str) -> tuple[int, socket.socket, socket.socket]:
    # The last error's text only: a kept exception holds its traceback, whose frames hold
    # this function's locals (the exception itself) and the caller's (the leg): a cycle.
    last_error = ""
    failed: list[int] = []
    try:
        for _ in range(BIND_ATTEMPTS):
            port = pool.allocate()
            rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            rtcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                rtp.bind((host, port))
                rtcp.bind((host, port + 1))
            except OSError as exc:
                rtp.close()
                rtcp.close()
                failed.append(port)
                last_error = str(exc)
                continue
            rtp.setblocking(False)
            rtcp.setblocking(False)
            return port, rtp, rtcp
    finally:
        for port in failed:
            pool.release(port)
    raise OSError(f"could not bind an RTP/RTCP port pair on {host}: {last_error}")


class RtpLeg(Leg):
    """A party reached over RTP (G.711 + RFC 4733), its SIP dialog handled elsewhere."""

    def __init__(
        self,
        leg_id: str,
        *,
        pool: PortPool,
        clock: Clock | None = None,
        host: str = "127.0.0.1",
        outgoing: bool = False,
        rng: random.Random | None = None,
        payload_type: int = PT_PCMU,
        dtmf_payload_type: int | None = DEFAULT_DTMF_PT,
        latch: LatchPolicy = LatchPolicy.PEER,
        rtcp_interval: float = RTCP_INTERVAL,
        jitter_min_ms: int = 40,
        jitter_max_ms: int = 200,
        signalling: LegSignalling | None = None,
        record_lateness: bool = False,
    ) -> None:
        super().__init__(leg_id)
        if rtcp_interval <= 0:
            raise ValueError("rtcp_interval must be positive")
        self._clock: Clock = clock or SystemClock()
        self.outgoing = outgoing
        self.session = RtpSession(
            rng=rng or random.SystemRandom(),
            payload_type=payload_type,
            dtmf_payload_type=dtmf_payload_type,
            latch=latch,
            cname=f"{leg_id}@{host}",
            jitter_min_ms=jitter_min_ms,
            jitter_max_ms=jitter_max_ms,
        )
        self._pool = pool
        self.host = host
        self.port, self._rtp_sock, self._rtcp_sock = _bind_pair(pool, host)
        self._rtp: asyncio.DatagramTransport | None = None
        self._rtcp: asyncio.DatagramTransport | None = None
        self._endpoints: list[_Endpoint] = []
        self._rtcp_peer: Address | None = None
        self._rtcp_interval = rtcp_interval
        self._next_rtcp = 0.0
        self._signalling = signalling
        self._pacer = Pacer(self._clock, self._on_tick, name=f"rtp-{leg_id}")
        self._dtmf_progress = asyncio.Event()
        self._dtmf_generation = 0
        self._closed = False
        self._ending = False
        #: With ``record_lateness``: how late each recent frame was sent (seconds after
        #: ``t0 + n × 20 ms``); a diagnostic for benchmarks, off by default (it cost ~3 % of
        #: a busy server's CPU).
        self.send_lateness: SampleRing | None = (
            SampleRing(_LATENESS_SAMPLES) if record_lateness else None
        )
        self.frames_delivered = 0
        self.send_errors = 0
        self.rtcp_received = 0
        self.bye_received = False

    @classmethod
    async def open(cls, leg_id: str, *, pool: PortPool, **kwargs: object) -> RtpLeg:
        """Construct (binding the ports) and :meth:`prepare` in one step."""
        leg = cls(leg_id, pool=pool, **kwargs)  # type: ignore[arg-type]
        try:
            await leg.prepare()
        except BaseException:
            await leg.close()
            raise
        return leg

    async def prepare(self) -> None:
        """Attach the bound sockets to the event loop. Idempotent."""
        if self._rtp is not None or self._closed:
            return
        loop = asyncio.get_running_loop()
        rtp_ep = _RtpEndpoint(self)
        rtcp_ep = _Endpoint(self)
        self._endpoints = [rtp_ep, rtcp_ep]
        self._rtp, _ = await loop.create_datagram_endpoint(lambda: rtp_ep, sock=self._rtp_sock)
        self._rtcp, _ = await loop.create_datagram_endpoint(lambda: rtcp_ep, sock=self._rtcp_sock)

    # -- what the SIP layer calls ---------------------------------------------------------------
    @property
    def local_address(self) -> Address:
        """Our RTP address for the SDP ``c=``/``m=`` lines (RTCP is port + 1)."""
        return self.host, self.port

    def set_remote(
        self,
        host: str,
        port: int,
        payload_type: int = PT_PCMU,
        dtmf_pt: int | None = DEFAULT_DTMF_PT,
        *,
        signalling_host: str | None = None,
    ) -> None:
        """The negotiated peer address and payload types (after offer/answer)."""
        self.session.set_remote(
            (host, port),
            payload_type=payload_type,
            dtmf_payload_type=dtmf_pt,
            signalling_host=signalling_host,
        )
        self._rtcp_peer = (host, port + 1)

    def set_direction(self, direction: MediaDirection) -> None:
        """Hold/unhold from SDP: ``recvonly``/``inactive`` stop our sending."""
        self.session.set_direction(direction)
        if not direction.sends and self.session.dtmf_sender.cancel():
            self._dtmf_generation += 1
            self._dtmf_progress.set()

    def ringing(self) -> None:
        if self._state is not LegState.RINGING:
            self._set_state(LegState.RINGING)

    def answered(self) -> None:
        """The call is answered: media starts on this leg's clock."""
        if self._state is LegState.ANSWERED:
            return
        if self._rtp is None:
            raise RuntimeError("RtpLeg.prepare() must run before media starts")
        self._set_state(LegState.ANSWERED)
        self._next_rtcp = self._clock.monotonic() + self._rtcp_interval
        self._pacer.start()

    async def ended(self, reason: HangupReason, by: HangupBy) -> None:
        """The dialog ended: stop media, send RTCP BYE, close the sockets.

        Idempotent and safe to call concurrently (signalling and a local hangup can both end a
        leg): the first caller does the work, later ones wait for it to finish.
        """
        if self._state is LegState.ENDED:
            return
        if self._ending:
            await self.wait_ended()
            return
        self._ending = True
        await self._pacer.stop()
        self._drain_tail()
        self._send_rtcp(bye=True)
        await self.close()
        self._dtmf_generation += 1
        self._dtmf_progress.set()
        self._set_state(LegState.ENDED, LegEnd(reason, by))
        self._signalling = None  # it references this leg (decision 024)

    async def close(self) -> None:
        """Close both sockets and return the ports to the pool. Idempotent."""
        if self._closed:
            return
        self._closed = True
        await self._pacer.stop()
        for transport in (self._rtp, self._rtcp):
            if transport is not None:
                transport.close()
        if self._rtp is None:
            self._rtp_sock.close()
        if self._rtcp is None:
            self._rtcp_sock.close()
        for ep in self._endpoints:
            await ep.closed
        # Each endpoint and the pacer reference this leg: drop them so a closed leg is freed
        # by reference counting (decision 024).
        self._endpoints = []
        self._pacer.release()
        self._pool.release(self.port)

    # -- Leg ------------------------------------------------------------------------------------
    async def start(self) -> None:
        await self.prepare()
        self._set_state(LegState.DIALING if self.outgoing else LegState.RINGING)
        if self._signalling is not None:
            await self._signalling.start(self)

    async def answer(self) -> None:
        if self._state is LegState.ANSWERED:
            return
        if self.outgoing:
            raise RuntimeError("an outgoing leg is answered by the far end, not by us")
        await self.prepare()
        if self._signalling is not None:
            await self._signalling.answer(self)
        self.answered()

    async def hangup(self, reason: HangupReason = HangupReason.NORMAL) -> None:
        if self._state is LegState.ENDED:
            return
        if self._signalling is not None:
            await self._signalling.hangup(self, reason)
        await self.ended(reason, HangupBy.LOCAL)

    async def send_dtmf(
        self, digits: str, *, duration_ms: int = 100, interval_ms: int = 100
    ) -> None:
        """Send RFC 4733 key presses on this leg's clock; returns once all were sent (or the
        leg ended, or hold cancelled them)."""
        if self._state is LegState.ENDED:
            return
        if self._state is not LegState.ANSWERED or not self.session.sending:
            raise RuntimeError("DTMF needs an answered leg that is sending media")
        ticket = self.session.send_dtmf(digits, duration_ms=duration_ms, interval_ms=interval_ms)
        generation = self._dtmf_generation
        while not self.session.dtmf_done(ticket) and generation == self._dtmf_generation:
            self._dtmf_progress.clear()
            await self._dtmf_progress.wait()

    # -- statistics -----------------------------------------------------------------------------
    @property
    def stats(self) -> RtpStats:
        return self.session.stats

    def quality(self) -> Quality:
        return self.session.quality()

    # -- the clock ------------------------------------------------------------------------------
    def _on_tick(self, n: int) -> None:
        # Runs 50 times a second per leg: Leg._next_outbound / _deliver_audio are inlined.
        now = self._clock.monotonic()
        if (lateness := self.send_lateness) is not None:
            lateness.append(now - (self._pacer.t0 + n * FRAME_SECONDS))
        session = self.session
        sender = session.dtmf_sender
        completed = sender.completed
        source = self._source
        data = session.frame(n, SILENCE_FRAME if source is None else source(), now=now)
        rtp = self._rtp
        if data is not None and rtp is not None and (remote := session.remote) is not None:
            rtp.sendto(data, remote)
        if sender.completed != completed:
            self._dtmf_progress.set()
        out = session.pop_frame()
        if out is not None:
            self.frames_delivered += 1
            if (listener := self._listener) is not None:
                listener.on_leg_audio(out.pcm)
        if events := session.poll(now):
            for event in events:
                self._handle(event)
        if now >= self._next_rtcp:
            self._next_rtcp = now + self._rtcp_interval
            self._send_rtcp(bye=False)

    def _send_rtcp(self, *, bye: bool) -> None:
        if self._closed or self._rtcp is None or self._rtcp_peer is None:
            return
        now, wall = self._clock.monotonic(), self._clock.time()
        if bye:
            data = self.session.rtcp_bye(now=now, wall=wall, reason="hangup")
        else:
            data = self.session.rtcp_report(now=now, wall=wall)
        self._rtcp.sendto(data, self._rtcp_peer)

    def _drain_tail(self) -> None:
        """End of media: hand the listener everything still buffered (never hold the tail)."""
        for event in self.session.end_of_stream():
            self._handle(event)
        while (out := self.session.pop_frame()) is not None:
            self.frames_delivered += 1
            self._deliver_audio(out.pcm)

    # -- datagrams in ---------------------------------------------------------------------------
    def _on_rtp(self, data: bytes, source: Address) -> None:
        if self._state is LegState.ENDED:
            return
        events = self.session.receive(
            data, source, now=self._clock.monotonic(), wall=self._clock.time()
        )
        for event in events:
            self._handle(event)

    def _on_rtcp(self, data: bytes, source: Address) -> None:
        if self._state is LegState.ENDED:
            return
        self.rtcp_received += 1
        for event in self.session.receive_rtcp(data, source, wall=self._clock.time()):
            self._handle(event)

    def _handle(self, event: RtpEvent) -> None:
        if isinstance(event, DtmfReceived):
            self._deliver_dtmf(event.event)
        elif isinstance(event, ByeReceived):
            self.bye_received = True
            for ev in self.session.end_of_stream():
                self._handle(ev)
        elif isinstance(event, Latched):
            self._rtcp_peer = (event.address[0], event.address[1] + 1)
            log.info("rtp leg %s latched to %s:%d", self.id, *event.address)
