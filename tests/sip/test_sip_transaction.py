"""Every transaction path of RFC 3261 §17 / RFC 6026 in virtual time.

Each test drives the sans-I/O :class:`TransactionLayer` with explicit ``now`` values and checks
that every RFC timer fires at its exact deadline (T1 = 0.5 s, T2 = 4 s, T4 = 5 s).
"""

from __future__ import annotations

import pathlib

import pytest

from callbridge.sip.errors import TransactionError
from callbridge.sip.ids import SeededIdSource
from callbridge.sip.message import Headers, Request, Response, make_response, parse_message
from callbridge.sip.transaction import (
    AckReceived,
    Input,
    MalformedMessage,
    RequestReceived,
    ResponseReceived,
    State,
    TimerConfig,
    TransactionLayer,
    TransactionTerminated,
    TransactionTimeout,
    TransportFailure,
    build_cancel,
    response_destination,
    stamp_via,
)

VECTORS = pathlib.Path(__file__).resolve().parents[1] / "vectors" / "sip" / "torture"
PEER = ("192.0.2.10", 5060)


def request(
    method: str = "INVITE",
    branch: str | None = "z9hG4bKabc",
    transport: str = "UDP",
    host: str = "192.0.2.10",
    cseq: int = 1,
) -> Request:
    headers = Headers()
    if branch is not None:
        headers.add("Via", f"SIP/2.0/{transport} {host}:5060;branch={branch};rport")
    else:
        headers.add("Via", f"SIP/2.0/{transport} {host}:5060")
    headers.add("Max-Forwards", "70")
    headers.add("From", "<sip:alice@example.com>;tag=a1")
    headers.add("To", "<sip:bob@example.com>")
    headers.add("Call-ID", "call-1@example.com")
    headers.add("CSeq", f"{cseq} {method}")
    headers.add("Route", "<sip:proxy.example.com;lr>")
    return Request(headers=headers, method=method, uri="sip:bob@example.com")


def reply(req: Request, status: int, tag: str | None = "b1") -> Response:
    return make_response(req, status, to_tag=tag)


def run_timers(layer: TransactionLayer, until: float) -> list[tuple[float, object]]:
    """Fire every deadline up to ``until``; return (time, event-or-output) in order."""
    log: list[tuple[float, object]] = []
    while (deadline := layer.next_timer()) is not None and deadline <= until:
        for event in layer.handle_timer(deadline):
            log.append((deadline, event))
        for out in layer.outgoing():
            log.append((deadline, out))
    return log


def sent_times(log: list[tuple[float, object]]) -> list[float]:
    return [t for t, item in log if isinstance(item, tuple) and isinstance(item[0], bytes)]


def parse_out(layer: TransactionLayer) -> list[Request | Response]:
    return [parse_message(out.data) for out in layer.outgoing()]


# ---------------------------------------------------------------------------------------------
# INVITE client transaction
# ---------------------------------------------------------------------------------------------


def test_ict_timer_a_doubles_and_timer_b_times_out_at_64_t1() -> None:
    layer = TransactionLayer()
    key = layer.send_request(request(), PEER, "UDP", now=0.0)
    first = layer.outgoing()
    assert len(first) == 1 and first[0].destination == PEER and first[0].transport == "UDP"
    log = run_timers(layer, 100.0)
    assert sent_times(log) == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    events = [(t, e) for t, e in log if not isinstance(e, tuple)]
    assert events == [(32.0, TransactionTimeout(key, "B")), (32.0, TransactionTerminated(key))]
    assert layer.state(key) is State.TERMINATED
    assert layer.next_timer() is None


def test_ict_custom_t1_scales_timers() -> None:
    layer = TransactionLayer(TimerConfig(t1=0.1))
    layer.send_request(request(), PEER, "UDP", now=10.0)
    layer.outgoing()
    log = run_timers(layer, 100.0)
    assert sent_times(log) == pytest.approx([10.1, 10.3, 10.7, 11.5, 13.1, 16.3])
    assert [t for t, e in log if isinstance(e, TransactionTimeout)] == [pytest.approx(16.4)]


