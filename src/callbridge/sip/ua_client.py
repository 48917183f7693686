"""The client half of the UA core (RFC 3261 §8.1, §9.1, §13.2, §14.1, §22; spec ``sip.md`` §7).

:class:`UacEngine` places outbound calls and sends in-dialog requests for every call:

* ``invite`` sends the INVITE with our SDP offer; every attempt resolves to exactly one
  :class:`~callbridge.sip.ua_model.CallEnded` outcome (answered calls end later with BYE):
  rejected (the status), cancelled (487, or a 2xx that crossed our CANCEL — ACKed then BYE),
  timed out (Timer B, 408) or transport failure;
* a 401/407 is answered **once** per challenge with digest credentials: the retry is a new
  INVITE transaction with CSeq + 1, the same Call-ID and From tag (the transaction layer ACKs
  the challenge itself);
* a 3xx is followed once per new Contact (highest ``q`` first, up to three times; a host
  name is looked up by the shell, RFC 3263 §4), as a new INVITE transaction with CSeq + 1,
  the same Call-ID, From and To;
* CANCEL is sent only after a provisional response; asked earlier, it waits for one (or for
  the final response, which then decides);
* the ACK for a 2xx is a new request sent stateless and re-sent for each retransmitted 2xx;
* re-INVITE for hold (``a=sendonly``) and resume, with the RFC 3261 §14.1 glare back-off
  after a 491 (2.1–4 s when we own the Call-ID, else 0–2 s).
"""

from __future__ import annotations

import ipaddress
import re
from typing import TYPE_CHECKING, Protocol

from callbridge.sip.auth import DigestClient
from callbridge.sip.dialog import Dialog, DialogState
from callbridge.sip.errors import SdpError, SipError
from callbridge.sip.headers import NameAddr, SipUri, parse_contacts, parse_uri
from callbridge.sip.ids import new_call_id, new_tag
from callbridge.sip.message import Headers, Request, Response
from callbridge.sip.sdp import SdpNegotiator, parse_sdp
from callbridge.sip.transaction import (
    Address,
    TransactionKey,
    TransactionTimeout,
    TransportFailure,
    build_cancel,
    stamp_via,
)
from callbridge.sip.ua_model import (
    SDP_TYPE,
    CallAnswered,
    CallEnded,
    CallProgress,
    CallState,
    MediaChanged,
    Outcome,
    SipCall,
    UaEvent,
    uri_destination,
)

if TYPE_CHECKING:
    from callbridge.sip.ua import UserAgent


#: 3xx redirections followed per outbound call at most.
MAX_REDIRECTS = 3


class RequestOwner(Protocol):
    """An out-of-dialog client (e.g. a registration) owning some client transactions and,
    optionally, a timer of its own (``next_timer``/``handle_timer``)."""

    def on_response(self, response: Response, now: float) -> None: ...

    def on_failure(self, now: float) -> None: ...

    def next_timer(self) -> float | None: ...

    def handle_timer(self, now: float) -> None: ...


