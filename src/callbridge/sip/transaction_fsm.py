"""The four SIP transaction state machines (RFC 3261 §17, RFC 6026), as transition tables.

Driven by :class:`callbridge.sip.transaction.TransactionLayer`: each machine receives messages
and timer inputs with explicit times, records the events for the TU and the bytes to send, and
keeps its armed timers as absolute deadlines. Nothing here reads a clock or opens a socket.

Each machine is an explicit table ``(state, input) -> next state``. Inputs coming from the
network that a state does not care about are listed as absorbed; an input missing from the
table (a TU misuse such as sending a second final response, or a timer firing in a state that
never arms it) raises :class:`TransactionError`.

Timers (RFC 3261 Appendix A, RFC 6026 §8.4): A (INVITE retransmit, T1 doubling, no cap),
B (64·T1), D (32 s unreliable, 0 reliable), E (T1 doubling capped at T2, T2 once Proceeding),
F (64·T1), G (T1 doubling capped at T2), H (64·T1), I (T4 / 0), J (64·T1 / 0), K (T4 / 0),
L (64·T1), M (64·T1). Plus the 200 ms "send 100 Trying" rule of §17.2.1 (``TRYING``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import NamedTuple

from callbridge.sip.errors import SipParseError, TransactionError
from callbridge.sip.message import Headers, Request, Response, make_response

Address = tuple[str, int]
TransactionKey = tuple[str, ...]


class Outgoing(NamedTuple):
    """Bytes to send, where, and over which transport (``UDP``, ``TCP``, ``TLS``)."""

    data: bytes
    destination: Address
    transport: str


@dataclass(frozen=True)
class TimerConfig:
    """RFC 3261 Appendix A values, all configurable."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    timer_d: float = 32.0
    trying_delay: float = 0.2


def is_reliable(transport: str) -> bool:
    return transport.upper() != "UDP"


# ---------------------------------------------------------------------------------------------
# Events
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestReceived:
    """A new request (never a retransmission) for the TU. ``cancel_target`` is the key of the
    INVITE server transaction a CANCEL matches (§9.2), or ``None`` (the TU answers 481)."""

    key: TransactionKey
    request: Request
    source: Address
    transport: str
    cancel_target: TransactionKey | None = None


@dataclass(frozen=True)
class AckReceived:
    """An ACK the TU must see: for a 2xx (new branch, no transaction) or one that reached an
    INVITE server transaction in the Accepted state (RFC 6026 §8.7)."""

    request: Request
    source: Address
    transport: str


@dataclass(frozen=True)
class ResponseReceived:
    """A response a client transaction passes to the TU."""

    key: TransactionKey
    response: Response


@dataclass(frozen=True)
class TransactionTimeout:
    """Timer B, F or H fired: the transaction failed (the TU treats B/F as 408)."""

    key: TransactionKey
    timer: str


@dataclass(frozen=True)
class TransportFailure:
    """The transport reported an error for this transaction (§17.1.4, §17.2.4)."""

    key: TransactionKey


@dataclass(frozen=True)
class TransactionTerminated:
    """The transaction reached Terminated and was removed."""

    key: TransactionKey


@dataclass(frozen=True)
class MalformedMessage:
    """Bytes that did not parse. ``responded`` is True when a 400/505/513 was queued."""

    error: SipParseError
    source: Address
    responded: bool


Event = (
    RequestReceived
    | AckReceived
    | ResponseReceived
    | TransactionTimeout
    | TransportFailure
    | TransactionTerminated
    | MalformedMessage
)


# ---------------------------------------------------------------------------------------------
# State machines
# ---------------------------------------------------------------------------------------------


class State(enum.Enum):
    CALLING = "Calling"
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    ACCEPTED = "Accepted"
    TERMINATED = "Terminated"


class Input(enum.Enum):
    RECV_1XX = "1xx received"
    RECV_2XX = "2xx received"
    RECV_FINAL = "300-699 received"
    RECV_REQUEST = "request retransmission"
    RECV_ACK = "ACK received"
    SEND_1XX = "TU sends 1xx"
    SEND_2XX = "TU sends 2xx"
    SEND_FINAL = "TU sends 300-699"
    TIMER_A = "A"
    TIMER_B = "B"
    TIMER_D = "D"
    TIMER_E = "E"
    TIMER_F = "F"
    TIMER_G = "G"
    TIMER_H = "H"
    TIMER_I = "I"
    TIMER_J = "J"
    TIMER_K = "K"
    TIMER_L = "L"
    TIMER_M = "M"
    TIMER_TRYING = "TRYING"
    TRANSPORT_ERROR = "transport error"