def test_ict_reliable_transport_never_retransmits() -> None:
    layer = TransactionLayer()
    key = layer.send_request(request(transport="TCP"), PEER, "TCP", now=0.0)
    assert len(layer.outgoing()) == 1
    log = run_timers(layer, 100.0)
    assert sent_times(log) == []
    assert (32.0, TransactionTimeout(key, "B")) in log


def test_ict_late_handle_timer_fires_each_missed_deadline_once() -> None:
    layer = TransactionLayer()
    layer.send_request(request(), PEER, "UDP", now=0.0)
    layer.outgoing()
    layer.handle_timer(4.0)  # deadlines 0.5, 1.5 and 3.5 were all missed
    assert len(layer.outgoing()) == 3
    assert layer.next_timer() == 7.5


def test_ict_provisional_stops_retransmissions_and_timer_b() -> None:
    layer = TransactionLayer()
    invite = request()
    key = layer.send_request(invite, PEER, "UDP", now=0.0)
    layer.outgoing()
    events = layer.receive(reply(invite, 180), PEER, "UDP", now=0.3)
    assert [type(e) for e in events] == [ResponseReceived]
    assert layer.state(key) is State.PROCEEDING
    assert layer.next_timer() is None
    events = layer.receive(reply(invite, 183), PEER, "UDP", now=0.4)
    assert [type(e) for e in events] == [ResponseReceived]


@pytest.mark.parametrize("status", [486, 487, 401, 302, 603])
def test_ict_non_2xx_final_is_acked_with_same_branch(status: int) -> None:
    layer = TransactionLayer()
    invite = request()
    key = layer.send_request(invite, PEER, "UDP", now=0.0)
    layer.outgoing()
    layer.receive(reply(invite, 100, tag=None), PEER, "UDP", now=0.1)
    final = reply(invite, status)
    events = layer.receive(final, PEER, "UDP", now=1.0)
    assert events == [ResponseReceived(key, final)]
    (ack,) = parse_out(layer)
    assert isinstance(ack, Request) and ack.method == "ACK"
    assert ack.uri == invite.uri
    assert ack.top_via.branch == "z9hG4bKabc"
    assert len(ack.vias) == 1
    assert ack.cseq.number == 1 and ack.cseq.method == "ACK"
    assert ack.to.tag == "b1"
    assert ack.from_.tag == "a1"
    assert ack.call_id == invite.call_id
    assert ack.headers.get_all("Route") == ["<sip:proxy.example.com;lr>"]
    assert layer.state(key) is State.COMPLETED
    # A retransmitted final is absorbed but re-ACKed.
    assert layer.receive(final, PEER, "UDP", now=2.0) == []
    assert [m.method for m in parse_out(layer) if isinstance(m, Request)] == ["ACK"]
    # Timer D: 32 s on UDP.
    assert layer.next_timer() == 33.0
    assert layer.handle_timer(32.99) == []
    assert layer.handle_timer(33.0) == [TransactionTerminated(key)]


def test_ict_timer_d_is_zero_on_reliable_transport() -> None:
    layer = TransactionLayer()
    invite = request(transport="TCP")
    key = layer.send_request(invite, PEER, "TCP", now=0.0)
    events = layer.receive(reply(invite, 486), PEER, "TCP", now=1.0)
    assert events == [ResponseReceived(key, events[0].response), TransactionTerminated(key)]  # type: ignore[union-attr]
    assert layer.state(key) is State.TERMINATED
    assert [m.method for m in parse_out(layer)[1:] if isinstance(m, Request)] == ["ACK"]