class UacEngine:
    """Outbound INVITEs and every request callbridge sends inside a dialog."""

    def __init__(self, ua: UserAgent) -> None:
        self.ua = ua
        #: client transaction key -> (call, purpose) for INVITE, re-INVITE, CANCEL and BYE.
        self._keys: dict[TransactionKey, tuple[SipCall, str]] = {}
        #: client transaction key -> owner, for requests outside calls (REGISTER).
        self._owners: dict[TransactionKey, RequestOwner] = {}
        self.owners: list[RequestOwner] = []

    def forget(self, key: TransactionKey) -> None:
        self._keys.pop(key, None)
        self._owners.pop(key, None)

    def send_owned(
        self, owner: RequestOwner, request: Request, destination: Address, transport: str,
        now: float,
    ) -> TransactionKey:  # fmt: skip
        """Send an out-of-dialog request whose responses go to ``owner``."""
        key = self.ua.layer.send_request(request, destination, transport, now)
        self._owners[key] = owner
        return key

    def next_timer(self) -> float | None:
        deadlines = [d for d in (o.next_timer() for o in self.owners) if d is not None]
        return min(deadlines, default=None)

    def handle_timer(self, now: float) -> None:
        for owner in list(self.owners):
            deadline = owner.next_timer()
            if deadline is not None and deadline <= now:
                owner.handle_timer(now)

    # -- INVITE --------------------------------------------------------------------------------

    def invite(
        self,
        *,
        target: str,
        destination: Address,
        transport: str,
        negotiator: SdpNegotiator,
        now: float,
        from_user: str = "callbridge",
        from_display: str | None = None,
        credentials: tuple[str, str] | None = None,
    ) -> SipCall:
        """Send an INVITE with our offer to ``target`` (a SIP URI) via ``destination``."""
        ua = self.ua
        config = ua.config
        transport = transport.upper()
        uri = parse_uri(target)
        if not isinstance(uri, SipUri):
            raise SipError(f"cannot call {target!r}: not a SIP URI")
        tag = new_tag(ua.ids)
        local = NameAddr(SipUri(config.domain, user=from_user), from_display, (("tag", tag),))
        headers = Headers()
        headers.add("Max-Forwards", "70")
        headers.add("From", str(local))
        headers.add("To", f"<{uri}>")
        headers.add("Call-ID", new_call_id(ua.ids, config.host))
        headers.add("CSeq", "1 INVITE")
        headers.add("Contact", config.contact(transport))
        headers.add("Allow", config.allow)
        headers.add("User-Agent", config.user_agent)
        headers.add("Content-Type", SDP_TYPE)
        body = negotiator.create_offer().to_bytes()
        request = Request(headers=headers, body=body, method="INVITE", uri=str(uri))
        stamp_via(request, transport, config.host, config.port, ua.ids)
        call = SipCall(
            id=ua.new_call_id(),
            incoming=False,
            invite=request,
            peer=destination,
            transport=transport,
            local_tag=tag,
            state=CallState.CALLING,
            negotiator=negotiator,
            local_sdp=body,
        )
        if credentials is not None:
            call.digest = DigestClient(credentials[0], credentials[1], ua.ids)
        ua.calls[call.id] = call
        call.client_key = ua.layer.send_request(request, destination, transport, now)
        self._keys[call.client_key] = (call, "invite")
        return call

    def hangup(self, call: SipCall, now: float) -> list[UaEvent]:
        """Cancel an unanswered outbound call, or BYE an answered one."""
        if call.state in (CallState.CALLING, CallState.EARLY):
            call.cancel_requested = True
            if call.provisional:
                self._send_cancel(call, now)
            call.move(CallState.CANCELLING)
            return []  # the 487 (or Timer B, or a crossing 2xx) resolves the attempt
        if call.state is CallState.CONFIRMED:
            return self.ua._bye(call, Outcome.NORMAL, now)
        return []

    def _send_cancel(self, call: SipCall, now: float) -> None:
        if call.extra.get("cancel_sent"):
            return
        call.extra["cancel_sent"] = True
        cancel = build_cancel(call.invite)
        key = self.ua.layer.send_request(cancel, call.peer, call.transport, now)
        self._keys[key] = (call, "cancel")

    def on_response(self, key: TransactionKey, response: Response, now: float) -> list[UaEvent]:
        owner = self._owners.get(key)
        if owner is not None:
            if response.status >= 200:
                owner.on_response(response, now)
            return []
        entry = self._keys.get(key)
        if entry is None:
            return []
        call, purpose = entry
        if purpose == "invite":
            return self._invite_response(call, key, response, now)
        if purpose == "reinvite":
            return self._reinvite_response(call, key, response, now)
        if purpose == "bye" or purpose == "cancel":
            return []
        return []

    def on_failure(
        self, key: TransactionKey, event: TransactionTimeout | TransportFailure, now: float
    ) -> list[UaEvent]:
        owner = self._owners.pop(key, None)
        if owner is not None:
            owner.on_failure(now)
            return []
        entry = self._keys.pop(key, None)
        if entry is None:
            return []
        call, purpose = entry
        if purpose == "reinvite" and call.reinvite_key == key:
            call.reinvite_key = None
            if isinstance(event, TransactionTimeout) and not call.ended:
                return self.ua._bye(call, Outcome.TIMEOUT, now, status=408)
            return []
        if purpose != "invite" or call.ended or key != call.client_key:
            return []
        if call.cancel_requested:
            outcome, status = Outcome.CANCELLED, 487
        elif isinstance(event, TransactionTimeout):
            outcome, status = Outcome.TIMEOUT, 408
        else:
            outcome, status = Outcome.TRANSPORT_FAILURE, 503
        self.ua._finish(call, outcome)
        return [CallEnded(call, outcome, status, by_remote=True)]

    def _invite_response(
        self, call: SipCall, key: TransactionKey, response: Response, now: float
    ) -> list[UaEvent]:
        status = response.status
        if status < 200:
            call.provisional = True
            if call.cancel_requested:
                self._send_cancel(call, now)
                return []
            events: list[UaEvent] = []
            if call.state is CallState.CALLING:
                call.move(CallState.EARLY)
            if status in (180, 183) and not call.progress_reported:
                call.progress_reported = True
                events.append(CallProgress(call, status))
            return events
        if status < 300:
            return self._invite_success(call, response, now)
        if call.ended:
            return []
        if status in (401, 407) and call.digest is not None and not call.cancel_requested:
            retry = self._authenticated_retry(call, response, now)
            if retry:
                return []
        if (
            300 <= status < 400
            and not call.cancel_requested
            and self._redirect(call, response, now)
        ):
            return []
        outcome = Outcome.CANCELLED if call.cancel_requested or status == 487 else Outcome.REJECTED
        self.ua._finish(call, outcome)
        return [CallEnded(call, outcome, status, by_remote=True)]

    def _authenticated_retry(self, call: SipCall, response: Response, now: float) -> bool:
        assert call.digest is not None
        previous = call.invite
        credentials = call.digest.respond(response, "INVITE", previous.uri)
        if credentials is None:
            return False
        headers = Headers(
            (n, v)
            for n, v in previous.headers
            if n.lower() not in ("via", "authorization", "proxy-authorization", "cseq")
        )
        headers.add("CSeq", f"{previous.cseq.number + 1} INVITE")
        for name, value in credentials:
            headers.add(name, value)
        request = Request(headers=headers, body=previous.body, method="INVITE", uri=previous.uri)
        config = self.ua.config
        stamp_via(request, call.transport, config.host, config.port, self.ua.ids)
        call.invite = request
        call.provisional = False
        call.client_key = self.ua.layer.send_request(request, call.peer, call.transport, now)
        self._keys[call.client_key] = (call, "invite")
        return True

    def _redirect(self, call: SipCall, response: Response, now: float) -> bool:
        """Follow a 3xx (RFC 3261 §8.1.3.4): INVITE the best new Contact (highest ``q``).

        The retry keeps Call-ID, From and To with CSeq + 1; the transaction layer already
        ACKed the 3xx. Only SIP URIs with an IP address on the call's transport are followed
        (no DNS yet), each target once, at most :data:`MAX_REDIRECTS` times per call.
        """
        tried = call.extra.setdefault("tried_targets", {call.invite.uri})
        assert isinstance(tried, set)
        redirects = len(tried) - 1
        if redirects >= MAX_REDIRECTS:
            return False
        target = _redirect_target(response, call.transport, tried)
        if target is None:
            return False
        uri, destination = target
        previous = call.invite
        headers = Headers(
            (n, v)
            for n, v in previous.headers
            if n.lower() not in ("via", "authorization", "proxy-authorization", "cseq")
        )
        headers.add("CSeq", f"{previous.cseq.number + 1} INVITE")
        request = Request(headers=headers, body=previous.body, method="INVITE", uri=str(uri))
        config = self.ua.config
        stamp_via(request, call.transport, config.host, config.port, self.ua.ids)
        tried.add(str(uri))
        call.invite = request
        call.peer = destination
        call.provisional = False
        call.client_key = self.ua.layer.send_request(request, destination, call.transport, now)
        self._keys[call.client_key] = (call, "invite")
        return True

    def _send_ack(self, call: SipCall, response: Response, now: float) -> None:
        dialog = call.dialog
        assert dialog is not None
        ack = dialog.create_request("ACK", cseq=response.cseq.number)
        destination, transport = self.ua.dialog_destination(call)
        config = self.ua.config
        stamp_via(ack, transport, config.host, config.port, self.ua.ids)
        call.ack = ack
        call.ack_destination = (destination, transport)
        self.ua.layer.send_stateless(ack, destination, transport)

    def _invite_success(self, call: SipCall, response: Response, now: float) -> list[UaEvent]:
        if call.ack is not None and call.ack_destination is not None:
            # A retransmitted 2xx (or another fork): ACK it again; forks are not kept.
            if call.dialog is not None and response.to.tag == call.dialog.id.remote_tag:
                destination, transport = call.ack_destination
                self.ua.layer.send_stateless(call.ack, destination, transport)
            return []
        if call.ended:
            return []
        dialog = Dialog.from_uac(call.invite, response, self.ua.config.contact(call.transport))
        self.ua.attach_dialog(call, dialog)
        self._send_ack(call, response, now)
        if call.cancel_requested:
            return self.ua._bye(call, Outcome.CANCELLED, now, status=487)
        negotiated = None
        if call.negotiator is not None and response.body:
            try:
                answer = parse_sdp(response.body)
                negotiated = call.negotiator.process_answer(answer)
                call.negotiator.remote_changed(answer)
            except SdpError:
                negotiated = None
        if negotiated is None:
            return self.ua._bye(call, Outcome.FAILED, now, status=488)
        call.negotiated = negotiated
        call.move(CallState.CONFIRMED)
        return [CallAnswered(call, negotiated)]

    # -- re-INVITE (hold / resume) -------------------------------------------------------------

    def reinvite(self, call: SipCall, *, hold: bool, now: float) -> list[UaEvent]:
        """Offer ``sendonly`` (hold) or ``sendrecv`` (resume) in a re-INVITE."""
        negotiator = call.negotiator
        if (
            call.state is not CallState.CONFIRMED
            or negotiator is None
            or call.dialog is None
            or call.dialog.state is not DialogState.CONFIRMED
        ):
            return []
        if call.reinvite_key is not None or call.retransmitter is not None:
            call.reinvite_retry_at = now + 0.5  # one offer at a time (RFC 3261 §14.1)
            return []
        negotiator.hold = hold
        body = negotiator.create_offer().to_bytes()
        key = self.ua.send_in_dialog(call, "INVITE", now, body=body)
        call.reinvite_key = key
        self._keys[key] = (call, "reinvite")
        return []

    def _reinvite_response(
        self, call: SipCall, key: TransactionKey, response: Response, now: float
    ) -> list[UaEvent]:
        status = response.status
        if status < 200 or call.ended:
            return []
        if call.reinvite_key == key:
            call.reinvite_key = None
        dialog = call.dialog
        if dialog is not None:
            dialog.update_from_response("INVITE", response)
        if status < 300:
            if dialog is None:
                return []
            ack = dialog.create_request("ACK", cseq=response.cseq.number)
            destination, transport = self.ua.dialog_destination(call)
            config = self.ua.config
            stamp_via(ack, transport, config.host, config.port, self.ua.ids)
            self.ua.layer.send_stateless(ack, destination, transport)
            if call.negotiator is not None and response.body:
                try:
                    answer = parse_sdp(response.body)
                    negotiated = call.negotiator.process_answer(answer)
                except SdpError:
                    return []
                call.negotiated = negotiated
                return [MediaChanged(call, negotiated)]
            return []
        if status == 491:
            owner = call.invite.call_id.endswith("@" + self.ua.config.host) and not call.incoming
            steps = self.ua.rng.randint(210, 400) if owner else self.ua.rng.randint(0, 200)
            call.reinvite_retry_at = now + steps / 100
            return []
        if status in (481, 408):
            self.ua._finish(call, Outcome.NORMAL)
            return [CallEnded(call, Outcome.NORMAL, status, by_remote=True)]
        return []  # a failed re-INVITE leaves the dialog as it was


