"""RFC 4733 telephone-events: payload, the sender packet by packet, receiver edge cases."""

from __future__ import annotations

import pytest

from callbridge.rtp.dtmf import (
    END_REPEATS,
    DtmfReceiver,
    DtmfSender,
    OutgoingEvent,
    TelephoneEvent,
    digit_for_event,
    event_for_digit,
)

TS0 = 4_000_000_000  # near the 32-bit wrap on purpose


def ts_of(n: int) -> int:
    return (TS0 + 160 * n) % 2**32


def run_sender(sender: DtmfSender, frames: range) -> dict[int, OutgoingEvent]:
    out: dict[int, OutgoingEvent] = {}
    for n in frames:
        ev = sender.on_frame(n, ts_of(n))
        if ev is not None:
            out[n] = ev
    return out


def decode(ev: OutgoingEvent) -> TelephoneEvent:
    return TelephoneEvent.parse(ev.payload)


# -- payload --------------------------------------------------------------------------------


def test_payload_round_trip_and_layout() -> None:
    ev = TelephoneEvent(11, True, 10, 800)
    assert ev.pack() == bytes([11, 0x80 | 10, 0x03, 0x20])
    assert TelephoneEvent.parse(ev.pack()) == ev
    assert ev.digit == "#"
    assert TelephoneEvent.parse(b"\x10\x0a\x00\xa0extra").digit is None


@pytest.mark.parametrize(
    "ev",
    [
        TelephoneEvent(256, False, 0, 0),
        TelephoneEvent(1, False, 64, 0),
        TelephoneEvent(1, False, 0, 70000),
    ],
)
def test_payload_rejects_out_of_range(ev: TelephoneEvent) -> None:
    with pytest.raises(ValueError):
        ev.pack()


def test_payload_too_short() -> None:
    with pytest.raises(ValueError, match="need 4"):
        TelephoneEvent.parse(b"\x01\x02\x03")


def test_event_codes() -> None:
    assert [event_for_digit(d) for d in "09*#AD"] == [0, 9, 10, 11, 12, 15]
    assert event_for_digit("b") == 13
    assert [digit_for_event(e) for e in (0, 10, 11, 15, 16)] == ["0", "*", "#", "D", None]
    with pytest.raises(ValueError):
        event_for_digit("12")
    with pytest.raises(ValueError, match="invalid DTMF digit"):
        event_for_digit("x")


# -- sender ---------------------------------------------------------------------------------


def test_sender_one_digit_packet_by_packet() -> None:
    sender = DtmfSender()
    ticket = sender.queue("5", duration_ms=100, interval_ms=100)
    sent = run_sender(sender, range(3, 20))
    assert sorted(sent) == [3, 4, 5, 6, 7, 8, 9]  # 5 tone frames + 2 more end copies
    payloads = [decode(sent[n]) for n in sorted(sent)]
    # M bit on the first packet only; one timestamp (the start frame's) for every packet
    assert [sent[n].marker for n in sorted(sent)] == [True] + [False] * 6
    assert {sent[n].timestamp for n in sent} == {ts_of(3)}
    # 20 ms updates with cumulative duration, then the end packet three times, unchanged
    assert [p.duration for p in payloads] == [160, 320, 480, 640, 800, 800, 800]
    assert [p.end for p in payloads] == [False] * 4 + [True] * END_REPEATS
    assert {p.event for p in payloads} == {5}
    assert {p.volume for p in payloads} == {10}
    assert sender.completed == ticket == 1
    assert not sender.busy


def test_sender_successive_digits_get_fresh_timestamps_and_a_gap() -> None:
    sender = DtmfSender()
    sender.queue("12", duration_ms=40, interval_ms=0)
    sent = run_sender(sender, range(100))
    starts = [n for n in sorted(sent) if sent[n].marker]
    assert len(starts) == 2
    first, second = starts
    last_end_of_first = max(n for n in sent if sent[n].digit == "1")
    assert second - last_end_of_first >= 2  # at least one audio frame between the digits
    assert (last_end_of_first + 1) not in sent
    assert sent[first].timestamp != sent[second].timestamp
    assert sent[second].timestamp == ts_of(second)
    assert [decode(sent[n]).duration for n in sorted(sent) if sent[n].digit == "2"] == [
        160,
        320,
        320,
        320,
    ]


def test_sender_interval_spaces_starts() -> None:
    sender = DtmfSender()
    sender.queue("12", duration_ms=100, interval_ms=200)
    sent = run_sender(sender, range(100))
    first, second = (n for n in sorted(sent) if sent[n].marker)
    assert second - first == 5 + 10  # tone frames + interval frames


def test_sender_skipped_frames_advance_duration_with_elapsed_time() -> None:
    sender = DtmfSender()
    sender.queue("9", duration_ms=200)
    frames = [0, 1, 6, 7, 15, 16, 17, 18]  # the clock skipped 2-5 and 8-14
    sent = {n: sender.on_frame(n, ts_of(n)) for n in frames}
    durations = [decode(ev).duration for ev in sent.values() if ev is not None]
    assert durations == [160, 320, 1120, 1280, 1600, 1600, 1600]
    assert sent[18] is None
    assert {ev.timestamp for ev in sent.values() if ev} == {ts_of(0)}