def test_ict_2xx_enters_accepted_passes_every_2xx_and_ends_on_timer_m() -> None:
    layer = TransactionLayer()
    invite = request()
    key = layer.send_request(invite, PEER, "UDP", now=0.0)
    layer.outgoing()
    ok = reply(invite, 200)
    assert layer.receive(ok, PEER, "UDP", now=1.0) == [ResponseReceived(key, ok)]
    assert layer.state(key) is State.ACCEPTED
    assert layer.outgoing() == []  # the UA core ACKs a 2xx, not the transaction
    # A retransmission and a forked 2xx both reach the TU.
    fork = reply(invite, 200, tag="other")
    assert layer.receive(ok, PEER, "UDP", now=2.0) == [ResponseReceived(key, ok)]
    assert layer.receive(fork, PEER, "UDP", now=2.5) == [ResponseReceived(key, fork)]
    assert layer.receive(reply(invite, 180), PEER, "UDP", now=2.6) == []
    assert layer.transport_error(key) == []
    assert layer.next_timer() == 33.0
    assert layer.handle_timer(33.0) == [TransactionTerminated(key)]
    # After Timer M further 2xx are strays and dropped.
    assert layer.receive(ok, PEER, "UDP", now=40.0) == []


def test_ict_completed_ignores_provisional_and_2xx() -> None:
    layer = TransactionLayer()
    invite = request()
    key = layer.send_request(invite, PEER, "UDP", now=0.0)
    layer.receive(reply(invite, 500), PEER, "UDP", now=0.1)
    layer.outgoing()
    assert layer.receive(reply(invite, 180), PEER, "UDP", now=0.2) == []
    assert layer.receive(reply(invite, 200), PEER, "UDP", now=0.3) == []
    assert layer.outgoing() == []
    assert layer.state(key) is State.COMPLETED
    assert layer.transport_error(key) == [TransportFailure(key), TransactionTerminated(key)]


def test_ict_transport_error_reports_failure() -> None:
    layer = TransactionLayer()
    key = layer.send_request(request(), PEER, "UDP", now=0.0)
    assert layer.transport_error(key) == [TransportFailure(key), TransactionTerminated(key)]
    assert layer.next_timer() is None
    assert layer.transport_error(key) == []


# ---------------------------------------------------------------------------------------------
# Non-INVITE client transaction
# ---------------------------------------------------------------------------------------------


def test_nict_timer_e_doubles_to_t2_and_timer_f_times_out() -> None:
    layer = TransactionLayer()
    key = layer.send_request(request("OPTIONS"), PEER, "UDP", now=0.0)
    layer.outgoing()
    log = run_timers(layer, 100.0)
    assert sent_times(log) == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert [(t, e) for t, e in log if not isinstance(e, tuple)] == [
        (32.0, TransactionTimeout(key, "F")),
        (32.0, TransactionTerminated(key)),
    ]


def test_nict_provisional_makes_timer_e_use_t2() -> None:
    layer = TransactionLayer()
    bye = request("BYE")
    key = layer.send_request(bye, PEER, "UDP", now=0.0)
    layer.outgoing()
    assert layer.receive(reply(bye, 100, None), PEER, "UDP", now=0.2) == [
        ResponseReceived(key, reply(bye, 100, None))
    ]
    assert layer.state(key) is State.PROCEEDING
    log = run_timers(layer, 13.0)
    assert sent_times(log) == [0.5, 4.5, 8.5, 12.5]


def test_nict_final_response_then_timer_k() -> None:
    layer = TransactionLayer()
    bye = request("BYE")
    key = layer.send_request(bye, PEER, "UDP", now=0.0)
    ok = reply(bye, 200)
    assert layer.receive(ok, PEER, "UDP", now=0.7) == [ResponseReceived(key, ok)]
    assert layer.state(key) is State.COMPLETED
    assert layer.next_timer() == pytest.approx(5.7)
    # Retransmissions are absorbed.
    assert layer.receive(ok, PEER, "UDP", now=1.0) == []
    assert layer.receive(reply(bye, 100, None), PEER, "UDP", now=1.0) == []
    assert layer.transport_error(key) == []
    assert layer.handle_timer(5.69) == []
    assert layer.handle_timer(5.7) == [TransactionTerminated(key)]


