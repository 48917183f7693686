"""Dialogs (RFC 3261 §12), the dialog table, 2xx retransmission (§13.3.1.4), and a full call
flow between two transaction layers in virtual time."""

from __future__ import annotations

import pytest

from callbridge.sip.dialog import (
    DIALOG_TABLE,
    Dialog,
    DialogId,
    DialogInput,
    DialogState,
    DialogTable,
    TwoXXRetransmitter,
)
from callbridge.sip.errors import SipParseError, TransactionError
from callbridge.sip.headers import SipUri
from callbridge.sip.ids import SeededIdSource
from callbridge.sip.message import Headers, Request, Response, make_response
from callbridge.sip.transaction import (
    AckReceived,
    RequestReceived,
    ResponseReceived,
    State,
    TransactionLayer,
    stamp_via,
)

UAC_CONTACT = "<sip:alice@192.0.2.1:5060>"
UAS_CONTACT = "<sip:callbridge@203.0.113.5:5060;transport=tcp>"


def invite(record_route: list[str] | None = None) -> Request:
    headers = Headers()
    headers.add("Via", "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKi1")
    headers.add("Max-Forwards", "70")
    headers.add("From", '"Alice" <sip:alice@example.com>;tag=ua')
    headers.add("To", "<sip:1001@callbridge.example.com>")
    headers.add("Call-ID", "dlg-1@192.0.2.1")
    headers.add("CSeq", "10 INVITE")
    headers.add("Contact", UAC_CONTACT)
    for rr in record_route or []:
        headers.add("Record-Route", rr)
    return Request(headers=headers, method="INVITE", uri="sip:1001@callbridge.example.com")


def answer(
    req: Request, status: int = 200, tag: str = "cb", contact: str = UAS_CONTACT
) -> Response:
    resp = make_response(req, status, to_tag=tag)
    for rr in req.headers.get_all("Record-Route"):
        resp.headers.add("Record-Route", rr)
    resp.headers.add("Contact", contact)
    return resp


def test_uas_dialog_from_request() -> None:
    req = invite(["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"])
    dialog = Dialog.from_uas(req, "cb", UAS_CONTACT, confirmed=False)
    assert dialog.id == DialogId("dlg-1@192.0.2.1", "cb", "ua")
    assert dialog.state is DialogState.EARLY and not dialog.is_uac and not dialog.secure
    assert dialog.route_set == ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
    assert str(dialog.remote_target) == "sip:alice@192.0.2.1:5060"
    assert dialog.remote_seq == 10 and dialog.local_seq == 0
    dialog.confirm()
    bye = dialog.create_request("BYE")
    assert bye.uri == "sip:alice@192.0.2.1:5060"
    assert bye.headers.get_all("Route") == ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
    assert bye.to.tag == "ua" and bye.from_.tag == "cb"
    assert bye.cseq.number == 1 and bye.cseq.method == "BYE"
    assert bye.headers.get("Contact") is None


def test_uac_dialog_reverses_route_set_and_builds_ack_and_reinvite() -> None:
    req = invite(["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"])
    early = Dialog.from_uac(req, answer(req, 180), UAC_CONTACT)
    assert early.state is DialogState.EARLY
    dialog = Dialog.from_uac(req, answer(req), UAC_CONTACT)
    assert dialog.state is DialogState.CONFIRMED and dialog.is_uac
    assert dialog.id == DialogId("dlg-1@192.0.2.1", "ua", "cb")
    assert dialog.route_set == ["<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"]
    assert isinstance(dialog.remote_target, SipUri) and dialog.remote_target.transport == "tcp"
    ack = dialog.create_request("ACK", cseq=10)
    assert ack.cseq.number == 10 and ack.cseq.method == "ACK"
    assert dialog.local_seq == 10
    reinvite = dialog.create_request("INVITE", body=b"v=0\r\n", content_type="application/sdp")
    assert reinvite.cseq.number == 11 and reinvite.headers.get("Contact") == UAC_CONTACT
    assert reinvite.headers.get("Content-Type") == "application/sdp" and reinvite.body == b"v=0\r\n"
    with pytest.raises(TransactionError):
        dialog.create_request("ACK")
    # Target refresh by the 2xx of the re-INVITE.
    dialog.update_from_response("INVITE", answer(reinvite, contact="<sip:cb@198.51.100.2>"))
    assert str(dialog.remote_target) == "sip:cb@198.51.100.2"
    assert dialog.route_set == ["<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"]


