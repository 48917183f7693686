"""The RTVBP application server (and a client mode for tests) — RTVBP spec §1, §7.

:class:`HandlerServer` accepts voice peers on a ``websockets`` asyncio server. Before the 101,
in this order, its ``process_request`` hook answers:

* 404 for a path with no route;
* 403 for a browser ``Origin`` outside the allowlist (when one is configured);
* 400 ``Unsupported WebSocket subprotocol`` for an offer it cannot serve (rules of §1.1,
  :mod:`callbridge.rtvbp.negotiation`), installed as its own selection hook because the
  library's ``subprotocols=`` option rejects headerless clients;
* 401 when the bearer token (``Authorization: Bearer …`` or the ``bearer.<b64>`` subprotocol)
  fails the authenticator.

Then one :class:`~callbridge.rtvbp.sdk.handler.RtvbpHandler` is created per connection from the
route's factory and runs until the session ends.
"""

from __future__ import annotations

import asyncio
import http
import ssl
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Final

import structlog
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from callbridge.media.clock import Clock
from callbridge.rtvbp.connection import Connection
from callbridge.rtvbp.negotiation import NegotiationError, Selection, parse_offer, select_profile
from callbridge.rtvbp.sdk.audio import DEFAULT_LEAD_SECONDS
from callbridge.rtvbp.sdk.handler import RtvbpHandler
from callbridge.rtvbp.session import DEFAULT_REQUEST_TIMEOUT, Session
from callbridge.rtvbp.tokens import Authenticator

log = structlog.get_logger("callbridge.rtvbp.sdk")

#: Largest message accepted (§1.5).
MAX_MESSAGE_BYTES: Final = 1 << 20

HandlerFactory = Callable[[], RtvbpHandler]


def bearer_from(headers: Headers) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, else ``None``."""
    value = headers.get("Authorization")
    if value is None:
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


async def run_handler(
    ws: ServerConnection | ClientConnection,
    handler: RtvbpHandler,
    *,
    profile: str = "rtvbp.v1",
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
    lead_seconds: float = DEFAULT_LEAD_SECONDS,
    clock: Clock | None = None,
) -> Session:
    """Serve one application session on an open WebSocket until it ends; returns it."""
    session = Session(
        "application", session_id=f"app-{uuid.uuid4().hex[:8]}", request_timeout=request_timeout
    )
    conn = Connection(
        ws,
        session,
        on_request=handler._handle_request,
        on_event=handler._handle_event,
        on_audio=handler._on_audio_frame,
        clock=clock,
    )
    handler.profile = profile
    handler._bind(conn, lead_seconds)
    conn.start()
    try:
        await conn.wait_closed()
    finally:
        await handler._shutdown()
    log.info(
        "rtvbp session over",
        state=session.state.value,
        reason=session.close_reason,
        dropped_frames=session.dropped_frames,
    )
    return session


class HandlerServer:
    """Serve RTVBP handlers: ``routes`` maps a path (``/`` …) to a handler factory."""

    def __init__(
        self,
        routes: Mapping[str, HandlerFactory] | HandlerFactory,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        authenticate: Authenticator | None = None,
        ssl_context: ssl.SSLContext | None = None,
        origins: Iterable[str] | None = None,
        profiles: Iterable[str] = ("rtvbp.v1",),
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
        lead_seconds: float = DEFAULT_LEAD_SECONDS,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 20.0,
    ) -> None:
        self.routes: dict[str, HandlerFactory] = (
            dict(routes) if isinstance(routes, Mapping) else {"/": routes}
        )
        self.host = host
        self._port = port
        self.authenticate = authenticate
        self.ssl_context = ssl_context
        self.origins = frozenset(origins) if origins is not None else None
        self.profiles = tuple(profiles)
        self.request_timeout = request_timeout
        self.lead_seconds = lead_seconds
        self._ping = (ping_interval, ping_timeout)
        self._selection: dict[int, Selection] = {}
        self._server: Server | None = None
        self.sessions: list[Session] = []
        self.handlers: list[RtvbpHandler] = []

    @property
    def port(self) -> int:
        if self._server is None:
            return self._port
        sock = next(iter(self._server.sockets))
        return int(sock.getsockname()[1])

    @property
    def url(self) -> str:
        scheme = "wss" if self.ssl_context is not None else "ws"
        return f"{scheme}://{self.host}:{self.port}"

    async def start(self) -> None:
        self._server = await serve(
            self._serve,
            self.host,
            self._port,
            process_request=self._process_request,
            select_subprotocol=self._select_subprotocol,
            ssl=self.ssl_context,
            max_size=MAX_MESSAGE_BYTES,
            ping_interval=self._ping[0],
            ping_timeout=self._ping[1],
            close_timeout=5.0,
            # No permessage-deflate: audio frames are incompressible (decision 010).
            compression=None,
        )

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> HandlerServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- upgrade ------------------------------------------------------------------------------
    def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if path not in self.routes:
            return conn.respond(http.HTTPStatus.NOT_FOUND, "Not Found\n")
        origin = request.headers.get("Origin")
        if self.origins is not None and origin is not None and origin not in self.origins:
            return conn.respond(http.HTTPStatus.FORBIDDEN, "Origin not allowed\n")
        offer = request.headers.get_all("Sec-WebSocket-Protocol")
        try:
            selection = select_profile(parse_offer(offer), self.profiles)
        except NegotiationError as exc:
            return conn.respond(http.HTTPStatus.BAD_REQUEST, f"{exc}\n")
        if self.authenticate is not None:
            token = bearer_from(request.headers) or selection.bearer
            if not self.authenticate(token):
                response = conn.respond(http.HTTPStatus.UNAUTHORIZED, "Unauthorized\n")
                response.headers["WWW-Authenticate"] = "Bearer"
                return response
        self._selection[id(conn)] = selection
        return None

    def _select_subprotocol(self, conn: ServerConnection, offered: object) -> Subprotocol | None:
        selection = self._selection.get(id(conn))
        return Subprotocol(selection.token) if selection and selection.token else None

    async def _serve(self, ws: ServerConnection) -> None:
        selection = self._selection.pop(id(ws), Selection(None, "rtvbp.v1"))
        path = ws.request.path.split("?", 1)[0] if ws.request is not None else "/"
        handler = self.routes[path]()
        self.handlers.append(handler)
        session = await run_handler(
            ws,
            handler,
            profile=selection.profile,
            request_timeout=self.request_timeout,
            lead_seconds=self.lead_seconds,
        )
        self.sessions.append(session)


async def connect_handler(
    url: str,
    handler: RtvbpHandler,
    *,
    token: str | None = None,
    subprotocols: Iterable[str] | None = ("rtvbp.v1",),
    ssl_context: ssl.SSLContext | None = None,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
) -> Session:
    """Client mode: the application dials a voice *server* and serves one session (tests)."""
    headers = {"Authorization": f"Bearer {token}"} if token else None
    protos = [Subprotocol(p) for p in subprotocols] if subprotocols else None
    async with connect(
        url,
        additional_headers=headers,
        subprotocols=protos,
        ssl=ssl_context,
        max_size=MAX_MESSAGE_BYTES,
        open_timeout=10,
    ) as ws:
        return await run_handler(ws, handler, request_timeout=request_timeout)


def serve_forever(server: HandlerServer) -> None:  # pragma: no cover - CLI entry point
    """Run ``server`` until interrupted."""

    async def main() -> None:
        async with server:
            await asyncio.Event().wait()

    asyncio.run(main())
