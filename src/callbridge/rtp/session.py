"""One RTP stream pair (send and receive), sans-I/O: bytes in, events and bytes out.

The session never reads a clock or touches a socket. Its owner (the RTP leg) calls it from
the leg's single 20 ms playout clock and hands it datagrams with their arrival times.

**Send** (RFC 3550 §5.1, RFC 3551 §4.5, spec ``sip.md`` §10). :meth:`RtpSession.frame` is called
with the index *n* of each due frame of the clock (frame *n* is due at ``t0 + n × 20 ms``; the
clock, :class:`~callbridge.legs.pacer.Pacer`, runs at most 3 overdue frames after a late
wake-up and skips older ones). The RTP timestamp of frame *n* is ``ts0 + 160 × (n − n0)``, so
a skipped frame advances the timestamp by 160 and the stream never drifts from the clock.
Sequence numbers advance by one per packet actually sent. ``ts0``, the first sequence
number and the SSRC come from the injected random source. The first packet carries the M bit
(and so does the first packet after a pause in sending, RFC 3551 §4.1). The frame's PCM16 is
G.711-encoded with the negotiated payload type (0 PCMU, 8 PCMA); with nothing queued the
session sends silence (µ-law ``0xFF``, A-law ``0xD5``), so the stream is continuous. RFC 4733
events replace audio frames while they play (:class:`~callbridge.rtp.dtmf.DtmfSender`).

**Receive**. :meth:`RtpSession.receive` parses a datagram, checks its source (symmetric RTP,
RFC 4961, with optional latching, see :class:`LatchPolicy`), tracks the source's sequence
numbers and interarrival jitter for RTCP (RFC 3550 §A.1, §A.3, §A.8; a new SSRC resets them,
§8.2), then routes by payload type: PCMU/PCMA are decoded into the jitter buffer, the
negotiated telephone-event type goes to the DTMF receiver, anything else is counted and dropped.

**RTCP** (RFC 3550 §6): :meth:`rtcp_report` builds SR (while sending) or RR plus SDES CNAME;
:meth:`rtcp_bye` adds a BYE; :meth:`receive_rtcp` reads the peer's report blocks about our
stream (loss, jitter, round-trip time from LSR/DLSR, §6.4.1) and its BYE.

:meth:`quality` summarises the call with an E-model estimate (see ``docs/decisions/030``).
"""

from __future__ import annotations

import enum
import random
import struct
from collections import deque
from dataclasses import dataclass, field
from typing import Final

from callbridge.legs.base import DtmfEvent
from callbridge.media.constants import FRAME_BYTES, SAMPLE_RATE, SAMPLES_PER_FRAME
from callbridge.media.g711 import (
    ALAW_SILENCE,
    ULAW_SILENCE,
    alaw_decode,
    alaw_encode,
    ulaw_decode,
    ulaw_encode,
)
from callbridge.media.jitter import JitterBuffer, JitterOutput
from callbridge.rtp.dtmf import DtmfReceiver, DtmfSender
from callbridge.rtp.packet import (
    RTP_HEADER_SIZE,
    SEQ_MOD,
    TS_MOD,
    Bye,
    ReceiverReport,
    ReportBlock,
    RtpParseError,
    SenderReport,
    build_bye,
    build_rr,
    build_sdes,
    build_sr,
    ntp_from_unix,
    ntp_middle32,
    pack_rtp,
    parse_rtcp,
    parse_rtp,
)

__all__ = [
    "DEFAULT_DTMF_PT",
    "PT_PCMA",
    "PT_PCMU",
    "Address",
    "ByeReceived",
    "DtmfReceived",
    "LatchPolicy",
    "Latched",
    "MediaDirection",
    "Quality",
    "RemoteReport",
    "RtpEvent",
    "RtpSession",
    "RtpStats",
    "SourceChanged",
    "e_model_mos",
]

