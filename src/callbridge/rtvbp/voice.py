"""callbridge as the RTVBP **voice** peer: bridge a live call to a handler (RTVBP spec §6).

:class:`VoiceBridge` dials the handler (``ws://`` / ``wss://``, bearer token or a minted RS256
JWT, custom headers, ``rtvbp.v1`` offered or headerless), sends ``session.initialize`` with the
call's data, confirms the codec with ``session.updated`` and then moves media and control:

* caller audio: an inbound tap of the call's graph → exact 320-byte binary frames, forwarded
  from the leg's tick, at its real-time pace;
* handler audio (any chunk sizes, re-cut by the session) → the ``rtvbp-<session>`` producer of
  the graph, played by the leg's clock; beyond the producer's lead limit, bytes are dropped and
  counted (control processing is never blocked by audio, §4);
* DTMF → ``dtmf`` events (``seq`` from 0); ``audio.info`` every 5 s; catalog ``ping`` when
  ``ping_interval_ms`` is set;
* handler requests per §6.2 (``recording.start``/``stop`` drive real recordings of the call
  through the :class:`~callbridge.recordings.service.RecordingService` attached to the call
  service; 501 when none is);
* application events → domain events on the bus (:mod:`callbridge.rtvbp.app_events`);
* end: the caller hangs up → ``call.hangup`` event then ``session.terminate``; the handler's
  ``call.hangup`` / ``application.move`` → reply, close, then hang up / continue the flow.

The outcome (:class:`BridgeOutcome`) says how it ended; the flow action turns it into
``voipbin.rtvbp.result`` and the next step of the flow.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import uuid
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

import structlog
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidHandshake, InvalidStatus, InvalidURI
from websockets.typing import Subprotocol

from callbridge.calls.model import HangupBy, HangupReason
from callbridge.flows.model import ACTION_ID_FINISH, ACTION_ID_NEXT, Action
from callbridge.flows.variables import string_view
from callbridge.media.clock import Clock, SystemClock
from callbridge.media.playout import PlayoutOverflow
from callbridge.recordings.model import tags_from_list
from callbridge.recordings.service import RecordingError, RecordingNotFound, recordings_for
from callbridge.rtvbp import catalog as c
from callbridge.rtvbp.app_events import ApplicationEvents
from callbridge.rtvbp.connection import Connection, DirectAudioClientConnection, wall_ms
from callbridge.rtvbp.errors import RemoteError, RtvbpError, SessionClosed
from callbridge.rtvbp.session import InboundEvent, InboundRequest, Session, State
from callbridge.rtvbp.tokens import DEFAULT_LIFETIME_SECONDS, mint_jwt

if TYPE_CHECKING:
    from callbridge.calls.service import CallService, LiveCall

log = structlog.get_logger("callbridge.rtvbp.voice")

CONNECT_TIMEOUT: Final = 10.0
AUDIO_INFO_SECONDS: Final = 5.0
TERMINATE_WAIT: Final = 5.0
MAX_MESSAGE_BYTES: Final = 1 << 20
RESULT_VARIABLE: Final = "voipbin.rtvbp.result"
RECORDING_UNAVAILABLE: Final = (
    501,
    "recording is not available: no recording service is configured",
)
UNKNOWN_RECORDING: Final = (400, "unknown recording id")

Result = Literal["moved", "hungup", "terminated", "failed"]

#: Signing keys for minted JWTs, by ``key_id`` (PEM private keys, configured out of band).
SIGNING_KEYS: dict[str, str | bytes] = {}

#: JSON values of variables set through ``session.set`` (``live.variables`` keeps string views).
_JSON_VARIABLES: weakref.WeakKeyDictionary[LiveCall, dict[str, Any]] = weakref.WeakKeyDictionary()


def register_signing_key(key_id: str, private_key_pem: str | bytes) -> None:
    """Make a PEM private key available to bridges whose ``jwt.key_id`` names it."""
    SIGNING_KEYS[key_id] = private_key_pem


#: Bearer token of bridges whose options set neither ``token`` nor ``jwt`` (settings key
#: ``rtvbp_token``; set by the composition root). Never logged.
_DEFAULT_TOKEN: list[str | None] = [None]


def set_default_token(token: str | None) -> None:
    """Use ``token`` for bridges configured without ``token`` or ``jwt`` (``None``: none)."""
    _DEFAULT_TOKEN[0] = token or None


def load_signing_keys(directory: Path) -> list[str]:
    """Register every ``<key_id>.pem`` RSA private key of ``directory``; returns the key ids.

    :class:`ValueError` names the first unusable file (not a directory, unreadable, not a PEM
    RSA private key). Nothing is registered unless every file is usable.
    """
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    if not directory.is_dir():
        raise ValueError(f"{directory}: not a directory")
    keys: dict[str, bytes] = {}
    for path in sorted(directory.glob("*.pem")):
        try:
            data = path.read_bytes()
            key = load_pem_private_key(data, password=None)
        except OSError as exc:
            raise ValueError(f"{path.name}: cannot read: {exc.strerror or exc}") from None
        except (ValueError, TypeError):
            raise ValueError(f"{path.name}: not an unencrypted PEM private key") from None
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError(f"{path.name}: not an RSA private key (RS256 needs RSA)")
        keys[path.stem] = data
    for key_id, data in keys.items():
        register_signing_key(key_id, data)
    return list(keys)


@dataclass(frozen=True, slots=True)
class JwtOptions:
    key_id: str
    account_id: str
    lifetime_seconds: int = DEFAULT_LIFETIME_SECONDS


@dataclass(frozen=True, slots=True)
class BridgeOptions:
    """Options of one bridge (the ``rtvbp_bridge`` action's, spec §6.1)."""

    url: str
    token: str | None = None
    jwt: JwtOptions | None = None
    headers: dict[str, str] = field(default_factory=dict)
    application_id: str | None = None
    metadata: dict[str, Any] | None = None
    subprotocol: str = "rtvbp.v1"
    ping_interval_ms: int = 0
    on_failure: Literal["continue", "hangup"] = "continue"
    #: Extra CA bundle to trust for ``wss://`` (self-hosted handlers with a private CA).
    ca_file: str | None = None
    request_timeout: float = 5.0
    audio_info_seconds: float = AUDIO_INFO_SECONDS


@dataclass(slots=True)
class BridgeOutcome:
    result: Result
    jump_to: uuid.UUID | None = None
    error: str | None = None


class BridgeFailed(Exception):
    """Dialing, initializing or running the session failed; the message says how."""


def _next_action(actions: Sequence[Action], current: Action) -> Action | None:
    if current.next_id is not None and current.next_id not in (ACTION_ID_NEXT, ACTION_ID_FINISH):
        return next((a for a in actions if a.id == current.next_id), None)
    if current.next_id == ACTION_ID_FINISH:
        return None
    for i, act in enumerate(actions):
        if act.id == current.id:
            return actions[i + 1] if i + 1 < len(actions) else None
    return None


class VoiceBridge:
    """One RTVBP session bridging ``live`` to a handler."""

    def __init__(
        self,
        service: CallService,
        live: LiveCall,
        options: BridgeOptions,
        *,
        action: Action | None = None,
        actions: Sequence[Action] = (),
        clock: Clock | None = None,
    ) -> None:
        self.service = service
        self.live = live
        self.options = options
        self.action = action
        self.actions = tuple(actions)
        self.clock: Clock = clock or SystemClock()
        self.session_id = str(uuid.uuid4())
        self.session = Session(
            "voice", session_id=self.session_id, request_timeout=options.request_timeout
        )
        self.conn: Connection | None = None
        self.producer = live.graph.producer(f"rtvbp-{self.session_id}")
        self._outcome: BridgeOutcome | None = None
        self._terminal = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._remove_dtmf: Any = None
        self._remove_caller_tap: Any = None
        self._dtmf_seq = 0
        self.dropped_audio_bytes = 0
        self.app_events: list[InboundEvent] = []
        #: Application events → domain events on the bus (transcripts, barge-in, tools).
        self.events = ApplicationEvents(
            service, live, self.session_id, self.clock, lambda: self.producer.queued_bytes
        )
        #: Recordings started by the handler through ``recording.start``.
        self.recording_ids: list[uuid.UUID] = []

    # -- dialing ------------------------------------------------------------------------------
    def _headers(self) -> dict[str, str]:
        headers = dict(self.options.headers)
        token = self.options.token
        if token is None and self.options.jwt is None:
            token = _DEFAULT_TOKEN[0]
        if self.options.jwt is not None:
            key = SIGNING_KEYS.get(self.options.jwt.key_id)
            if key is None:
                raise BridgeFailed(
                    f"no signing key configured for key_id {self.options.jwt.key_id!r}"
                )
            token = mint_jwt(
                key,
                account_id=self.options.jwt.account_id,
                key_id=self.options.jwt.key_id,
                lifetime_seconds=self.options.jwt.lifetime_seconds,
            )
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def _ssl(self) -> ssl.SSLContext | None:
        if not self.options.url.startswith("wss://"):
            return None
        return ssl.create_default_context(cafile=self.options.ca_file)

    async def _dial(self) -> ClientConnection:
        protos = [Subprotocol(self.options.subprotocol)] if self.options.subprotocol else None
        try:
            ws = await connect(
                self.options.url,
                additional_headers=self._headers(),
                subprotocols=protos,
                ssl=self._ssl(),
                open_timeout=CONNECT_TIMEOUT,
                max_size=MAX_MESSAGE_BYTES,
                close_timeout=TERMINATE_WAIT,
                # No permessage-deflate: audio is incompressible and 50 frames/s per call made
                # zlib one of the bridge's biggest costs (decision 010).
                compression=None,
                # Handler audio reaches the call's producer from data_received, without a
                # reader task wake-up per frame (decision 031).
                create_connection=DirectAudioClientConnection,
            )
        except InvalidStatus as exc:
            raise BridgeFailed(
                f"handler refused the upgrade: HTTP {exc.response.status_code}"
            ) from None
        except InvalidURI as exc:
            raise BridgeFailed(f"invalid handler URL: {exc}") from None
        except InvalidHandshake as exc:
            raise BridgeFailed(f"handshake failed: {exc}") from None
        except (OSError, TimeoutError) as exc:
            raise BridgeFailed(f"handler unreachable: {type(exc).__name__}: {exc}") from None
        return ws

    # -- the session --------------------------------------------------------------------------
    async def run(self) -> BridgeOutcome:
        """Run the bridge to its end; never raises for protocol or network failures."""
        try:
            return await self._run()
        except BridgeFailed as exc:
            return BridgeOutcome("failed", error=str(exc))
        finally:
            await self._cleanup()

    async def _run(self) -> BridgeOutcome:
        ws = await self._dial()
        conn = self.conn = Connection(
            ws,
            self.session,
            on_request=self._on_request,
            on_event=self._on_event,
            on_audio=self._on_handler_audio,
            clock=self.clock,
        )
        conn.start()
        await self._initialize(conn)
        self._start_media(conn)
        ended = asyncio.ensure_future(self.live.ended.wait())
        terminal = asyncio.ensure_future(self._terminal.wait())
        closed = asyncio.ensure_future(conn.wait_closed())
        try:
            await asyncio.wait({ended, terminal, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for fut in (ended, terminal):
                fut.cancel()
        if self._outcome is not None:
            await self._wait_closed(closed)
            return self._outcome
        if self.live.ended.is_set():
            await self._end_for_hangup(conn)
            await self._wait_closed(closed)
            return BridgeOutcome("hungup")
        await self._wait_closed(closed)
        if self._outcome is not None:  # a terminal request completed while closing
            return self._outcome
        raise BridgeFailed(f"session ended: {self.session.close_reason or 'connection closed'}")

    async def _wait_closed(self, closed: asyncio.Future[None]) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(TERMINATE_WAIT + 1):
                await asyncio.shield(closed)
        if not closed.done() and self.conn is not None:
            self.conn.fail("close timed out")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await asyncio.shield(closed)

    async def _initialize(self, conn: Connection) -> None:
        call = self.live.call
        app_id = self.options.application_id or (str(self.action.id) if self.action else "")
        params = c.SessionInitializeRequest(
            c.AppInfo(app_id),
            c.CallInfo(
                str(call.id),
                self.session_id,
                call.source.target or call.source.target_name or "",
                call.destination.target or call.destination.target_name or "",
            ),
            (c.L16_8000_1,),
            self.options.metadata,
        )
        try:
            result = await conn.request("session.initialize", params)
        except RtvbpError as exc:
            conn.close("initialize failed")
            raise BridgeFailed(f"session.initialize failed: {exc}") from None
        assert isinstance(result, c.SessionInitializeResponse)
        codec = result.audio_codec
        if codec is None:
            codec = c.L16_8000_1  # legacy leniency: null = the first offer (§4)
        elif codec != c.L16_8000_1:
            conn.close("unsupported codec")
            raise BridgeFailed(f"handler chose a codec that was not offered: {codec.id}")
        self.session.activate()
        conn.event("session.updated", c.SessionUpdatedEvent(codec))

    def _start_media(self, conn: Connection) -> None:
        # Caller audio: an inbound tap, run by the leg's tick. Forwarding a frame only appends
        # it to the session's outbox and wakes the writer, so it needs no queue and no task of
        # its own (a consumer task cost one wake-up per frame per call).
        def caller_frame(frame: bytes) -> None:
            if self.session.state is State.ACTIVE:
                conn.send_audio(frame)

        self._remove_caller_tap = self.live.graph.add_inbound_tap(caller_frame)
        self._remove_dtmf = self.live.graph.add_dtmf_listener(self._on_dtmf)
        self._spawn(self._audio_info(conn), "audio-info")
        if self.options.ping_interval_ms > 0:
            self._spawn(self._pinger(conn), "ping")

    def _spawn(self, coro: Any, name: str) -> None:
        self._tasks.append(asyncio.create_task(coro, name=f"rtvbp-{name}-{self.live.id}"))

    async def _end_for_hangup(self, conn: Connection) -> None:
        """The call ended: ``call.hangup`` event, then ``session.terminate`` (≤ 5 s)."""
        call = self.live.call
        if call.hangup_by is HangupBy.REMOTE:
            reason = "caller"
        elif call.hangup_reason is HangupReason.TIMEOUT:
            reason = "timeout"
        else:
            reason = "api"
        await self.terminate(conn, reason, "hangup")

    async def terminate(self, conn: Connection, event_reason: str | None, reason: str) -> None:
        """Voice-initiated end: optional ``call.hangup`` event, ``session.terminate``, close."""
        if not self.session.is_open:
            return
        with contextlib.suppress(RtvbpError, ValueError, TimeoutError):
            if event_reason is not None:
                conn.event("call.hangup", c.CallHangupEvent(event_reason))
            async with asyncio.timeout(TERMINATE_WAIT):
                await conn.request("session.terminate", c.SessionTerminateRequest(reason))
        if self.session.is_open:
            conn.close("terminated")

    async def stop(self, reason: str = "stopped") -> None:
        """End the bridge for the voice's own reasons (flow stopped): result ``terminated``."""
        self._finish(BridgeOutcome("terminated"))
        if self.conn is not None:
            await self.terminate(self.conn, None, reason)

    async def _cleanup(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._remove_dtmf is not None:
            self._remove_dtmf()
        if self._remove_caller_tap is not None:
            self._remove_caller_tap()
        if self.conn is not None and not self.conn.over:
            self.conn.fail("bridge ended")
            await self.conn.wait_closed()
        with contextlib.suppress(Exception):
            await self.conn.ws.close() if self.conn is not None else None
        # The bridge is over: handler audio not yet played goes with it.
        self.producer.close()

    # -- media --------------------------------------------------------------------------------
    def _on_handler_audio(self, frame: bytes) -> None:
        try:
            self.producer.enqueue(frame)
        except PlayoutOverflow:
            self.dropped_audio_bytes += len(frame)
        except RuntimeError:  # the producer closed with the call
            self.dropped_audio_bytes += len(frame)

    def _on_dtmf(self, event: Any) -> None:
        if self.session.state is not State.ACTIVE or self.conn is None:
            return
        pressed = int(event.pressed_at * 1000)
        released = max(pressed, int(event.released_at * 1000))
        with contextlib.suppress(SessionClosed, ValueError):
            self.conn.event("dtmf", c.DtmfEvent(self._dtmf_seq, pressed, released, event.digit))
            self._dtmf_seq += 1

    async def _audio_info(self, conn: Connection) -> None:
        interval = self.options.audio_info_seconds
        last_read = last_write = 0
        while self.session.is_open:
            await self.clock.sleep(interval)
            read_total = self.session.bytes_written  # caller → application
            write_total = self.session.bytes_read  # application → caller
            read, write = read_total - last_read, write_total - last_write
            info = c.AudioInfoEvent(
                c.AudioInfoItem(read, read / interval, read_total),
                c.AudioInfoItem(write, write / interval, write_total),
            )
            last_read, last_write = read_total, write_total
            with contextlib.suppress(SessionClosed, ValueError):
                conn.event("audio.info", info)

    async def _pinger(self, conn: Connection) -> None:
        rtt: int | None = None
        while self.session.is_open:
            await self.clock.sleep(self.options.ping_interval_ms / 1000)
            t0 = wall_ms(self.clock)
            try:
                await conn.request("ping", c.PingRequest(t0, rtt))
            except SessionClosed:
                return
            except RtvbpError as exc:
                log.info("rtvbp ping failed", error=str(exc), call_id=str(self.live.id))
                continue
            rtt = wall_ms(self.clock) - t0

    # -- requests from the application (§6.2) -------------------------------------------------
    async def _on_request(self, req: InboundRequest) -> c.Payload | None:
        p = req.params
        if isinstance(p, c.PingRequest):
            t2 = wall_ms(self.clock)
            return c.PingResponse(p.t0, max(req.received_ms, 1), max(t2, 1), t2 - p.t0, p.data)
        if isinstance(p, c.CallHangupRequest):
            self._finish(BridgeOutcome("hungup"))
            return c.EmptyResponse()
        if isinstance(p, c.ApplicationMoveRequest):
            target = self._move_target(p.application_id)
            self._finish(BridgeOutcome("moved", jump_to=target.id if target else None))
            return c.ApplicationMoveResponse(str(target.id) if target else None)
        if isinstance(p, c.AudioBufferClearRequest):
            dropped = self.producer.clear() + self.session.clear_audio_carry()
            return c.AudioBufferClearResponse(dropped)
        if isinstance(p, c.SessionSetRequest):
            self._set_variables(p.data)
            return c.EmptyResponse()
        if isinstance(p, c.SessionGetRequest):
            return c.SessionGetResponse(self._get_variables(p.keys))
        if isinstance(p, c.RecordingStartRequest):
            return await self._recording_start(p)
        if isinstance(p, c.RecordingStopRequest):
            return await self._recording_stop(p)
        raise RemoteError(501, f"unknown method: {req.method}")  # pragma: no cover

    # -- recordings (§6.2): real recordings of the call -----------------------------------------
    async def _recording_start(self, p: c.RecordingStartRequest) -> c.Payload:
        recordings = recordings_for(self.service)
        if recordings is None:
            raise RemoteError(*RECORDING_UNAVAILABLE)
        try:
            tags = tags_from_list(p.tags or ())
        except ValueError as exc:
            raise RemoteError(400, f"$.params.tags: {exc}") from None
        try:
            rec = await recordings.start(self.live, tags=tags)
        except RecordingError as exc:
            raise RemoteError(500, f"recording failed: {exc}") from None
        self.recording_ids.append(rec.id)
        return c.RecordingStartResponse(str(rec.id))

    async def _recording_stop(self, p: c.RecordingStopRequest) -> c.Payload:
        recordings = recordings_for(self.service)
        if recordings is None:
            raise RemoteError(*RECORDING_UNAVAILABLE)
        try:
            rec_id = uuid.UUID(p.id)
        except ValueError:
            raise RemoteError(*UNKNOWN_RECORDING) from None
        try:
            await recordings.stop(rec_id, call_id=self.live.id)
        except RecordingNotFound:
            raise RemoteError(*UNKNOWN_RECORDING) from None
        return c.EmptyResponse()

    def _finish(self, outcome: BridgeOutcome) -> None:
        if self._outcome is None:
            self._outcome = outcome
            self._terminal.set()

    def _move_target(self, application_id: str | None) -> Action | None:
        if application_id:
            for act in self.actions:
                if str(act.id) == application_id:
                    return act
        if self.action is None:
            return None
        return _next_action(self.actions, self.action)

    def _set_variables(self, data: dict[str, Any]) -> None:
        for key in data:
            if key.startswith("voipbin."):
                raise RemoteError(400, f"$.data.{key}: variables named voipbin.* are reserved")
        store = _JSON_VARIABLES.setdefault(self.live, {})
        for key, value in data.items():
            store[key] = value
            self.live.variables[key] = string_view(value)

    def _get_variables(self, keys: Sequence[str]) -> dict[str, Any]:
        store = _JSON_VARIABLES.get(self.live, {})
        names = list(keys) if keys else list(self.live.variables)
        out: dict[str, Any] = {}
        for name in names:
            if name not in self.live.variables:
                continue
            text = self.live.variables[name]
            value = store.get(name, text)
            out[name] = value if string_view(value) == text else text
        return out

    async def _on_event(self, ev: InboundEvent) -> None:
        self.app_events.append(ev)
        if len(self.app_events) > 1000:
            del self.app_events[:500]
        log.debug("rtvbp application event", rtvbp_event=ev.name, call_id=str(self.live.id))
        await self.events.handle(ev)


def variables_json(live: LiveCall) -> dict[str, Any]:
    """JSON values set through ``session.set`` on ``live`` (string views in ``variables``)."""
    return dict(_JSON_VARIABLES.get(live, {}))


__all__ = [
    "RESULT_VARIABLE",
    "BridgeFailed",
    "BridgeOptions",
    "BridgeOutcome",
    "JwtOptions",
    "VoiceBridge",
    "load_signing_keys",
    "register_signing_key",
    "set_default_token",
    "variables_json",
]
