"""The asyncio shell around :class:`~callbridge.rtvbp.session.Session` (RTVBP spec §5).

It only moves bytes: WebSocket messages into the session, the session's output onto the
WebSocket, completions into awaiting futures. Both roles use it, on either socket side.

Tasks of one connection:

* **reader** — every text message goes to :meth:`Session.receive_text`, every binary message
  to :meth:`Session.receive_binary` and its complete frames to ``on_audio``. On a
  :class:`DirectAudioClientConnection` (what the voice bridge dials) a single-frame binary
  message is handed over as soon as the transport delivers it, without going through the
  library's message queue and waking the reader task;
* **dispatcher** — inbound requests and events, one at a time in arrival order; a request's
  handler returns the result (or raises: 500, or the code of a
  :class:`~callbridge.rtvbp.errors.RemoteError`), or returns :data:`DEFERRED` and answers
  later with :meth:`Connection.respond` so long work never blocks dispatch (§5.3);
* **writer** — drains the session's output in order, each write bounded by the write
  deadline; once the session is ``closing`` and the output is flushed, closes with 1000.
  Audio queued from a leg's tick is written at once, without waking the writer, when that
  write cannot wait (the writer is idle, the connection open and the transport's buffer
  empty): same bytes, same order, one task switch and one loop iteration less per frame;
* **timer** — expires pending requests on the injected clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

import structlog
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.connection import Connection as WsConnection
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.protocol import Event
from websockets.protocol import State as WsState

from callbridge.media.clock import Clock, SystemClock
from callbridge.rtvbp.catalog import Payload
from callbridge.rtvbp.envelope import ErrorObject
from callbridge.rtvbp.errors import RemoteError, RequestTimeout, error_for
from callbridge.rtvbp.session import (
    Completion,
    InboundEvent,
    InboundRequest,
    Session,
    SessionClosed,
    State,
)

log = structlog.get_logger("callbridge.rtvbp")

#: Per-message write deadline and close/flush timeout (§1.5).
WRITE_TIMEOUT: Final = 5.0


class _Deferred:
    def __repr__(self) -> str:
        return "DEFERRED"


#: Returned by a request handler that will answer later with :meth:`Connection.respond`.
DEFERRED: Final = _Deferred()

RequestHandler = Callable[[InboundRequest], Awaitable["Payload | _Deferred | None"]]
EventHandler = Callable[[InboundEvent], Awaitable[None]]
AudioHandler = Callable[[bytes], None]


class DirectAudioClientConnection(ClientConnection):
    """A client connection that hands complete binary messages to :attr:`on_binary` as they are
    parsed (in ``data_received``) instead of queueing them for ``recv()``.

    Only unfragmented binary messages take the direct path (a binary frame with FIN cannot
    arrive inside a fragmented message: the protocol rejects that); text, control frames and
    fragments go the usual way. Audio changes no session state, so reading it ahead of a text
    message still queued for the reader changes nothing the session can observe: the text is
    dispatched after the audio either way.
    """

    on_binary: Callable[[bytes], None] | None = None

    def process_event(self, event: Event) -> None:
        handler = self.on_binary
        if (
            handler is not None
            and isinstance(event, Frame)
            and event.opcode is Opcode.BINARY
            and event.fin
        ):
            data = event.data
            handler(data if isinstance(data, bytes) else bytes(data))
            return
        super().process_event(event)


class Connection:
    """Runs one :class:`Session` over one ``websockets`` connection."""

    def __init__(
        self,
        ws: WsConnection,
        session: Session,
        *,
        on_request: RequestHandler,
        on_event: EventHandler,
        on_audio: AudioHandler,
        clock: Clock | None = None,
        write_timeout: float = WRITE_TIMEOUT,
    ) -> None:
        self.ws = ws
        self.session = session
        self._on_request = on_request
        self._on_event = on_event
        self._on_audio = on_audio
        self.clock: Clock = clock or SystemClock()
        self._write_timeout = write_timeout
        self._futures: dict[str, asyncio.Future[Payload]] = {}
        self._wake_writer = asyncio.Event()
        self._wake_dispatch = asyncio.Event()
        self._wake_timer = asyncio.Event()
        self._done = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._writing = False  # the writer task holds items it has not finished writing
        if isinstance(ws, DirectAudioClientConnection):
            ws.on_binary = self._binary_received

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        """Start the reader, writer, dispatcher and timer tasks."""
        if self.session.state is State.INACTIVE:
            self.session.connect()
        for name, coro in (
            ("reader", self._reader()),
            ("writer", self._writer()),
            ("dispatch", self._dispatcher()),
            ("timer", self._timer()),
        ):
            self._tasks.append(asyncio.create_task(coro, name=f"rtvbp-{name}"))

    async def wait_closed(self) -> None:
        """Until the session is ``closed`` or ``failed``; then stop every task."""
        await self._done.wait()
        await self._stop_tasks()

    async def _stop_tasks(self) -> None:
        current = asyncio.current_task()
        pending = {t for t in self._tasks if t is not current and not t.done()}
        while pending:
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=1.0)

    @property
    def over(self) -> bool:
        return self.session.state in (State.CLOSED, State.FAILED)

    def _changed(self) -> None:
        """Something happened in the session: resolve outcomes, wake the tasks."""
        for completion in self.session.take_completions():
            self._resolve(completion)
        self._wake_writer.set()
        self._wake_dispatch.set()
        self._wake_timer.set()
        if self.session.state is State.FAILED:
            self._done.set()

    def _resolve(self, completion: Completion) -> None:
        fut = self._futures.pop(completion.request_id, None)
        if fut is None or fut.done():
            return
        if completion.outcome == "ok":
            assert completion.result is not None
            fut.set_result(completion.result)
        elif completion.outcome == "error":
            assert completion.error is not None
            fut.set_exception(RemoteError.from_error(completion.error))
        elif completion.outcome == "timeout":
            fut.set_exception(RequestTimeout(completion.error.message if completion.error else ""))
        else:
            fut.set_exception(SessionClosed("session closed"))

    # -- API ----------------------------------------------------------------------------------
    async def request(self, method: str, params: Payload) -> Payload:
        """Send a request and await its typed result (raises ``RemoteError``,
        ``RequestTimeout``, ``SessionClosed`` or ``NotInitialized``)."""
        rid = self.session.request(method, params, self.clock.monotonic())
        fut: asyncio.Future[Payload] = asyncio.get_running_loop().create_future()
        self._futures[rid] = fut
        self._changed()
        return await fut

    def event(self, name: str, data: Payload) -> None:
        self.session.event(name, data)
        self._changed()

    def respond(
        self, request_id: str, result: Payload | None = None, error: ErrorObject | None = None
    ) -> None:
        self.session.respond(request_id, result, error)
        self._changed()

    def send_audio(self, frame: bytes) -> None:
        self.session.send_audio(frame)
        if not self._write_now():
            self._wake_writer.set()

    def _write_now(self) -> bool:
        """Write everything queued synchronously if no write can wait; ``False``: not done.

        Only while the writer is idle (so order is kept), the connection is open, no close is
        due and the transport's buffer is empty (a write then goes straight to the socket, so
        neither flow control nor the write deadline can apply). This is what
        ``ws.send(...)`` does in that state, minus its task switch and context manager.
        """
        if self._writing or self.session.wants_close:
            return False
        ws = self.ws
        transport = ws.transport
        protocol = ws.protocol
        if (
            transport is None
            or protocol.state is not WsState.OPEN
            or transport.get_write_buffer_size() != 0
        ):
            return False
        try:
            for item in self.session.data_to_send():
                if isinstance(item, str):
                    protocol.send_text(item.encode())
                else:
                    protocol.send_binary(item)
            ws.send_data()
        except Exception as exc:  # OSError from the socket, or the protocol's state errors
            self.fail(f"write failed: {type(exc).__name__}")
        return True

    def close(self, reason: str = "session closed") -> None:
        """Begin an orderly close: flush what is queued, then close with 1000."""
        self.session.close(reason)
        self._changed()

    def fail(self, reason: str) -> None:
        self.session.fail(reason)
        self._changed()

    # -- tasks --------------------------------------------------------------------------------
    async def _reader(self) -> None:
        try:
            async for message in self.ws:
                if isinstance(message, str):
                    self.session.receive_text(message, int(self.clock.time() * 1000))
                    self._changed()
                else:
                    # Audio changes no session state: no task needs waking (this runs 50
                    # times a second per session, so three needless wake-ups per frame
                    # were most of the shell's cost).
                    for frame in self.session.receive_binary(message):
                        self._on_audio(frame)
        except ConnectionClosed:
            pass
        code = self.ws.close_code
        if self.session.is_open:
            if code in (1000, 1001):
                self.session.close("peer closed the connection")
            else:
                self.session.fail(f"connection lost (close code {code})")
        if self.session.state is State.CLOSING:
            self.session.finish()
            self._done.set()
        self._changed()

    def _binary_received(self, data: bytes) -> None:
        """A binary message, straight from the transport (see the reader)."""
        try:
            for frame in self.session.receive_binary(data):
                self._on_audio(frame)
        except Exception as exc:  # never let an audio consumer break the transport callback
            log.exception("audio handler failed")
            self.fail(f"audio handler failed: {type(exc).__name__}")

    async def _writer(self) -> None:
        while True:
            await self._wake_writer.wait()
            self._wake_writer.clear()
            self._writing = True
            try:
                await self._write(self.session.data_to_send())
            except (ConnectionClosed, TimeoutError, OSError) as exc:
                self.fail(f"write failed: {type(exc).__name__}")
                return
            finally:
                self._writing = False
            if self.session.wants_close:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(self._write_timeout):
                        await self.ws.close(1000, self.session.close_reason[:100])
                self.session.finish()
                self._done.set()
                self._changed()
                return

    async def _write(self, items: list[str | bytes]) -> None:
        """Write ``items`` in order, each bounded by the write deadline.

        A send only waits when the transport's buffer is past its high-water mark. While the
        buffer is empty a send cannot wait, so it goes without arming a timer (one timer per
        audio frame per session was a measurable share of the loop's work); otherwise the
        deadline applies.
        """
        ws = self.ws
        for item in items:
            transport = ws.transport
            if transport is not None and transport.get_write_buffer_size() == 0:
                await ws.send(item)
            else:
                async with asyncio.timeout(self._write_timeout):
                    await ws.send(item)

    async def _dispatcher(self) -> None:
        while True:
            item = self.session.next_inbound()
            if item is None:
                self._wake_dispatch.clear()
                await self._wake_dispatch.wait()
                continue
            if isinstance(item, InboundRequest):
                await self._dispatch_request(item)
            else:
                try:
                    await self._on_event(item)
                except Exception:
                    log.exception("event handler failed", rtvbp_event=item.name)
            self._changed()

    async def _dispatch_request(self, item: InboundRequest) -> None:
        result: Any
        try:
            result = await self._on_request(item)
        except Exception as exc:
            log.info("request handler failed", method=item.method, error=str(exc))
            if item.id in self.session.unanswered():
                self.session.respond(item.id, error=error_for(exc))
            return
        if result is DEFERRED or item.id not in self.session.unanswered():
            return
        try:
            self.session.respond(item.id, result)
        except (TypeError, ValueError) as exc:
            self.session.respond(item.id, error=error_for(exc))

    async def _timer(self) -> None:
        while True:
            deadline = self.session.next_deadline()
            self._wake_timer.clear()
            if deadline is None:
                await self._wake_timer.wait()
                continue
            delay = deadline - self.clock.monotonic()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(delay, 1.0)):
                        await self._wake_timer.wait()
                continue
            self.session.poll(self.clock.monotonic())
            self._changed()


def wall_ms(clock: Clock | None = None) -> int:
    """Wall-clock epoch milliseconds (RTVBP timestamps)."""
    return int((clock.time() if clock is not None else time.time()) * 1000)