PT_PCMU: Final = 0
PT_PCMA: Final = 8
PT_CN: Final = 13
DEFAULT_DTMF_PT: Final = 101
_AUDIO_PTS: Final = frozenset({PT_PCMU, PT_PCMA})
_ULAW_SILENCE_FRAME: Final = bytes([ULAW_SILENCE]) * SAMPLES_PER_FRAME
_ALAW_SILENCE_FRAME: Final = bytes([ALAW_SILENCE]) * SAMPLES_PER_FRAME
_SILENCE_PCM: Final = bytes(FRAME_BYTES)
#: First octet of an RTP packet without padding, extension or CSRCs (version 2).
_PLAIN_FIRST_OCTET: Final = 0x80
_FIXED_HEADER: Final = struct.Struct("!BBHII")
_HALF_SEQ: Final = SEQ_MOD // 2
_HALF_TS: Final = TS_MOD // 2
#: Outbound audio the session queues itself (when the caller passes no frame), in frames.
MAX_QUEUED_FRAMES: Final = 60 * 50
#: Largest datagram accepted (an Ethernet MTU; 60 ms of G.711 is 492 bytes).
MAX_DATAGRAM: Final = 1500
#: Round-trip times above this are treated as bogus LSR/DLSR arithmetic and ignored (s).
_MAX_RTT: Final = 10.0

Address = tuple[str, int]


class LatchPolicy(enum.StrEnum):
    """When the session may re-target its sending to the observed source of incoming RTP."""

    #: Never: accept and answer only the address from SDP.
    OFF = "off"
    #: Only when the packet comes from the signalling peer's host (NAT keeps the host).
    PEER = "peer"
    #: From any source (configuration for peers behind address-rewriting NATs).
    ANY = "any"


class MediaDirection(enum.StrEnum):
    """Our side's SDP direction (RFC 3264 §5.1): whether we send and/or receive."""

    SENDRECV = "sendrecv"
    SENDONLY = "sendonly"
    RECVONLY = "recvonly"
    INACTIVE = "inactive"

    @property
    def sends(self) -> bool:
        return self in (MediaDirection.SENDRECV, MediaDirection.SENDONLY)

    @property
    def receives(self) -> bool:
        return self in (MediaDirection.SENDRECV, MediaDirection.RECVONLY)


# -- events -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DtmfReceived:
    event: DtmfEvent


@dataclass(frozen=True, slots=True)
class Latched:
    """Sending now goes to ``address`` (the observed source of the peer's RTP)."""

    address: Address


@dataclass(frozen=True, slots=True)
class SourceChanged:
    """The peer's SSRC changed (``old`` is ``None`` for the first packet)."""

    old: int | None
    new: int


@dataclass(frozen=True, slots=True)
class ByeReceived:
    ssrcs: tuple[int, ...]
    reason: str


@dataclass(frozen=True, slots=True)
class RemoteReport:
    """The peer's view of our stream, from an SR/RR report block."""

    loss_ratio: float
    cumulative_lost: int
    jitter_ms: float
    rtt: float | None


RtpEvent = DtmfReceived | Latched | SourceChanged | ByeReceived | RemoteReport


@dataclass(frozen=True, slots=True)
class RtpStats:
    """Counters of one session (receive counters restart when the peer's SSRC changes)."""

    packets_sent: int
    octets_sent: int
    dtmf_packets_sent: int
    packets_received: int
    octets_received: int
    packets_expected: int
    packets_lost: int
    jitter_ms: float
    malformed: int
    rejected_source: int
    unknown_payload: int
    late: int
    concealed: int
    remote_loss_ratio: float | None
    rtt: float | None


@dataclass(frozen=True, slots=True)
class Quality:
    """Call quality summary: receive loss and jitter, estimated one-way delay, R and MOS."""

    loss_percent: float
    jitter_ms: float
    delay_ms: float
    r_factor: float
    mos: float


#: E-model constants (ITU-T G.107 defaults; G.113 Appendix I for G.711 with concealment).
_R0: Final = 93.2
_BPL_G711_PLC: Final = 25.1