S, I = State, Input  # noqa: E741 - table shorthand

#: INVITE client transaction, RFC 3261 §17.1.1.2 Figure 5 as amended by RFC 6026 Figure 3.
ICT_TABLE: dict[tuple[State, Input], State] = {
    (S.CALLING, I.TIMER_A): S.CALLING,
    (S.CALLING, I.TIMER_B): S.TERMINATED,
    (S.CALLING, I.RECV_1XX): S.PROCEEDING,
    (S.CALLING, I.RECV_2XX): S.ACCEPTED,
    (S.CALLING, I.RECV_FINAL): S.COMPLETED,
    (S.CALLING, I.TRANSPORT_ERROR): S.TERMINATED,
    (S.PROCEEDING, I.RECV_1XX): S.PROCEEDING,
    (S.PROCEEDING, I.RECV_2XX): S.ACCEPTED,
    (S.PROCEEDING, I.RECV_FINAL): S.COMPLETED,
    (S.PROCEEDING, I.TRANSPORT_ERROR): S.TERMINATED,
    (S.COMPLETED, I.RECV_1XX): S.COMPLETED,
    (S.COMPLETED, I.RECV_2XX): S.COMPLETED,
    (S.COMPLETED, I.RECV_FINAL): S.COMPLETED,
    (S.COMPLETED, I.TRANSPORT_ERROR): S.TERMINATED,
    (S.COMPLETED, I.TIMER_D): S.TERMINATED,
    (S.ACCEPTED, I.RECV_1XX): S.ACCEPTED,
    (S.ACCEPTED, I.RECV_2XX): S.ACCEPTED,
    (S.ACCEPTED, I.RECV_FINAL): S.ACCEPTED,
    (S.ACCEPTED, I.TRANSPORT_ERROR): S.ACCEPTED,
    (S.ACCEPTED, I.TIMER_M): S.TERMINATED,
}

#: Non-INVITE client transaction, RFC 3261 §17.1.2.2 Figure 6.
NICT_TABLE: dict[tuple[State, Input], State] = {
    (S.TRYING, I.TIMER_E): S.TRYING,
    (S.TRYING, I.TIMER_F): S.TERMINATED,
    (S.TRYING, I.RECV_1XX): S.PROCEEDING,
    (S.TRYING, I.RECV_2XX): S.COMPLETED,
    (S.TRYING, I.RECV_FINAL): S.COMPLETED,
    (S.TRYING, I.TRANSPORT_ERROR): S.TERMINATED,
    (S.PROCEEDING, I.TIMER_E): S.PROCEEDING,
    (S.PROCEEDING, I.TIMER_F): S.TERMINATED,
    (S.PROCEEDING, I.RECV_1XX): S.PROCEEDING,
    (S.PROCEEDING, I.RECV_2XX): S.COMPLETED,
    (S.PROCEEDING, I.RECV_FINAL): S.COMPLETED,
    (S.PROCEEDING, I.TRANSPORT_ERROR): S.TERMINATED,
    (S.COMPLETED, I.RECV_1XX): S.COMPLETED,
    (S.COMPLETED, I.RECV_2XX): S.COMPLETED,
    (S.COMPLETED, I.RECV_FINAL): S.COMPLETED,
    (S.COMPLETED, I.TRANSPORT_ERROR): S.COMPLETED,
    (S.COMPLETED, I.TIMER_K): S.TERMINATED,
}

#: INVITE server transaction, RFC 3261 §17.2.1 Figure 7 as amended by RFC 6026 Figure 5.
IST_TABLE: dict[tuple[State, Input], State] = {
    (S.PROCEEDING, I.RECV_REQUEST): S.PROCEEDING,
    (S.PROCEEDING, I.RECV_ACK): S.PROCEEDING,
    (S.PROCEEDING, I.TIMER_TRYING): S.PROCEEDING,
    (S.PROCEEDING, I.SEND_1XX): S.PROCEEDING,
    (S.PROCEEDING, I.SEND_2XX): S.ACCEPTED,
    (S.PROCEEDING, I.SEND_FINAL): S.COMPLETED,
    (S.PROCEEDING, I.TRANSPORT_ERROR): S.TERMINATED,
    (S.COMPLETED, I.RECV_REQUEST): S.COMPLETED,
    (S.COMPLETED, I.RECV_ACK): S.CONFIRMED,
    (S.COMPLETED, I.TIMER_G): S.COMPLETED,
    (S.COMPLETED, I.TIMER_H): S.TERMINATED,
    (S.COMPLETED, I.TRANSPORT_ERROR): S.TERMINATED,
    (S.CONFIRMED, I.RECV_REQUEST): S.CONFIRMED,
    (S.CONFIRMED, I.RECV_ACK): S.CONFIRMED,
    (S.CONFIRMED, I.TIMER_I): S.TERMINATED,
    (S.CONFIRMED, I.TRANSPORT_ERROR): S.CONFIRMED,
    (S.ACCEPTED, I.RECV_REQUEST): S.ACCEPTED,
    (S.ACCEPTED, I.RECV_ACK): S.ACCEPTED,
    (S.ACCEPTED, I.SEND_2XX): S.ACCEPTED,
    (S.ACCEPTED, I.TIMER_L): S.TERMINATED,
    (S.ACCEPTED, I.TRANSPORT_ERROR): S.ACCEPTED,
}