def test_nict_timer_k_zero_on_reliable_and_proceeding_timeout() -> None:
    layer = TransactionLayer()
    reg = request("REGISTER", transport="TCP")
    key = layer.send_request(reg, PEER, "TCP", now=0.0)
    ok = reply(reg, 200)
    assert layer.receive(ok, PEER, "TCP", now=0.1) == [
        ResponseReceived(key, ok),
        TransactionTerminated(key),
    ]
    layer2 = TransactionLayer()
    opt = request("OPTIONS", branch="z9hG4bKp")
    key2 = layer2.send_request(opt, PEER, "UDP", now=0.0)
    layer2.receive(reply(opt, 100, None), PEER, "UDP", now=0.1)
    log = run_timers(layer2, 40.0)
    assert (32.0, TransactionTimeout(key2, "F")) in log
    layer3 = TransactionLayer()
    key3 = layer3.send_request(request("OPTIONS"), PEER, "UDP", now=0.0)
    layer3.receive(reply(request("OPTIONS"), 100, None), PEER, "UDP", now=0.1)
    assert layer3.transport_error(key3) == [TransportFailure(key3), TransactionTerminated(key3)]


# ---------------------------------------------------------------------------------------------
# INVITE server transaction
# ---------------------------------------------------------------------------------------------


def new_ist(transport: str = "UDP") -> tuple[TransactionLayer, Request, tuple[str, ...]]:
    layer = TransactionLayer()
    invite = request(transport=transport)
    events = layer.receive(invite.to_bytes(), PEER, transport, now=0.0)
    assert len(events) == 1 and isinstance(events[0], RequestReceived)
    assert events[0].request.method == "INVITE"
    return layer, events[0].request, events[0].key


def test_ist_sends_100_trying_after_200_ms() -> None:
    layer, _invite, _key = new_ist()
    assert layer.outgoing() == []
    assert layer.next_timer() == pytest.approx(0.2)
    assert layer.handle_timer(0.19) == []
    layer.handle_timer(0.2)
    (trying,) = parse_out(layer)
    assert isinstance(trying, Response) and trying.status == 100
    assert trying.to.tag is None


def test_ist_no_100_when_tu_answers_first_and_retransmission_resends_provisional() -> None:
    layer, invite, key = new_ist()
    layer.send_response(key, reply(invite, 180), now=0.1)
    assert [m.status for m in parse_out(layer) if isinstance(m, Response)] == [180]
    assert layer.next_timer() is None
    # A retransmitted INVITE is never a new call: it re-sends the last provisional.
    assert layer.receive(request().to_bytes(), PEER, "UDP", now=0.5) == []
    assert [m.status for m in parse_out(layer) if isinstance(m, Response)] == [180]


def test_ist_retransmission_before_any_response_is_absorbed() -> None:
    layer, _invite, _key = new_ist()
    assert layer.receive(request().to_bytes(), PEER, "UDP", now=0.05) == []
    assert layer.outgoing() == []
    assert layer.receive(request("ACK").to_bytes(), PEER, "UDP", now=0.06) == []


def test_ist_non_2xx_timer_g_and_timer_h() -> None:
    layer, invite, key = new_ist()
    layer.send_response(key, reply(invite, 486), now=0.0)
    assert len(layer.outgoing()) == 1
    assert layer.state(key) is State.COMPLETED
    log = run_timers(layer, 100.0)
    assert sent_times(log) == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert [(t, e) for t, e in log if not isinstance(e, tuple)] == [
        (32.0, TransactionTimeout(key, "H")),
        (32.0, TransactionTerminated(key)),
    ]


