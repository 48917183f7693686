"""The SIP transaction layer (RFC 3261 §17, §18.2, RFC 3581, RFC 6026).

Sans-I/O: :class:`TransactionLayer` takes parsed messages (or raw bytes) with the current time
``now`` and returns typed events; bytes to send are queued for :meth:`TransactionLayer.outgoing`;
timers are absolute deadlines exposed through :meth:`TransactionLayer.next_timer` and fired by
:meth:`TransactionLayer.handle_timer`. Nothing here reads a clock or opens a socket. The four
state machines and their transition tables live in :mod:`callbridge.sip.transaction_fsm` and
are re-exported here.
"""

from __future__ import annotations

import heapq
import itertools

from callbridge.sip.errors import SipParseError, TransactionError
from callbridge.sip.headers import Via, parse_via
from callbridge.sip.ids import IdSource, new_branch
from callbridge.sip.message import (
    DEFAULT_LIMITS,
    Headers,
    Limits,
    Request,
    Response,
    error_response,
    parse_message,
)
from callbridge.sip.transaction_fsm import (
    ICT_TABLE,
    IST_TABLE,
    NICT_TABLE,
    NIST_TABLE,
    AckReceived,
    Address,
    ClientTransaction,
    Event,
    Input,
    InviteClientTransaction,
    InviteServerTransaction,
    MalformedMessage,
    NonInviteClientTransaction,
    NonInviteServerTransaction,
    Outgoing,
    RequestReceived,
    ResponseReceived,
    ServerTransaction,
    State,
    TimerConfig,
    Transaction,
    TransactionKey,
    TransactionTerminated,
    TransactionTimeout,
    TransportFailure,
    build_ack,
    is_reliable,
    response_destination,
)

# ---------------------------------------------------------------------------------------------
# Helpers: keys, ACK, CANCEL, response routing
# ---------------------------------------------------------------------------------------------


def client_key(branch: str, method: str) -> TransactionKey:
    """§17.1.3: branch of the top Via plus the CSeq method."""
    return ("client", branch, method)


def server_key(request: Request, via: Via | None = None) -> TransactionKey:
    """§17.2.3 matching key; ACK maps to INVITE. RFC 2543 fallback without the magic cookie.

    The fallback keys on Request-URI, From tag, Call-ID, CSeq number and method and the whole
    top Via, which makes an ACK or CANCEL for a non-cookie INVITE find its transaction (the To
    tag is left out: the ACK carries the tag of the response, the INVITE none).
    """
    via = via or request.top_via
    method = "INVITE" if request.method == "ACK" else request.method
    if via.is_rfc3261 and via.branch != "z9hG4bK":
        host, port = via.sent_by
        default = 5061 if via.transport == "TLS" else 5060
        return ("server", via.branch or "", host, str(port or default), method)
    cseq = request.cseq
    from_tag = request.from_.tag or ""
    plain_via = Via(via.transport, via.host.lower(), via.port, tuple(
        (n, v) for n, v in via.params if n.lower() not in ("received", "rport")
    ))  # fmt: skip
    return (
        "server-2543",
        request.uri,
        from_tag,
        request.call_id,
        str(cseq.number),
        str(plain_via),
        method,
    )


def build_cancel(invite: Request) -> Request:
    """CANCEL for a pending INVITE (§9.1): same Request-URI, Call-ID, To, From, CSeq number,
    Route set and a single Via equal to the INVITE's top Via (same branch)."""
    headers = Headers()
    headers.add("Via", invite.headers.values("Via")[0])
    headers.add("Max-Forwards", "70")
    headers.add("From", invite.headers.get("From") or "")
    headers.add("To", invite.headers.get("To") or "")
    headers.add("Call-ID", invite.call_id)
    headers.add("CSeq", f"{invite.cseq.number} CANCEL")
    for route in invite.headers.get_all("Route"):
        headers.add("Route", route)
    return Request(headers=headers, method="CANCEL", uri=invite.uri)


def stamp_via(request: Request, transport: str, host: str, port: int | None, ids: IdSource) -> Via:
    """Add callbridge's top Via: ``SIP/2.0/<transport>``, sent-by, a fresh branch and an empty
    ``rport`` (§8.1.1.7, RFC 3581 §3)."""
    via = Via(transport.upper(), host, port, (("branch", new_branch(ids)), ("rport", None)))
    request.headers.add_first("Via", str(via))
    return via


