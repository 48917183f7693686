from __future__ import annotations

import numpy as np
import pytest

from callbridge.media import (
    FRAME_BYTES,
    FRAME_SECONDS,
    SAMPLES_PER_FRAME,
    SILENCE_FRAME,
    JitterBuffer,
    JitterOutput,
)
from callbridge.media.jitter import LATE_RESYNC_PACKETS, SHRINK_AFTER_FRAMES

SSRC = 0x1234_5678


def frame(n: int, samples: int = SAMPLES_PER_FRAME) -> bytes:
    """A recognisable, loud payload: every sample holds ``1000 + n`` (never silence)."""
    return np.full(samples, 1000 + n, dtype="<i2").tobytes()


def ident(pcm: bytes) -> int:
    return int(np.frombuffer(pcm, dtype="<i2")[0]) - 1000


class Sender:
    """An RTP-like sender with 20 ms packets; seq/ts start near their wrap points if asked."""

    def __init__(self, jb: JitterBuffer, seq0: int = 0, ts0: int = 0, ssrc: int = SSRC) -> None:
        self.jb, self.seq0, self.ts0, self.ssrc = jb, seq0, ts0, ssrc

    def send(self, n: int, arrival: float | None = None, payload: bytes | None = None) -> None:
        self.jb.push(
            (self.seq0 + n) % 65536,
            (self.ts0 + n * SAMPLES_PER_FRAME) % (1 << 32),
            frame(n) if payload is None else payload,
            ssrc=self.ssrc,
            arrival=n * FRAME_SECONDS if arrival is None else arrival,
        )


def play(jb: JitterBuffer, n: int) -> list[JitterOutput]:
    out = [jb.pop() for _ in range(n)]
    assert all(len(o.pcm) == FRAME_BYTES for o in out)
    return out


def audio_ids(out: list[JitterOutput]) -> list[int]:
    return [ident(o.pcm) for o in out if o.kind == "audio"]


def test_prefetch_then_in_order() -> None:
    jb = JitterBuffer()
    tx = Sender(jb)
    tx.send(0)
    assert jb.pop() == JitterOutput(SILENCE_FRAME, "silence")  # 20 ms < 40 ms target
    assert not jb.playing
    tx.send(1)
    out = []
    for n in range(2, 100):
        out.append(jb.pop())
        tx.send(n)
    assert [o.kind for o in out] == ["audio"] * len(out)
    assert audio_ids(out) == list(range(len(out)))
    assert jb.playing
    st = jb.stats
    assert st.received == 100 and st.lost == 0 and st.late == 0 and st.duplicate == 0
    assert st.target_ms == 40
    assert st.jitter_ms == pytest.approx(0.0, abs=1e-6)


def test_empty_pop_is_silence() -> None:
    jb = JitterBuffer()
    assert jb.pop().kind == "silence"
    assert jb.flush() == []
    assert jb.depth_ms == 0


def test_reorder() -> None:
    jb = JitterBuffer(min_depth_ms=100)
    tx = Sender(jb)
    for n in [1, 0, 3, 2, 4, 6, 5, 7]:
        tx.send(n, arrival=0.0)
    out = play(jb, 8)
    assert audio_ids(out) == list(range(8))


def test_duplicate_dropped_and_counted() -> None:
    jb = JitterBuffer()
    tx = Sender(jb)
    for n in [0, 1, 1, 2, 0]:
        tx.send(n)
    assert jb.stats.duplicate == 2
    assert jb.stats.received == 5
    assert audio_ids(play(jb, 3)) == [0, 1, 2]


def test_late_packet_dropped_and_counted() -> None:
    jb = JitterBuffer()
    tx = Sender(jb)
    tx.send(0)
    tx.send(1)
    tx.send(3)
    out = play(jb, 3)  # plays 0, 1, then a hole at 2
    assert [o.kind for o in out] == ["audio", "audio", "concealed"]
    tx.send(2)  # arrives after its slot was played
    assert jb.stats.late == 1
    assert jb.stats.lost == 1
    assert jb.target_ms == 60  # a late packet grows the target by one frame
    assert audio_ids(play(jb, 1)) == [3]