def test_ist_ack_confirms_then_timer_i() -> None:
    layer, invite, key = new_ist()
    layer.send_response(key, reply(invite, 404), now=1.0)
    layer.outgoing()
    # The INVITE retransmitted in Completed gets the final response again.
    assert layer.receive(request().to_bytes(), PEER, "UDP", now=1.2) == []
    assert [m.status for m in parse_out(layer) if isinstance(m, Response)] == [404]
    ack = request("ACK")
    ack.headers.set("To", "<sip:bob@example.com>;tag=b1")
    assert layer.receive(ack.to_bytes(), PEER, "UDP", now=1.3) == []
    assert layer.state(key) is State.CONFIRMED
    assert layer.next_timer() == pytest.approx(6.3)  # G and H cancelled, I = T4
    assert layer.receive(ack.to_bytes(), PEER, "UDP", now=2.0) == []
    assert layer.receive(request().to_bytes(), PEER, "UDP", now=2.0) == []
    assert layer.outgoing() == []
    assert layer.transport_error(key) == []
    assert layer.handle_timer(6.3) == [TransactionTerminated(key)]


def test_ist_reliable_no_timer_g_and_timer_i_zero() -> None:
    layer, invite, key = new_ist("TCP")
    layer.send_response(key, reply(invite, 486), now=0.0)
    assert layer.next_timer() == 32.0  # only H
    ack = request("ACK", transport="TCP")
    assert layer.receive(ack.to_bytes(), PEER, "TCP", now=0.5) == [TransactionTerminated(key)]


def test_ist_2xx_accepted_absorbs_invites_passes_acks_timer_l() -> None:
    layer, invite, key = new_ist()
    ok = reply(invite, 200)
    layer.send_response(key, ok, now=1.0)
    assert layer.state(key) is State.ACCEPTED
    layer.outgoing()
    assert layer.receive(request().to_bytes(), PEER, "UDP", now=1.5) == []
    assert layer.outgoing() == []
    # The UA core retransmits the 2xx itself (§13.3.1.4) through the transaction.
    layer.send_response(key, ok, now=1.5)
    assert len(layer.outgoing()) == 1
    ack = request("ACK")  # an ACK with the INVITE's branch (some UAs do this)
    events = layer.receive(ack.to_bytes(), PEER, "UDP", now=1.6)
    assert [type(e) for e in events] == [AckReceived]
    assert layer.transport_error(key) == []
    assert layer.next_timer() == 33.0
    assert layer.handle_timer(33.0) == [TransactionTerminated(key)]


def test_ist_illegal_tu_actions_raise() -> None:
    layer, invite, key = new_ist()
    layer.send_response(key, reply(invite, 486), now=0.0)
    with pytest.raises(TransactionError):
        layer.send_response(key, reply(invite, 180), now=0.1)
    with pytest.raises(TransactionError):
        layer.send_response(key, reply(invite, 200), now=0.1)
    with pytest.raises(TransactionError):
        layer.send_response(("server", "nope"), reply(invite, 200), now=0.1)


def test_ist_transport_error() -> None:
    layer, invite, key = new_ist()
    assert layer.transport_error(key) == [TransportFailure(key), TransactionTerminated(key)]
    layer, invite, key = new_ist()
    layer.send_response(key, reply(invite, 500), now=0.0)
    assert layer.transport_error(key) == [TransportFailure(key), TransactionTerminated(key)]


# ---------------------------------------------------------------------------------------------
# Non-INVITE server transaction
# ---------------------------------------------------------------------------------------------