#: Non-INVITE server transaction, RFC 3261 §17.2.2 Figure 8.
NIST_TABLE: dict[tuple[State, Input], State] = {
    (S.TRYING, I.RECV_REQUEST): S.TRYING,
    (S.TRYING, I.SEND_1XX): S.PROCEEDING,
    (S.TRYING, I.SEND_2XX): S.COMPLETED,
    (S.TRYING, I.SEND_FINAL): S.COMPLETED,
    (S.TRYING, I.TRANSPORT_ERROR): S.TERMINATED,
    (S.PROCEEDING, I.RECV_REQUEST): S.PROCEEDING,
    (S.PROCEEDING, I.SEND_1XX): S.PROCEEDING,
    (S.PROCEEDING, I.SEND_2XX): S.COMPLETED,
    (S.PROCEEDING, I.SEND_FINAL): S.COMPLETED,
    (S.PROCEEDING, I.TRANSPORT_ERROR): S.TERMINATED,
    (S.COMPLETED, I.RECV_REQUEST): S.COMPLETED,
    (S.COMPLETED, I.TIMER_J): S.TERMINATED,
    (S.COMPLETED, I.TRANSPORT_ERROR): S.TERMINATED,
}
del S, I


def _response_input(status: int, *, receiving: bool) -> Input:
    if status < 200:
        return Input.RECV_1XX if receiving else Input.SEND_1XX
    if status < 300:
        return Input.RECV_2XX if receiving else Input.SEND_2XX
    return Input.RECV_FINAL if receiving else Input.SEND_FINAL


class Transaction:
    """Common machinery: the state, the transition table and the armed timers."""

    kind = "transaction"
    table: dict[tuple[State, Input], State] = {}

    def __init__(
        self,
        key: TransactionKey,
        request: Request,
        peer: Address,
        transport: str,
        config: TimerConfig,
        state: State,
    ) -> None:
        self.key = key
        self.request = request
        self.peer = peer
        self.transport = transport.upper()
        self.reliable = is_reliable(transport)
        self.config = config
        self.state = state
        #: timer name -> absolute deadline.
        self.timers: dict[str, float] = {}
        self.events: list[Event] = []
        self.out: list[Outgoing] = []

    def _step(self, inp: Input) -> State:
        """Apply the table; an input the current state does not accept raises."""
        try:
            new_state = self.table[(self.state, inp)]
        except KeyError:
            raise TransactionError(
                f"{self.kind} {self.key}: {inp.value} not allowed in state {self.state.value}"
            ) from None
        previous, self.state = self.state, new_state
        if new_state is State.TERMINATED and previous is not State.TERMINATED:
            self.timers.clear()
            self.events.append(TransactionTerminated(self.key))
        return previous

    def _arm(self, name: str, deadline: float) -> None:
        self.timers[name] = deadline

    def _send(self, message: Request | Response, destination: Address | None = None) -> None:
        self.out.append(Outgoing(message.to_bytes(), destination or self.peer, self.transport))

    def next_timer(self) -> float | None:
        return min(self.timers.values(), default=None)

    def fire_due(self, now: float) -> None:
        """Fire every armed timer whose deadline is ``<= now``, earliest first."""
        while self.timers:
            name, deadline = min(self.timers.items(), key=lambda item: item[1])
            if deadline > now:
                return
            del self.timers[name]
            self.on_timer(Input(name), deadline)

    def on_timer(self, inp: Input, deadline: float) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def transport_error(self) -> None:
        queued = len(self.events)
        self._step(Input.TRANSPORT_ERROR)
        if self.state is State.TERMINATED:
            # Ahead of the TransactionTerminated the step queued (as timeouts are): the TU
            # must learn of the failure while it still knows the transaction (§17.1.4).
            self.events.insert(queued, TransportFailure(self.key))