def test_sender_limits_and_cancel() -> None:
    sender = DtmfSender()
    for kwargs in (
        {"duration_ms": 39},
        {"duration_ms": 1001},
        {"interval_ms": -1},
        {"interval_ms": 5001},
    ):
        with pytest.raises(ValueError, match="DTMF"):
            sender.queue("1", **kwargs)
    with pytest.raises(ValueError, match="invalid DTMF digit"):
        sender.queue("1x")
    with pytest.raises(ValueError, match="volume"):
        DtmfSender(volume=64)
    sender.queue("123")
    assert sender.on_frame(0, 0) is not None
    assert sender.playing
    assert sender.cancel() == 2
    run_sender(sender, range(1, 30))
    assert sender.completed == 1 == sender.queued_total


# -- receiver -------------------------------------------------------------------------------


def packets_for(
    digits: str, duration_ms: int = 100, interval_ms: int = 100
) -> list[tuple[int, OutgoingEvent]]:
    sender = DtmfSender()
    sender.queue(digits, duration_ms=duration_ms, interval_ms=interval_ms)
    return sorted(run_sender(sender, range(400)).items())


class Feed:
    """Feeds a receiver as if packet of frame n arrived at t = n × 20 ms."""

    def __init__(self) -> None:
        self.rx = DtmfReceiver()
        self.out: list[tuple[str, float, float]] = []

    def send(self, n: int, ev: OutgoingEvent, ssrc: int = 1, at: float | None = None) -> None:
        t = n * 0.02 if at is None else at
        for d in self.rx.receive(
            ev.payload, ssrc=ssrc, timestamp=ev.timestamp, arrival=t, wall=1000 + t
        ):
            self.out.append((d.digit, d.pressed_at, d.released_at))

    def poll(self, t: float) -> None:
        for d in self.rx.poll(t):
            self.out.append((d.digit, d.pressed_at, d.released_at))


def test_receiver_one_digit_reported_once_with_press_and_release() -> None:
    feed = Feed()
    for n, ev in packets_for("7"):
        feed.send(n, ev)
    assert feed.out == [("7", 1000.0, pytest.approx(1000.08))]
    assert feed.rx.ignored == 2  # the two repeated end packets


def test_receiver_two_digits() -> None:
    feed = Feed()
    for n, ev in packets_for("12"):
        feed.send(n, ev)
    assert [d for d, _, _ in feed.out] == ["1", "2"]
    assert feed.out[1][1] > feed.out[0][2]


def test_receiver_lost_end_packets_end_on_timeout() -> None:
    feed = Feed()
    for n, ev in packets_for("4"):
        if not decode(ev).end:
            feed.send(n, ev)
    assert feed.out == []
    assert feed.rx.next_deadline() == pytest.approx(0.06 + 0.2)
    feed.poll(0.2)
    assert feed.out == []
    feed.poll(0.26)
    assert feed.out == [("4", 1000.0, pytest.approx(1000.08))]  # release from the duration
    assert feed.rx.lost_ends == 1
    assert feed.rx.next_deadline() is None


def test_receiver_lost_end_ends_on_next_event() -> None:
    feed = Feed()
    for n, ev in packets_for("45"):
        if not (ev.digit == "4" and decode(ev).end):
            feed.send(n, ev)
    assert [d for d, _, _ in feed.out] == ["4", "5"]


def test_receiver_reordering_and_late_update_ignored() -> None:
    feed = Feed()
    pkts = packets_for("8")
    (n0, start), (n1, upd) = pkts[0], pkts[1]
    feed.send(n1, upd)  # update before start: starts the digit, back-dated by one frame
    feed.send(n0, start)
    for n, ev in pkts[2:]:
        feed.send(n, ev)
    feed.send(n1, upd, at=1.0)  # a late update of the finished event
    assert feed.out == [("8", pytest.approx(1000.0), pytest.approx(1000.08))]
    assert feed.rx.ignored == 3


def test_receiver_stragglers_of_an_earlier_event_are_ignored() -> None:
    feed = Feed()
    pkts = packets_for("12", interval_ms=0)
    second = [(n, ev) for n, ev in pkts if ev.digit == "2"]
    first = [(n, ev) for n, ev in pkts if ev.digit == "1"]
    feed.send(*second[0])
    feed.send(*first[0])  # older timestamp, same SSRC, never seen: ignored
    for n, ev in second[1:]:
        feed.send(n, ev)
    assert [d for d, _, _ in feed.out] == ["2"]


def test_receiver_end_only_and_other_ssrc_and_junk() -> None:
    feed = Feed()
    pkts = packets_for("A")
    n, end = pkts[-1]
    feed.send(n, end)  # all but the end lost: reported at once, press back-dated
    assert feed.out == [
        ("A", pytest.approx(1000 + n * 0.02 - 0.08), pytest.approx(1000 + n * 0.02))
    ]
    feed.rx.receive(b"\x01", ssrc=1, timestamp=5, arrival=0, wall=0)
    feed.rx.receive(
        TelephoneEvent(16, False, 10, 160).pack(), ssrc=1, timestamp=9, arrival=0, wall=0
    )
    assert (feed.rx.malformed, feed.rx.unsupported) == (1, 1)
    # a different SSRC with the same timestamps is a different event
    feed.send(0, pkts[0][1], ssrc=2)
    assert feed.rx.flush() != []
    assert feed.rx.flush() == []