def test_strict_router_becomes_request_uri() -> None:
    req = invite(["<sip:strict.example.com>"])
    dialog = Dialog.from_uac(req, answer(req), UAC_CONTACT)
    bye = dialog.create_request("BYE")
    assert bye.uri == "sip:strict.example.com"
    assert bye.headers.get_all("Route") == [f"<{dialog.remote_target}>"]


def test_early_dialog_failure_and_481_408_end_dialogs() -> None:
    req = invite()
    dialog = Dialog.from_uac(req, answer(req, 183), UAC_CONTACT)
    dialog.update_from_response("INVITE", answer(req, 486))
    assert dialog.state is DialogState.TERMINATED
    with pytest.raises(TransactionError):
        dialog.create_request("BYE")
    confirmed = Dialog.from_uac(req, answer(req), UAC_CONTACT)
    info = confirmed.create_request("INFO")
    confirmed.update_from_response("INFO", answer(info, 481))
    assert confirmed.state is DialogState.TERMINATED
    confirmed.update_from_response("INFO", answer(info, 408))  # already gone: no error
    confirmed.terminate()
    assert confirmed.state is DialogState.TERMINATED


def test_receive_request_cseq_order_target_refresh_and_bye() -> None:
    dialog = Dialog.from_uas(invite(), "cb", UAS_CONTACT, confirmed=True)
    reinvite = invite()
    reinvite.headers.set("CSeq", "11 INVITE")
    reinvite.headers.set("Contact", "<sip:alice@192.0.2.99>")
    assert dialog.receive_request(reinvite) is None
    assert str(dialog.remote_target) == "sip:alice@192.0.2.99" and dialog.remote_seq == 11
    old = invite()
    old.headers.set("CSeq", "5 INFO")
    old.method = "INFO"
    assert dialog.receive_request(old) == 500
    ack = invite()
    ack.method = "ACK"
    ack.headers.set("CSeq", "11 ACK")
    assert dialog.receive_request(ack) is None and dialog.remote_seq == 11
    bye = invite()
    bye.method = "BYE"
    bye.headers.set("CSeq", "12 BYE")
    assert dialog.receive_request(bye) is None
    assert dialog.state is DialogState.TERMINATED
    assert dialog.receive_request(bye) == 481


def test_dialog_creation_errors() -> None:
    no_contact = invite()
    no_contact.headers.remove("Contact")
    with pytest.raises(SipParseError):
        Dialog.from_uas(no_contact, "cb", UAS_CONTACT, confirmed=True)
    no_tag = invite()
    no_tag.headers.set("From", "<sip:alice@example.com>")
    with pytest.raises(SipParseError):
        Dialog.from_uas(no_tag, "cb", UAS_CONTACT, confirmed=True)
    with pytest.raises(SipParseError):
        Dialog.from_uac(invite(), make_response(invite(), 180), UAC_CONTACT)
    sips = invite()
    sips.uri = "sips:1001@callbridge.example.com"
    assert Dialog.from_uas(sips, "cb", UAS_CONTACT, confirmed=True).secure
    # No Contact in the 2xx: the Request-URI is the target.
    bare = make_response(invite(), 200, to_tag="x")
    assert str(Dialog.from_uac(invite(), bare, UAC_CONTACT).remote_target) == invite().uri


def test_dialog_table_matching_and_481() -> None:
    table = DialogTable()
    req = invite()
    dialog = Dialog.from_uas(req, "cb", UAS_CONTACT, confirmed=True)
    table.add(dialog)
    assert len(table) == 1 and table.get(dialog.id) is dialog
    assert table.reject_status(req) is None  # out of dialog (no To tag)
    assert table.match_request(req) is None
    bye = dialog.create_request("BYE")
    # Seen from the peer: swap roles to build what the peer would send us.
    incoming = invite()
    incoming.method = "BYE"
    incoming.headers.set("CSeq", "11 BYE")
    incoming.headers.set("To", "<sip:1001@callbridge.example.com>;tag=cb")
    assert table.match_request(incoming) is dialog
    assert table.reject_status(incoming) is None
    stranger = invite()
    stranger.headers.set("To", "<sip:1001@callbridge.example.com>;tag=zzz")
    assert table.reject_status(stranger) == 481
    response = make_response(bye, 200, to_tag="ignored")  # To already tagged: kept
    assert table.match_response(response) is dialog  # From tag = cb (local), To tag = ua
    uac = Dialog.from_uac(req, answer(req), UAC_CONTACT)
    table.add(uac)
    assert table.match_response(answer(req)) is uac
    assert table.match_response(make_response(req, 100)) is None
    dialog.terminate()
    assert table.reject_status(incoming) == 481
    table.remove(dialog.id)
    assert table.get(dialog.id) is None