#: RFC 3261 §25.1 ``hostname``: labels of alphanumerics and inner hyphens, the last one
#: starting with a letter (so ``999.1.1.1`` is neither a name nor an address).
_HOSTNAME_RE = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)*[A-Za-z](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.?"
)


def _routable_host(host: str) -> bool:
    """An IP address, or a host name the shell can look up (RFC 3263 §4)."""
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return _HOSTNAME_RE.fullmatch(host) is not None
    return True


def _redirect_target(
    response: Response, transport: str, tried: set[str]
) -> tuple[SipUri, Address] | None:
    """The best Contact of a 3xx callbridge can reach: ``(uri, destination)`` or ``None``."""
    try:
        contacts = parse_contacts(response.headers.get_all("Contact"))
    except SipError:
        return None
    if not isinstance(contacts, list):
        return None
    candidates: list[tuple[float, int, SipUri, Address]] = []
    for position, contact in enumerate(contacts):
        uri = contact.uri
        if not isinstance(uri, SipUri) or uri.scheme != "sip" or str(uri) in tried:
            continue
        destination, uri_transport = uri_destination(uri, transport)
        if uri_transport != transport or not _routable_host(destination[0]):
            continue
        try:
            q = float(contact.param("q") or "1")
        except ValueError:
            q = 0.0
        candidates.append((-q, position, uri, destination))
    if not candidates:
        return None
    _, _, uri, destination = min(candidates, key=lambda c: (c[0], c[1]))
    return uri, destination