def test_nist_absorbs_and_replays_the_final_response_then_timer_j() -> None:
    layer = TransactionLayer()
    bye = request("BYE")
    (event,) = layer.receive(bye.to_bytes(), PEER, "UDP", now=0.0)
    assert isinstance(event, RequestReceived)
    key = event.key
    assert layer.receive(bye.to_bytes(), PEER, "UDP", now=0.1) == []  # Trying: absorbed
    assert layer.outgoing() == []
    layer.send_response(key, reply(event.request, 100, None), now=0.2)
    assert layer.state(key) is State.PROCEEDING
    layer.outgoing()
    assert layer.receive(bye.to_bytes(), PEER, "UDP", now=0.3) == []
    assert [m.status for m in parse_out(layer) if isinstance(m, Response)] == [100]
    ok = reply(event.request, 200)
    layer.send_response(key, ok, now=1.0)
    first = layer.outgoing()
    # A retransmitted BYE gets the cached 200 — the very same bytes — never a 481.
    assert layer.receive(bye.to_bytes(), PEER, "UDP", now=2.0) == []
    assert layer.outgoing() == first
    with pytest.raises(TransactionError):
        layer.send_response(key, reply(event.request, 500), now=2.0)
    assert layer.next_timer() == 33.0
    assert layer.handle_timer(33.0) == [TransactionTerminated(key)]


def test_nist_timer_j_zero_on_reliable_and_transport_error() -> None:
    layer = TransactionLayer()
    opt = request("OPTIONS", transport="TCP")
    (event,) = layer.receive(opt.to_bytes(), PEER, "TCP", now=0.0)
    assert isinstance(event, RequestReceived)
    assert layer.send_response(event.key, reply(event.request, 200), now=0.1) == [
        TransactionTerminated(event.key)
    ]
    (event,) = layer.receive(request("INFO").to_bytes(), PEER, "UDP", now=0.0)
    assert isinstance(event, RequestReceived)
    assert layer.transport_error(event.key) == [
        TransportFailure(event.key),
        TransactionTerminated(event.key),
    ]


# ---------------------------------------------------------------------------------------------
# Matching, CANCEL, RFC 2543, routing, malformed input
# ---------------------------------------------------------------------------------------------


def test_cancel_matches_the_invite_server_transaction() -> None:
    layer, invite, key = new_ist()
    cancel = build_cancel(invite)
    assert cancel.top_via.branch == invite.top_via.branch
    assert cancel.cseq.method == "CANCEL" and cancel.cseq.number == invite.cseq.number
    (event,) = layer.receive(cancel.to_bytes(), PEER, "UDP", now=0.1)
    assert isinstance(event, RequestReceived) and event.cancel_target == key
    assert event.key != key
    other = request("CANCEL", branch="z9hG4bKunknown")
    (event,) = layer.receive(other.to_bytes(), PEER, "UDP", now=0.1)
    assert isinstance(event, RequestReceived) and event.cancel_target is None


def test_same_branch_different_sent_by_is_a_different_transaction() -> None:
    layer, _invite, _key = new_ist()
    other = request(host="198.51.100.7")
    events = layer.receive(other.to_bytes(), PEER, "UDP", now=0.1)
    assert [type(e) for e in events] == [RequestReceived]


def test_response_matching_needs_branch_and_method() -> None:
    layer = TransactionLayer()
    invite = request()
    layer.send_request(invite, PEER, "UDP", now=0.0)
    wrong_method = reply(request("BYE"), 200)
    assert layer.receive(wrong_method, PEER, "UDP", now=0.1) == []
    wrong_branch = reply(request(branch="z9hG4bKzzz"), 200)
    assert layer.receive(wrong_branch, PEER, "UDP", now=0.1) == []


