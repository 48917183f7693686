"""The UA core (RFC 3261 §8, §9, §11–§15, spec ``sip.md`` §7): sans-I/O.

:class:`UserAgent` sits on a :class:`~callbridge.sip.transaction.TransactionLayer`. Feed it
bytes with :meth:`UserAgent.receive`; it answers what the UA core answers by itself (the
responses table of spec §7: 404, 405/501 with ``Allow``, 481, 482, 420, 415, 416, 483, 488,
491, 500 with ``Retry-After``; OPTIONS; REGISTER through the
:class:`~callbridge.sip.registrar.Registrar`;
CANCEL with 200 + 487; BYE; re-INVITE hold/unhold) and reports what the application decides
as typed events (:mod:`callbridge.sip.ua_model`). The application answers an
:class:`~callbridge.sip.ua_model.IncomingCall` with :meth:`prepare_answer`, :meth:`ring`,
:meth:`answer` or :meth:`reject`; outbound calls live in :mod:`callbridge.sip.ua_client`
(``ua.client.invite(...)``). Bytes to send come from :meth:`outgoing`; the shell sleeps until
:meth:`next_timer` and calls :meth:`handle_timer`.

Authorisation of out-of-dialog requests: a source the :class:`~callbridge.sip.ua_model.Policy`
trusts needs nothing; any other INVITE must carry digest credentials of an extension (407
challenge); unauthenticated requests are rate limited per source host (token bucket) and
dropped silently beyond the limit, before any transaction state is created.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterable

from callbridge.sip.auth import AuthResult, DigestServer
from callbridge.sip.dialog import Dialog, DialogState, DialogTable, TwoXXRetransmitter
from callbridge.sip.errors import SdpError, SipError, SipParseError
from callbridge.sip.headers import SipUri, iter_tokens, parse_uri
from callbridge.sip.ids import IdSource, new_tag
from callbridge.sip.message import Request, Response, make_response, parse_message
from callbridge.sip.registrar import Registrar
from callbridge.sip.sdp import Negotiated, SdpNegotiator, parse_sdp
from callbridge.sip.transaction import (
    AckReceived,
    Address,
    Event,
    Outgoing,
    RequestReceived,
    ResponseReceived,
    TimerConfig,
    TransactionKey,
    TransactionLayer,
    TransactionTerminated,
    TransactionTimeout,
    TransportFailure,
    is_reliable,
    response_destination,
    stamp_via,
)
from callbridge.sip.ua_client import UacEngine
from callbridge.sip.ua_model import (
    KNOWN_METHODS,
    SDP_TYPE,
    SUPPORTED,
    CallConfirmed,
    CallEnded,
    CallState,
    IncomingCall,
    MediaChanged,
    Outcome,
    Policy,
    SipCall,
    UaConfig,
    UaEvent,
    uri_destination,
)

#: How long the merged-request detector remembers an initial request (§8.2.2.2).
MERGE_WINDOW = 64.0
#: Source hosts tracked by the rate limiter before the oldest are forgotten.
MAX_TRACKED_SOURCES = 10_000


class RateLimiter:
    """Token bucket per source host (sans-I/O: the caller passes ``now``)."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, host: str, now: float) -> bool:
        tokens, last = self._buckets.pop(host, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        allowed = tokens >= 1.0
        self._buckets[host] = (tokens - 1.0 if allowed else tokens, now)
        if len(self._buckets) > MAX_TRACKED_SOURCES:
            del self._buckets[next(iter(self._buckets))]
        return allowed


class UserAgent:
    """callbridge's SIP user agent: UAS, UAC (``self.client``) and registrar front end."""

    def __init__(
        self,
        config: UaConfig,
        ids: IdSource,
        policy: Policy,
        digest: DigestServer,
        *,
        registrar: Registrar | None = None,
        timers: TimerConfig | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.ids = ids
        self.policy = policy
        self.digest = digest
        self.registrar = registrar
        self.layer = TransactionLayer(timers)
        self.timers = self.layer.config
        self.dialogs = DialogTable()
        self.calls: dict[str, SipCall] = {}
        self.limiter = RateLimiter(config.rate_per_second, config.rate_burst)
        self.rng = rng or random.Random()
        self._by_server_key: dict[TransactionKey, SipCall] = {}
        self._by_dialog: dict[tuple[str, str, str], SipCall] = {}
        self._recent: dict[tuple[str, str, int, str], tuple[str, float]] = {}
        self._counter = 0
        self.client = UacEngine(self)

    # -- shell interface ----------------------------------------------------------------------

    def outgoing(self) -> list[Outgoing]:
        return self.layer.outgoing()

    def next_timer(self) -> float | None:
        deadlines = [self.layer.next_timer(), self.client.next_timer()]
        for call in self.calls.values():
            if call.retransmitter is not None:
                deadlines.append(call.retransmitter.next_timer())
            deadlines.append(call.reinvite_retry_at)
        return min((d for d in deadlines if d is not None), default=None)

    def handle_timer(self, now: float) -> list[UaEvent]:
        events = self._process(self.layer.handle_timer(now), now)
        self.client.handle_timer(now)
        for call in list(self.calls.values()):
            retransmitter = call.retransmitter
            if retransmitter is not None and call.final is not None:
                for _ in range(retransmitter.handle_timer(now)):
                    self._send_stateless(call.final, call)
                if retransmitter.timed_out:
                    call.retransmitter = None
                    events += self._ack_timeout(call, now)
            if call.reinvite_retry_at is not None and call.reinvite_retry_at <= now:
                call.reinvite_retry_at = None
                events += self.client.reinvite(call, hold=call.hold, now=now)
        # Every entry expires MERGE_WINDOW after it was added and the clock is monotonic, so
        # insertion order is expiry order: drop the expired head only, not scan ~64 s of
        # requests on every timer (decision 024).
        recent = self._recent
        while recent:
            key = next(iter(recent))
            if recent[key][1] > now:
                break
            del recent[key]
        return events

    def receive(self, data: bytes, source: Address, transport: str, now: float) -> list[UaEvent]:
        """Feed one datagram or one framed stream message."""
        message: bytes | Request | Response = data
        # On a parse error the layer answers 400/505 (or drops) from the raw bytes.
        with contextlib.suppress(SipParseError):
            message = parse_message(data, limits=self.layer.limits, stream=is_reliable(transport))
        if isinstance(message, Request) and not self._admit(message, source, now):
            return []
        return self._process(self.layer.receive(message, source, transport, now), now)

    def transport_error(self, destination: Address, transport: str, now: float) -> list[UaEvent]:
        """The shell could not deliver to ``destination``: fail its client transactions."""
        events: list[Event] = []
        for key, transaction in list(self.layer.clients.items()):
            if transaction.peer == destination and transaction.transport == transport.upper():
                events += self.layer.transport_error(key)
        return self._process(events, now)

    def new_call_id(self) -> str:
        self._counter += 1
        return f"sip-{self._counter}"

    # -- admission and dispatch ----------------------------------------------------------------

    def _admit(self, request: Request, source: Address, now: float) -> bool:
        """Rate limit unauthenticated out-of-dialog requests per source host."""
        if request.method in ("ACK", "CANCEL"):
            return True
        try:
            if request.to.tag is not None:
                return True
        except SipError:
            return True
        if "Authorization" in request.headers or "Proxy-Authorization" in request.headers:
            return True
        if self.policy.trusted(source[0]):
            return True
        return self.limiter.allow(source[0], now)

    def _process(self, events: Iterable[Event], now: float) -> list[UaEvent]:
        out: list[UaEvent] = []
        for event in events:
            try:
                if isinstance(event, RequestReceived):
                    out += self._on_request(event, now)
                elif isinstance(event, AckReceived):
                    out += self._on_ack(event.request, now)
                elif isinstance(event, ResponseReceived):
                    out += self.client.on_response(event.key, event.response, now)
                elif isinstance(event, TransactionTimeout | TransportFailure):
                    out += self.client.on_failure(event.key, event, now)
                elif isinstance(event, TransactionTerminated):
                    self._by_server_key.pop(event.key, None)
                    self.client.forget(event.key)
            except SipError:
                # A message that parsed but whose headers are unusable for this purpose
                # (e.g. an unparsable Contact): never let it escape the core.
                if isinstance(event, RequestReceived) and event.request.method != "ACK":
                    self._reply(event, 400, "Bad Request", now)
        return out

    def _reply(
        self,
        event: RequestReceived,
        status: int,
        reason: str | None,
        now: float,
        headers: Iterable[tuple[str, str]] = (),
        *,
        to_tag: str | None = None,
        body: bytes = b"",
    ) -> Response:
        response = make_response(
            event.request, status, reason, to_tag=to_tag or new_tag(self.ids), body=body
        )
        for name, value in headers:
            response.headers.add(name, value)
        response.headers.add("Server", self.config.user_agent)
        if body:
            response.headers.add("Content-Type", SDP_TYPE)
        if event.key in self.layer.servers:
            self.layer.send_response(event.key, response, now)
        return response

    def _on_request(self, event: RequestReceived, now: float) -> list[UaEvent]:
        request = event.request
        method = request.method
        if method == "CANCEL":
            return self._on_cancel(event, now)
        if request.to.tag is not None:
            dialog = self.dialogs.match_request(request)
            if dialog is None or dialog.state is DialogState.TERMINATED:
                self._reply(event, 481, None, now)
                return []
            return self._in_dialog(event, dialog, now)
        if self._merged(event, now):
            return []
        status = self._check(event, now)
        if status is not None:
            return []
        if method == "OPTIONS":
            self._reply(event, 200, None, now, self._capabilities())
        elif method == "REGISTER":
            if self.registrar is None:
                self._reply(event, 405, None, now, [("Allow", self.config.allow)])
            else:
                response = self.registrar.handle(request, event.source, event.transport, now)
                response.headers.add("Server", self.config.user_agent)
                self.layer.send_response(event.key, response, now)
        elif method == "INVITE":
            return self._on_invite(event, now)
        elif method == "BYE":
            self._reply(event, 481, None, now)
        elif method in KNOWN_METHODS:
            self._reply(event, 405, None, now, [("Allow", self.config.allow)])
        else:
            self._reply(event, 501, None, now, [("Allow", self.config.allow)])
        return []

    def _capabilities(self) -> list[tuple[str, str]]:
        headers = [("Allow", self.config.allow), ("Accept", SDP_TYPE)]
        headers.append(("Accept-Encoding", "identity"))
        if SUPPORTED:
            headers.append(("Supported", ", ".join(SUPPORTED)))
        return headers

    def _merged(self, event: RequestReceived, now: float) -> bool:
        """§8.2.2.2: same Call-ID/From tag/CSeq, other branch → 482; same branch after the
        transaction ended (a late duplicate) → dropped."""
        request = event.request
        key = (request.call_id, request.from_.tag or "", request.cseq.number, request.method)
        branch = request.top_via.branch or ""
        seen = self._recent.get(key)
        if seen is None:
            self._recent[key] = (branch, now + MERGE_WINDOW)
            return False
        if seen[0] == branch:
            self.layer.servers.pop(event.key, None)  # a late duplicate: no state, no answer
            return True
        self._reply(event, 482, None, now)
        return True

    def _check(self, event: RequestReceived, now: float) -> int | None:
        """The generic UAS checks of §8.2.1–§8.2.3; returns the status sent, if any."""
        request = event.request
        failure: tuple[int, str | None, list[tuple[str, str]]] | None = None
        try:
            uri = parse_uri(request.uri)
        except SipParseError:
            uri = None
        if uri is None or uri.scheme.lower() not in ("sip", "sips", "tel"):
            failure = (416, None, [])
        elif isinstance(uri, SipUri) and not self.config.serves(uri.host):
            failure = (483, None, []) if request.max_forwards == 0 else (404, None, [])
        else:
            required = [t for t in iter_tokens(",".join(request.headers.get_all("Require")))]
            unsupported = [t for t in required if t not in SUPPORTED]
            if unsupported:
                failure = (420, None, [("Unsupported", ", ".join(unsupported))])
            elif request.body and request.method == "INVITE":
                failure = self._body_failure(request)
        if failure is None:
            return None
        status, reason, headers = failure
        self._reply(event, status, reason, now, headers)
        return status

    @staticmethod
    def _body_failure(request: Request) -> tuple[int, str | None, list[tuple[str, str]]] | None:
        content_type = (request.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        encoding = (request.headers.get("Content-Encoding") or "identity").strip().lower()
        if content_type != SDP_TYPE:
            return 415, None, [("Accept", SDP_TYPE)]
        if encoding != "identity":
            return 415, None, [("Accept-Encoding", "identity")]
        return None

    # -- UAS: INVITE ---------------------------------------------------------------------------

    def _authorize(self, event: RequestReceived, now: float) -> str | None:
        """``""`` for a trusted source, the extension's user name after digest, else ``None``
        (a 407 challenge was sent)."""
        if self.policy.trusted(event.source[0]):
            return ""
        request = event.request
        header = request.headers.get("Proxy-Authorization") or request.headers.get("Authorization")
        stale = False
        if header is not None:
            check = self.digest.verify(
                header,
                method=request.method,
                request_uri=request.uri,
                password_for=self.policy.passwords,
                now=now,
            )
            if check.result is AuthResult.OK and check.username is not None:
                return check.username
            stale = check.result is AuthResult.STALE
        self._reply(event, 407, None, now, self.digest.challenge(now, stale=stale, proxy=True))
        return None

    def _on_invite(self, event: RequestReceived, now: float) -> list[UaEvent]:
        request = event.request
        username = self._authorize(event, now)
        if username is None:
            return []
        offer = None
        if request.body:
            try:
                offer = parse_sdp(request.body)
            except SdpError:
                self._reply(event, 400, "Bad Request (malformed SDP)", now)
                return []
        tag = new_tag(self.ids)
        contact = self.config.contact(event.transport)
        try:
            dialog = Dialog.from_uas(request, tag, contact, confirmed=False)
        except SipParseError as exc:
            self._reply(event, 400, f"Bad Request ({exc.reason})", now)
            return []
        call = SipCall(
            id=self.new_call_id(),
            incoming=True,
            invite=request,
            peer=event.source,
            transport=event.transport,
            local_tag=tag,
            state=CallState.OFFERED,
            server_key=event.key,
            dialog=dialog,
            offer=offer,
            username=username,
        )
        self._register(call)
        self._by_server_key[event.key] = call
        return [IncomingCall(call)]

    def _register(self, call: SipCall) -> None:
        self.calls[call.id] = call
        if call.dialog is not None:
            self.dialogs.add(call.dialog)
            self._by_dialog[_dialog_key(call.dialog)] = call

    def attach_dialog(self, call: SipCall, dialog: Dialog) -> None:
        """Used by the client half once a response created the dialog."""
        call.dialog = dialog
        self.dialogs.add(dialog)
        self._by_dialog[_dialog_key(dialog)] = call

    def prepare_answer(self, call: SipCall, negotiator: SdpNegotiator) -> Negotiated | None:
        """Negotiate the INVITE's offer (raises :class:`NegotiationError` → ``reject(488)``),
        or prepare our offer for the 2xx when the INVITE had none (returns ``None``)."""
        call.negotiator = negotiator
        if call.offer is not None:
            negotiator.remote_changed(call.offer)
            answer, negotiated = negotiator.create_answer(call.offer)
            call.local_sdp = answer.to_bytes()
            call.negotiated = negotiated
            return negotiated
        call.local_sdp = negotiator.create_offer().to_bytes()
        call.answer_in_ack = True
        return None

    def _respond_invite(
        self, call: SipCall, status: int, now: float, body: bytes = b""
    ) -> Response:
        assert call.server_key is not None
        response = make_response(call.invite, status, to_tag=call.local_tag, body=body)
        if status < 300:
            response.headers.add("Contact", self.config.contact(call.transport))
            response.headers.add("Allow", self.config.allow)
        response.headers.add("Server", self.config.user_agent)
        if body:
            response.headers.add("Content-Type", SDP_TYPE)
        self.layer.send_response(call.server_key, response, now)
        return response

    def ring(self, call: SipCall, now: float) -> list[UaEvent]:
        """Send 180 Ringing (once)."""
        if call.state is CallState.OFFERED:
            self._respond_invite(call, 180, now)
            call.move(CallState.EARLY)
        return []

    def answer(self, call: SipCall, now: float) -> list[UaEvent]:
        """Send the 2xx with our SDP (``prepare_answer`` first); retransmitted until the ACK."""
        if call.state not in (CallState.OFFERED, CallState.EARLY):
            return []
        if call.local_sdp is None:
            raise SipError("prepare_answer() must run before answer()")
        call.final = self._respond_invite(call, 200, now, call.local_sdp)
        call.retransmitter = TwoXXRetransmitter(now, self.timers.t1, self.timers.t2)
        call.move(CallState.ANSWERED)
        if call.dialog is not None:
            call.dialog.confirm()
        return []

    def reject(
        self,
        call: SipCall,
        status: int,
        now: float,
        *,
        warning: str | None = None,
        retry_after: int | None = None,
    ) -> list[UaEvent]:
        """Refuse an unanswered inbound call with a final ``status`` (no event follows);
        ``retry_after`` seconds go in a ``Retry-After`` header (RFC 3261 §20.33, for 503)."""
        if call.state not in (CallState.OFFERED, CallState.EARLY):
            return []
        assert call.server_key is not None
        response = make_response(call.invite, status, to_tag=call.local_tag)
        if warning is not None:
            response.headers.add("Warning", f'305 {self.config.host} "{warning}"')
        if retry_after is not None:
            response.headers.add("Retry-After", str(retry_after))
        if status == 405:
            response.headers.add("Allow", self.config.allow)
        self.layer.send_response(call.server_key, response, now)
        self._finish(call, Outcome.REJECTED)
        return []

    def hangup(self, call: SipCall, now: float) -> list[UaEvent]:
        """End the call from our side, whatever its state (events: the single CallEnded)."""
        if call.ended:
            return []
        if call.incoming:
            if call.state in (CallState.OFFERED, CallState.EARLY):
                self.reject(call, 480, now)
                return [CallEnded(call, Outcome.REJECTED, 480, by_remote=False)]
            if call.state is CallState.ANSWERED:
                call.bye_pending = True  # §15: BYE once the ACK arrives (or it times out)
                return []
            return self._bye(call, Outcome.NORMAL, now)
        return self.client.hangup(call, now)

    def hold(self, call: SipCall, hold: bool, now: float) -> list[UaEvent]:
        """Put the peer on hold (``a=sendonly`` re-INVITE) or resume it (``a=sendrecv``)."""
        call.hold = hold
        return self.client.reinvite(call, hold=hold, now=now)

    # -- UAS: ACK, CANCEL, in-dialog requests --------------------------------------------------

    def _on_ack(self, request: Request, now: float) -> list[UaEvent]:
        dialog = self.dialogs.match_request(request)
        call = self._by_dialog.get(_dialog_key(dialog)) if dialog is not None else None
        if call is None or call.final is None or call.final.cseq.number != request.cseq.number:
            return []
        if call.retransmitter is not None and not call.retransmitter.acked:
            call.retransmitter.ack_received()
        elif call.retransmitter is None:
            return []  # a retransmitted ACK
        call.retransmitter = None
        events: list[UaEvent] = []
        negotiated: Negotiated | None = None
        if call.answer_in_ack:
            call.answer_in_ack = False
            negotiated = self._answer_from_ack(call, request)
            if negotiated is None:
                return self._bye(call, Outcome.FAILED, now, status=488)
            call.negotiated = negotiated
        first = call.state is CallState.ANSWERED
        if first:
            call.move(CallState.CONFIRMED)
            events.append(CallConfirmed(call, negotiated))
        elif negotiated is not None:
            events.append(MediaChanged(call, negotiated))
        if call.bye_pending:
            events += self._bye(call, Outcome.NORMAL, now)
        return events

    @staticmethod
    def _answer_from_ack(call: SipCall, request: Request) -> Negotiated | None:
        if not request.body or call.negotiator is None:
            return None
        try:
            answer = parse_sdp(request.body)
            negotiated = call.negotiator.process_answer(answer)
        except SdpError:
            return None
        call.negotiator.remote_changed(answer)
        return negotiated

    def _ack_timeout(self, call: SipCall, now: float) -> list[UaEvent]:
        """§13.3.1.4: no ACK after 64·T1 — confirm, then end the dialog with BYE."""
        if call.state is CallState.ANSWERED:
            call.move(CallState.CONFIRMED)
            return self._bye(call, Outcome.TIMEOUT, now, status=408)
        return []

    def _on_cancel(self, event: RequestReceived, now: float) -> list[UaEvent]:
        target = event.cancel_target
        call = self._by_server_key.get(target) if target is not None else None
        if call is None:
            self._reply(event, 481, None, now)
            return []
        self._reply(event, 200, None, now, to_tag=call.local_tag)
        if call.state not in (CallState.OFFERED, CallState.EARLY):
            return []  # already answered: the call continues (spec §7)
        assert call.server_key is not None
        response = make_response(call.invite, 487, to_tag=call.local_tag)
        self.layer.send_response(call.server_key, response, now)
        self._finish(call, Outcome.CANCELLED)
        return [CallEnded(call, Outcome.CANCELLED, 487, by_remote=True)]

    def _in_dialog(self, event: RequestReceived, dialog: Dialog, now: float) -> list[UaEvent]:
        request = event.request
        call = self._by_dialog.get(_dialog_key(dialog))
        method = request.method
        if method == "INVITE" and call is not None and call.reinvite_key is not None:
            self._reply(event, 491, None, now, to_tag=dialog.id.local_tag)
            return []
        if method == "INVITE" and call is not None and call.retransmitter is not None:
            retry = str(self.rng.randint(0, 10))
            self._reply(event, 500, None, now, [("Retry-After", retry)], to_tag=dialog.id.local_tag)
            return []
        status = dialog.receive_request(request)
        if status is not None:
            self._reply(event, status, None, now, to_tag=dialog.id.local_tag)
            return []
        tag = dialog.id.local_tag
        if method == "BYE":
            self._reply(event, 200, None, now, to_tag=tag)
            if call is None or call.ended:
                return []
            self._finish(call, Outcome.NORMAL)
            return [CallEnded(call, Outcome.NORMAL, None, by_remote=True)]
        if method == "OPTIONS":
            self._reply(event, 200, None, now, self._capabilities(), to_tag=tag)
        elif method == "INVITE" and call is not None:
            return self._reinvite(event, call, now)
        elif method in KNOWN_METHODS:
            self._reply(event, 405, None, now, [("Allow", self.config.allow)], to_tag=tag)
        else:
            self._reply(event, 501, None, now, [("Allow", self.config.allow)], to_tag=tag)
        return []

    def _reinvite(self, event: RequestReceived, call: SipCall, now: float) -> list[UaEvent]:
        """RFC 3264 §8: answer the new offer (488 keeps the old session), or offer when the
        re-INVITE has no SDP (the answer arrives in the ACK)."""
        request = event.request
        negotiator = call.negotiator
        tag = call.local_tag
        failure = self._body_failure(request) if request.body else None
        if failure is not None:
            self._reply(event, failure[0], None, now, failure[2], to_tag=tag)
            return []
        if negotiator is None:
            self._reply(event, 500, None, now, [("Retry-After", "1")], to_tag=tag)
            return []
        events: list[UaEvent] = []
        if request.body:
            try:
                offer = parse_sdp(request.body)
                answer, negotiated = negotiator.create_answer(offer)
            except SdpError:
                self._reply(
                    event,
                    488,
                    None,
                    now,
                    [("Warning", f'305 {self.config.host} "Incompatible media format"')],
                    to_tag=tag,
                )
                return []
            if negotiator.remote_changed(offer):
                call.negotiated = negotiated
                events.append(MediaChanged(call, negotiated))
            body = answer.to_bytes()
        else:
            body = negotiator.create_offer().to_bytes()
            call.answer_in_ack = True
        response = self._reply(
            event,
            200,
            None,
            now,
            [("Contact", self.config.contact(call.transport)), ("Allow", self.config.allow)],
            to_tag=tag,
            body=body,
        )
        call.final = response
        call.retransmitter = TwoXXRetransmitter(now, self.timers.t1, self.timers.t2)
        return events

    # -- shared helpers ------------------------------------------------------------------------

    def _send_stateless(self, message: Request | Response, call: SipCall) -> None:
        if isinstance(message, Response):
            destination = response_destination(message, call.peer, call.transport)
            self.layer.send_stateless(message, destination, call.transport)
        else:
            target, transport = self.dialog_destination(call)
            self.layer.send_stateless(message, target, transport)

    def dialog_destination(self, call: SipCall) -> tuple[Address, str]:
        """Next hop of an in-dialog request: first Route, else the remote target."""
        dialog = call.dialog
        assert dialog is not None
        uri = dialog.remote_target
        if dialog.route_set:
            from callbridge.sip.headers import parse_name_addr

            uri = parse_name_addr(dialog.route_set[0]).uri
        if not isinstance(uri, SipUri):
            return call.peer, call.transport
        return uri_destination(uri, call.transport)

    def send_in_dialog(
        self, call: SipCall, method: str, now: float, *, body: bytes = b""
    ) -> TransactionKey:
        dialog = call.dialog
        assert dialog is not None
        request = dialog.create_request(method, body=body, content_type=SDP_TYPE if body else None)
        request.headers.add("User-Agent", self.config.user_agent)
        destination, transport = self.dialog_destination(call)
        stamp_via(request, transport, self.config.host, self.config.port, self.ids)
        return self.layer.send_request(request, destination, transport, now)

    def _bye(
        self, call: SipCall, outcome: Outcome, now: float, *, status: int | None = None
    ) -> list[UaEvent]:
        if call.dialog is not None and call.dialog.state is not DialogState.TERMINATED:
            self.send_in_dialog(call, "BYE", now)
        self._finish(call, outcome)
        return [CallEnded(call, outcome, status, by_remote=False)]

    def _finish(self, call: SipCall, outcome: Outcome) -> None:
        """Forget the call (the transactions finish on their own timers)."""
        if call.ended:
            return
        call.move(CallState.ENDED)
        call.ended_outcome = outcome
        call.retransmitter = None
        call.reinvite_retry_at = None
        dialog = call.dialog
        if dialog is not None:
            dialog.terminate()
            self.dialogs.remove(dialog.id)
            self._by_dialog.pop(_dialog_key(dialog), None)
        self.calls.pop(call.id, None)


def _dialog_key(dialog: Dialog | None) -> tuple[str, str, str]:
    assert dialog is not None
    return (dialog.id.call_id, dialog.id.local_tag, dialog.id.remote_tag)
