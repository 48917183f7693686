"""The asyncio shell of the SIP stack (RFC 3261 §18, RFC 3581, spec ``sip.md`` §5).

It only moves bytes: :class:`SipTransport` owns a UDP endpoint and a TCP server on the SIP port
(plus TCP client connections), hands every datagram / framed stream message to a callback and
sends :class:`~callbridge.sip.transaction.Outgoing` items; :class:`SipStack` ties it to a
sans-I/O :class:`~callbridge.sip.ua.UserAgent` and keeps one timer on the injected clock
(``Clock.call_at``) at ``ua.next_timer()``, which runs ``ua.handle_timer(now)``; it is re-armed
after every message only when the earliest deadline moved.

* **Response routing** (§18.2.2 with ``rport``) is decided by the core
  (:func:`~callbridge.sip.transaction.response_destination`): stream responses go back on
  the connection the request came from, keyed by its remote address; if it closed, a new
  connection is opened to that address.
* **Via stamping** (``SIP/2.0/UDP`` or ``TCP``, sent-by, branch, ``rport``) and the
  transport-correct Contact (``;transport=tcp``) are done by the UA with the transport each
  request goes over.
* **Connection reuse**: TCP connections are keyed by remote address, shared by both
  directions; a connection with no traffic for ``idle_timeout`` (64·T1) that carries no
  registration binding and no call (``in_use``) is closed. A double-CRLF keepalive is
  answered with one CRLF (RFC 5626 §3.5.1).
* **Limits**: datagrams and stream messages above ``Limits.max_message`` are dropped or close
  the connection; at most ``max_connections`` inbound TCP connections.
* **Host names** (RFC 3263 §4, simplified; :mod:`callbridge.sip.resolver`): a UDP destination
  that is a name is looked up with the loop's ``getaddrinfo`` before the datagram goes out (a
  failure is a transport error for the core); TCP connects by name the same way.
* **TLS later**: a connection is a ``(reader, writer)`` pair fed to the same framer; TLS is the
  same code with an ``ssl`` context on the server and the client side.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from callbridge.media.clock import TIMER_SLACK, Clock, TimerHandle
from callbridge.observability.logging import get_logger
from callbridge.sip.errors import SipParseError
from callbridge.sip.message import DEFAULT_LIMITS, KEEPALIVE, Limits, StreamFramer
from callbridge.sip.resolver import ResolveError, SipResolver
from callbridge.sip.transaction import Address, Outgoing
from callbridge.sip.ua import UserAgent
from callbridge.sip.ua_model import UaEvent

log = get_logger(__name__)

Receiver = Callable[[bytes, Address, str], None]
ErrorHandler = Callable[[Address, str], None]

CONNECT_TIMEOUT = 5.0
READ_CHUNK = 65536


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, owner: SipTransport) -> None:
        self.owner = owner
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        if len(data) > self.owner.limits.max_message:
            return
        if data.strip(b"\r\n") == b"":
            return  # keepalive datagram
        self.owner.receiver(data, (str(addr[0]), int(addr[1])), "UDP")

    def error_received(self, exc: Exception) -> None:
        log.debug("sip udp error", error=str(exc))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


class _Connection:
    """One TCP connection (inbound or outbound), read by its own task."""

    def __init__(
        self,
        owner: SipTransport,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        remote: Address,
        now: float,
    ) -> None:
        self.owner = owner
        self.reader = reader
        self.writer = writer
        self.remote = remote
        self.framer = StreamFramer(owner.limits)
        self.last_activity = now
        self.task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        try:
            while True:
                data = await self.reader.read(READ_CHUNK)
                if not data:
                    return
                self.last_activity = self.owner.clock.monotonic()
                try:
                    frames = self.framer.feed(data)
                except SipParseError as exc:
                    log.info("sip tcp framing error, closing", peer=self.remote, error=exc.reason)
                    return
                for frame in frames:
                    if frame == KEEPALIVE:
                        self.writer.write(b"\r\n")
                    else:
                        self.owner.receiver(frame, self.remote, "TCP")
        except (ConnectionError, OSError):
            return
        finally:
            self.owner._forget(self)
            self.writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await self.writer.wait_closed()

    def send(self, data: bytes) -> None:
        self.last_activity = self.owner.clock.monotonic()
        self.writer.write(data)


class SipTransport:
    """UDP and TCP on one address; TCP connections reused per remote address."""

    def __init__(
        self,
        host: str,
        port: int,
        clock: Clock,
        receiver: Receiver,
        on_error: ErrorHandler,
        *,
        limits: Limits = DEFAULT_LIMITS,
        idle_timeout: float = 32.0,
        max_connections: int = 1024,
        in_use: Callable[[Address], bool] = lambda _addr: False,
    ) -> None:
        self.host = host
        self.port = port
        self.clock = clock
        self.receiver = receiver
        self.on_error = on_error
        self.limits = limits
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.in_use = in_use
        self._udp: asyncio.DatagramTransport | None = None
        self._udp_protocol: _Udp | None = None
        self._server: asyncio.Server | None = None
        self._connections: dict[Address, _Connection] = {}
        self._pending: dict[Address, list[bytes]] = {}
        #: Datagrams waiting for their destination's host name to be looked up.
        self._resolving: dict[Address, list[bytes]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._reaper: asyncio.Task[None] | None = None
        #: Host names of destinations, looked up here and never on the loop (RFC 3263 §4).
        self.resolver = SipResolver(clock)

    @property
    def connections(self) -> dict[Address, _Connection]:
        return dict(self._connections)

    async def start(self) -> None:
        """Bind UDP and TCP (raises ``OSError`` when the port is taken)."""
        loop = asyncio.get_running_loop()
        protocol = _Udp(self)
        try:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: protocol, local_addr=(self.host, self.port)
            )
            self._udp = transport
            self._udp_protocol = protocol
            if self.port == 0:
                self.port = int(transport.get_extra_info("sockname")[1])
            self._server = await asyncio.start_server(
                self._accept, self.host, self.port, reuse_address=True
            )
        except BaseException:
            await self.close()
            raise
        self._reaper = asyncio.create_task(self._reap(), name="sip-tcp-reaper")

    async def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
            self._reaper = None
        if self._server is not None:
            self._server.close()
        for connection in list(self._connections.values()):
            connection.writer.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        if self._udp is not None and self._udp_protocol is not None:
            self._udp.close()
            await self._udp_protocol.closed
            self._udp = None

    def _spawn(self, coro: Any, name: str) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        remote = (str(peer[0]), int(peer[1]))
        if len(self._connections) >= self.max_connections:
            writer.close()
            return
        connection = _Connection(self, reader, writer, remote, self.clock.monotonic())
        self._connections[remote] = connection
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        await connection.run()

    def _forget(self, connection: _Connection) -> None:
        if self._connections.get(connection.remote) is connection:
            del self._connections[connection.remote]

    # -- sending -------------------------------------------------------------------------------

    def send(self, item: Outgoing) -> None:
        data, destination, transport = item
        if transport == "UDP":
            if self._udp is None:
                return
            if self.resolver.literal(destination[0]):
                self._udp.sendto(data, destination)
                return
            # A host name (sendto would resolve it with a blocking call): looked up once for
            # every datagram queued meanwhile, which then go out in order.
            waiting = self._resolving.get(destination)
            if waiting is not None:
                waiting.append(data)
                return
            self._resolving[destination] = [data]
            self._spawn(self._resolve_and_send(destination), "sip-resolve")
            return
        connection = self._connections.get(destination)
        if connection is not None:
            connection.send(data)
            return
        queue = self._pending.get(destination)
        if queue is not None:
            queue.append(data)
            return
        self._pending[destination] = [data]
        self._spawn(self._connect(destination), f"sip-connect-{destination[0]}:{destination[1]}")

    async def _resolve_and_send(self, destination: Address) -> None:
        try:
            address = await self.resolver.resolve(destination[0], destination[1], "UDP")
        except ResolveError as exc:
            self._resolving.pop(destination, None)
            log.info("sip destination did not resolve", peer=destination, error=str(exc))
            self.on_error(destination, "UDP")  # fails the client transactions sent there
            return
        for data in self._resolving.pop(destination, []):
            if self._udp is not None:
                self._udp.sendto(data, address)

    async def _connect(self, destination: Address) -> None:
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                reader, writer = await asyncio.open_connection(*destination)
        except (OSError, TimeoutError) as exc:
            self._pending.pop(destination, None)
            log.info("sip tcp connect failed", peer=destination, error=str(exc))
            self.on_error(destination, "TCP")
            return
        connection = _Connection(self, reader, writer, destination, self.clock.monotonic())
        self._connections[destination] = connection
        for data in self._pending.pop(destination, []):
            connection.send(data)
        await connection.run()

    async def _reap(self) -> None:
        """Close idle TCP connections that carry no binding and no call."""
        while True:
            await self.clock.sleep(max(1.0, self.idle_timeout / 4))
            now = self.clock.monotonic()
            for remote, connection in list(self._connections.items()):
                idle = now - connection.last_activity
                if idle >= self.idle_timeout and not self.in_use(remote):
                    log.debug("closing idle sip tcp connection", peer=remote)
                    connection.writer.close()


class SipStack:
    """A :class:`UserAgent` on a :class:`SipTransport` with its one timer."""

    def __init__(
        self,
        ua: UserAgent,
        clock: Clock,
        on_events: Callable[[list[UaEvent]], None],
        *,
        host: str,
        port: int,
        in_use: Callable[[Address], bool] = lambda _addr: False,
    ) -> None:
        self.ua = ua
        self.clock = clock
        self.on_events = on_events
        self.transport = SipTransport(
            host,
            port,
            clock,
            self._receive,
            self._error,
            limits=ua.layer.limits,
            idle_timeout=64 * ua.timers.t1,
            in_use=in_use,
        )
        #: The one loop timer armed for the UA's earliest deadline, and that deadline.
        self._timer: TimerHandle | None = None
        self._timer_at: float | None = None
        self._running = False

    @property
    def port(self) -> int:
        return self.transport.port

    async def start(self) -> None:
        await self.transport.start()
        self._running = True
        self._rearm()

    async def close(self) -> None:
        self._running = False
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._timer_at = None
        await self.transport.close()

    def run(self, action: Callable[[float], list[UaEvent] | None]) -> None:
        """Call the UA (``action(now)``), send what it queued, report its events."""
        events = action(self.clock.monotonic()) or []
        self.flush()
        if events:
            self.on_events(events)

    def flush(self) -> None:
        for item in self.ua.outgoing():
            self.transport.send(item)
        self._rearm()

    def _rearm(self) -> None:
        """Keep one loop timer at the UA's earliest deadline (moved only when it changes).

        A loop timer rather than a sleeping task: re-planning costs a handle, not two tasks
        and a wait per message (decision 024).
        """
        if not self._running:
            return
        deadline = self.ua.next_timer()
        if deadline == self._timer_at and (deadline is None or self._timer is not None):
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = None if deadline is None else self.clock.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        deadline = self._timer_at
        self._timer = self._timer_at = None
        now = self.clock.monotonic()
        if deadline is not None and now < deadline:
            # Loop timers may fire up to the clock's slack early (uvloop's millisecond grid):
            # within it the deadline counts as reached, beyond it the timer is re-armed.
            if deadline - now > TIMER_SLACK:
                self._rearm()
                return
            now = deadline
        try:
            self.run(lambda _now: self.ua.handle_timer(now))
        except Exception:
            log.exception("sip timer handling failed")
        finally:
            self._rearm()

    def _receive(self, data: bytes, source: Address, transport: str) -> None:
        self.run(lambda now: self.ua.receive(data, source, transport, now))

    def _error(self, destination: Address, transport: str) -> None:
        self.run(lambda now: self.ua.transport_error(destination, transport, now))
