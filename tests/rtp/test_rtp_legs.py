"""Two RtpLegs over real UDP sockets on 127.0.0.1, through a relay that can drop packets.

A tone sent by one leg is heard by the other (FFT), DTMF crosses as exactly the digits sent,
sequence numbers and timestamps are continuous on the wire, RTCP reports flow both ways, BYE
goes out on hangup, and 5 % loss is concealed and reported.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import cast

import numpy as np
import pytest

from callbridge.calls.model import HangupBy, HangupReason
from callbridge.legs.base import DtmfEvent, LegEnd, LegState
from callbridge.media.constants import FRAME_BYTES, SAMPLE_RATE
from callbridge.rtp.leg import RtpLeg, SampleRing
from callbridge.rtp.packet import Bye, RtpPacket, parse_rtcp, parse_rtp, seq_diff, ts_diff
from callbridge.rtp.port_pool import PortPool
from callbridge.rtp.session import LatchPolicy, MediaDirection

HOST = "127.0.0.1"


@dataclass
class Recorder:
    frames: list[bytes] = field(default_factory=list)
    digits: list[DtmfEvent] = field(default_factory=list)
    states: list[tuple[LegState, LegEnd | None]] = field(default_factory=list)

    def on_leg_audio(self, frame: bytes) -> None:
        assert len(frame) == FRAME_BYTES
        self.frames.append(frame)

    def on_leg_dtmf(self, event: DtmfEvent) -> None:
        self.digits.append(event)

    def on_leg_state(self, state: LegState, end: LegEnd | None) -> None:
        self.states.append((state, end))


class Tone:
    """A phase-continuous sine, one 20 ms PCM16 frame per call."""

    def __init__(self, hz: float, amplitude: int = 8000) -> None:
        self.hz = hz
        self.amplitude = amplitude
        self.n = 0

    def __call__(self) -> bytes:
        t = (np.arange(160) + 160 * self.n) / SAMPLE_RATE
        self.n += 1
        return (np.sin(2 * np.pi * self.hz * t) * self.amplitude).astype("<i2").tobytes()


class _RelaySide(asyncio.DatagramProtocol):
    def __init__(self, relay: Relay, rtcp: bool) -> None:
        self.relay = relay
        self.rtcp = rtcp
        self.transport: asyncio.DatagramTransport | None = None
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.relay.forward(self, data, (addr[0], addr[1]))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set_result(None)


class Relay:
    """Forwards RTP and RTCP between legs A and B; drops every ``drop_every``-th A→B RTP packet
    and records the A→B RTP stream as it arrived on the wire."""

    def __init__(self, drop_every: int | None = None) -> None:
        self.drop_every = drop_every
        self.a: tuple[str, int] | None = None
        self.b: tuple[str, int] | None = None
        self.a_to_b: list[RtpPacket] = []
        self.dropped = 0
        self.rtcp_a_to_b: list[bytes] = []
        self.rtcp_b_to_a: list[bytes] = []
        self.sides: list[_RelaySide] = []
        self.port = 0

    async def open(self, pool: PortPool) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(16):
            port = pool.allocate()
            socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
            try:
                socks[0].bind((HOST, port))
                socks[1].bind((HOST, port + 1))
            except OSError:
                for s in socks:
                    s.close()
                continue
            self.port = port
            for sock, rtcp in zip(socks, (False, True), strict=True):
                side = _RelaySide(self, rtcp)
                await loop.create_datagram_endpoint(lambda side=side: side, sock=sock)  # type: ignore[misc]
                self.sides.append(side)
            return
        raise OSError("relay could not bind")

    def forward(self, side: _RelaySide, data: bytes, source: tuple[str, int]) -> None:
        assert self.a is not None and self.b is not None and side.transport is not None
        offset = 1 if side.rtcp else 0
        a = (self.a[0], self.a[1] + offset)
        b = (self.b[0], self.b[1] + offset)
        if source == a:
            if side.rtcp:
                self.rtcp_a_to_b.append(data)
            else:
                self.a_to_b.append(parse_rtp(data))
                if self.drop_every and len(self.a_to_b) % self.drop_every == 0:
                    self.dropped += 1
                    return
            side.transport.sendto(data, b)
        elif source == b:
            if side.rtcp:
                self.rtcp_b_to_a.append(data)
            side.transport.sendto(data, a)

    async def close(self) -> None:
        for side in self.sides:
            assert side.transport is not None
            side.transport.close()
            await side.closed


@dataclass
class Pair:
    a: RtpLeg
    b: RtpLeg
    rec_a: Recorder
    rec_b: Recorder
    relay: Relay
    pool: PortPool


async def open_pair(drop_every: int | None = None, rtcp_interval: float = 5.0) -> Pair:
    base = random.randrange(42000, 58000, 2)
    pool = PortPool(base, base + 99)
    relay = Relay(drop_every)
    await relay.open(pool)
    legs = []
    recs = []
    for name, source in (("a", Tone(1000.0)), ("b", Tone(0.0, amplitude=0))):
        leg = await RtpLeg.open(name, pool=pool, rtcp_interval=rtcp_interval, latch=LatchPolicy.OFF)
        rec = Recorder()
        leg.attach(rec, source)
        leg.set_remote(HOST, relay.port, 0, 101, signalling_host=HOST)
        legs.append(leg)
        recs.append(rec)
    relay.a = legs[0].local_address
    relay.b = legs[1].local_address
    for leg in legs:
        await leg.start()
        leg.answered()
    return Pair(legs[0], legs[1], recs[0], recs[1], relay, pool)


@pytest.fixture
async def pair() -> AsyncIterator[Pair]:
    p = await open_pair(rtcp_interval=0.3)
    try:
        yield p
    finally:
        await close_pair(p)


async def close_pair(p: Pair) -> None:
    await p.a.hangup()
    await p.b.ended(HangupReason.NORMAL, HangupBy.REMOTE)
    await p.relay.close()


def dominant_hz(frames: list[bytes]) -> float:
    pcm = np.frombuffer(b"".join(frames), dtype="<i2").astype(np.float64)
    spectrum = np.abs(np.fft.rfft(pcm * np.hanning(len(pcm))))
    return float(np.fft.rfftfreq(len(pcm), 1 / SAMPLE_RATE)[int(np.argmax(spectrum))])


async def test_tone_crosses_with_continuous_sequence_and_timestamps(pair: Pair) -> None:
    await asyncio.sleep(1.2)
    frames = pair.rec_b.frames
    assert len(frames) >= 40
    audio = frames[10:]  # after the jitter buffer's prefetch
    assert dominant_hz(audio) == pytest.approx(1000.0, abs=10.0)
    rms = float(np.sqrt(np.mean(np.frombuffer(b"".join(audio), "<i2").astype(float) ** 2)))
    assert rms > 4000  # an 8000-peak sine has an RMS of 5657
    # exactly one frame per tick on the far side once media flows
    assert pair.b.frames_delivered == len(frames)
    assert pair.b._pacer.ticks - len(frames) <= 5
    wire = pair.relay.a_to_b
    assert wire[0].marker and not any(p.marker for p in wire[1:])
    assert {p.ssrc for p in wire} == {pair.a.session.ssrc}
    for prev, cur in itertools.pairwise(wire):
        assert seq_diff(cur.sequence, prev.sequence) == 1
        assert ts_diff(cur.timestamp, prev.timestamp) == 160
    st = pair.b.stats
    assert st.packets_lost == 0 and st.packets_received >= len(wire) - 2
    assert pair.a.state is LegState.ANSWERED


async def test_dtmf_one_way_is_received_as_exactly_those_digits(pair: Pair) -> None:
    await asyncio.sleep(0.1)
    before = time.time()
    await pair.a.send_dtmf("123#", duration_ms=80, interval_ms=60)
    sent_at = time.time()
    await asyncio.sleep(0.15)
    digits = pair.rec_b.digits
    assert "".join(d.digit for d in digits) == "123#"
    for d in digits:
        assert before - 0.05 <= d.pressed_at <= d.released_at <= sent_at + 0.1
        assert 0.04 <= d.released_at - d.pressed_at <= 0.16
    for prev, cur in itertools.pairwise(digits):
        assert cur.pressed_at - prev.released_at >= 0.04
    # the wire: four M-bit starts with four distinct timestamps, three end packets each
    events = [p for p in pair.relay.a_to_b if p.payload_type == 101]
    starts = [p for p in events if p.marker]
    assert len(starts) == 4 and len({p.timestamp for p in starts}) == 4
    ends = [p for p in events if p.payload[1] & 0x80]
    assert len(ends) == 12
    assert pair.rec_a.digits == []


async def test_rtcp_reports_both_ways_and_bye_on_hangup(pair: Pair) -> None:
    await asyncio.sleep(0.8)
    assert pair.b.rtcp_received >= 1 and pair.a.rtcp_received >= 1
    # Loopback: milliseconds; a second allows for a CI machine stalled by other work, and still
    # catches unit errors of the LSR/DLSR arithmetic (1/65536 s units).
    assert pair.a.stats.rtt is not None and 0 <= pair.a.stats.rtt < 1.0
    assert pair.a.stats.remote_loss_ratio == 0.0
    available = pair.pool.available
    await pair.a.hangup()
    assert pair.a.state is LegState.ENDED
    assert pair.rec_a.states[-1] == (LegState.ENDED, LegEnd(HangupReason.NORMAL, HangupBy.LOCAL))
    assert pair.pool.available == available + 1  # the port pair went back to the pool
    for _ in range(500):
        if pair.b.bye_received:
            break
        await asyncio.sleep(0.01)
    assert pair.b.bye_received
    last = parse_rtcp(pair.relay.rtcp_a_to_b[-1])
    assert isinstance(last[-1], Bye) and last[-1].ssrcs == (pair.a.session.ssrc,)
    await pair.a.send_dtmf("1")  # an ended leg sends nothing and returns


async def test_concurrent_endings_end_the_leg_once(pair: Pair) -> None:
    """Signalling and a local hangup may end a leg at the same moment: one BYE, one ENDED."""
    await asyncio.sleep(0.1)
    byes_before = len(pair.relay.rtcp_a_to_b)
    await asyncio.gather(
        pair.a.ended(HangupReason.NORMAL, HangupBy.REMOTE),
        pair.a.ended(HangupReason.NORMAL, HangupBy.REMOTE),
        pair.a.hangup(),
    )
    assert pair.a.state is LegState.ENDED
    ended = [s for s, _ in pair.rec_a.states if s is LegState.ENDED]
    assert len(ended) == 1
    assert pair.rec_a.states[-1] == (LegState.ENDED, LegEnd(HangupReason.NORMAL, HangupBy.REMOTE))
    await asyncio.sleep(0.05)
    byes = [p for p in pair.relay.rtcp_a_to_b[byes_before:] if isinstance(parse_rtcp(p)[-1], Bye)]
    assert len(byes) == 1


async def test_leg_errors_and_idempotent_close() -> None:
    base = random.randrange(42000, 58000, 2)
    pool = PortPool(base, base + 9)
    leg = RtpLeg("x", pool=pool)
    assert pool.available == pool.capacity - 1
    with pytest.raises(RuntimeError, match="prepare"):
        leg.answered()
    with pytest.raises(RuntimeError, match="DTMF needs"):
        await leg.send_dtmf("1")
    with pytest.raises(ValueError, match="rtcp_interval"):
        RtpLeg("y", pool=pool, rtcp_interval=0)
    await leg.close()
    await leg.close()
    assert pool.available == pool.capacity
    out = await RtpLeg.open("z", pool=pool, outgoing=True)
    with pytest.raises(RuntimeError, match="far end"):
        await out.answer()
    await out.start()
    assert out.state is LegState.DIALING
    out.ringing()
    await out.ended(HangupReason.BUSY, HangupBy.REMOTE)
    assert out.end == LegEnd(HangupReason.BUSY, HangupBy.REMOTE)
    assert pool.available == pool.capacity


async def test_packet_loss_is_concealed_and_reported() -> None:
    p = await open_pair(drop_every=20, rtcp_interval=0.5)
    try:
        await asyncio.sleep(2.0)
        st = p.b.stats
        assert p.relay.dropped >= 4
        assert abs(st.packets_lost - p.relay.dropped) <= 1
        jstats = p.b.session.jitter.stats
        assert jstats.concealed >= p.relay.dropped - 1
        q = p.b.quality()
        assert 3.0 <= q.loss_percent <= 7.0
        assert q.mos < p.a.quality().mos
        assert p.a.stats.remote_loss_ratio is not None and p.a.stats.remote_loss_ratio > 0
        assert dominant_hz(p.rec_b.frames[10:]) == pytest.approx(1000.0, abs=10.0)
    finally:
        await close_pair(p)


async def test_hold_stops_sending_and_resume_marks_elapsed_time(pair: Pair) -> None:
    await asyncio.sleep(0.2)
    pair.a.set_direction(MediaDirection.RECVONLY)
    held_at = len(pair.relay.a_to_b)
    await asyncio.sleep(0.3)
    assert len(pair.relay.a_to_b) - held_at <= 1
    pair.a.set_direction(MediaDirection.SENDRECV)
    await asyncio.sleep(0.2)
    wire = pair.relay.a_to_b
    resumed = next(i for i in range(held_at, len(wire)) if wire[i].marker)
    gap = ts_diff(wire[resumed].timestamp, wire[resumed - 1].timestamp)
    assert 0.25 * 8000 <= gap <= 0.40 * 8000  # the timestamp reflects the time on hold
    assert seq_diff(wire[resumed].sequence, wire[resumed - 1].sequence) == 1
    pair.a.set_direction(MediaDirection.INACTIVE)
    with pytest.raises(RuntimeError, match="DTMF needs"):
        await pair.a.send_dtmf("1")


async def test_symmetric_rtp_latches_to_the_observed_source() -> None:
    base = random.randrange(42000, 58000, 2)
    pool = PortPool(base, base + 19)
    a = await RtpLeg.open("a", pool=pool, rtcp_interval=0.2)
    b = await RtpLeg.open("b", pool=pool, rtcp_interval=0.2, latch=LatchPolicy.PEER)
    rec_a, rec_b = Recorder(), Recorder()
    a.attach(rec_a, Tone(1000.0))
    b.attach(rec_b, Tone(500.0))
    try:
        a.set_remote(HOST, b.port, 0, 101)
        # b's SDP names a port nobody listens on (a NAT rewrote a's address)
        b.set_remote(HOST, a.port + 50, 0, 101, signalling_host=HOST)
        for leg in (a, b):
            await leg.start()
            leg.answered()
        await asyncio.sleep(0.8)
        assert b.session.remote == a.local_address
        assert a.stats.packets_received > 10
        assert dominant_hz(rec_a.frames[10:]) == pytest.approx(500.0, abs=10.0)
        assert a.rtcp_received >= 1  # RTCP followed the latch to port + 1
    finally:
        await a.hangup()
        await b.hangup()


class FakeSignalling:
    def __init__(self) -> None:
        self.calls: list[str] = []

    async def start(self, leg: RtpLeg) -> None:
        self.calls.append("start")

    async def answer(self, leg: RtpLeg) -> None:
        self.calls.append("answer")

    async def hangup(self, leg: RtpLeg, reason: HangupReason) -> None:
        self.calls.append(f"hangup:{reason}")


async def test_leg_drives_the_signalling_hooks() -> None:
    base = random.randrange(42000, 58000, 2)
    pool = PortPool(base, base + 9)
    sig = FakeSignalling()
    leg = RtpLeg("in", pool=pool, signalling=sig)
    rec = Recorder()
    leg.attach(rec, Tone(0.0))
    await leg.start()
    await leg.answer()
    await leg.answer()
    assert leg.state is LegState.ANSWERED
    await leg.hangup(HangupReason.TIMEOUT)
    await leg.hangup()
    assert sig.calls == ["start", "answer", "hangup:timeout"]
    assert [s for s, _ in rec.states] == [LegState.RINGING, LegState.ANSWERED, LegState.ENDED]


def test_sample_ring_keeps_the_last_samples_in_order() -> None:
    ring = SampleRing(3)
    assert list(ring) == [] and len(ring) == 0
    for x in (1.0, 2.0):
        ring.append(x)
    assert list(ring) == [1.0, 2.0]
    for x in (3.0, 4.0, 5.0):
        ring.append(x)
    assert list(ring) == [3.0, 4.0, 5.0] and len(ring) == 3
    ring.clear()
    assert list(ring) == []
    ring.append(6.0)
    assert list(ring) == [6.0]
    with pytest.raises(ValueError):
        SampleRing(0)
