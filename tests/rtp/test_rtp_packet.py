"""RTP header and minimal RTCP (RFC 3550 §5.1, §6.4-§6.6): round trips and malformed input."""

from __future__ import annotations

import struct

import pytest

from callbridge.rtp.packet import (
    Bye,
    ReceiverReport,
    ReportBlock,
    RtcpParseError,
    RtpExtension,
    RtpPacket,
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
    seq_diff,
    seq_newer,
    ts_diff,
    ts_newer,
)


def test_minimal_packet_bytes_and_round_trip() -> None:
    pkt = RtpPacket(0, 0x1234, 0xDEADBEEF, 0x01020304, b"\xff" * 160, marker=True)
    data = pkt.serialize()
    assert data[:12] == bytes.fromhex("80 80 1234 deadbeef 01020304".replace(" ", ""))
    assert parse_rtp(data) == pkt
    assert pack_rtp(0, 0x1234, 0xDEADBEEF, 0x01020304, b"\xff" * 160, True) == data


def test_round_trip_with_csrcs_extension_and_padding() -> None:
    pkt = RtpPacket(
        101,
        65535,
        2**32 - 1,
        7,
        b"\x01\x0a\x00\xa0",
        csrcs=(1, 2, 3),
        extension=RtpExtension(0xBEDE, b"\x10\x20\x30\x40"),
        padding=4,
    )
    data = pkt.serialize()
    assert data[0] == 0x80 | 0x20 | 0x10 | 3
    assert len(data) == 12 + 12 + 4 + 4 + 4 + 4
    assert parse_rtp(data) == pkt


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x80\x00\x00", "shorter than the 12-byte header"),
        (bytes([0x40]) + bytes(11), "version 1"),
        (bytes([0x82]) + bytes(11) + bytes(4), "CSRC count 2"),
        (bytes([0x90]) + bytes(11) + b"\x00", "extension header is missing"),
        (bytes([0x90]) + bytes(11) + b"\xbe\xde\x00\x02" + bytes(4), "runs past"),
        (bytes([0xA0]) + bytes(11) + b"\x00", "invalid padding length 0"),
        (bytes([0xA0]) + bytes(11) + b"\x00\x09", "invalid padding length 9"),
    ],
)
def test_malformed_rtp_is_a_clear_error(data: bytes, message: str) -> None:
    with pytest.raises(RtpParseError, match=message):
        parse_rtp(data)


@pytest.mark.parametrize(
    "pkt",
    [
        RtpPacket(128, 0, 0, 0),
        RtpPacket(0, 65536, 0, 0),
        RtpPacket(0, 0, 2**32, 0),
        RtpPacket(0, 0, 0, -1),
        RtpPacket(0, 0, 0, 0, csrcs=tuple(range(16))),
        RtpPacket(0, 0, 0, 0, padding=256),
        RtpPacket(0, 0, 0, 0, extension=RtpExtension(1, b"abc")),
        RtpPacket(0, 0, 0, 0, extension=RtpExtension(70000, b"")),
    ],
)
def test_serialize_rejects_out_of_range_fields(pkt: RtpPacket) -> None:
    with pytest.raises(ValueError):
        pkt.serialize()


def test_wrap_aware_comparisons() -> None:
    assert seq_diff(0, 65535) == 1
    assert seq_diff(65535, 0) == -1
    assert seq_diff(100, 90) == 10
    assert seq_newer(2, 65530)
    assert not seq_newer(65530, 2)
    assert not seq_newer(5, 5)
    assert ts_diff(0, 2**32 - 160) == 160
    assert ts_diff(2**32 - 160, 0) == -160
    assert ts_newer(80, 2**32 - 80)
    assert not ts_newer(2**32 - 80, 80)


def test_ntp_conversion() -> None:
    ntp = ntp_from_unix(0.5)
    assert ntp >> 32 == 2_208_988_800
    assert ntp & 0xFFFFFFFF == 1 << 31
    assert ntp_middle32(ntp) == ((2_208_988_800 & 0xFFFF) << 16) | 0x8000


def test_sender_report_round_trip_with_blocks() -> None:
    blocks = (
        ReportBlock(0xAABBCCDD, 12, 345, 70000, 80, lsr=0x12345678, dlsr=65536),
        ReportBlock(2, 0, -3, 5, 0),
    )
    sr = SenderReport(0x11111111, ntp_from_unix(1_800_000_000.25), 123456, 250, 40000, blocks)
    data = build_sr(sr)
    assert len(data) == 4 + 24 + 2 * 24
    assert data[0] == 0x82 and data[1] == 200
    assert struct.unpack_from("!H", data, 2)[0] == len(data) // 4 - 1
    (parsed,) = parse_rtcp(data)
    assert parsed == sr
    assert isinstance(parsed, SenderReport)
    assert parsed.reports[0].loss_ratio == pytest.approx(12 / 256)
    assert parsed.reports[1].cumulative_lost == -3


def test_report_block_clamps_its_fields() -> None:
    block = ReportBlock(1, 300, 1 << 30, 1, -5)
    back = ReportBlock.unpack(block.pack(), 0)
    assert back.fraction_lost == 255
    assert back.cumulative_lost == (1 << 23) - 1
    assert back.jitter == 0


def test_compound_rr_sdes_bye_parses_and_skips_sdes() -> None:
    rr = ReceiverReport(5, (ReportBlock(6, 1, 2, 3, 4),))
    data = build_rr(rr) + build_sdes(5, "leg@127.0.0.1") + build_bye((5, 9), "hangup")
    assert len(data) % 4 == 0
    assert parse_rtcp(data) == [rr, Bye((5, 9), "hangup")]
    assert parse_rtcp(build_bye((1,))) == [Bye((1,), "")]


def test_rtcp_builders_reject_bad_counts() -> None:
    with pytest.raises(ValueError, match="1 to 31"):
        build_bye(())
    with pytest.raises(ValueError, match="report blocks"):
        build_rr(ReceiverReport(1, tuple(ReportBlock(i, 0, 0, 0, 0) for i in range(32))))


def _rtcp(first: int, ptype: int, body: bytes, length: int | None = None) -> bytes:
    words = len(body) // 4 if length is None else length
    return struct.pack("!BBH", first, ptype, words) + body


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x80\xc8", "shorter than a header"),
        (_rtcp(0x40, 201, bytes(4)), "version 1"),
        (_rtcp(0x80, 201, bytes(4), length=5), "runs past"),
        (build_rr(ReceiverReport(1)) + b"\x80", "trailing bytes"),
        (_rtcp(0xA0, 201, bytes(3) + b"\x04") + build_rr(ReceiverReport(1)), "padding is only"),
        (_rtcp(0xA0, 201, bytes(7) + b"\x09"), "invalid RTCP padding"),
        (_rtcp(0x81, 201, bytes(8)), "report blocks do not fit"),
        (_rtcp(0x80, 200, bytes(8)), "sender info"),
        (_rtcp(0x80, 201, b""), "without its SSRC"),
        (_rtcp(0x82, 203, bytes(4)), "does not fit"),
        (_rtcp(0x81, 203, bytes(4) + b"\x09abc"), "reason runs past"),
    ],
)
def test_malformed_rtcp_is_a_clear_error(data: bytes, message: str) -> None:
    with pytest.raises(RtcpParseError, match=message):
        parse_rtcp(data)


def test_rtcp_padding_on_last_packet_is_accepted() -> None:
    body = struct.pack("!I", 77) + bytes(3) + b"\x04"
    assert parse_rtcp(_rtcp(0xA0, 201, body)) == [ReceiverReport(77)]