def e_model_mos(loss_percent: float, delay_ms: float) -> tuple[float, float]:
    """``(R, MOS)`` from the simplified E-model (ITU-T G.107; Cole & Rosenbluth, 2001).

    ``R = 93.2 − Id − Ie_eff`` with ``Id = 0.024 d + 0.11 (d − 177.3) H(d − 177.3)`` (one-way
    delay *d* in ms) and ``Ie_eff = 95 × P / (P + 25.1)`` (G.711, Ie = 0, random loss *P* in %);
    ``MOS = 1 + 0.035 R + 7·10⁻⁶ R (R − 60)(100 − R)``, 1 for R ≤ 0 (R never exceeds 93.2
    here, so the G.107 cap of 4.5 for R ≥ 100 cannot apply).
    """
    d = max(0.0, delay_ms)
    p = min(max(loss_percent, 0.0), 100.0)
    i_d = 0.024 * d + (0.11 * (d - 177.3) if d > 177.3 else 0.0)
    ie_eff = 95.0 * p / (p + _BPL_G711_PLC)
    r = _R0 - i_d - ie_eff
    if r <= 0:
        return r, 1.0
    return r, 1 + 0.035 * r + 7e-6 * r * (r - 60) * (100 - r)


# -- receive statistics (RFC 3550 §A.1, §A.3, §A.8) -----------------------------------------


@dataclass(slots=True)
class _SourceStats:
    ssrc: int
    base_seq: int
    max_seq: int
    cycles: int = 0
    received: int = 0
    octets: int = 0
    jitter: float = 0.0  # timestamp units
    last_arrival: float | None = None
    last_ts: int = 0
    expected_prior: int = 0
    received_prior: int = 0
    last_sr_middle: int = 0
    last_sr_wall: float = 0.0

    def update_seq(self, seq: int) -> None:
        # seq_diff(seq, max_seq) > 0, inline (runs for every packet).
        if 0 < (seq - self.max_seq) % SEQ_MOD < _HALF_SEQ:
            if seq < self.max_seq:
                self.cycles += SEQ_MOD
            self.max_seq = seq

    @property
    def extended_max(self) -> int:
        return self.cycles + self.max_seq

    @property
    def expected(self) -> int:
        return self.extended_max - self.base_seq + 1

    @property
    def lost(self) -> int:
        return self.expected - self.received

    def update_jitter(self, timestamp: int, arrival: float) -> None:
        if self.last_arrival is not None:
            # ts_diff(timestamp, last_ts), inline (runs for every packet).
            step = (timestamp - self.last_ts) % TS_MOD
            if step >= _HALF_TS:
                step -= TS_MOD
            d = (arrival - self.last_arrival) * SAMPLE_RATE - step
            self.jitter += (abs(d) - self.jitter) / 16
        self.last_arrival = arrival
        self.last_ts = timestamp

    def report_block(self, wall: float) -> ReportBlock:
        expected = self.expected
        exp_int = expected - self.expected_prior
        rec_int = self.received - self.received_prior
        self.expected_prior = expected
        self.received_prior = self.received
        lost_int = exp_int - rec_int
        fraction = (lost_int << 8) // exp_int if exp_int > 0 and lost_int > 0 else 0
        dlsr = int((wall - self.last_sr_wall) * 65536) if self.last_sr_middle else 0
        return ReportBlock(
            ssrc=self.ssrc,
            fraction_lost=min(fraction, 255),
            cumulative_lost=self.lost,
            highest_seq=self.extended_max & 0xFFFFFFFF,
            jitter=int(self.jitter),
            lsr=self.last_sr_middle,
            dlsr=max(0, dlsr),
        )


# -- the session --------------------------------------------------------------------------------


@dataclass(slots=True)
class _SendState:
    first_frame: int | None = None
    marker_next: bool = True
    packets: int = 0
    octets: int = 0
    dtmf_packets: int = 0
    last_ts: int = 0
    last_send_time: float | None = None
    queue: deque[bytes] = field(default_factory=deque)
    partial: bytearray = field(default_factory=bytearray)


