"""UA core and registrar in virtual time: bytes in, bytes out, ``now`` passed explicitly."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from callbridge.sip.auth import DigestClient, DigestServer
from callbridge.sip.ids import SeededIdSource
from callbridge.sip.message import Request, Response, parse_message
from callbridge.sip.registrar import LocationService, Registrar
from callbridge.sip.sdp import SdpNegotiator
from callbridge.sip.ua import RateLimiter, UserAgent
from callbridge.sip.ua_model import (
    CallAnswered,
    CallConfirmed,
    CallEnded,
    CallProgress,
    IncomingCall,
    MediaChanged,
    Outcome,
    SipCall,
    UaConfig,
)

PEER = ("127.0.0.1", 5070)
ME = "127.0.0.1"


class Policy:
    def __init__(self, trusted: bool = True) -> None:
        self._trusted = trusted
        self._passwords = {"1001": "pw"}

    def trusted(self, host: str) -> bool:
        return self._trusted

    @property
    def passwords(self) -> Mapping[str, str]:
        return self._passwords


def make_ua(trusted: bool = True) -> UserAgent:
    ids = SeededIdSource(7)
    digest = DigestServer("cb.test", b"secret", ids, algorithms=("MD5",))
    policy = Policy(trusted)
    registrar = Registrar(LocationService(), digest, policy.passwords, ids)
    config = UaConfig(host=ME, port=5060, domain="cb.test", rate_per_second=1, rate_burst=3)
    return UserAgent(config, ids, policy, digest, registrar=registrar)


SDP = (
    "v=0\r\no=peer 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 40000 RTP/AVP {pts}\r\n{maps}"
)


def sdp(pts: str = "0 101", direction: str = "") -> bytes:
    maps = "a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
    if pts == "18":
        maps = "a=rtpmap:18 G729/8000\r\n"
    if direction:
        maps += f"a={direction}\r\n"
    return SDP.format(pts=pts, maps=maps).encode()


def request(
    method: str,
    *,
    branch: str = "z9hG4bKaaa",
    cseq: int = 1,
    to_tag: str | None = None,
    body: bytes = b"",
    uri: str = "sip:100@127.0.0.1",
    extra: str = "",
    call_id: str = "call-1",
) -> bytes:
    to = "<sip:100@127.0.0.1>" + (f";tag={to_tag}" if to_tag else "")
    head = (
        f"{method} {uri} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5070;branch={branch};rport\r\n"
        "From: <sip:peer@127.0.0.1>;tag=peer-tag\r\n"
        f"To: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n"
        "Contact: <sip:peer@127.0.0.1:5070>\r\nMax-Forwards: 70\r\n"
    )
    if body:
        head += "Content-Type: application/sdp\r\n"
    head += extra + f"Content-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


def sent(ua: UserAgent) -> list[Request | Response]:
    return [parse_message(item.data) for item in ua.outgoing()]


def statuses(messages: list[Request | Response]) -> list[int]:
    return [m.status for m in messages if isinstance(m, Response)]


def incoming(ua: UserAgent, data: bytes, now: float = 0.0) -> SipCall:
    events = ua.receive(data, PEER, "UDP", now)
    (event,) = events
    assert isinstance(event, IncomingCall)
    return event.call


def answer(ua: UserAgent, call: SipCall, now: float = 0.0) -> Response:
    ua.prepare_answer(call, SdpNegotiator(ME, 30000, SeededIdSource(1)))
    ua.answer(call, now)
    (ok,) = [m for m in sent(ua) if isinstance(m, Response) and m.status == 200]
    return ok


def test_responses_table_for_out_of_dialog_requests() -> None:
    ua = make_ua()
    ua.receive(request("FOO", branch="z9hG4bK1", call_id="t1"), PEER, "UDP", 0)
    ua.receive(request("SUBSCRIBE", branch="z9hG4bK2", call_id="t2"), PEER, "UDP", 0)
    ua.receive(
        request("OPTIONS", branch="z9hG4bK3", call_id="t3", uri="sip:x@elsewhere.test"),
        PEER,
        "UDP",
        0,
    )
    ua.receive(
        request("OPTIONS", branch="z9hG4bK4", call_id="t4", uri="mailto:a@b.c"), PEER, "UDP", 0
    )
    ua.receive(
        request("OPTIONS", branch="z9hG4bK5", call_id="t5", extra="Require: foo\r\n"),
        PEER,
        "UDP",
        0,
    )
    body = b"hello"
    ua.receive(
        request("INVITE", branch="z9hG4bK6", call_id="t6", body=body).replace(
            b"application/sdp", b"text/plain"
        ),
        PEER,
        "UDP",
        0,
    )
    ua.receive(request("BYE", branch="z9hG4bK7", call_id="t7", to_tag="nope"), PEER, "UDP", 0)
    out = sent(ua)
    assert statuses(out) == [501, 405, 404, 416, 420, 415, 481]
    assert all(isinstance(m, Response) and m.to.tag for m in out)
    assert "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER" in (out[0].headers.get("Allow") or "")
    assert out[4].headers.get("Unsupported") == "foo"
    assert out[5].headers.get("Accept") == "application/sdp"


def test_options_lists_capabilities() -> None:
    ua = make_ua()
    ua.receive(request("OPTIONS"), PEER, "UDP", 0)
    (ok,) = sent(ua)
    assert isinstance(ok, Response) and ok.status == 200
    assert ok.headers.get("Accept") == "application/sdp"


def test_inbound_call_ring_answer_ack_bye() -> None:
    ua = make_ua()
    call = incoming(ua, request("INVITE", body=sdp()))
    ua.ring(call, 0.01)
    assert statuses(sent(ua)) == [180]
    ok = answer(ua, call, 0.02)
    assert ok.headers.get("Contact") == "<sip:callbridge@127.0.0.1:5060>"
    assert b"m=audio 30000 RTP/AVP 0 101" in ok.body
    tag = ok.to.tag
    # 2xx retransmitted at T1, 2·T1 … until the ACK
    assert ua.next_timer() == pytest.approx(0.52)
    ua.handle_timer(0.52)
    assert statuses(sent(ua)) == [200]
    events = ua.receive(request("ACK", branch="z9hG4bKack", to_tag=tag), PEER, "UDP", 0.6)
    assert [type(e) for e in events] == [CallConfirmed]
    ua.handle_timer(2.0)
    assert sent(ua) == []
    events = ua.receive(request("BYE", branch="z9hG4bKbye", cseq=2, to_tag=tag), PEER, "UDP", 3)
    assert [(type(e), e.outcome) for e in events if isinstance(e, CallEnded)] == [
        (CallEnded, Outcome.NORMAL)
    ]
    assert statuses(sent(ua)) == [200]
    # A retransmitted BYE gets the cached 200, never a 481.
    ua.receive(request("BYE", branch="z9hG4bKbye", cseq=2, to_tag=tag), PEER, "UDP", 3.5)
    assert statuses(sent(ua)) == [200]


def test_duplicate_invite_is_one_call_and_late_duplicate_is_dropped() -> None:
    ua = make_ua()
    call = incoming(ua, request("INVITE", body=sdp()))
    assert ua.receive(request("INVITE", body=sdp()), PEER, "UDP", 0.5) == []
    ok = answer(ua, call, 1.0)
    ua.receive(request("ACK", branch="z9hG4bKack", to_tag=ok.to.tag), PEER, "UDP", 1.1)
    ua.handle_timer(40.0)  # Timer L ended the server transaction
    sent(ua)
    assert ua.receive(request("INVITE", body=sdp()), PEER, "UDP", 41.0) == []
    assert sent(ua) == []
    # Same Call-ID/From tag/CSeq, new branch, no To tag: a merged request.
    assert ua.receive(request("INVITE", branch="z9hG4bKother", body=sdp()), PEER, "UDP", 42) == []
    assert statuses(sent(ua)) == [482]


def test_cancel_before_answer_gives_200_and_487_and_after_answer_only_200() -> None:
    ua = make_ua()
    call = incoming(ua, request("INVITE", body=sdp()))
    ua.ring(call, 0)
    sent(ua)
    events = ua.receive(request("CANCEL"), PEER, "UDP", 1)
    assert [(type(e), e.outcome) for e in events if isinstance(e, CallEnded)] == [
        (CallEnded, Outcome.CANCELLED)
    ]
    assert statuses(sent(ua)) == [200, 487]
    # Answered call: CANCEL is answered 200 and the call continues.
    call = incoming(ua, request("INVITE", call_id="call-2", branch="z9hG4bK2", body=sdp()))
    answer(ua, call)
    assert ua.receive(request("CANCEL", call_id="call-2", branch="z9hG4bK2"), PEER, "UDP", 1) == []
    assert statuses(sent(ua)) == [200]
    assert not call.ended
    assert ua.receive(request("CANCEL", call_id="none", branch="z9hG4bK9"), PEER, "UDP", 1) == []
    assert statuses(sent(ua)) == [481]


def test_no_common_codec_and_no_ack() -> None:
    ua = make_ua()
    call = incoming(ua, request("INVITE", body=sdp("18")))
    from callbridge.sip.errors import NegotiationError

    with pytest.raises(NegotiationError):
        ua.prepare_answer(call, SdpNegotiator(ME, 30000, SeededIdSource(1)))
    ua.reject(call, 488, 0, warning="Incompatible media")
    (rejected,) = sent(ua)
    assert isinstance(rejected, Response) and rejected.status == 488
    assert (rejected.headers.get("Warning") or "").startswith("305 ")
    # An answered call whose ACK never comes: 2xx retransmitted, then BYE after 64·T1.
    call = incoming(ua, request("INVITE", call_id="c2", branch="z9hG4bKc2", body=sdp()))
    answer(ua, call, 0)
    times: list[float] = []
    events: list[object] = []
    now = 0.0
    while now < 40 and not events:
        deadline = ua.next_timer()
        assert deadline is not None
        now = deadline
        events = list(ua.handle_timer(now))
        if any(isinstance(m, Response) and m.status == 200 for m in sent_keep(ua, times, now)):
            pass
    assert [type(e) for e in events] == [CallEnded]
    assert isinstance(events[0], CallEnded) and events[0].outcome is Outcome.TIMEOUT
    assert times[:5] == pytest.approx([0.5, 1.5, 3.5, 7.5, 11.5])


def sent_keep(ua: UserAgent, times: list[float], now: float) -> list[Request | Response]:
    out = sent(ua)
    for message in out:
        if isinstance(message, Response) and message.status == 200:
            times.append(now)
    return out


def test_invite_without_sdp_offer_in_200_answer_in_ack() -> None:
    ua = make_ua()
    call = incoming(ua, request("INVITE"))
    assert ua.prepare_answer(call, SdpNegotiator(ME, 30000, SeededIdSource(1))) is None
    ua.answer(call, 0)
    (ok,) = [m for m in sent(ua) if isinstance(m, Response)]
    assert b"RTP/AVP 0 8 101" in ok.body
    ack = request("ACK", branch="z9hG4bKack", to_tag=ok.to.tag, body=sdp("0"))
    (event,) = ua.receive(ack, PEER, "UDP", 0.1)
    assert isinstance(event, CallConfirmed) and event.negotiated is not None
    assert event.negotiated.codec == "PCMU"


def test_reinvite_hold_and_resume_and_bad_offer_keeps_session() -> None:
    ua = make_ua()
    call = incoming(ua, request("INVITE", body=sdp()))
    ok = answer(ua, call)
    tag = ok.to.tag
    ua.receive(request("ACK", branch="z9hG4bKack", to_tag=tag), PEER, "UDP", 0.1)
    hold = sdp(direction="sendonly").replace(b"1 1 IN", b"1 2 IN")
    events = ua.receive(
        request("INVITE", branch="z9hG4bKr1", cseq=2, to_tag=tag, body=hold), PEER, "UDP", 1
    )
    (changed,) = events
    assert isinstance(changed, MediaChanged) and changed.negotiated.direction.value == "recvonly"
    (ok2,) = sent(ua)
    assert isinstance(ok2, Response) and b"a=recvonly" in ok2.body
    ua.receive(request("ACK", branch="z9hG4bKa2", cseq=2, to_tag=tag), PEER, "UDP", 1.1)
    bad = request("INVITE", branch="z9hG4bKr2", cseq=3, to_tag=tag, body=sdp("18"))
    assert ua.receive(bad, PEER, "UDP", 2) == []
    assert statuses(sent(ua)) == [488]
    assert not call.ended
    # A request with a lower CSeq than the last one → 500.
    ua.receive(request("OPTIONS", branch="z9hG4bKo", cseq=1, to_tag=tag), PEER, "UDP", 3)
    assert statuses(sent(ua)) == [500]


def test_untrusted_invite_challenged_then_accepted() -> None:
    ua = make_ua(trusted=False)
    assert ua.receive(request("INVITE", body=sdp()), PEER, "UDP", 0) == []
    (challenge,) = [m for m in sent(ua) if isinstance(m, Response)]
    assert challenge.status == 407
    client = DigestClient("1001", "pw", SeededIdSource(3))
    creds = client.respond(challenge, "INVITE", "sip:100@127.0.0.1")
    assert creds is not None
    extra = "".join(f"{n}: {v}\r\n" for n, v in creds)
    retry = request("INVITE", branch="z9hG4bKr", cseq=2, body=sdp(), extra=extra)
    call = incoming(ua, retry, 1)
    assert call.username == "1001"


def test_rate_limiter_drops_unauthenticated_bursts() -> None:
    ua = make_ua(trusted=False)
    for i in range(5):
        ua.receive(request("OPTIONS", branch=f"z9hG4bKrl{i}", call_id=f"rl{i}"), PEER, "UDP", 0)
    assert statuses(sent(ua)) == [200, 200, 200]
    limiter = RateLimiter(rate=1, burst=1)
    assert limiter.allow("a", 0) and not limiter.allow("a", 0.5) and limiter.allow("a", 1.0)


# -- UAC -----------------------------------------------------------------------------------


def response_to(req: Request, status: int, *, tag: str = "far", body: bytes = b"") -> bytes:
    lines = [f"SIP/2.0 {status} X"]
    for value in req.headers.get_all("Via"):
        lines.append(f"Via: {value}")
    lines += [
        f"From: {req.headers.get('From')}",
        f"To: {req.headers.get('To')};tag={tag}",
        f"Call-ID: {req.call_id}",
        f"CSeq: {req.headers.get('CSeq')}",
        "Contact: <sip:far@127.0.0.1:5070>",
    ]
    if status in (401, 407):
        name = "WWW-Authenticate" if status == 401 else "Proxy-Authenticate"
        lines.append(f'{name}: Digest realm="t", nonce="n1", qop="auth", algorithm=MD5')
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def dial(ua: UserAgent, credentials: tuple[str, str] | None = None) -> tuple[SipCall, Request]:
    call = ua.client.invite(
        target="sip:555@127.0.0.1:5070",
        destination=PEER,
        transport="UDP",
        negotiator=SdpNegotiator(ME, 30000, SeededIdSource(1)),
        now=0,
        credentials=credentials,
    )
    (invite,) = sent(ua)
    assert isinstance(invite, Request)
    return call, invite


def test_uac_timer_a_schedule_then_timeout() -> None:
    ua = make_ua()
    call, invite = dial(ua)
    assert invite.top_via.transport == "UDP" and invite.top_via.has_rport
    times: list[float] = []
    events: list[object] = []
    while not events:
        deadline = ua.next_timer()
        assert deadline is not None
        events = list(ua.handle_timer(deadline))
        if sent(ua):
            times.append(deadline)
    assert times[:6] == pytest.approx([0.5, 1.5, 3.5, 7.5, 15.5, 31.5])
    (ended,) = events
    assert isinstance(ended, CallEnded) and ended.outcome is Outcome.TIMEOUT
    assert ended.status == 408 and call.ended


def test_uac_answered_acked_and_retransmitted_2xx_reacked() -> None:
    ua = make_ua()
    call, invite = dial(ua)
    (progress,) = ua.receive(response_to(invite, 180), PEER, "UDP", 0.1)
    assert isinstance(progress, CallProgress)
    events = ua.receive(response_to(invite, 200, body=sdp()), PEER, "UDP", 0.2)
    assert [type(e) for e in events] == [CallAnswered]
    (ack,) = sent(ua)
    assert isinstance(ack, Request) and ack.method == "ACK" and ack.uri == "sip:far@127.0.0.1:5070"
    assert ua.receive(response_to(invite, 200, body=sdp()), PEER, "UDP", 0.7) == []
    (again,) = sent(ua)
    assert isinstance(again, Request) and again.method == "ACK"
    ua.hangup(call, 1.0)
    (bye,) = sent(ua)
    assert isinstance(bye, Request) and bye.method == "BYE" and bye.cseq.number == 2


def test_uac_cancel_waits_for_provisional_and_resolves_once() -> None:
    ua = make_ua()
    call, invite = dial(ua)
    assert ua.hangup(call, 0.1) == []
    assert sent(ua) == []  # no CANCEL before a provisional
    ua.receive(response_to(invite, 100), PEER, "UDP", 0.2)
    (cancel,) = sent(ua)
    assert isinstance(cancel, Request) and cancel.method == "CANCEL"
    assert cancel.top_via.branch == invite.top_via.branch
    (ended,) = ua.receive(response_to(invite, 487), PEER, "UDP", 0.3)
    assert isinstance(ended, CallEnded) and ended.outcome is Outcome.CANCELLED
    (ack,) = sent(ua)
    assert isinstance(ack, Request) and ack.method == "ACK"
    assert ack.top_via.branch == invite.top_via.branch


def test_uac_digest_one_retry_only() -> None:
    ua = make_ua()
    _, invite = dial(ua, credentials=("u", "p"))
    assert ua.receive(response_to(invite, 401), PEER, "UDP", 0.1) == []
    ack, retry = sent(ua)
    assert isinstance(ack, Request) and ack.method == "ACK"
    assert isinstance(retry, Request) and retry.cseq.number == 2
    assert retry.call_id == invite.call_id and retry.from_.tag == invite.from_.tag
    assert "Authorization" in retry.headers
    (ended,) = ua.receive(response_to(retry, 401), PEER, "UDP", 0.2)
    assert isinstance(ended, CallEnded) and ended.outcome is Outcome.REJECTED
    assert ended.status == 401


def test_registrar_rules() -> None:
    ids = SeededIdSource(5)
    digest = DigestServer("cb.test", b"s", ids, algorithms=("MD5",))
    location = LocationService()
    registrar = Registrar(location, digest, {"1001": "pw", "1002": "pw2"}, ids)
    client = DigestClient("1001", "pw", SeededIdSource(9))

    def register(contact: str, expires: str | None, cseq: int, user: str = "1001") -> Response:
        extra = f"Expires: {expires}\r\n" if expires is not None else ""
        raw = (
            "REGISTER sip:cb.test SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKr\r\n"
            f"From: <sip:{user}@cb.test>;tag=a\r\nTo: <sip:{user}@cb.test>\r\nCall-ID: reg\r\n"
            f"CSeq: {cseq} REGISTER\r\nContact: {contact}\r\n{extra}Content-Length: 0\r\n\r\n"
        )
        req = parse_message(raw.encode())
        assert isinstance(req, Request)
        first = registrar.handle(req, PEER, "UDP", 0)
        if first.status != 401:
            return first
        client._challenges.clear()
        creds = client.respond(first, "REGISTER", "sip:cb.test")
        assert creds is not None
        for name, value in creds:
            req.headers.add(name, value)
        return registrar.handle(req, PEER, "UDP", 0)

    assert register("<sip:1001@10.0.0.1>", None, 1).headers.get("Contact") == (
        "<sip:1001@10.0.0.1>;expires=3600"
    )
    assert register("<sip:1001@10.0.0.1>", "30", 2).status == 423
    assert register("<sip:1001@10.0.0.1>", "300", 2).status == 200
    assert register("<sip:1001@10.0.0.1>", "300", 2).status == 500  # CSeq not higher
    ok = register("<sip:1001@10.0.0.2>;expires=99999", None, 3)
    assert ok.headers.get_all("Contact") == [
        "<sip:1001@10.0.0.1>;expires=300",
        "<sip:1001@10.0.0.2>;expires=3600",
    ]
    assert register("*", "10", 4).status == 400
    assert register("*", "0", 5).status == 200
    assert location.lookup("1001", 0) == []
    assert register("<sip:1002@10.0.0.1>", None, 6, user="1002").status == 403
