"""3xx redirection of outbound INVITEs (RFC 3261 §8.1.3.4), sans-I/O in virtual time."""

from __future__ import annotations

from test_sip_ua import PEER, dial, make_ua, response_to, sent

from callbridge.sip.message import Request
from callbridge.sip.ua_client import MAX_REDIRECTS
from callbridge.sip.ua_model import CallEnded, Outcome


def redirect(req: Request, contacts: str, status: int = 302) -> bytes:
    data = response_to(req, status)
    return data.replace(b"Contact: <sip:far@127.0.0.1:5070>", f"Contact: {contacts}".encode())


def test_3xx_is_acked_and_the_best_contact_invited() -> None:
    ua = make_ua()
    call, invite = dial(ua)
    contacts = (
        "<sip:a@moved.example.com:5080>;q=0.85, <sip:b@127.0.0.1:5081;transport=tcp>;q=0.9, "
        "<sip:c@127.0.0.1:5082>;q=0.5, <sip:d@127.0.0.1:5083>;q=0.8, <tel:+1555>"
    )
    assert ua.receive(redirect(invite, contacts), PEER, "UDP", 0.1) == []
    ack, retry = sent(ua)
    assert isinstance(ack, Request) and ack.method == "ACK" and ack.cseq.number == 1
    assert ack.top_via.branch == invite.top_via.branch
    # Other transports and non-SIP URIs are skipped; highest q wins. A host name is followed:
    # the shell looks it up when the INVITE goes out (RFC 3263 §4).
    assert isinstance(retry, Request) and retry.method == "INVITE"
    assert retry.uri == "sip:a@moved.example.com:5080"
    assert retry.cseq.number == 2 and retry.call_id == invite.call_id
    assert retry.from_.tag == invite.from_.tag and retry.to.tag is None
    assert retry.top_via.branch != invite.top_via.branch
    assert call.peer == ("moved.example.com", 5080)
    assert retry.body == invite.body


def test_redirects_are_bounded_and_never_loop() -> None:
    ua = make_ua()
    call, invite = dial(ua)
    current = invite
    for hop in range(MAX_REDIRECTS):
        ua.receive(redirect(current, f"<sip:x{hop}@127.0.0.1:{6000 + hop}>"), PEER, "UDP", hop)
        _, current = sent(ua)
        assert isinstance(current, Request) and current.method == "INVITE"
    (ended,) = ua.receive(redirect(current, "<sip:y@127.0.0.1:6100>"), PEER, "UDP", 9)
    assert isinstance(ended, CallEnded) and ended.outcome is Outcome.REJECTED
    assert ended.status == 302 and call.ended


def test_redirect_to_an_already_tried_target_ends_the_attempt() -> None:
    ua = make_ua()
    _, invite = dial(ua)
    (ended,) = ua.receive(redirect(invite, f"<{invite.uri}>", 301), PEER, "UDP", 0.1)
    assert isinstance(ended, CallEnded) and ended.status == 301


def test_unusable_contacts_in_3xx_are_a_plain_rejection() -> None:
    ua = make_ua()
    _, invite = dial(ua)
    contacts = "<sip:x@999.1.1.1>, <sips:y@127.0.0.1:5061>"
    (ended,) = ua.receive(redirect(invite, contacts), PEER, "UDP", 0.1)
    assert isinstance(ended, CallEnded) and ended.status == 302


def test_bad_q_value_ranks_last_but_is_followed() -> None:
    ua = make_ua()
    _, invite = dial(ua)
    ua.receive(redirect(invite, "<sip:x@127.0.0.1:5090>;q=abc"), PEER, "UDP", 0.1)
    _, retry = sent(ua)
    assert isinstance(retry, Request) and retry.uri == "sip:x@127.0.0.1:5090"
