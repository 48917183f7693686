"""RTP and minimal RTCP packets (RFC 3550), sans-I/O.

RTP fixed header, RFC 3550 §5.1::

     0                   1                   2                   3
    |V=2|P|X|  CC   |M|     PT      |       sequence number         |
    |                           timestamp                           |
    |           synchronization source (SSRC) identifier            |
    |            contributing source (CSRC) identifiers  (CC × 32)  |
    | header extension (§5.3.1, when X): profile(16) length(16) ... |

:func:`parse_rtp` validates every field it reads and raises :class:`RtpParseError` (a
``ValueError``) naming the defect, never ``IndexError`` or ``struct.error``.

Sequence numbers are 16 bits and timestamps 32 bits; both wrap. :func:`seq_diff` and
:func:`ts_diff` return the signed distance taking the nearer way round the number circle
(RFC 3550 §A.1 uses the same idea to extend sequence numbers), and :func:`seq_newer` /
:func:`ts_newer` compare with it.

RTCP (RFC 3550 §6): builders for the sender report (§6.4.1), the receiver report (§6.4.2),
SDES with a CNAME item (§6.5.1, required in every compound packet by §6.1) and BYE (§6.6), and
a compound parser that returns SR/RR with their report blocks and BYE, skipping other types.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

__all__ = [
    "RTCP_BYE",
    "RTCP_RR",
    "RTCP_SDES",
    "RTCP_SR",
    "Bye",
    "ReceiverReport",
    "ReportBlock",
    "RtcpPacket",
    "RtcpParseError",
    "RtpExtension",
    "RtpPacket",
    "RtpParseError",
    "SenderReport",
    "build_bye",
    "build_rr",
    "build_sdes",
    "build_sr",
    "ntp_from_unix",
    "ntp_middle32",
    "pack_rtp",
    "parse_rtcp",
    "parse_rtp",
    "seq_diff",
    "seq_newer",
    "ts_diff",
    "ts_newer",
]

RTP_VERSION: Final = 2
RTP_HEADER_SIZE: Final = 12
SEQ_MOD: Final = 1 << 16
TS_MOD: Final = 1 << 32

RTCP_SR: Final = 200
RTCP_RR: Final = 201
RTCP_SDES: Final = 202
RTCP_BYE: Final = 203
_SDES_CNAME: Final = 1
#: Seconds from the NTP epoch (1900) to the Unix epoch (1970), RFC 3550 §4.
_NTP_UNIX_OFFSET: Final = 2_208_988_800
_MAX_REPORT_BLOCKS: Final = 31

_HEADER = struct.Struct("!BBHII")
_RTCP_HEADER = struct.Struct("!BBH")
_SR_BODY = struct.Struct("!IIIIII")  # SSRC, NTP msw, NTP lsw, RTP ts, packets, octets
_REPORT_BLOCK = struct.Struct("!IIIIII")  # SSRC, lost word, ext. highest seq, jitter, LSR, DLSR


class RtpParseError(ValueError):
    """A datagram is not a valid RTP packet."""


class RtcpParseError(ValueError):
    """A datagram is not a valid RTCP compound packet."""


# -- wrap-aware comparison ------------------------------------------------------------------


def _signed_diff(a: int, b: int, modulus: int) -> int:
    delta = (a - b) % modulus
    return delta - modulus if delta >= modulus // 2 else delta


def seq_diff(a: int, b: int) -> int:
    """Signed distance ``a - b`` between 16-bit sequence numbers (``seq_diff(0, 65535) == 1``)."""
    return _signed_diff(a, b, SEQ_MOD)


def seq_newer(a: int, b: int) -> bool:
    """True when sequence number ``a`` comes after ``b`` (wrap-aware)."""
    return seq_diff(a, b) > 0


def ts_diff(a: int, b: int) -> int:
    """Signed distance ``a - b`` between 32-bit RTP timestamps (wrap-aware)."""
    return _signed_diff(a, b, TS_MOD)


def ts_newer(a: int, b: int) -> bool:
    """True when timestamp ``a`` is later than ``b`` (wrap-aware)."""
    return ts_diff(a, b) > 0


# -- RTP ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RtpExtension:
    """A header extension (RFC 3550 §5.3.1): 16-bit profile word and 32-bit-word data."""

    profile: int
    data: bytes = b""


@dataclass(frozen=True, slots=True)
class RtpPacket:
    """One RTP packet. ``padding`` is the number of padding octets (0 when the P bit is clear)."""

    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes = b""
    marker: bool = False
    csrcs: tuple[int, ...] = ()
    extension: RtpExtension | None = None
    padding: int = 0

    def serialize(self) -> bytes:
        """The packet on the wire; raises ``ValueError`` for out-of-range fields."""
        if not 0 <= self.payload_type < 128:
            raise ValueError(f"payload type must be 0-127, got {self.payload_type}")
        if not 0 <= self.sequence < SEQ_MOD:
            raise ValueError(f"sequence number must be 0-65535, got {self.sequence}")
        if not 0 <= self.timestamp < TS_MOD or not 0 <= self.ssrc < TS_MOD:
            raise ValueError("timestamp and SSRC must be 32-bit unsigned values")
        if len(self.csrcs) > 15:
            raise ValueError(f"at most 15 CSRCs fit the CC field, got {len(self.csrcs)}")
        if not 0 <= self.padding < 256:
            raise ValueError(f"padding must be 0-255 octets, got {self.padding}")
        first = RTP_VERSION << 6 | len(self.csrcs)
        if self.padding:
            first |= 0x20
        parts = [
            _HEADER.pack(
                first | (0x10 if self.extension else 0),
                self.payload_type | (0x80 if self.marker else 0),
                self.sequence,
                self.timestamp,
                self.ssrc,
            )
        ]
        parts.extend(struct.pack("!I", c) for c in self.csrcs)
        if self.extension is not None:
            ext = self.extension
            if len(ext.data) % 4:
                raise ValueError("header extension data must be a whole number of 32-bit words")
            if not 0 <= ext.profile < SEQ_MOD or len(ext.data) // 4 >= SEQ_MOD:
                raise ValueError("header extension profile or length out of range")
            parts.append(struct.pack("!HH", ext.profile, len(ext.data) // 4) + ext.data)
        parts.append(self.payload)
        if self.padding:
            parts.append(bytes(self.padding - 1) + bytes([self.padding]))
        return b"".join(parts)


def pack_rtp(
    payload_type: int, sequence: int, timestamp: int, ssrc: int, payload: bytes, marker: bool
) -> bytes:
    """Fast path for the sender: a 12-byte header (no CSRC, extension or padding) + payload.

    Fields are not range-checked; the session keeps them in range by construction.
    """
    return (
        _HEADER.pack(0x80, payload_type | (0x80 if marker else 0), sequence, timestamp, ssrc)
        + payload
    )


def parse_rtp(data: bytes) -> RtpPacket:
    """Parse one RTP datagram (RFC 3550 §5.1, §5.3.1); raise :class:`RtpParseError` if invalid."""
    size = len(data)
    if size < RTP_HEADER_SIZE:
        raise RtpParseError(f"RTP packet of {size} bytes is shorter than the 12-byte header")
    first, second, seq, ts, ssrc = _HEADER.unpack_from(data)
    version = first >> 6
    if version != RTP_VERSION:
        raise RtpParseError(f"RTP version {version}, expected 2")
    cc = first & 0x0F
    offset = RTP_HEADER_SIZE + 4 * cc
    if size < offset:
        raise RtpParseError(f"CSRC count {cc} needs {offset} bytes, packet has {size}")
    csrcs = struct.unpack_from(f"!{cc}I", data, RTP_HEADER_SIZE) if cc else ()
    extension = None
    if first & 0x10:
        if size < offset + 4:
            raise RtpParseError("extension bit set but the extension header is missing")
        profile, words = struct.unpack_from("!HH", data, offset)
        end = offset + 4 + 4 * words
        if size < end:
            raise RtpParseError(f"header extension of {words} words runs past the packet end")
        extension = RtpExtension(profile, bytes(data[offset + 4 : end]))
        offset = end
    padding = 0
    end = size
    if first & 0x20:
        padding = data[-1]
        if padding == 0 or offset + padding > size:
            raise RtpParseError(f"invalid padding length {padding}")
        end = size - padding
    return RtpPacket(
        payload_type=second & 0x7F,
        sequence=seq,
        timestamp=ts,
        ssrc=ssrc,
        payload=bytes(data[offset:end]),
        marker=bool(second & 0x80),
        csrcs=tuple(csrcs),
        extension=extension,
        padding=padding,
    )


# -- RTCP ---------------------------------------------------------------------------------------


def ntp_from_unix(unix_seconds: float) -> int:
    """64-bit NTP timestamp (RFC 3550 §4: seconds since 1900 in 32.32 fixed point)."""
    return round((unix_seconds + _NTP_UNIX_OFFSET) * (1 << 32)) & ((1 << 64) - 1)


def ntp_middle32(ntp: int) -> int:
    """The middle 32 bits of an NTP timestamp: the LSR / DLSR time base (1/65536 s)."""
    return (ntp >> 16) & 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class ReportBlock:
    """A reception report block (RFC 3550 §6.4.1).

    ``fraction_lost`` is the 8-bit fixed-point fraction (lost/expected × 256) since the
    previous report; ``cumulative_lost`` is signed (duplicates can make it negative);
    ``jitter`` is in timestamp units; ``lsr``/``dlsr`` in 1/65536 s.
    """

    ssrc: int
    fraction_lost: int
    cumulative_lost: int
    highest_seq: int
    jitter: int
    lsr: int = 0
    dlsr: int = 0

    @property
    def loss_ratio(self) -> float:
        """``fraction_lost`` as a ratio in ``[0, 1)``."""
        return self.fraction_lost / 256

    def pack(self) -> bytes:
        lost = max(-(1 << 23), min((1 << 23) - 1, self.cumulative_lost)) & 0xFFFFFF
        return _REPORT_BLOCK.pack(
            self.ssrc,
            (min(max(self.fraction_lost, 0), 255) << 24) | lost,
            self.highest_seq & 0xFFFFFFFF,
            min(max(self.jitter, 0), 0xFFFFFFFF),
            self.lsr & 0xFFFFFFFF,
            self.dlsr & 0xFFFFFFFF,
        )

    @classmethod
    def unpack(cls, data: bytes, offset: int) -> ReportBlock:
        ssrc, lost_word, highest, jitter, lsr, dlsr = _REPORT_BLOCK.unpack_from(data, offset)
        cumulative = lost_word & 0xFFFFFF
        if cumulative & 0x800000:
            cumulative -= 1 << 24
        return cls(ssrc, lost_word >> 24, cumulative, highest, jitter, lsr, dlsr)


@dataclass(frozen=True, slots=True)
class SenderReport:
    """RTCP SR (RFC 3550 §6.4.1)."""

    ssrc: int
    ntp_timestamp: int
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: tuple[ReportBlock, ...] = ()


@dataclass(frozen=True, slots=True)
class ReceiverReport:
    """RTCP RR (RFC 3550 §6.4.2)."""

    ssrc: int
    reports: tuple[ReportBlock, ...] = ()


@dataclass(frozen=True, slots=True)
class Bye:
    """RTCP BYE (RFC 3550 §6.6): the sources leaving and an optional reason."""

    ssrcs: tuple[int, ...]
    reason: str = ""


RtcpPacket = SenderReport | ReceiverReport | Bye


def _rtcp_header(count: int, packet_type: int, body_len: int) -> bytes:
    # length field: size in 32-bit words minus one (RFC 3550 §6.4.1)
    return _RTCP_HEADER.pack(RTP_VERSION << 6 | count, packet_type, (body_len + 4) // 4 - 1)


def _check_blocks(reports: tuple[ReportBlock, ...]) -> None:
    if len(reports) > _MAX_REPORT_BLOCKS:
        raise ValueError(f"at most {_MAX_REPORT_BLOCKS} report blocks, got {len(reports)}")


def build_sr(report: SenderReport) -> bytes:
    """Serialize a sender report."""
    _check_blocks(report.reports)
    body = _SR_BODY.pack(
        report.ssrc,
        (report.ntp_timestamp >> 32) & 0xFFFFFFFF,
        report.ntp_timestamp & 0xFFFFFFFF,
        report.rtp_timestamp & 0xFFFFFFFF,
        report.packet_count & 0xFFFFFFFF,
        report.octet_count & 0xFFFFFFFF,
    ) + b"".join(b.pack() for b in report.reports)
    return _rtcp_header(len(report.reports), RTCP_SR, len(body)) + body


def build_rr(report: ReceiverReport) -> bytes:
    """Serialize a receiver report."""
    _check_blocks(report.reports)
    body = struct.pack("!I", report.ssrc) + b"".join(b.pack() for b in report.reports)
    return _rtcp_header(len(report.reports), RTCP_RR, len(body)) + body


def build_sdes(ssrc: int, cname: str) -> bytes:
    """One SDES chunk with a CNAME item (RFC 3550 §6.5.1), null-terminated and word-padded."""
    name = cname.encode("utf-8")[:255]
    chunk = struct.pack("!IBB", ssrc, _SDES_CNAME, len(name)) + name + b"\x00"
    chunk += bytes(-len(chunk) % 4)
    return _rtcp_header(1, RTCP_SDES, len(chunk)) + chunk


def build_bye(ssrcs: tuple[int, ...], reason: str = "") -> bytes:
    """Serialize a BYE for ``ssrcs`` with an optional reason (RFC 3550 §6.6)."""
    if not 1 <= len(ssrcs) <= 31:
        raise ValueError("a BYE names 1 to 31 sources")
    body = b"".join(struct.pack("!I", s) for s in ssrcs)
    if reason:
        text = reason.encode("utf-8")[:255]
        body += bytes([len(text)]) + text
        body += bytes(-len(body) % 4)
    return _rtcp_header(len(ssrcs), RTCP_BYE, len(body)) + body


def parse_rtcp(data: bytes) -> list[RtcpPacket]:
    """Parse a compound RTCP datagram; SR, RR and BYE are returned, other types skipped.

    Validation follows RFC 3550 §A.2: version 2 in every packet, lengths that add up exactly
    to the datagram, padding only allowed on the last packet.
    """
    out: list[RtcpPacket] = []
    offset = 0
    size = len(data)
    if size < 4:
        raise RtcpParseError(f"RTCP datagram of {size} bytes is shorter than a header")
    while offset < size:
        if size - offset < 4:
            raise RtcpParseError("trailing bytes after the last RTCP packet")
        first, ptype, length = _RTCP_HEADER.unpack_from(data, offset)
        if first >> 6 != RTP_VERSION:
            raise RtcpParseError(f"RTCP version {first >> 6}, expected 2")
        end = offset + 4 * (length + 1)
        if end > size:
            raise RtcpParseError(f"RTCP packet type {ptype} runs past the datagram end")
        body_end = end
        if first & 0x20:
            if end != size:
                raise RtcpParseError("padding is only allowed on the last RTCP packet")
            pad = data[end - 1]
            if pad == 0 or pad > end - offset - 4:
                raise RtcpParseError(f"invalid RTCP padding length {pad}")
            body_end = end - pad
        count = first & 0x1F
        body = offset + 4
        if ptype == RTCP_SR:
            out.append(_parse_sr(data, body, body_end, count))
        elif ptype == RTCP_RR:
            out.append(_parse_rr(data, body, body_end, count))
        elif ptype == RTCP_BYE:
            out.append(_parse_bye(data, body, body_end, count))
        offset = end
    return out


def _blocks(data: bytes, start: int, end: int, count: int) -> tuple[ReportBlock, ...]:
    if start + count * _REPORT_BLOCK.size > end:
        raise RtcpParseError(f"{count} report blocks do not fit the packet")
    return tuple(ReportBlock.unpack(data, start + i * _REPORT_BLOCK.size) for i in range(count))


def _parse_sr(data: bytes, start: int, end: int, count: int) -> SenderReport:
    if start + _SR_BODY.size > end:
        raise RtcpParseError("sender report shorter than its 24-byte sender info")
    ssrc, msw, lsw, rtp_ts, packets, octets = _SR_BODY.unpack_from(data, start)
    blocks = _blocks(data, start + _SR_BODY.size, end, count)
    return SenderReport(ssrc, msw << 32 | lsw, rtp_ts, packets, octets, blocks)


def _parse_rr(data: bytes, start: int, end: int, count: int) -> ReceiverReport:
    if start + 4 > end:
        raise RtcpParseError("receiver report without its SSRC")
    (ssrc,) = struct.unpack_from("!I", data, start)
    return ReceiverReport(ssrc, _blocks(data, start + 4, end, count))


def _parse_bye(data: bytes, start: int, end: int, count: int) -> Bye:
    if start + 4 * count > end:
        raise RtcpParseError(f"BYE with {count} sources does not fit the packet")
    ssrcs = struct.unpack_from(f"!{count}I", data, start)
    reason = ""
    pos = start + 4 * count
    if pos < end:
        n = data[pos]
        if pos + 1 + n > end:
            raise RtcpParseError("BYE reason runs past the packet end")
        reason = bytes(data[pos + 1 : pos + 1 + n]).decode("utf-8", errors="replace")
    return Bye(tuple(ssrcs), reason)
