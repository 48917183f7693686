"""The sans-I/O RTP session: clocked sender in virtual time, DTMF interleaving, receive path,
symmetric RTP latching, statistics, RTCP and the quality estimate."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest

from callbridge.legs.pacer import Pacer
from callbridge.media.clock import VirtualClock
from callbridge.media.constants import FRAME_BYTES, SILENCE_FRAME
from callbridge.media.g711 import alaw_encode, ulaw_encode
from callbridge.rtp.dtmf import TelephoneEvent
from callbridge.rtp.packet import (
    ReceiverReport,
    RtpPacket,
    SenderReport,
    build_rr,
    parse_rtcp,
    parse_rtp,
    seq_diff,
    ts_diff,
)
from callbridge.rtp.session import (
    MAX_DATAGRAM,
    ByeReceived,
    DtmfReceived,
    Latched,
    LatchPolicy,
    MediaDirection,
    RemoteReport,
    RtpSession,
    SourceChanged,
    e_model_mos,
)

PEER = ("127.0.0.1", 40000)


def make(seed: int = 1, **kwargs: object) -> RtpSession:
    s = RtpSession(rng=random.Random(seed), **kwargs)  # type: ignore[arg-type]
    s.set_remote(PEER, payload_type=kwargs.get("payload_type", 0), dtmf_payload_type=101)  # type: ignore[arg-type]
    return s


def tone(n: int) -> bytes:
    t = (np.arange(160) + 160 * n) / 8000
    return (np.sin(2 * np.pi * 1000 * t) * 8000).astype("<i2").tobytes()


# -- the clocked sender ---------------------------------------------------------------------


async def run_clocked(
    session: RtpSession, clock: VirtualClock, seconds: float, stall: float = 0.0
) -> tuple[list[tuple[int, float, RtpPacket]], Pacer]:
    sent: list[tuple[int, float, RtpPacket]] = []

    def on_tick(n: int) -> None:
        data = session.frame(n, None, now=clock.monotonic())
        if data is not None:
            sent.append((n, clock.monotonic(), parse_rtp(data)))

    pacer = Pacer(clock, on_tick)
    pacer.start()
    await clock.advance(0.0)
    if stall:
        clock._now += stall  # the process stalls: the sleeper wakes up late
    await clock.advance(seconds)
    await pacer.stop()
    return sent, pacer


async def test_sender_timestamps_sequence_marker_and_silence() -> None:
    clock = VirtualClock()
    s = make()
    sent, _ = await run_clocked(s, clock, 1.0)
    assert len(sent) == 51
    first = sent[0][2]
    assert first.marker and not any(p.marker for _, _, p in sent[1:])
    for i, (_, _, p) in enumerate(sent):
        assert p.ssrc == s.ssrc and p.payload_type == 0
        assert p.sequence == (first.sequence + i) % 65536
        assert p.timestamp == (first.timestamp + 160 * i) % 2**32
        assert p.payload == b"\xff" * 160  # µ-law silence while nothing is queued
    other = make(seed=2)
    assert (other.ssrc, other.timestamp_for(0)) != (s.ssrc, s.timestamp_for(0))


async def test_sender_alaw_silence_and_queued_audio_then_clear() -> None:
    clock = VirtualClock()
    s = make(payload_type=8)
    s.enqueue(tone(0) + tone(1)[:100])
    assert s.clear() == FRAME_BYTES + 100
    s.enqueue(tone(0) + tone(1) + b"\x00\x00")
    sent, _ = await run_clocked(s, clock, 0.06)
    assert [p.payload for _, _, p in sent] == [
        alaw_encode(tone(0)),
        alaw_encode(tone(1)),
        b"\xd5" * 160,
        b"\xd5" * 160,
    ]


async def test_sender_late_wakeup_bursts_three_and_skips_with_timestamp_jump() -> None:
    clock = VirtualClock()
    s = make()
    sent, pacer = await run_clocked(s, clock, 0.0, stall=0.2)
    frames = [n for n, _, _ in sent]
    assert frames == [0, 8, 9, 10]
    assert pacer.skipped == 7
    ts = [p.timestamp for _, _, p in sent]
    assert ts_diff(ts[1], ts[0]) == 160 * 8  # 160 per skipped frame
    assert [ts_diff(b, a) for a, b in itertools.pairwise(ts[1:])] == [160, 160]
    seqs = [p.sequence for _, _, p in sent]
    assert [seq_diff(b, a) for a, b in itertools.pairwise(seqs)] == [1, 1, 1]


async def test_sender_no_drift_over_ten_thousand_frames() -> None:
    clock = VirtualClock()
    t0 = clock.monotonic()
    s = make()
    sent, pacer = await run_clocked(s, clock, 10_000 * 0.02)
    assert pacer.skipped == 0
    assert len(sent) == 10_001
    n, at, last = sent[-1]
    assert n == 10_000
    assert at == pytest.approx(t0 + 200.0, abs=1e-9)
    assert max(abs(when - (t0 + k * 0.02)) for k, when, _ in sent) < 1e-9
    assert ts_diff(last.timestamp, sent[0][2].timestamp) == 160 * 10_000


def test_frame_rejects_wrong_size_and_queue_has_a_limit() -> None:
    s = make()
    with pytest.raises(ValueError, match="320 bytes"):
        s.frame(0, b"\x00" * 10)
    with pytest.raises(ValueError, match="queue full"):
        s.enqueue(bytes(FRAME_BYTES * 3001))


def test_dtmf_interleaving_suppresses_audio_and_resumes_with_elapsed_timestamps() -> None:
    s = make()
    s.frame(0, tone(0))
    ticket = s.send_dtmf("1", duration_ms=60, interval_ms=0)
    pkts = [parse_rtp(d) for n in range(1, 10) if (d := s.frame(n, tone(n))) is not None]
    kinds = [p.payload_type for p in pkts]
    assert kinds == [101] * 5 + [0] * 4  # 3 tone frames + 2 extra end copies, then audio
    ev_ts = {p.timestamp for p in pkts[:5]}
    assert ev_ts == {s.timestamp_for(1)}
    assert pkts[0].marker and not any(p.marker for p in pkts[1:])
    assert pkts[5].timestamp == s.timestamp_for(6)  # audio timestamps reflect elapsed time
    assert pkts[5].payload == ulaw_encode(tone(6))
    assert s.dtmf_done(ticket)
    assert s.stats.dtmf_packets_sent == 5
    seqs = [p.sequence for p in pkts]
    assert all(seq_diff(b, a) == 1 for a, b in itertools.pairwise(seqs))


def test_hold_stops_sending_and_marks_resume() -> None:
    s = make()
    assert s.frame(0, None) is not None
    s.set_direction(MediaDirection.RECVONLY)
    assert s.frame(1, None) is None
    assert s.frame(2, None) is None
    s.set_direction(MediaDirection.SENDRECV)
    p = parse_rtp(s.frame(3, None) or b"")
    assert p.marker and p.timestamp == s.timestamp_for(3)
    assert s.stats.packets_sent == 2


def test_configuration_errors() -> None:
    with pytest.raises(ValueError, match="0 \\(PCMU\\) or 8"):
        RtpSession(rng=random.Random(0), payload_type=18)
    with pytest.raises(ValueError, match="96-127"):
        RtpSession(rng=random.Random(0), dtmf_payload_type=13)
    s = RtpSession(rng=random.Random(0))
    assert s.remote is None and not s.sending
    assert s.frame(0, None) is None
    with pytest.raises(ValueError, match="invalid RTP port"):
        s.set_remote(("127.0.0.1", 0))
    s.set_remote(PEER, dtmf_payload_type=None)
    with pytest.raises(ValueError, match="telephone-event"):
        s.send_dtmf("1")


# -- receive path ---------------------------------------------------------------------------


def rtp(
    seq: int, ts: int, payload: bytes, pt: int = 0, ssrc: int = 77, marker: bool = False
) -> bytes:
    return RtpPacket(pt, seq % 65536, ts % 2**32, ssrc, payload, marker=marker).serialize()


def test_receive_decodes_into_the_jitter_buffer_and_pops_frames() -> None:
    s = make()
    assert s.pop_frame() is None  # no media yet: nothing to deliver
    events = s.receive(rtp(10, 1000, ulaw_encode(tone(0))), PEER, now=0.0, wall=5.0)
    assert events == [SourceChanged(None, 77)]
    for i in range(1, 4):
        s.receive(rtp(10 + i, 1000 + 160 * i, ulaw_encode(tone(i))), PEER, now=0.02 * i, wall=5.0)
    out = s.pop_frame()
    assert out is not None and out.kind == "audio" and len(out.pcm) == FRAME_BYTES
    assert np.corrcoef(np.frombuffer(out.pcm, "<i2"), np.frombuffer(tone(0), "<i2"))[0, 1] > 0.99
    st = s.stats
    assert (st.packets_received, st.packets_expected, st.packets_lost) == (4, 4, 0)
    assert st.octets_received == 640


def test_receive_alaw_cn_unknown_and_malformed() -> None:
    s = make()
    s.receive(rtp(1, 0, alaw_encode(tone(0)), pt=8), PEER, now=0, wall=0)
    s.receive(rtp(2, 160, b"\x40", pt=13), PEER, now=0.02, wall=0)
    s.receive(rtp(3, 320, b"\x00" * 20, pt=18), PEER, now=0.04, wall=0)
    s.receive(b"\x80\x00", PEER, now=0.06, wall=0)
    s.receive(rtp(4, 480, b"\xff" * MAX_DATAGRAM), PEER, now=0.08, wall=0)
    st = s.stats
    assert (st.unknown_payload, st.malformed, st.packets_received) == (1, 2, 3)
    assert s.flowing


def test_receive_dtmf_events_from_telephone_event_packets() -> None:
    s = make()
    start = TelephoneEvent(1, False, 10, 160).pack()
    end = TelephoneEvent(1, True, 10, 800).pack()
    assert s.receive(rtp(1, 8000, start, pt=101, marker=True), PEER, now=1.0, wall=100.0)[1:] == []
    events = s.receive(rtp(2, 8000, end, pt=101), PEER, now=1.08, wall=100.08)
    assert events == [DtmfReceived(events[0].event)]  # type: ignore[union-attr]
    ev = events[0].event  # type: ignore[union-attr]
    assert (ev.digit, ev.pressed_at, ev.released_at) == ("1", 100.0, 100.08)
    s.receive(rtp(3, 16000, start, pt=101, marker=True), PEER, now=2.0, wall=101.0)
    assert s.poll(2.1) == []
    (late,) = s.poll(2.2)
    assert isinstance(late, DtmfReceived) and late.event.digit == "1"


def test_ssrc_change_resets_receive_statistics() -> None:
    s = make()
    for i in range(5):
        if i != 2:
            s.receive(rtp(100 + i, 160 * i, b"\xff" * 160), PEER, now=0.02 * i, wall=0)
    assert s.stats.packets_lost == 1
    events = s.receive(rtp(9, 0, b"\xff" * 160, ssrc=88), PEER, now=1.0, wall=0)
    assert events == [SourceChanged(77, 88)]
    st = s.stats
    assert (st.packets_received, st.packets_lost, st.packets_expected) == (1, 0, 1)


def test_sequence_wrap_counts_cycles() -> None:
    s = make()
    for i in range(6):
        s.receive(rtp(65533 + i, 160 * i, b"\xff" * 160), PEER, now=0.02 * i, wall=0)
    s.receive(rtp(65534, 160, b"\xff" * 160), PEER, now=0.2, wall=0)  # old duplicate
    st = s.stats
    assert st.packets_expected == 6 and st.packets_received == 7 and st.packets_lost == 0


def test_jitter_estimate_follows_rfc3550() -> None:
    s = make()
    arrivals = [0.0, 0.020, 0.045, 0.060, 0.080]
    for i, t in enumerate(arrivals):
        s.receive(rtp(i, 160 * i, b"\xff" * 160), PEER, now=t, wall=0)
    j = 0.0
    for prev, cur, k in zip(arrivals, arrivals[1:], range(1, 5), strict=False):
        d = (cur - prev) * 8000 - 160
        j += (abs(d) - j) / 16
        assert k
    assert s.stats.jitter_ms == pytest.approx(j / 8)


def test_latching_policies() -> None:
    nat = ("127.0.0.1", 41234)
    stranger = ("10.9.9.9", 5004)
    # OFF: only the SDP address is accepted
    off = make(latch=LatchPolicy.OFF)
    assert off.receive(rtp(1, 0, b"\xff"), nat, now=0, wall=0) == []
    assert off.stats.rejected_source == 1 and off.remote == PEER
    # PEER: latch to a source on the signalling host, once per SSRC
    peer = make(latch=LatchPolicy.PEER)
    peer.set_remote(PEER, dtmf_payload_type=101, signalling_host="127.0.0.1")
    assert peer.receive(rtp(1, 0, b"\xff"), stranger, now=0, wall=0) == []
    events = peer.receive(rtp(2, 160, b"\xff"), nat, now=0.02, wall=0)
    assert events[0] == Latched(nat) and peer.remote == nat
    assert peer.receive(rtp(3, 320, b"\xff"), nat, now=0.04, wall=0) == []
    assert peer.receive(rtp(4, 480, b"\xff"), ("127.0.0.1", 999), now=0.06, wall=0) == []
    assert peer.stats.rejected_source == 2 and peer.remote == nat
    assert peer.receive(rtp(5, 640, b"\xff"), PEER, now=0.08, wall=0) == []  # SDP address ok
    # ANY: a new source (new SSRC) from anywhere may latch
    any_ = make(latch=LatchPolicy.ANY)
    assert any_.receive(rtp(1, 0, b"\xff", ssrc=5), stranger, now=0, wall=0)[0] == Latched(stranger)
    assert any_.remote == stranger


def test_receive_while_sendonly_drops_audio() -> None:
    s = make()
    s.set_direction(MediaDirection.SENDONLY)
    s.receive(rtp(1, 0, b"\xff" * 160), PEER, now=0, wall=0)
    assert not s.flowing and s.stats.packets_received == 1


def test_end_of_stream_drains_the_tail() -> None:
    s = make()
    for i in range(3):
        s.receive(rtp(i, 160 * i, ulaw_encode(tone(i))), PEER, now=0.02 * i, wall=0)
    s.receive(
        rtp(9, 16000, TelephoneEvent(3, False, 10, 160).pack(), pt=101), PEER, now=0.1, wall=0
    )
    events = s.end_of_stream()
    assert [e.event.digit for e in events if isinstance(e, DtmfReceived)] == ["3"]
    frames = []
    while (out := s.pop_frame()) is not None:
        frames.append(out.pcm)
    assert len(frames) == 3 and frames[0] != SILENCE_FRAME
    assert not s.flowing
    assert s.end_of_stream() == []


# -- RTCP and quality -----------------------------------------------------------------------


def test_rtcp_sr_rr_round_trip_with_loss_and_rtt() -> None:
    a, b = make(seed=1), make(seed=2)
    a.set_remote(("127.0.0.1", 40002), dtmf_payload_type=101)
    for n in range(50):
        data = a.frame(n, None, now=n * 0.02)
        assert data is not None
        if n % 10 != 3:  # 10 % loss
            b.receive(data, PEER, now=n * 0.02 + 0.01, wall=100 + n * 0.02)
    # a sends SR at wall 101.0; b receives it and answers 0.25 s later
    sr_bytes = a.rtcp_report(now=1.0, wall=101.0)
    sr = parse_rtcp(sr_bytes)[0]
    assert isinstance(sr, SenderReport) and sr.packet_count == 50 and sr.octet_count == 8000
    assert sr.rtp_timestamp == a.timestamp_for(50)
    assert b.receive_rtcp(sr_bytes, PEER, wall=101.05) == []
    rr_bytes = b.rtcp_report(now=1.3, wall=101.30)
    (rr,) = [p for p in parse_rtcp(rr_bytes) if isinstance(p, SenderReport | ReceiverReport)]
    assert isinstance(rr, ReceiverReport)  # b has not sent anything
    block = rr.reports[0]
    assert block.ssrc == a.ssrc and block.cumulative_lost == 5
    assert block.fraction_lost == (5 << 8) // 50
    events = a.receive_rtcp(rr_bytes, PEER, wall=101.35)
    (report,) = events
    assert isinstance(report, RemoteReport)
    assert report.loss_ratio == pytest.approx(25 / 256)
    assert report.rtt == pytest.approx(0.1, abs=0.001)  # 0.35 s elapsed - 0.25 s held by b
    assert a.stats.rtt == report.rtt and a.stats.remote_loss_ratio == report.loss_ratio
    for k in range(10):  # only the last few SR send times are remembered
        a.rtcp_report(now=2.0 + k, wall=102.0 + k)
    assert a.receive_rtcp(rr_bytes, PEER, wall=112.0)[0].rtt == report.rtt  # type: ignore[union-attr]
    # the next interval had no loss
    b.receive(a.frame(50, None, now=1.0) or b"", PEER, now=1.01, wall=101.0)
    block2 = next(
        p for p in parse_rtcp(b.rtcp_report(now=2, wall=102)) if isinstance(p, ReceiverReport)
    )
    assert block2.reports[0].fraction_lost == 0


def test_rtcp_bye_junk_and_foreign_source() -> None:
    a, b = make(seed=1), make(seed=2)
    bye = a.rtcp_bye(now=0, wall=0, reason="hangup")
    assert b.receive_rtcp(bye, PEER, wall=0) == [ByeReceived((a.ssrc,), "hangup")]
    assert b.receive_rtcp(b"\x00\x01", PEER, wall=0) == []
    assert b.receive_rtcp(bye, ("10.0.0.1", 1), wall=0) == []
    assert b.receive_rtcp(build_rr(ReceiverReport(1)) + bytes(MAX_DATAGRAM), PEER, wall=0) == []
    st = b.stats
    assert (st.malformed, st.rejected_source) == (2, 1)


def test_e_model_mos() -> None:
    r, mos = e_model_mos(0.0, 0.0)
    assert r == pytest.approx(93.2) and mos == pytest.approx(4.41, abs=0.01)
    _, mos5 = e_model_mos(5.0, 60.0)
    assert 3.5 < mos5 < 4.0
    r_long, _ = e_model_mos(0.0, 300.0)
    assert r_long == pytest.approx(93.2 - 7.2 - 0.11 * (300 - 177.3))
    assert e_model_mos(100.0, 1000.0)[1] == 1.0
    assert e_model_mos(-1.0, -5.0)[0] == pytest.approx(93.2)


def test_quality_summary() -> None:
    s = make()
    for i in range(20):
        if i not in (5, 6):
            s.receive(rtp(i, 160 * i, b"\xff" * 160), PEER, now=0.02 * i, wall=0)
    q = s.quality()
    assert q.loss_percent == pytest.approx(10.0)
    assert q.delay_ms == pytest.approx(s.jitter.target_ms + 20)
    assert 1.0 < q.mos < 4.0
    assert make().quality().loss_percent == 0.0