def test_rfc2543_request_matching_and_ack() -> None:
    layer = TransactionLayer()
    data = (VECTORS / "inv2543.dat").read_bytes()
    (event,) = layer.receive(data, ("192.0.2.99", 5060), "UDP", now=0.0)
    assert isinstance(event, RequestReceived)
    assert event.key[0] == "server-2543"
    # Retransmission (no branch) matches the same transaction.
    assert layer.receive(data, ("192.0.2.99", 5060), "UDP", now=0.1) == []
    final = make_response(event.request, 486, to_tag="t1")
    layer.send_response(event.key, final, now=0.2)
    (out,) = layer.outgoing()
    assert out.destination == ("192.0.2.99", 5060)  # received, sent-by port default
    ack = Request(headers=Headers(), method="ACK", uri=event.request.uri)
    for name in ("Via", "From", "Call-ID"):
        ack.headers.add(name, event.request.headers.get(name) or "")
    ack.headers.add("To", final.headers.get("To") or "")
    ack.headers.add("CSeq", f"{event.request.cseq.number} ACK")
    assert event.request.cseq.number == 31  # inv2543.dat
    assert layer.receive(ack, ("192.0.2.99", 5060), "UDP", now=0.3) == []
    assert layer.state(event.key) is State.CONFIRMED


def test_badbranch_uses_fallback_matching() -> None:
    layer = TransactionLayer()
    data = (VECTORS / "badbranch.dat").read_bytes()
    (event,) = layer.receive(data, ("192.0.2.1", 5060), "UDP", now=0.0)
    assert isinstance(event, RequestReceived) and event.key[0] == "server-2543"
    assert layer.receive(data, ("192.0.2.1", 5060), "UDP", now=0.5) == []


def test_received_and_rport_are_filled_and_used_for_routing() -> None:
    layer = TransactionLayer()
    req = request("OPTIONS", host="10.0.0.5")  # private sent-by behind NAT, rport empty
    (event,) = layer.receive(req.to_bytes(), ("203.0.113.9", 40000), "UDP", now=0.0)
    assert isinstance(event, RequestReceived)
    via = event.request.top_via
    assert via.received == "203.0.113.9" and via.rport == 40000
    layer.send_response(event.key, reply(event.request, 200), now=0.1)
    (out,) = layer.outgoing()
    assert out.destination == ("203.0.113.9", 40000)
    # Without rport: received host, sent-by port.
    plain = request("OPTIONS", host="10.0.0.5", branch="z9hG4bKx")
    plain.headers.set("Via", "SIP/2.0/UDP 10.0.0.5:5070;branch=z9hG4bKx")
    (event,) = layer.receive(plain.to_bytes(), ("203.0.113.9", 40001), "UDP", now=0.0)
    assert isinstance(event, RequestReceived)
    layer.send_response(event.key, reply(event.request, 200), now=0.1)
    (out,) = layer.outgoing()
    assert out.destination == ("203.0.113.9", 5070)
    # Streams answer on the connection the request came from.
    resp = reply(event.request, 200)
    assert response_destination(resp, ("198.51.100.1", 1234), "TCP") == ("198.51.100.1", 1234)


def test_malformed_request_gets_400_with_reason_and_bad_version_505() -> None:
    layer = TransactionLayer()
    data = (VECTORS / "mismatch01.dat").read_bytes()
    (event,) = layer.receive(data, ("192.0.2.1", 5060), "UDP", now=0.0)
    assert isinstance(event, MalformedMessage) and event.responded
    (out,) = layer.outgoing()
    answer = parse_message(out.data)
    assert isinstance(answer, Response) and answer.status == 400
    assert "CSeq" in answer.reason
    assert out.destination == ("192.0.2.1", 5060)
    (event,) = layer.receive((VECTORS / "badvers.dat").read_bytes(), PEER, "UDP", now=0.0)
    assert isinstance(event, MalformedMessage)
    assert [parse_message(o.data).status for o in layer.outgoing()] == [505]  # type: ignore[union-attr]


def test_malformed_response_and_garbage_are_dropped() -> None:
    layer = TransactionLayer()
    for data in [(VECTORS / "scalarlg.dat").read_bytes(), b"\x00\xffgarbage", b""]:
        (event,) = layer.receive(data, PEER, "UDP", now=0.0)
        assert isinstance(event, MalformedMessage) and not event.responded
    assert layer.outgoing() == []