class RtpSession:
    """Sans-I/O state of one RTP session (see the module docstring)."""

    def __init__(
        self,
        *,
        rng: random.Random,
        payload_type: int = PT_PCMU,
        dtmf_payload_type: int | None = DEFAULT_DTMF_PT,
        latch: LatchPolicy = LatchPolicy.PEER,
        cname: str = "callbridge",
        jitter_min_ms: int = 40,
        jitter_max_ms: int = 200,
    ) -> None:
        self._check_pts(payload_type, dtmf_payload_type)
        self.ssrc = rng.getrandbits(32)
        self._seq = rng.getrandbits(16)
        self._ts0 = rng.getrandbits(32)
        self.payload_type = payload_type
        self.dtmf_payload_type = dtmf_payload_type
        self.latch = latch
        self.cname = cname
        self.direction = MediaDirection.SENDRECV
        self._receives = True  # self.direction.receives, read for every packet
        self._sends = True  # self.direction.sends, read for every frame
        self._remote: Address | None = None
        self._send_to: Address | None = None
        self._signalling_host: str | None = None
        self._latched_ssrc: int | None = None
        self._send = _SendState()
        self.dtmf_sender = DtmfSender()
        self.dtmf_receiver = DtmfReceiver()
        self.jitter = JitterBuffer(min_depth_ms=jitter_min_ms, max_depth_ms=jitter_max_ms)
        self._source: _SourceStats | None = None
        self._flowing = False
        self._tail: deque[bytes] = deque()
        self._malformed = 0
        self._rejected = 0
        self._unknown_pt = 0
        self._remote_report: RemoteReport | None = None
        self._sr_sent: dict[int, float] = {}

    @staticmethod
    def _check_pts(payload_type: int, dtmf_payload_type: int | None) -> None:
        if payload_type not in _AUDIO_PTS:
            raise ValueError(f"audio payload type must be 0 (PCMU) or 8 (PCMA), got {payload_type}")
        if dtmf_payload_type is not None and not 96 <= dtmf_payload_type <= 127:
            raise ValueError(
                f"telephone-event payload type must be 96-127, got {dtmf_payload_type}"
            )

    # -- configuration ------------------------------------------------------------------------
    def set_remote(
        self,
        address: Address,
        *,
        payload_type: int | None = None,
        dtmf_payload_type: int | None = None,
        signalling_host: str | None = None,
    ) -> None:
        """Where to send (from SDP), the negotiated payload types and the signalling peer."""
        pt = self.payload_type if payload_type is None else payload_type
        self._check_pts(pt, dtmf_payload_type)
        if not 0 < address[1] < 65536:
            raise ValueError(f"invalid RTP port {address[1]}")
        self.payload_type = pt
        self.dtmf_payload_type = dtmf_payload_type
        self._remote = address
        self._send_to = address
        self._latched_ssrc = None
        if signalling_host is not None:
            self._signalling_host = signalling_host

    @property
    def remote(self) -> Address | None:
        """Current destination of our RTP (the SDP address, or the latched source)."""
        return self._send_to

    def set_direction(self, direction: MediaDirection) -> None:
        """Hold/unhold: a direction that stops sending makes the next packet carry the M bit."""
        if not direction.sends:
            self._send.marker_next = True
        self.direction = direction
        self._receives = direction.receives
        self._sends = direction.sends

    # -- sending ------------------------------------------------------------------------------
    def enqueue(self, pcm: bytes) -> None:
        """Queue PCM16 audio to send when :meth:`frame` is called without a frame."""
        send = self._send
        send.partial += pcm
        while len(send.partial) >= FRAME_BYTES:
            if len(send.queue) >= MAX_QUEUED_FRAMES:
                raise ValueError("outbound RTP queue full (60 s of audio)")
            send.queue.append(bytes(send.partial[:FRAME_BYTES]))
            del send.partial[:FRAME_BYTES]

    def clear(self) -> int:
        """Drop queued outbound audio at once; returns the PCM16 bytes dropped."""
        send = self._send
        dropped = len(send.queue) * FRAME_BYTES + len(send.partial)
        send.queue.clear()
        send.partial.clear()
        return dropped

    @property
    def sending(self) -> bool:
        return self._sends and self._send_to is not None

    def send_dtmf(self, digits: str, *, duration_ms: int = 100, interval_ms: int = 100) -> int:
        """Queue RFC 4733 key presses; returns a ticket for :meth:`dtmf_done`."""
        if self.dtmf_payload_type is None:
            raise ValueError("the peer did not negotiate telephone-event: cannot send DTMF")
        return self.dtmf_sender.queue(digits, duration_ms=duration_ms, interval_ms=interval_ms)

    def dtmf_done(self, ticket: int) -> bool:
        return self.dtmf_sender.completed >= ticket

    def timestamp_for(self, n: int) -> int:
        """RTP timestamp of frame ``n`` (the first frame seen is the stream's origin)."""
        first = self._send.first_frame
        if first is None:
            first = self._send.first_frame = n
        return (self._ts0 + SAMPLES_PER_FRAME * (n - first)) % TS_MOD

    def frame(self, n: int, pcm: bytes | None = None, *, now: float = 0.0) -> bytes | None:
        """The datagram for frame ``n`` of the clock, or ``None`` when nothing is sent.

        ``pcm`` is the frame's PCM16 (``FRAME_BYTES``); ``None`` takes the next queued frame
        or silence. ``now`` (monotonic) dates the frame for the RTCP SR timestamp.
        """
        send = self._send
        ts = self.timestamp_for(n)
        if pcm is None:
            pcm = send.queue.popleft() if send.queue else _SILENCE_PCM
        elif len(pcm) != FRAME_BYTES:
            raise ValueError(f"an outbound frame is {FRAME_BYTES} bytes, got {len(pcm)}")
        if not self._sends or self._send_to is None:  # not self.sending, inline
            send.marker_next = True
            return None
        send.last_ts = ts
        send.last_send_time = now
        ev = self.dtmf_sender.on_frame(n, ts) if self.dtmf_payload_type is not None else None
        if ev is not None:
            assert self.dtmf_payload_type is not None
            data = pack_rtp(
                self.dtmf_payload_type,
                self._seq,
                ev.timestamp,
                self.ssrc,
                ev.payload,
                ev.marker or send.marker_next,
            )
            send.dtmf_packets += 1
            payload_len = len(ev.payload)
        else:
            if self.payload_type == PT_PCMU:
                payload = _ULAW_SILENCE_FRAME if pcm == _SILENCE_PCM else ulaw_encode(pcm)
            else:
                payload = _ALAW_SILENCE_FRAME if pcm == _SILENCE_PCM else alaw_encode(pcm)
            data = pack_rtp(self.payload_type, self._seq, ts, self.ssrc, payload, send.marker_next)
            payload_len = len(payload)
        send.marker_next = False
        self._seq = (self._seq + 1) % SEQ_MOD
        send.packets += 1
        send.octets += payload_len
        return data

    # -- receiving ----------------------------------------------------------------------------
    def receive(self, data: bytes, source: Address, *, now: float, wall: float) -> list[RtpEvent]:
        """One datagram from the RTP socket; ``now`` monotonic and ``wall`` epoch seconds."""
        size = len(data)
        if size > MAX_DATAGRAM:
            self._malformed += 1
            return []
        if size >= RTP_HEADER_SIZE and data[0] == _PLAIN_FIRST_OCTET:
            # The usual packet (version 2, no padding, extension or CSRC): read the fixed
            # header in place instead of building an RtpPacket for every datagram.
            _, second, sequence, timestamp, ssrc = _FIXED_HEADER.unpack_from(data)
            payload = data[RTP_HEADER_SIZE:]
        else:
            try:
                pkt = parse_rtp(data)
            except RtpParseError:
                self._malformed += 1
                return []
            second = pkt.payload_type
            sequence, timestamp, ssrc, payload = pkt.sequence, pkt.timestamp, pkt.ssrc, pkt.payload
        events: list[RtpEvent] = []
        if not self._accept_source(source, ssrc, events):
            self._rejected += 1
            return events
        src = self._source
        if src is None or src.ssrc != ssrc:
            events.append(SourceChanged(None if src is None else src.ssrc, ssrc))
            src = self._source = _SourceStats(ssrc, sequence, sequence)
        else:
            src.update_seq(sequence)
        src.received += 1
        src.octets += len(payload)
        pt = second & 0x7F
        if pt in _AUDIO_PTS:
            src.update_jitter(timestamp, now)
            if not self._receives:
                return events
            pcm = ulaw_decode(payload) if pt == PT_PCMU else alaw_decode(payload)
            self.jitter.push(sequence, timestamp, pcm, ssrc=ssrc, arrival=now)
            self._flowing = True
            if self._tail:
                self._tail.clear()
        elif pt == self.dtmf_payload_type and self.dtmf_payload_type is not None:
            for ev in self.dtmf_receiver.receive(
                payload, ssrc=ssrc, timestamp=timestamp, arrival=now, wall=wall
            ):
                events.append(DtmfReceived(ev))
        elif pt != PT_CN:
            self._unknown_pt += 1
        return events

    def _accept_source(self, source: Address, ssrc: int, events: list[RtpEvent]) -> bool:
        """Symmetric RTP (RFC 4961) with the latching rules of ``sip.md`` §10."""
        if source == self._remote or (source == self._send_to and ssrc == self._latched_ssrc):
            return True
        allowed = self.latch is LatchPolicy.ANY or (
            self.latch is LatchPolicy.PEER and source[0] == self._signalling_host
        )
        if not allowed or ssrc == self._latched_ssrc:
            return False  # one latch per source: a second address for the same SSRC is refused
        self._send_to = source
        self._latched_ssrc = ssrc
        events.append(Latched(source))
        return True

    def poll(self, now: float) -> list[RtpEvent]:
        """Timers: ends a DTMF event whose end packet was lost (200 ms of silence)."""
        ended = self.dtmf_receiver.poll(now)  # called every tick: no comprehension when idle
        return [DtmfReceived(ev) for ev in ended] if ended else []

    @property
    def flowing(self) -> bool:
        """True once audio has arrived (until :meth:`end_of_stream` has drained the tail)."""
        return self._flowing

    def pop_frame(self) -> JitterOutput | None:
        """This tick's inbound frame, or ``None`` when no media is flowing."""
        if self._tail:
            pcm = self._tail.popleft()
            if not self._tail:
                self._flowing = False
            return JitterOutput(pcm, "audio")
        if not self._flowing:
            return None
        return self.jitter.pop()

    def end_of_stream(self) -> list[RtpEvent]:
        """The peer's stream ended: buffered audio drains through :meth:`pop_frame`, an
        unfinished DTMF event is reported."""
        self._tail.extend(self.jitter.flush())
        if not self._tail:
            self._flowing = False
        return [DtmfReceived(ev) for ev in self.dtmf_receiver.flush()]

    # -- RTCP ---------------------------------------------------------------------------------
    def rtcp_report(self, *, now: float, wall: float) -> bytes:
        """Compound SR (after we sent something) or RR, plus SDES CNAME (RFC 3550 §6.1)."""
        blocks = (self._source.report_block(wall),) if self._source is not None else ()
        send = self._send
        if send.packets and send.last_send_time is not None:
            ntp = ntp_from_unix(wall)
            elapsed = int(max(0.0, now - send.last_send_time) * SAMPLE_RATE)
            sr = SenderReport(
                self.ssrc,
                ntp,
                (send.last_ts + elapsed) % TS_MOD,
                send.packets,
                send.octets,
                blocks,
            )
            self._sr_sent[ntp_middle32(ntp)] = wall
            while len(self._sr_sent) > 8:
                del self._sr_sent[next(iter(self._sr_sent))]
            head = build_sr(sr)
        else:
            head = build_rr(ReceiverReport(self.ssrc, blocks))
        return head + build_sdes(self.ssrc, self.cname)

    def rtcp_bye(self, *, now: float, wall: float, reason: str = "") -> bytes:
        """Compound report + SDES + BYE for our SSRC (RFC 3550 §6.6)."""
        return self.rtcp_report(now=now, wall=wall) + build_bye((self.ssrc,), reason)

    def receive_rtcp(self, data: bytes, source: Address, *, wall: float) -> list[RtpEvent]:
        """A datagram from the RTCP socket. Malformed ones are counted and ignored."""
        if (
            self._remote is not None
            and source[0] != self._remote[0]
            and (self._send_to is None or source[0] != self._send_to[0])
        ):
            self._rejected += 1
            return []
        try:
            if len(data) > MAX_DATAGRAM:
                raise ValueError("RTCP datagram too large")
            packets = parse_rtcp(data)
        except ValueError:
            self._malformed += 1
            return []
        events: list[RtpEvent] = []
        for pkt in packets:
            if isinstance(pkt, Bye):
                events.append(ByeReceived(pkt.ssrcs, pkt.reason))
                continue
            src = self._source
            if isinstance(pkt, SenderReport) and src is not None and pkt.ssrc == src.ssrc:
                src.last_sr_middle = ntp_middle32(pkt.ntp_timestamp)
                src.last_sr_wall = wall
            for block in pkt.reports:
                if block.ssrc == self.ssrc:
                    events.append(self._remote_block(block, wall))
        return events

    def _remote_block(self, block: ReportBlock, wall: float) -> RemoteReport:
        rtt: float | None = None
        if block.lsr and block.lsr in self._sr_sent:
            arrival = ntp_middle32(ntp_from_unix(wall))
            value = ((arrival - block.lsr - block.dlsr) % (1 << 32)) / 65536
            rtt = value if value <= _MAX_RTT else None
        report = RemoteReport(
            block.loss_ratio,
            block.cumulative_lost,
            block.jitter * 1000 / SAMPLE_RATE,
            rtt if rtt is not None else (self._remote_report.rtt if self._remote_report else None),
        )
        self._remote_report = report
        return report

    # -- statistics ---------------------------------------------------------------------------
    @property
    def stats(self) -> RtpStats:
        src = self._source
        jstats = self.jitter.stats
        remote = self._remote_report
        return RtpStats(
            packets_sent=self._send.packets,
            octets_sent=self._send.octets,
            dtmf_packets_sent=self._send.dtmf_packets,
            packets_received=src.received if src else 0,
            octets_received=src.octets if src else 0,
            packets_expected=src.expected if src else 0,
            packets_lost=max(0, src.lost) if src else 0,
            jitter_ms=src.jitter * 1000 / SAMPLE_RATE if src else 0.0,
            malformed=self._malformed,
            rejected_source=self._rejected,
            unknown_payload=self._unknown_pt,
            late=jstats.late,
            concealed=jstats.concealed,
            remote_loss_ratio=remote.loss_ratio if remote else None,
            rtt=remote.rtt if remote else None,
        )

    def quality(self) -> Quality:
        """Receive loss and jitter, estimated one-way delay and the E-model R/MOS.

        Delay = half the RTCP round trip (0 while unknown) + jitter-buffer target + one
        20 ms packet time.
        """
        st = self.stats
        loss = 100.0 * st.packets_lost / st.packets_expected if st.packets_expected else 0.0
        delay = (st.rtt or 0.0) * 500 + self.jitter.target_ms + 20
        r, mos = e_model_mos(loss, delay)
        return Quality(
            round(loss, 3), round(st.jitter_ms, 3), round(delay, 1), round(r, 1), round(mos, 2)
        )