def test_loss_concealment_repeats_once_attenuated_then_silence() -> None:
    jb = JitterBuffer()
    tx = Sender(jb)
    for n in [0, 1, 5]:
        tx.send(n, arrival=0.0)
    out = play(jb, 6)
    assert [o.kind for o in out] == ["audio", "audio", "concealed", "silence", "silence", "audio"]
    assert np.all(np.frombuffer(out[2].pcm, dtype="<i2") == (1000 + 1) // 2)
    assert out[3].pcm == SILENCE_FRAME
    assert ident(out[5].pcm) == 5
    st = jb.stats
    assert st.lost == 3 and st.concealed == 1


def test_underrun_rebuffers_to_target() -> None:
    jb = JitterBuffer()
    tx = Sender(jb)
    tx.send(0)
    tx.send(1)
    out = play(jb, 4)
    assert [o.kind for o in out] == ["audio", "audio", "concealed", "silence"]
    assert jb.stats.underruns == 1
    assert not jb.playing
    tx.send(10)  # the stream resumes (e.g. after silence suppression)
    assert jb.pop().kind == "silence"  # one frame buffered < 40 ms: still rebuffering
    tx.send(11)
    assert audio_ids(play(jb, 2)) == [10, 11]  # resumes from the earliest buffered audio


@pytest.mark.parametrize(
    ("seq0", "ts0"), [(65530, 0), (0, (1 << 32) - 3 * 160), (65533, (1 << 32) - 160)]
)
def test_wraparound(seq0: int, ts0: int) -> None:
    jb = JitterBuffer()
    tx = Sender(jb, seq0=seq0, ts0=ts0)
    out: list[JitterOutput] = []
    order = [0, 1, 3, 2, 4, 5, 7, 6, 8, 9, 10, 11]  # reordering across the wrap point
    for n in order:
        tx.send(n)
        out.append(jb.pop())
    ids = audio_ids(out) + [ident(p) for p in jb.flush()]
    assert ids == list(range(12))
    st = jb.stats
    assert st.late == 0 and st.lost == 0 and st.duplicate == 0


def test_duplicate_across_seq_wrap() -> None:
    jb = JitterBuffer()
    tx = Sender(jb, seq0=65535)
    tx.send(0)
    tx.send(1)  # seq 0
    tx.send(1)
    assert jb.stats.duplicate == 1


def test_ssrc_change_resets_stream() -> None:
    jb = JitterBuffer()
    a = Sender(jb)
    for n in range(3):
        a.send(n)
    play(jb, 1)
    b = Sender(jb, seq0=40000, ts0=123456, ssrc=0xBEEF)
    b.send(0)
    st = jb.stats
    assert st.resets == 1
    assert st.discarded == 2
    assert not jb.playing
    assert jb.pop().kind == "silence"  # prefetching the new source
    b.send(1)
    assert audio_ids(play(jb, 2)) == [0, 1]


def test_flush_returns_tail_in_order_with_holes() -> None:
    jb = JitterBuffer()
    tx = Sender(jb)
    for n in [0, 1, 2, 4]:
        tx.send(n)
    play(jb, 1)
    tail = jb.flush()
    assert [ident(p) if p != SILENCE_FRAME else None for p in tail] == [1, 2, None, 4]
    assert jb.flush() == []
    tx.send(3)  # older than what was flushed: late
    assert jb.stats.late == 1


def test_flush_before_playback_starts() -> None:
    jb = JitterBuffer(min_depth_ms=200)
    tx = Sender(jb)
    tx.send(0)
    assert jb.pop().kind == "silence"
    assert [ident(p) for p in jb.flush()] == [0]


@pytest.mark.parametrize("ptime_samples", [80, 240, 480, 100])
def test_recut_other_packet_sizes(ptime_samples: int) -> None:
    jb = JitterBuffer(max_depth_ms=400)  # everything arrives at once: keep it all
    total = SAMPLES_PER_FRAME * 12
    signal = np.arange(total, dtype=np.int64) % 3000 + 1000  # loud: no quiet-frame dropping
    pcm = signal.astype("<i2").tobytes()
    for seq, start in enumerate(range(0, total, ptime_samples)):
        chunk = pcm[start * 2 : (start + ptime_samples) * 2]
        jb.push(seq, start, chunk, ssrc=SSRC, arrival=start / 8000)
    out = [o.pcm for o in play(jb, 12) if o.kind == "audio"] + jb.flush()
    assert b"".join(out)[: len(pcm)] == pcm


def test_jitter_estimate_and_adaptive_growth() -> None:
    jb = JitterBuffer()
    tx = Sender(jb)
    rng = np.random.default_rng(1)
    for n in range(300):
        tx.send(n, arrival=n * FRAME_SECONDS + float(rng.uniform(0, 0.06)))
    # Uniform 0..60 ms delay: mean |D| = 20 ms, so J converges near 20 ms (RFC 3550 A.8).
    assert 12.0 < jb.jitter_ms < 28.0
    assert 60 <= jb.target_ms <= 200


def test_target_clamped_to_max() -> None:
    jb = JitterBuffer(max_depth_ms=100)
    tx = Sender(jb)
    for n in range(50):
        tx.send(n, arrival=0.5 * (n % 2))
    assert jb.target_ms == 100


def test_target_shrinks_slowly_when_stable() -> None:
    jb = JitterBuffer()
    tx = Sender(jb)
    for n in range(4):
        tx.send(n, arrival=n * FRAME_SECONDS + (0.2 if n == 2 else 0.0))
    grown = jb.target_ms
    assert grown > 40
    n = 4
    for _ in range(SHRINK_AFTER_FRAMES * 12):
        tx.send(n)
        n += 1
        jb.pop()
    assert jb.target_ms < grown
    assert jb.target_ms >= 40


def test_excess_depth_shed() -> None:
    jb = JitterBuffer(max_depth_ms=200)
    tx = Sender(jb)
    for n in range(30):  # a 600 ms burst
        tx.send(n, arrival=0.0)
    out = play(jb, 1)
    assert out[0].kind == "audio"
    assert jb.depth_ms <= jb.target_ms
    assert jb.stats.discarded > 0


def test_quiet_frames_dropped_when_too_deep() -> None:
    jb = JitterBuffer(min_depth_ms=40, max_depth_ms=400)
    tx = Sender(jb)
    for n in range(8):
        tx.send(n, arrival=0.0, payload=bytes(FRAME_BYTES))  # quiet
    play(jb, 1)
    assert jb.stats.discarded >= 1
    assert jb.depth_ms < 8 * 20


def test_late_resync_after_timeline_jump() -> None:
    jb = JitterBuffer()
    tx = Sender(jb, ts0=1_000_000)
    for n in range(4):
        tx.send(n)
    play(jb, 4)
    back = Sender(jb, seq0=4, ts0=0)  # same SSRC, timestamps restarted far back
    for n in range(LATE_RESYNC_PACKETS + 2):
        back.send(n)
    st = jb.stats
    assert st.late == LATE_RESYNC_PACKETS - 1
    assert st.resets == 1
    assert audio_ids(play(jb, 3)) == [
        LATE_RESYNC_PACKETS - 1,
        LATE_RESYNC_PACKETS,
        LATE_RESYNC_PACKETS + 1,
    ]


def test_empty_payload_counts_but_plays_nothing() -> None:
    jb = JitterBuffer()
    jb.push(0, 0, b"", ssrc=SSRC, arrival=0.0)
    assert jb.stats.received == 1
    assert jb.depth_ms == 0


@pytest.mark.parametrize(
    ("seq", "ts", "pcm", "ssrc"),
    [
        (-1, 0, b"", 1),
        (65536, 0, b"", 1),
        (0, -1, b"", 1),
        (0, 1 << 32, b"", 1),
        (0, 0, b"x", 1),
        (0, 0, b"", -1),
    ],
)
def test_invalid_push(seq: int, ts: int, pcm: bytes, ssrc: int) -> None:
    with pytest.raises(ValueError):
        JitterBuffer().push(seq, ts, pcm, ssrc=ssrc, arrival=0.0)


def test_invalid_config() -> None:
    with pytest.raises(ValueError):
        JitterBuffer(min_depth_ms=10)
    with pytest.raises(ValueError):
        JitterBuffer(min_depth_ms=100, max_depth_ms=60)


def test_random_network_never_misorders() -> None:
    rng = np.random.default_rng(7)
    jb = JitterBuffer()
    tx = Sender(jb, seq0=65000, ts0=(1 << 32) - 50 * 160)
    arrivals = sorted(
        (n * FRAME_SECONDS + float(rng.exponential(0.02)), n)
        for n in range(1500)
        if rng.random() > 0.02  # 2 % loss
    )
    got: list[int] = []
    i = 0
    for tick in range(1700):
        now = tick * FRAME_SECONDS
        while i < len(arrivals) and arrivals[i][0] <= now:
            tx.send(arrivals[i][1], arrival=arrivals[i][0])
            if rng.random() < 0.01:
                tx.send(arrivals[i][1], arrival=arrivals[i][0])  # duplicate
            i += 1
        got += audio_ids([jb.pop()])
    got += [ident(p) for p in jb.flush() if p != SILENCE_FRAME]
    assert got == sorted(got)
    assert len(set(got)) == len(got)
    st = jb.stats
    assert st.duplicate > 0
    assert len(got) + st.late + st.discarded >= len(arrivals) - 1
    assert 40 <= st.target_ms <= 200