class InviteClientTransaction(Transaction):
    """ICT (§17.1.1, RFC 6026 §8.4): Calling → Proceeding → Completed/Accepted → Terminated."""

    kind = "ICT"
    table = ICT_TABLE

    def __init__(
        self,
        key: TransactionKey,
        request: Request,
        peer: Address,
        transport: str,
        config: TimerConfig,
        now: float,
    ) -> None:
        super().__init__(key, request, peer, transport, config, State.CALLING)
        self._interval = config.t1
        self._ack: Request | None = None
        self._send(request)
        if not self.reliable:
            self._arm("A", now + config.t1)
        self._arm("B", now + 64 * config.t1)

    def receive(self, response: Response, now: float) -> None:
        inp = _response_input(response.status, receiving=True)
        previous = self._step(inp)
        if previous in (State.CALLING, State.PROCEEDING):
            self.timers.pop("A", None)
            self.timers.pop("B", None)
            self.events.append(ResponseReceived(self.key, response))
            if inp is Input.RECV_FINAL:
                self._ack = build_ack(self.request, response)
                self._send(self._ack)
                self._finish("D", 0.0 if self.reliable else self.config.timer_d, now)
            elif inp is Input.RECV_2XX:
                self._finish("M", 64 * self.config.t1, now)
        elif previous is State.COMPLETED and inp is Input.RECV_FINAL and self._ack is not None:
            self._send(self._ack)  # §17.1.1.2: re-send the ACK for each retransmitted final
        elif previous is State.ACCEPTED and inp is Input.RECV_2XX:
            self.events.append(ResponseReceived(self.key, response))

    def _finish(self, timer: str, delay: float, now: float) -> None:
        if delay <= 0:
            self._step(Input(timer))
        else:
            self._arm(timer, now + delay)

    def on_timer(self, inp: Input, deadline: float) -> None:
        self._step(inp)
        if inp is Input.TIMER_A:
            self._send(self.request)
            self._interval *= 2
            self._arm("A", deadline + self._interval)
        elif inp is Input.TIMER_B:
            self.events.insert(0, TransactionTimeout(self.key, "B"))


class NonInviteClientTransaction(Transaction):
    """NICT (§17.1.2): Trying → Proceeding → Completed → Terminated."""

    kind = "NICT"
    table = NICT_TABLE

    def __init__(
        self,
        key: TransactionKey,
        request: Request,
        peer: Address,
        transport: str,
        config: TimerConfig,
        now: float,
    ) -> None:
        super().__init__(key, request, peer, transport, config, State.TRYING)
        self._interval = config.t1
        self._send(request)
        if not self.reliable:
            self._arm("E", now + config.t1)
        self._arm("F", now + 64 * config.t1)

    def receive(self, response: Response, now: float) -> None:
        inp = _response_input(response.status, receiving=True)
        previous = self._step(inp)
        if previous is State.COMPLETED:
            return  # absorbed retransmission
        self.events.append(ResponseReceived(self.key, response))
        if self.state is State.COMPLETED:
            self.timers.pop("E", None)
            self.timers.pop("F", None)
            if self.reliable:
                self._step(Input.TIMER_K)
            else:
                self._arm("K", now + self.config.t4)

    def on_timer(self, inp: Input, deadline: float) -> None:
        self._step(inp)
        if inp is Input.TIMER_E:
            self._send(self.request)
            if self.state is State.PROCEEDING:
                self._interval = self.config.t2
            else:
                self._interval = min(2 * self._interval, self.config.t2)
            self._arm("E", deadline + self._interval)
        elif inp is Input.TIMER_F:
            self.events.insert(0, TransactionTimeout(self.key, "F"))