def test_client_request_rules() -> None:
    layer = TransactionLayer()
    with pytest.raises(TransactionError):
        layer.send_request(request("ACK"), PEER, "UDP", now=0.0)
    with pytest.raises(TransactionError):
        layer.send_request(request(branch="1234"), PEER, "UDP", now=0.0)
    layer.send_request(request(), PEER, "UDP", now=0.0)
    with pytest.raises(TransactionError):
        layer.send_request(request(), PEER, "UDP", now=0.0)


def test_stamp_via_adds_branch_and_rport() -> None:
    req = request("OPTIONS", branch=None)
    req.headers.remove("Via")
    via = stamp_via(req, "tcp", "192.0.2.1", 5060, SeededIdSource(1))
    assert req.top_via == via
    assert via.transport == "TCP" and via.is_rfc3261 and len(via.branch or "") == 7 + 16
    assert via.has_rport and via.rport is None


def test_ack_for_2xx_is_stateless() -> None:
    layer = TransactionLayer()
    ack = request("ACK", branch="z9hG4bKnew")
    layer.send_stateless(ack, PEER, "udp")
    (out,) = layer.outgoing()
    assert out.transport == "UDP"
    (event,) = layer.receive(ack.to_bytes(), PEER, "UDP", now=0.0)
    assert isinstance(event, AckReceived)


@pytest.mark.parametrize(
    ("machine", "state", "inp"),
    [
        ("ICT", State.CALLING, Input.TIMER_D),
        ("ICT", State.COMPLETED, Input.TIMER_A),
        ("NICT", State.COMPLETED, Input.TIMER_E),
        ("IST", State.CONFIRMED, Input.SEND_2XX),
        ("NIST", State.COMPLETED, Input.SEND_1XX),
    ],
)
def test_tables_reject_illegal_transitions(machine: str, state: State, inp: Input) -> None:
    from callbridge.sip import transaction as tx

    tables = {
        "ICT": tx.ICT_TABLE,
        "NICT": tx.NICT_TABLE,
        "IST": tx.IST_TABLE,
        "NIST": tx.NIST_TABLE,
    }
    assert (state, inp) not in tables[machine]
    layer = TransactionLayer()
    key = layer.send_request(request(), PEER, "UDP", now=0.0)
    transaction = layer.clients[key]
    transaction.state = state
    with pytest.raises(TransactionError):
        transaction.table = tables[machine]
        transaction._step(inp)


def test_next_timer_tracks_many_transactions_in_deadline_order() -> None:
    """The layer's deadline heap: the earliest armed timer across transactions is reported
    after responses re-arm or cancel timers, and timers fire in deadline order."""
    layer = TransactionLayer(TimerConfig(t1=0.5))
    keys = [
        layer.send_request(request("OPTIONS", f"z9hG4bKm{i}"), PEER, "UDP", now=i * 0.1)
        for i in range(5)
    ]
    layer.outgoing()
    assert layer.next_timer() == pytest.approx(0.5)  # Timer E of the first request
    # A final response to the first request: its E/F give way to Timer K (t4 = 5 s).
    first = layer.clients[keys[0]].request
    layer.receive(reply(first, 200), PEER, "UDP", now=0.45)
    assert layer.next_timer() == pytest.approx(0.6)  # now the second request's Timer E
    assert layer.clients[keys[0]].state is State.COMPLETED
    fired = [t for t, item in run_timers(layer, 1.0) if isinstance(item, tuple)]
    assert fired == sorted(fired)
    assert fired[:4] == pytest.approx([0.6, 0.7, 0.8, 0.9])
    # Every request but the first times out at 64·T1 after it was sent (Timer F).
    events = run_timers(layer, 40.0)
    timeouts = [t for t, item in events if isinstance(item, TransactionTimeout)]
    assert timeouts == pytest.approx([32.1, 32.2, 32.3, 32.4])
    assert not layer.clients and layer.next_timer() is None