def fix_received(request: Request, source: Address) -> None:
    """Server side of §18.2.1 and RFC 3581 §4: add ``received`` when the sent-by host differs
    from the packet source; fill an empty ``rport`` with the source port (and add received)."""
    values = request.headers.values("Via")
    via = parse_via(values[0])
    host, port = source
    changed = via
    if via.has_rport and via.rport is None:
        changed = changed.with_param("rport", str(port)).with_param("received", host)
    elif via.host.strip("[]") != host:
        changed = changed.with_param("received", host)
    if changed is not via:
        rest = values[1:]
        request.headers.remove("Via")
        for value in [str(changed), *rest]:
            request.headers.add("Via", value)


# ---------------------------------------------------------------------------------------------
# The layer
# ---------------------------------------------------------------------------------------------


class TransactionLayer:
    """Owns every client and server transaction of one SIP endpoint (RFC 3261 §17)."""

    def __init__(self, config: TimerConfig | None = None, limits: Limits = DEFAULT_LIMITS) -> None:
        self.config = config or TimerConfig()
        self.limits = limits
        self.clients: dict[TransactionKey, ClientTransaction] = {}
        self.servers: dict[TransactionKey, ServerTransaction] = {}
        self._out: list[Outgoing] = []
        # Earliest deadline of every live transaction with an armed timer, as a heap with lazy
        # deletion: an entry is current while its transaction is live and its earliest
        # deadline is still the entry's. Every mutation of a transaction ends in _collect,
        # which pushes the new earliest deadline, so next_timer/handle_timer never scan all
        # transactions (thousands of them linger in Timer J/K/L after the calls end).
        self._heap: list[tuple[float, int, Transaction]] = []
        self._queued: dict[TransactionKey, float] = {}
        self._order = itertools.count()

    # -- output -------------------------------------------------------------------------------

    def outgoing(self) -> list[Outgoing]:
        """Drain the queue of bytes to send."""
        out, self._out = self._out, []
        return out

    def _collect(self, transaction: Transaction) -> list[Event]:
        self._out.extend(transaction.out)
        transaction.out = []
        events, transaction.events = transaction.events, []
        if transaction.state is State.TERMINATED:
            self.clients.pop(transaction.key, None)
            self.servers.pop(transaction.key, None)
            self._queued.pop(transaction.key, None)
        else:
            deadline = transaction.next_timer()
            if deadline is not None and self._queued.get(transaction.key) != deadline:
                self._queued[transaction.key] = deadline
                heapq.heappush(self._heap, (deadline, next(self._order), transaction))
        return events

    def _current(self, deadline: float, transaction: Transaction) -> bool:
        key = transaction.key
        live = self.clients.get(key) is transaction or self.servers.get(key) is transaction
        return live and transaction.next_timer() == deadline

    # -- timers -------------------------------------------------------------------------------

    def next_timer(self) -> float | None:
        """The earliest armed deadline of any transaction, or ``None``."""
        heap = self._heap
        while heap:
            deadline, _, transaction = heap[0]
            if self._current(deadline, transaction):
                return deadline
            heapq.heappop(heap)
        return None

    def handle_timer(self, now: float) -> list[Event]:
        """Fire every timer due at ``now`` (a late call fires each missed deadline in order)."""
        events: list[Event] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            deadline, _, transaction = heapq.heappop(heap)
            if not self._current(deadline, transaction):
                continue
            self._queued.pop(transaction.key, None)
            transaction.fire_due(now)
            events.extend(self._collect(transaction))
        return events

    # -- client side --------------------------------------------------------------------------

    def send_request(
        self, request: Request, destination: Address, transport: str, now: float
    ) -> TransactionKey:
        """Start a client transaction for ``request`` (its top Via must carry an RFC 3261
        branch; see :func:`stamp_via`). ACK for 2xx is not a transaction: use
        :meth:`send_stateless`."""
        if request.method == "ACK":
            raise TransactionError("ACK is sent without a transaction (send_stateless)")
        via = request.top_via
        if not via.is_rfc3261:
            raise TransactionError("client requests need an RFC 3261 branch")
        key = client_key(via.branch or "", request.method)
        if key in self.clients:
            raise TransactionError(f"duplicate client transaction {key}")
        transaction: ClientTransaction
        if request.method == "INVITE":
            transaction = InviteClientTransaction(
                key, request, destination, transport, self.config, now
            )
        else:
            transaction = NonInviteClientTransaction(
                key, request, destination, transport, self.config, now
            )
        self.clients[key] = transaction
        self._collect(transaction)
        return key

    def send_stateless(
        self, message: Request | Response, destination: Address, transport: str
    ) -> None:
        """Queue a message outside any transaction (ACK for 2xx, 2xx retransmissions)."""
        self._out.append(Outgoing(message.to_bytes(), destination, transport.upper()))

    def transport_error(self, key: TransactionKey) -> list[Event]:
        """The shell could not send for this transaction (§17.1.4, §17.2.4)."""
        transaction = self.clients.get(key) or self.servers.get(key)
        if transaction is None:
            return []
        transaction.transport_error()
        return self._collect(transaction)

    # -- server side --------------------------------------------------------------------------

    def send_response(self, key: TransactionKey, response: Response, now: float) -> list[Event]:
        """Send a response through server transaction ``key``."""
        transaction = self.servers.get(key)
        if transaction is None:
            raise TransactionError(f"no server transaction {key}")
        transaction.send(response, now)
        return self._collect(transaction)

    def state(self, key: TransactionKey) -> State:
        """Current state of a live transaction; ``Terminated`` once it was removed."""
        transaction = self.clients.get(key) or self.servers.get(key)
        return State.TERMINATED if transaction is None else transaction.state

    # -- input --------------------------------------------------------------------------------

    def receive(
        self, message: bytes | Request | Response, source: Address, transport: str, now: float
    ) -> list[Event]:
        """Feed a datagram, a stream frame or an already parsed message."""
        transport = transport.upper()
        if isinstance(message, bytes):
            try:
                message = parse_message(message, limits=self.limits, stream=is_reliable(transport))
            except SipParseError as exc:
                answer = error_response(exc)
                if answer is not None:
                    # The Via could not be trusted: answer the packet's source (§18.2.1 spirit).
                    self.send_stateless(answer, source, transport)
                return [MalformedMessage(exc, source, answer is not None)]
        if isinstance(message, Response):
            return self._receive_response(message, now)
        return self._receive_request(message, source, transport, now)

    def _receive_response(self, response: Response, now: float) -> list[Event]:
        via = response.top_via
        key = client_key(via.branch or "", response.cseq.method)
        transaction = self.clients.get(key)
        if transaction is None:
            return []  # §17.1.3 / RFC 6026: a stray response is dropped
        transaction.receive(response, now)
        return self._collect(transaction)

    def _receive_request(
        self, request: Request, source: Address, transport: str, now: float
    ) -> list[Event]:
        fix_received(request, source)
        key = server_key(request)
        existing = self.servers.get(key)
        if request.method == "ACK":
            if isinstance(existing, InviteServerTransaction):
                existing.receive_request(request, now)
                return self._collect(existing)
            return [AckReceived(request, source, transport)]
        if existing is not None:
            existing.receive_request(request, now)
            return self._collect(existing)
        transaction: ServerTransaction
        cancel_target: TransactionKey | None = None
        if request.method == "INVITE":
            transaction = InviteServerTransaction(key, request, source, transport, self.config, now)
        else:
            transaction = NonInviteServerTransaction(
                key, request, source, transport, self.config, now
            )
            if request.method == "CANCEL":
                target = (*key[:-1], "INVITE")
                if isinstance(self.servers.get(target), InviteServerTransaction):
                    cancel_target = target
        self.servers[key] = transaction
        events: list[Event] = [RequestReceived(key, request, source, transport, cancel_target)]
        return events + self._collect(transaction)


__all__ = [
    "ICT_TABLE",
    "IST_TABLE",
    "NICT_TABLE",
    "NIST_TABLE",
    "AckReceived",
    "Address",
    "Event",
    "Input",
    "InviteClientTransaction",
    "InviteServerTransaction",
    "MalformedMessage",
    "NonInviteClientTransaction",
    "NonInviteServerTransaction",
    "Outgoing",
    "RequestReceived",
    "ResponseReceived",
    "State",
    "TimerConfig",
    "TransactionKey",
    "TransactionLayer",
    "TransactionTerminated",
    "TransactionTimeout",
    "TransportFailure",
    "build_ack",
    "build_cancel",
    "client_key",
    "fix_received",
    "is_reliable",
    "response_destination",
    "server_key",
    "stamp_via",
]