class InviteServerTransaction(Transaction):
    """IST (§17.2.1, RFC 6026 §8.5–§8.7): Proceeding → Completed → Confirmed, or Accepted."""

    kind = "IST"
    table = IST_TABLE

    def __init__(
        self,
        key: TransactionKey,
        request: Request,
        peer: Address,
        transport: str,
        config: TimerConfig,
        now: float,
    ) -> None:
        super().__init__(key, request, peer, transport, config, State.PROCEEDING)
        self.last_response: Response | None = None
        self._interval = config.t1
        self._arm("TRYING", now + config.trying_delay)

    def receive_request(self, request: Request, now: float) -> None:
        inp = Input.RECV_ACK if request.method == "ACK" else Input.RECV_REQUEST
        previous = self._step(inp)
        if inp is Input.RECV_REQUEST and self.last_response is not None:
            if previous in (State.PROCEEDING, State.COMPLETED):
                self._send(self.last_response)  # §17.2.1: re-send the last response
        elif inp is Input.RECV_ACK:
            if previous is State.COMPLETED:
                self.timers.pop("G", None)
                self.timers.pop("H", None)
                if self.reliable:
                    self._step(Input.TIMER_I)
                else:
                    self._arm("I", now + self.config.t4)
            elif previous is State.ACCEPTED:
                self.events.append(AckReceived(request, self.peer, self.transport))

    def send(self, response: Response, now: float) -> None:
        inp = _response_input(response.status, receiving=False)
        self._step(inp)
        self.timers.pop("TRYING", None)
        self.last_response = response
        self._send(response, response_destination(response, self.peer, self.transport))
        if inp is Input.SEND_FINAL:
            if not self.reliable:
                self._arm("G", now + self.config.t1)
            self._arm("H", now + 64 * self.config.t1)
        elif inp is Input.SEND_2XX and "L" not in self.timers:
            self._arm("L", now + 64 * self.config.t1)

    def on_timer(self, inp: Input, deadline: float) -> None:
        self._step(inp)
        if inp is Input.TIMER_TRYING:
            if self.last_response is None:
                self.send(make_response(self.request, 100), deadline)
        elif inp is Input.TIMER_G and self.last_response is not None:
            self._send(
                self.last_response,
                response_destination(self.last_response, self.peer, self.transport),
            )
            self._interval = min(2 * self._interval, self.config.t2)
            self._arm("G", deadline + self._interval)
        elif inp is Input.TIMER_H:
            self.events.insert(0, TransactionTimeout(self.key, "H"))


class NonInviteServerTransaction(Transaction):
    """NIST (§17.2.2): Trying → Proceeding → Completed → Terminated."""

    kind = "NIST"
    table = NIST_TABLE

    def __init__(
        self,
        key: TransactionKey,
        request: Request,
        peer: Address,
        transport: str,
        config: TimerConfig,
        now: float,
    ) -> None:
        super().__init__(key, request, peer, transport, config, State.TRYING)
        self.last_response: Response | None = None

    def receive_request(self, request: Request, now: float) -> None:
        self._step(Input.RECV_REQUEST)
        if self.last_response is not None:
            # A retransmitted request gets the same last response (a BYE gets its cached 200).
            self._send(
                self.last_response,
                response_destination(self.last_response, self.peer, self.transport),
            )

    def send(self, response: Response, now: float) -> None:
        inp = _response_input(response.status, receiving=False)
        self._step(inp)
        self.last_response = response
        self._send(response, response_destination(response, self.peer, self.transport))
        if self.state is State.COMPLETED:
            if self.reliable:
                self._step(Input.TIMER_J)
            else:
                self._arm("J", now + 64 * self.config.t1)

    def on_timer(self, inp: Input, deadline: float) -> None:
        self._step(inp)


ClientTransaction = InviteClientTransaction | NonInviteClientTransaction
ServerTransaction = InviteServerTransaction | NonInviteServerTransaction


# ---------------------------------------------------------------------------------------------
# Helpers used by the machines
# ---------------------------------------------------------------------------------------------


def build_ack(invite: Request, response: Response) -> Request:
    """The ACK for a non-2xx final response (§17.1.1.3): same branch, the response's To."""
    headers = Headers()
    headers.add("Via", invite.headers.values("Via")[0])
    headers.add("Max-Forwards", "70")
    headers.add("From", invite.headers.get("From") or "")
    headers.add("To", response.headers.get("To") or "")
    headers.add("Call-ID", invite.call_id)
    headers.add("CSeq", f"{invite.cseq.number} ACK")
    for route in invite.headers.get_all("Route"):
        headers.add("Route", route)
    return Request(headers=headers, method="ACK", uri=invite.uri)


def response_destination(response: Response, source: Address, transport: str) -> Address:
    """Where a response goes (§18.2.2, RFC 3581 §4).

    Streams answer on the connection the request came from (``source``). UDP sends to
    ``received`` (or the sent-by host) and to ``rport`` when it has a value, else the sent-by
    port (default 5060).
    """
    if is_reliable(transport):
        return source
    via = response.top_via
    host = via.received or via.host
    port = via.rport or via.port or 5060
    return (host.strip("[]"), port)
