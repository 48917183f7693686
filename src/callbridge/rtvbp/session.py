"""The RTVBP session runtime, sans I/O (RTVBP spec §2.3, §5).

One :class:`Session` is one RTVBP session in one role (``voice`` or ``application``) on one
WebSocket. It never touches a socket or a clock: the shell feeds it received text and binary
messages and the current time, and drains what it must write (:meth:`Session.data_to_send`),
requests and events to dispatch (:meth:`Session.next_inbound`, serially, in arrival order),
outcomes of its own requests (:meth:`Session.take_completions`) and whether to close.

State machine (§5.1), table-driven; an illegal move raises
:class:`~callbridge.calls.model.IllegalTransition`::

    inactive ──► connecting ──► active ──► closing ──► closed
        └──────────┴─────────────┴───────────┴──────► failed

``connecting`` covers the ``session.initialize`` exchange: the application enters ``active``
when it sends a successful initialize response, the voice when its shell accepts the codec of
the initialize result (:meth:`Session.activate`).

Runtime rules implemented here:

* pending-request table with a per-request deadline (default 5 s, §1.5); expiry completes the
  request with outcome ``timeout``;
* exactly one response per inbound request; automatic answers for unknown methods (501
  ``unknown method: <name>``), invalid params (400, the rule that failed), voice-side
  operations before initialize (500 ``session not initialized``) and a reverse
  ``session.terminate`` (the frozen 501, §2.3);
* inbound requests and events queue for serial dispatch (at most 256, overflow fails the
  session); responses are matched at once, so a handler may await a nested request (§5.3);
* unknown events are ignored, undecodable frames dropped and counted (§2.2);
* a successful response to a terminal operation is queued, then the session enters
  ``closing``: the shell flushes and closes with 1000, nothing follows (§3.2);
* entering ``closing`` completes pending requests: terminal ones as done-by-close (§5.2
  "SDK robustness"), the rest with outcome ``closed`` (``session closed``); queued inbound
  dispatch is discarded.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass
from typing import Final, Literal

from callbridge.calls.model import IllegalTransition
from callbridge.media.assembler import FrameAssembler
from callbridge.media.constants import FRAME_BYTES
from callbridge.rtvbp import catalog
from callbridge.rtvbp.catalog import EVENTS, OPERATIONS, Payload, Role, ValidationError
from callbridge.rtvbp.envelope import (
    EnvelopeError,
    ErrorObject,
    Event,
    Request,
    Response,
    decode,
    encode,
)

__all__ = [
    "DEFAULT_MAX_INBOUND",
    "DEFAULT_REQUEST_TIMEOUT",
    "Completion",
    "InboundEvent",
    "InboundRequest",
    "NotInitialized",
    "Session",
    "SessionClosed",
    "State",
]

DEFAULT_REQUEST_TIMEOUT: Final = 5.0
DEFAULT_MAX_INBOUND: Final = 256
#: Close code of an orderly end (RFC 6455 §7.4.1).
CLOSE_NORMAL: Final = 1000


class State(enum.StrEnum):
    INACTIVE = "inactive"
    CONNECTING = "connecting"
    ACTIVE = "active"
    CLOSING = "closing"
    CLOSED = "closed"
    FAILED = "failed"


TRANSITIONS: dict[State, frozenset[State]] = {
    State.INACTIVE: frozenset({State.CONNECTING, State.CLOSING, State.FAILED}),
    State.CONNECTING: frozenset({State.ACTIVE, State.CLOSING, State.FAILED}),
    State.ACTIVE: frozenset({State.CLOSING, State.FAILED}),
    State.CLOSING: frozenset({State.CLOSED, State.FAILED}),
    State.CLOSED: frozenset(),
    State.FAILED: frozenset(),
}


class SessionClosed(Exception):
    """The session is closing or over; nothing more can be sent."""


class NotInitialized(Exception):
    """The operation needs a completed ``session.initialize`` (§3.2, §7)."""


@dataclass(frozen=True, slots=True)
class InboundRequest:
    """A validated request from the peer, to be answered with :meth:`Session.respond`."""

    id: str
    method: str
    params: Payload
    #: Wall-clock epoch ms at which the transport read it (``ping`` ``t1``).
    received_ms: int


@dataclass(frozen=True, slots=True)
class InboundEvent:
    name: str
    data: Payload


Outcome = Literal["ok", "error", "timeout", "closed"]


@dataclass(frozen=True, slots=True)
class Completion:
    """How one of our requests ended: a result, a remote error, a timeout or the close."""

    request_id: str
    method: str
    outcome: Outcome
    result: Payload | None = None
    error: ErrorObject | None = None


@dataclass(slots=True)
class _Pending:
    method: str
    deadline: float


def _base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out


class Session:
    """One RTVBP session in one role. Times: ``now`` monotonic s, ``now_ms`` epoch ms."""

    def __init__(
        self,
        role: Role,
        *,
        session_id: str,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
        max_inbound: int = DEFAULT_MAX_INBOUND,
    ) -> None:
        self.role: Role = role
        self.peer_role: Role = "application" if role == "voice" else "voice"
        self.session_id = session_id
        self.request_timeout = request_timeout
        self.max_inbound = max_inbound
        self._state = State.INACTIVE
        self._counter = 0
        self._pending: dict[str, _Pending] = {}
        self._unanswered: dict[str, str] = {}  # inbound request id -> method
        self._inbound: deque[InboundRequest | InboundEvent] = deque()
        self._outbox: deque[str | bytes] = deque()
        self._completions: list[Completion] = []
        self._assembler = FrameAssembler(FRAME_BYTES)
        self.close_code: int | None = None
        self.close_reason = ""
        #: Counters: frames dropped as undecodable, responses to unknown ids, events ignored.
        self.dropped_frames = 0
        self.unmatched_responses = 0
        self.ignored_events = 0
        self.bytes_read = 0
        self.bytes_written = 0

    # -- state machine ------------------------------------------------------------------------
    @property
    def state(self) -> State:
        return self._state

    def _move(self, target: State) -> None:
        if target not in TRANSITIONS[self._state]:
            raise IllegalTransition("rtvbp session", self._state, target)
        self._state = target

    @property
    def is_open(self) -> bool:
        """Messages can still be sent (``connecting`` or ``active``)."""
        return self._state in (State.CONNECTING, State.ACTIVE)

    def connect(self) -> None:
        """The transport is up: ``inactive → connecting``."""
        self._move(State.CONNECTING)

    def activate(self) -> None:
        """The initialize exchange succeeded: ``connecting → active``."""
        self._move(State.ACTIVE)

    def close(self, reason: str = "session closed") -> None:
        """Enter ``closing`` (§5.1). Idempotent once closing or over."""
        if self._state in (State.CLOSING, State.CLOSED, State.FAILED):
            return
        self._move(State.CLOSING)
        self.close_code = CLOSE_NORMAL
        self.close_reason = reason
        self._inbound.clear()
        self._unanswered.clear()
        self._complete_pending_on_close()

    def finish(self) -> None:
        """The transport has closed after ``closing``: ``closing → closed``."""
        if self._state is State.CLOSING:
            self._move(State.CLOSED)

    def fail(self, reason: str) -> None:
        """Enter ``failed`` from any live state; nothing more is written."""
        if self._state in (State.CLOSED, State.FAILED):
            return
        self._move(State.FAILED)
        self.close_reason = reason
        self._inbound.clear()
        self._unanswered.clear()
        self._outbox.clear()
        self._complete_pending_on_close()

    def _complete_pending_on_close(self) -> None:
        for rid, pend in self._pending.items():
            op = OPERATIONS[pend.method]
            if op.terminal and self._state is State.CLOSING:
                # The orderly close completes a pending terminal request (§3.2, §5.2).
                result = op.response.from_json({})  # every terminal result may be {}
                self._completions.append(Completion(rid, pend.method, "ok", result))
            else:
                self._completions.append(
                    Completion(rid, pend.method, "closed", error=ErrorObject(-1, "session closed"))
                )
        self._pending.clear()

    # -- sending ------------------------------------------------------------------------------
    def _require_open(self) -> None:
        if not self.is_open:
            raise SessionClosed(f"session is {self._state.value}")

    def next_id(self) -> str:
        """``<session-id>-<base36 counter>`` (§2.2)."""
        self._counter += 1
        return f"{self.session_id}-{_base36(self._counter)}"

    def request(self, method: str, params: Payload, now: float) -> str:
        """Queue a request to the peer; returns its id. Raises if the role may not send it."""
        self._require_open()
        op = OPERATIONS.get(method)
        if op is None or self.peer_role not in op.handled_by:
            raise ValueError(f"the {self.role} role cannot send {method!r}")
        if not isinstance(params, op.request):
            raise TypeError(f"{method} params must be {op.request.__name__}")
        if self._state is State.CONNECTING and not (
            self.role == "voice" and method == "session.initialize"
        ):
            raise NotInitialized(f"{method}: session not initialized")
        rid = self.next_id()
        self._pending[rid] = _Pending(method, now + self.request_timeout)
        self._outbox.append(encode(Request(rid, method, params.to_json())))
        return rid

    def event(self, name: str, data: Payload, event_id: str | None = None) -> str:
        """Queue an event; only once ``active`` and only events of this role."""
        self._require_open()
        spec = EVENTS.get(name)
        if spec is None or spec.emitted_by != self.role:
            raise ValueError(f"the {self.role} role cannot emit {name!r}")
        if not isinstance(data, spec.data):
            raise TypeError(f"{name} data must be {spec.data.__name__}")
        if self._state is not State.ACTIVE:
            raise NotInitialized(f"{name}: session not initialized")
        eid = event_id or self.next_id()
        self._outbox.append(encode(Event(eid, name, data.to_json())))
        return eid

    def respond(
        self, request_id: str, result: Payload | None = None, error: ErrorObject | None = None
    ) -> None:
        """Answer an inbound request exactly once (``result`` or ``error``)."""
        method = self._unanswered.get(request_id)
        if method is None:
            if not self.is_open:
                return  # the close discarded it: nothing follows a close
            raise ValueError(f"request {request_id!r} is not awaiting a response")
        op = OPERATIONS[method]
        if error is None:
            payload = result if result is not None else op.response.from_json({})
            if not isinstance(payload, op.response):
                raise TypeError(f"{method} result must be {op.response.__name__}")
        del self._unanswered[request_id]
        if not self.is_open:
            return  # the session ended while the handler worked: nothing follows a close
        if error is not None:
            self._outbox.append(encode(Response(request_id, error=error)))
            return
        self._outbox.append(encode(Response(request_id, payload.to_json())))
        if method == "session.initialize" and self._state is State.CONNECTING:
            self.activate()
        if op.terminal:
            self.close(f"{method} answered")

    def send_audio(self, frame: bytes) -> None:
        """Queue one binary audio frame: exactly ``FRAME_BYTES`` (senders are strict, §4)."""
        self._require_open()
        if len(frame) != FRAME_BYTES:
            raise ValueError(f"audio frames are {FRAME_BYTES} bytes, not {len(frame)}")
        if self._state is not State.ACTIVE:
            raise NotInitialized("audio flows only after session.initialize (§4)")
        self.bytes_written += len(frame)
        self._outbox.append(bytes(frame))

    def data_to_send(self) -> list[str | bytes]:
        """Drain the messages to write, in order (text = control, bytes = audio)."""
        out = list(self._outbox)
        self._outbox.clear()
        return out

    @property
    def wants_close(self) -> bool:
        """The shell should flush and close the WebSocket with :attr:`close_code`."""
        return self._state is State.CLOSING

    # -- receiving ----------------------------------------------------------------------------
    def receive_binary(self, data: bytes) -> list[bytes]:
        """Accept any size (§4): returns the complete 320-byte frames, keeps the carry."""
        if self._state in (State.CLOSED, State.FAILED):
            return []
        self.bytes_read += len(data)
        return self._assembler.push(data)

    def clear_audio_carry(self) -> int:
        """Drop a partial inbound frame (barge-in); returns the bytes dropped."""
        pending = self._assembler.pending
        self._assembler.reset()
        return pending

    def receive_text(self, text: str | bytes, now_ms: int) -> None:
        """Feed one text message. Bad frames are dropped and counted, never raised."""
        if not self.is_open:
            return
        try:
            frame = decode(text)
        except EnvelopeError:
            self.dropped_frames += 1
            return
        if isinstance(frame, Response):
            self._on_response(frame)
        elif isinstance(frame, Request):
            self._on_request(frame, now_ms)
        else:
            self._on_event(frame)

    def _on_response(self, frame: Response) -> None:
        pend = self._pending.pop(frame.response, None)
        if pend is None:
            self.unmatched_responses += 1
            return
        if frame.error is not None:
            self._completions.append(
                Completion(frame.response, pend.method, "error", error=frame.error)
            )
            return
        op = OPERATIONS[pend.method]
        try:
            result = op.response.from_json(frame.result)
        except ValidationError as exc:
            err = ErrorObject(-1, f"invalid {pend.method} result: {exc}")
            self._completions.append(Completion(frame.response, pend.method, "error", error=err))
            return
        self._completions.append(Completion(frame.response, pend.method, "ok", result))

    def _answer_now(self, rid: str, code: int, message: str) -> None:
        self._outbox.append(encode(Response(rid, error=ErrorObject(code, message))))

    def _on_request(self, frame: Request, now_ms: int) -> None:
        op = OPERATIONS.get(frame.method)
        if op is None or self.role not in op.handled_by:
            if self.role == "voice" and frame.method == "session.terminate":
                self._answer_now(frame.id, *catalog.TERMINATE_REJECTION)
            else:
                self._answer_now(frame.id, 501, f"unknown method: {frame.method}")
            return
        if self.role == "voice" and self._state is State.CONNECTING and frame.method != "ping":
            self._answer_now(frame.id, 500, "session not initialized")
            return
        try:
            params = op.request.from_json(frame.params)
        except ValidationError as exc:
            self._answer_now(frame.id, 400, str(exc))
            return
        if frame.id in self._unanswered:
            self._answer_now(frame.id, 400, f"duplicate request id {frame.id!r}")
            return
        if not self._enqueue(InboundRequest(frame.id, frame.method, params, now_ms)):
            return
        self._unanswered[frame.id] = frame.method

    def _on_event(self, frame: Event) -> None:
        spec = EVENTS.get(frame.event)
        if spec is None or spec.emitted_by != self.peer_role:
            self.ignored_events += 1
            return
        try:
            data = spec.data.from_json(frame.data)
        except ValidationError:
            self.dropped_frames += 1
            return
        self._enqueue(InboundEvent(frame.event, data))

    def _enqueue(self, item: InboundRequest | InboundEvent) -> bool:
        if len(self._inbound) >= self.max_inbound:
            self.fail("inbound dispatch queue overflow")
            return False
        self._inbound.append(item)
        return True

    def next_inbound(self) -> InboundRequest | InboundEvent | None:
        """The next request or event to dispatch, in arrival order."""
        return self._inbound.popleft() if self._inbound else None

    @property
    def inbound_queued(self) -> int:
        return len(self._inbound)

    # -- timers and outcomes ------------------------------------------------------------------
    def next_deadline(self) -> float | None:
        return min((p.deadline for p in self._pending.values()), default=None)

    def poll(self, now: float) -> None:
        """Expire pending requests whose deadline has passed."""
        for rid, pend in list(self._pending.items()):
            if pend.deadline <= now:
                del self._pending[rid]
                err = ErrorObject(-1, f"{pend.method} timed out after {self.request_timeout:g} s")
                self._completions.append(Completion(rid, pend.method, "timeout", error=err))

    @property
    def pending_requests(self) -> int:
        return len(self._pending)

    def take_completions(self) -> list[Completion]:
        out, self._completions = self._completions, []
        return out

    def unanswered(self) -> dict[str, str]:
        """Inbound requests dispatched but not answered yet (id → method)."""
        return dict(self._unanswered)