def test_dialog_table_is_explicit() -> None:
    assert (DialogState.CONFIRMED, DialogInput.PROVISIONAL) not in DIALOG_TABLE
    dialog = Dialog.from_uas(invite(), "cb", UAS_CONTACT, confirmed=True)
    with pytest.raises(TransactionError):
        dialog._step(DialogInput.PROVISIONAL)


def test_2xx_retransmission_schedule_until_ack() -> None:
    timer = TwoXXRetransmitter(now=0.0)
    times = []
    while (deadline := timer.next_timer()) is not None and deadline < 12.0:
        times += [deadline] * timer.handle_timer(deadline)
    assert times == [0.5, 1.5, 3.5, 7.5, 11.5]
    timer.ack_received()
    assert timer.acked and timer.next_timer() is None and timer.handle_timer(100.0) == 0


def test_2xx_retransmission_gives_up_after_64_t1() -> None:
    timer = TwoXXRetransmitter(now=10.0)
    sent = 0
    while (deadline := timer.next_timer()) is not None:
        sent += timer.handle_timer(deadline)
    assert timer.timed_out and not timer.acked
    assert sent == 10  # 10.5, 11.5, 13.5, 17.5, 21.5, 25.5, 29.5, 33.5, 37.5, 41.5
    assert timer.handle_timer(50.0) == 0


def test_full_call_flow_between_two_layers() -> None:
    """INVITE → 180 → 200 → ACK → BYE → 200 between a UAC and a UAS core, UDP, virtual time."""
    ids = SeededIdSource(42)
    uac, uas = TransactionLayer(), TransactionLayer()
    uac_addr, uas_addr = ("192.0.2.1", 5060), ("203.0.113.5", 5060)

    def deliver(
        src: TransactionLayer, dst: TransactionLayer, src_addr: tuple[str, int], now: float
    ) -> list[object]:
        events: list[object] = []
        for out in src.outgoing():
            events += dst.receive(out.data, src_addr, out.transport, now)
        return events

    req = invite()
    req.headers.remove("Via")
    stamp_via(req, "UDP", *uac_addr, ids)
    invite_key = uac.send_request(req, uas_addr, "UDP", now=0.0)
    (received,) = deliver(uac, uas, uac_addr, 0.0)
    assert isinstance(received, RequestReceived)
    dialog_uas = Dialog.from_uas(received.request, "cb", UAS_CONTACT, confirmed=False)
    uas.send_response(received.key, answer(received.request, 180), now=0.05)
    (ringing,) = deliver(uas, uac, uas_addr, 0.05)
    assert isinstance(ringing, ResponseReceived) and ringing.response.status == 180
    ok = answer(received.request, 200)
    uas.send_response(received.key, ok, now=1.0)
    dialog_uas.confirm()
    retrans = TwoXXRetransmitter(now=1.0)
    (ok_event,) = deliver(uas, uac, uas_addr, 1.0)
    assert isinstance(ok_event, ResponseReceived)
    assert uac.state(invite_key) is State.ACCEPTED
    dialog_uac = Dialog.from_uac(req, ok_event.response, UAC_CONTACT)
    ack = dialog_uac.create_request("ACK", cseq=req.cseq.number)
    stamp_via(ack, "UDP", *uac_addr, ids)
    uac.send_stateless(ack, uas_addr, "UDP")
    (ack_event,) = deliver(uac, uas, uac_addr, 1.1)
    assert isinstance(ack_event, AckReceived)
    assert dialog_uas.receive_request(ack_event.request) is None
    retrans.ack_received()
    bye = dialog_uac.create_request("BYE")
    stamp_via(bye, "UDP", *uac_addr, ids)
    bye_key = uac.send_request(bye, uas_addr, "UDP", now=2.0)
    (bye_event,) = deliver(uac, uas, uac_addr, 2.0)
    assert isinstance(bye_event, RequestReceived) and bye_event.request.method == "BYE"
    assert dialog_uas.receive_request(bye_event.request) is None
    assert dialog_uas.state is DialogState.TERMINATED
    uas.send_response(bye_event.key, make_response(bye_event.request, 200), now=2.01)
    (bye_ok,) = deliver(uas, uac, uas_addr, 2.01)
    assert isinstance(bye_ok, ResponseReceived) and bye_ok.response.status == 200
    dialog_uac.terminate()
    assert uac.state(bye_key) is State.COMPLETED
