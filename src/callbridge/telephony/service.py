"""The SIP service: UA + registrar on the SIP port, calls in and out through the call service.

* **Inbound**: an INVITE from a trusted source (``sip_trust`` CIDRs or a trunk's host) or from
  an extension that authenticated with digest becomes ``CallService.start_call(direction=
  incoming)`` running the configured flow (``sip_default_flow``; built-in: answer, beep,
  echo). The RtpLeg (its UDP socket already bound) is created and the offer negotiated before
  anything else (488 with ``Warning: 305`` when no codec is common); the leg's ``start`` sends
  180 (status ``ringing``), the flow's ``answer`` sends the 200 (status ``progressing``).
* **Outbound**: :meth:`TelephonyService.dial` calls a registered extension — forked to every
  live binding, the first to answer wins and the others get CANCEL — or a number through a
  trunk (digest on 401/407).
* **Status mapping** (platform API spec §6.2): 180/183 → ``ringing``; 2xx → ``progressing``;
  486/600 → ``busy``; other rejections and timeouts after ringing → ``noanswer``, before
  ringing → ``failed``; CANCEL → ``cancel``; BYE → ``normal``.
* **Directory**: extensions and trunks are read from the store at start and every
  ``REFRESH_SECONDS`` (the CLI edits the store directly), into an in-memory cache the sans-I/O
  UA and registrar consult synchronously.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import json
import re
import secrets
import uuid
from collections.abc import Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from callbridge.calls.model import Address as PartyAddress
from callbridge.calls.model import Direction, HangupBy, HangupReason
from callbridge.calls.service import CallService, LiveCall, forget_traceback
from callbridge.config import Settings
from callbridge.flows.model import Action
from callbridge.legs.base import LegState
from callbridge.media.clock import Clock
from callbridge.observability.logging import get_logger
from callbridge.rtp.leg import RtpLeg
from callbridge.rtp.port_pool import PortPool, PortPoolExhausted
from callbridge.rtp.session import MediaDirection
from callbridge.sip.auth import DigestServer
from callbridge.sip.errors import NegotiationError, SipError
from callbridge.sip.headers import SipUri, parse_uri
from callbridge.sip.ids import SecretIdSource
from callbridge.sip.registrar import LocationService, Registrar
from callbridge.sip.resolver import ResolveError, is_ip_literal
from callbridge.sip.sdp import Negotiated, SdpNegotiator
from callbridge.sip.transaction import Address
from callbridge.sip.transport import SipStack
from callbridge.sip.ua import UserAgent
from callbridge.sip.ua_model import (
    CallAnswered,
    CallConfirmed,
    CallEnded,
    CallProgress,
    IncomingCall,
    MediaChanged,
    Outcome,
    SipCall,
    UaConfig,
    UaEvent,
    uri_destination,
)
from callbridge.store import Store, StoreBusyError
from callbridge.telephony.leg import DialTarget, SipCallLeg
from callbridge.telephony.model import Extension, Trunk
from callbridge.telephony.trunk_registration import TrunkRegistrations

log = get_logger(__name__)

REFRESH_SECONDS = 2.0
#: Retry-After (s) of the 503 an INVITE gets when every RTP port pair is in use.
PORTS_RETRY_AFTER_S: Final = 5
#: Inbound calls whose setup (store, leg, flow start) may be in progress at once; an INVITE
#: beyond that gets 503 + Retry-After at once instead of queueing behind them (overload
#: shedding at the edge: a queue here only adds post-dial delay and INVITE retransmissions).
MAX_STARTING_CALLS: Final = 256
#: Retry-After (s) of that 503.
BUSY_RETRY_AFTER_S: Final = 2
TEL_RE = re.compile(r"\+?[0-9]{1,20}")
SECRET_FILE = "sip_nonce_secret"  # noqa: S105 - a file name, not a secret
DEFAULT_FLOW: tuple[dict[str, object], ...] = (
    {"type": "answer"},
    {"type": "beep"},
    {"type": "echo"},
)


class SipStartError(Exception):
    """The SIP service cannot start (the port is taken, …): one line for the operator."""


class Directory:
    """The UA's :class:`~callbridge.sip.ua_model.Policy`: trusted networks and extensions."""

    def __init__(self, trust: Sequence[str]) -> None:
        self.networks = [ipaddress.ip_network(cidr, strict=False) for cidr in trust]
        self.extensions: dict[str, Extension] = {}
        self.trunks: dict[str, Trunk] = {}
        #: Addresses of trunks configured by host name (looked up on every refresh).
        self.trunk_addresses: frozenset[str] = frozenset()
        self._passwords: dict[str, str] = {}  # mutated in place: the registrar holds it

    @property
    def passwords(self) -> Mapping[str, str]:
        return self._passwords

    def trusted(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        if any(address in network for network in self.networks):
            return True
        if host in self.trunk_addresses:
            return True
        return any(trunk.host == host for trunk in self.trunks.values())

    def update(self, extensions: Sequence[Extension], trunks: Sequence[Trunk]) -> None:
        self.extensions = {e.username: e for e in extensions}
        self.trunks = {t.name: t for t in trunks}
        self._passwords.clear()
        self._passwords.update({e.username: e.password for e in extensions})


def load_secret(settings: Settings) -> bytes:
    """The digest nonce secret: configured, else generated once into the data dir."""
    if settings.sip_nonce_secret is not None:
        return settings.sip_nonce_secret.get_secret_value().encode()
    path: Path = settings.data_dir / SECRET_FILE
    if path.exists():
        return path.read_text().strip().encode()
    value = secrets.token_hex(32)
    path.touch(mode=0o600)
    path.write_text(value + "\n")
    return value.encode()


def default_actions(settings: Settings) -> list[Action]:
    raw = json.loads(settings.sip_default_flow) if settings.sip_default_flow else DEFAULT_FLOW
    return [Action.from_dict(dict(item)) for item in raw]


class TelephonyService:
    """Owns the SIP stack and turns SIP calls into calls of the call service."""

    def __init__(self, settings: Settings, store: Store, calls: CallService, clock: Clock) -> None:
        self.settings = settings
        self.store = store
        self.calls = calls
        self.clock = clock
        self.host = settings.sip_host
        self.ids = SecretIdSource()
        self.pool = PortPool.parse(settings.rtp_ports)
        self.directory = Directory(settings.sip_trust)
        self.location = LocationService()
        self.actions = default_actions(settings)
        self._ua: UserAgent | None = None
        self._stack: SipStack | None = None
        self._legs: dict[str, tuple[RtpLeg, SipCallLeg]] = {}
        self._ended_early: dict[str, CallEnded] = {}
        #: Inbound SIP calls whose leg is being set up (their end is kept in _ended_early).
        self._starting: set[str] = set()
        #: The bound on :attr:`_starting` (``MAX_STARTING_CALLS``; tests lower it).
        self.max_starting = MAX_STARTING_CALLS
        #: The workspace of calls from trusted sources (the oldest one), read with the
        #: directory instead of once per call (decision 024).
        self._default_workspace: uuid.UUID | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._refresher: asyncio.Task[None] | None = None
        #: Registrations of the trunks configured with ``register`` (started by start()).
        self.trunk_registrations = TrunkRegistrations(self, settings.data_dir)

    @property
    def ua(self) -> UserAgent:
        if self._ua is None:
            raise RuntimeError("the SIP service is not running")
        return self._ua

    @property
    def stack(self) -> SipStack:
        if self._stack is None:
            raise RuntimeError("the SIP service is not running")
        return self._stack

    @property
    def port(self) -> int:
        return self.stack.port

    @property
    def busy(self) -> bool:
        """Whether any SIP call still has a leg, a task or a pending end here."""
        return bool(self._legs or self._tasks or self._ended_early or self._starting)

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Load the directory, bind UDP and TCP on the SIP port (:class:`SipStartError`)."""
        settings = self.settings
        await self.refresh()
        digest = DigestServer(
            settings.sip_domain,
            load_secret(settings),
            self.ids,
            algorithms=tuple(settings.sip_digest_algorithms),
        )
        registrar = Registrar(self.location, digest, self.directory.passwords, self.ids)
        config = UaConfig(
            host=self.host,
            port=settings.sip_port,
            domain=settings.sip_domain,
            served_hosts=frozenset({self.host.lower(), settings.sip_domain.lower()}),
            user_agent="callbridge",
        )
        ua = UserAgent(config, self.ids, self.directory, digest, registrar=registrar)
        stack = SipStack(
            ua, self.clock, self._on_events, host=self.host, port=settings.sip_port,
            in_use=self._in_use,
        )  # fmt: skip
        try:
            await stack.start()
        except OSError as exc:
            where = f"{self.host}:{settings.sip_port}"
            reason = (exc.strerror or str(exc)).lower()
            raise SipStartError(f"sip: cannot listen on {where}: {reason}") from None
        if stack.port != config.port:
            ua.config = dataclasses.replace(config, port=stack.port)
        self._ua, self._stack = ua, stack
        self.directory.trunk_addresses = await self._trunk_addresses(
            list(self.directory.trunks.values())
        )
        self.trunk_registrations.sync(self.directory.trunks.values())
        self._refresher = asyncio.create_task(self._refresh_loop(), name="sip-directory")
        log.info("sip listening", host=self.host, port=stack.port, domain=settings.sip_domain)

    async def close(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
        if self._stack is not None:
            await self.trunk_registrations.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for leg, _ in list(self._legs.values()):
            await leg.close()
        if self._stack is not None:
            await self._stack.close()
            self._stack = None

    async def refresh(self) -> None:
        extensions = await self.store.extensions.all_active()
        trunks = await self.store.trunks.all_active()
        self.directory.update(extensions, trunks)
        if self._stack is not None:
            self.directory.trunk_addresses = await self._trunk_addresses(trunks)
        workspace = await self.store.workspaces.first()
        self._default_workspace = workspace.id if workspace is not None else None
        if self._stack is not None:
            self.trunk_registrations.sync(trunks)

    async def _trunk_addresses(self, trunks: Sequence[Trunk]) -> frozenset[str]:
        """The addresses of the trunks given by host name (a name that fails is skipped)."""
        resolver = self.stack.transport.resolver
        found: set[str] = set()
        for trunk in trunks:
            if not resolver.literal(trunk.host):
                with contextlib.suppress(ResolveError):
                    address, _ = await resolver.resolve(trunk.host, trunk.port, trunk.transport)
                    found.add(address)
        return frozenset(found)

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_SECONDS)
            try:
                await self.refresh()
            except Exception as exc:
                log.exception("sip directory refresh failed")
                forget_traceback(exc)

    def _in_use(self, remote: Address) -> bool:
        now = self.clock.monotonic()
        if self.location.in_use(remote, "TCP", now):
            return True
        return any(c.peer == remote and c.transport == "TCP" for c in self.ua.calls.values())

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def bind(self, call: SipCall, leg: RtpLeg, signalling: SipCallLeg) -> None:
        self._legs[call.id] = (leg, signalling)

    # -- UA events -----------------------------------------------------------------------------

    def _on_events(self, events: list[UaEvent]) -> None:
        for event in events:
            if isinstance(event, IncomingCall):
                if len(self._starting) >= self.max_starting:
                    log.warning("call setup backlog full, call refused", sip_call=event.call.id,
                                starting=len(self._starting))  # fmt: skip
                    # Deferred: UA events arrive from inside the stack's own run().
                    asyncio.get_running_loop().call_soon(
                        self._refuse, event.call, "Too busy", BUSY_RETRY_AFTER_S
                    )
                    continue
                self._starting.add(event.call.id)
                self._spawn(self._incoming(event.call), f"sip-in-{event.call.id}")
                continue
            entry = self._legs.get(event.call.id)
            if entry is None:
                if isinstance(event, CallEnded) and event.call.id in self._starting:
                    self._ended_early[event.call.id] = event
                continue
            leg, signalling = entry
            if signalling.forked:
                chosen = signalling.branch_event(event)
                if chosen is None:
                    if isinstance(event, CallEnded):
                        self._legs.pop(event.call.id, None)
                    continue
                event = chosen
            if isinstance(event, CallProgress):
                if leg.state is LegState.DIALING:
                    leg.ringing()
            elif isinstance(event, CallAnswered):
                _apply_media(leg, event.negotiated, event.call)
                if leg.state in (LegState.DIALING, LegState.RINGING):
                    leg.answered()
            elif isinstance(event, CallConfirmed | MediaChanged):
                if event.negotiated is not None:
                    _apply_media(leg, event.negotiated, event.call)
            elif isinstance(event, CallEnded):
                self._legs.pop(event.call.id, None)
                for branch in signalling.branches:
                    self._legs.pop(branch.id, None)
                if not signalling.local_hangup:
                    reason, by = hangup_reason(event)
                    self._spawn(leg.ended(reason, by), f"sip-end-{event.call.id}")

    def _refuse(self, call: SipCall, warning: str, retry_after: int) -> None:
        """503 Service Unavailable with ``Retry-After`` for an unanswered inbound call."""
        if not call.ended:
            self.stack.run(lambda now: self.ua.reject(call, 503, now, warning=warning,
                                                      retry_after=retry_after))  # fmt: skip

    async def _incoming(self, call: SipCall) -> None:
        ua = self.ua
        leg: RtpLeg | None = None
        try:
            workspace_id, source, destination = await self._parties(call)
            signalling = SipCallLeg(self, call=call)
            leg = RtpLeg(f"sip-{call.id}", pool=self.pool, clock=self.clock, host=self.host,
                         signalling=signalling)  # fmt: skip
            negotiator = SdpNegotiator(self.host, leg.port, self.ids)
            try:
                negotiated = ua.prepare_answer(call, negotiator)
            except NegotiationError:
                self.stack.run(lambda now: ua.reject(call, 488, now, warning="Incompatible media"))
                await leg.close()
                return
            if negotiated is not None:
                _apply_media(leg, negotiated, call)
            await leg.prepare()
            self.bind(call, leg, signalling)
            if call.ended:
                self._legs.pop(call.id, None)
                await leg.close()
                return
            live = await self.calls.start_call(
                workspace_id=workspace_id,
                direction=Direction.INCOMING,
                source=source,
                destination=destination,
                leg=leg,
                actions=self.actions,
            )
            early = self._ended_early.pop(call.id, None)
            if early is not None and leg.state is not LegState.ENDED:
                await leg.ended(*hangup_reason(early))
            log.info("sip call in", call_id=str(live.id), sip_call=call.id, to=destination.target)
        except Exception as exc:
            if isinstance(exc, PortPoolExhausted | StoreBusyError):
                # Full, not broken (RFC 3261 §21.5.4): 503 with Retry-After so a trunk or
                # proxy tries another server or later; no traceback, this is load, not a bug.
                ports = isinstance(exc, PortPoolExhausted)
                log.warning("call refused: " + ("no free rtp port" if ports else "store busy"),
                            sip_call=call.id)  # fmt: skip
                self._refuse(call, "No media ports free" if ports else "Too busy",
                             PORTS_RETRY_AFTER_S if ports else BUSY_RETRY_AFTER_S)  # fmt: skip
            else:
                log.exception("inbound sip call failed", sip_call=call.id)
                if not call.ended:
                    self.stack.run(lambda now: ua.reject(call, 500, now))
            forget_traceback(exc)  # logged: its frames would hold this call (decision 024)
            if leg is not None and leg.state is LegState.IDLE:
                self._legs.pop(call.id, None)
                await leg.close()
        finally:
            self._starting.discard(call.id)
            self._ended_early.pop(call.id, None)

    async def _parties(self, call: SipCall) -> tuple[uuid.UUID, PartyAddress, PartyAddress]:
        invite = call.invite
        caller = invite.from_
        caller_user = getattr(caller.uri, "user_unescaped", None) or ""
        dialled = call.request_user
        if call.username:
            extension = self.directory.extensions.get(call.username)
            if extension is None:
                extension = await self.store.extensions.find(call.username)
            if extension is None:
                raise LookupError(f"extension {call.username} vanished")
            workspace_id = extension.workspace_id
            source = PartyAddress("extension", call.username, name=caller.display_name or "")
        else:
            if self._default_workspace is None:
                workspace = await self.store.workspaces.first()
                if workspace is None:
                    raise LookupError("no workspace to receive the call")
                self._default_workspace = workspace.id
            workspace_id = self._default_workspace
            source = PartyAddress("tel" if caller_user.lstrip("+").isdigit() else "sip",
                                  caller_user, name=caller.display_name or "")  # fmt: skip
        kind = "extension" if dialled in self.directory.extensions else "tel"
        return workspace_id, source, PartyAddress(kind, dialled)

    # -- outbound ------------------------------------------------------------------------------

    def routes(self, to: str, trunk_name: str | None = None) -> list[DialTarget]:
        """Every live binding of an extension (the call forks to all of them), else the named
        (or the first) trunk."""
        now = self.clock.monotonic()
        bindings = self.location.lookup(to, now) if trunk_name is None else []
        targets = []
        for binding in bindings:
            uri = binding.contact.uri
            if binding.transport == "UDP" and isinstance(uri, SipUri):
                destination, transport = uri_destination(uri, "UDP")
                targets.append(DialTarget(str(uri), destination, transport))
            else:
                # Stream transports: reuse the connection the REGISTER came over (spec §5).
                targets.append(DialTarget(str(uri), binding.source, binding.transport))
        if targets:
            return targets
        trunks = self.directory.trunks
        trunk = trunks.get(trunk_name) if trunk_name else next(iter(trunks.values()), None)
        if trunk is None:
            raise LookupError(f"no route to {to!r}: not a registered extension and no trunk")
        credentials = (trunk.username, trunk.password) if trunk.username else None
        return [
            DialTarget(
                f"sip:{to}@{trunk.host}:{trunk.port}",
                (trunk.host, trunk.port),
                trunk.transport.upper(),
                credentials,
                from_user=trunk.username or "callbridge",
            )
        ]

    def route(self, to: str, trunk_name: str | None = None) -> DialTarget:
        """The first of :meth:`routes`."""
        return self.routes(to, trunk_name)[0]

    def hold(self, leg: object, hold: bool) -> None:
        """Hold (``a=sendonly`` re-INVITE) or resume (``a=sendrecv``) a live SIP call's peer;
        a 491 is retried by the UA after the RFC 3261 §14.1 back-off."""
        found = [s.call for rtp, s in self._legs.values() if rtp is leg and s.call is not None]
        if not found or found[0].ended:
            raise LookupError("not a live SIP call")
        call = found[0]
        self.stack.run(lambda now: self.ua.hold(call, hold, now))

    def address_routes(
        self, address: PartyAddress, *, host_names: bool = False
    ) -> list[DialTarget]:
        """Where a platform API destination (spec §5) goes, or :class:`NoRoute`.

        ``extension``: every live binding of the extension (``target_name``, else ``target``);
        ``tel``: the first trunk; ``sip``: the URI ``user@host[:port]`` itself. Its host must
        be an IP address unless ``host_names`` (then it is resolved when the INVITE is sent,
        RFC 3263 §4; :meth:`dial` allows names, the calls API still checks with the default).
        Other address types are not routable in this release.
        """
        kind = address.type
        if kind == "extension":
            name = address.target_name or address.target
            if name not in self.directory.extensions:
                raise NoRoute(f"extension {name!r} not found", missing=True)
            if not self.location.lookup(name, self.clock.monotonic()):
                raise NoRoute(f"extension {name!r} is not registered")
            return self.routes(name)
        if kind == "tel":
            number = address.target
            if not TEL_RE.fullmatch(number):
                raise ValueError(f"tel target {number!r}: expected digits with an optional +")
            if not self.directory.trunks:
                raise NoRoute(f"no trunk to reach {number!r}")
            return self.routes(number, next(iter(self.directory.trunks)))
        if kind == "sip":
            target = address.target.removeprefix("sip:")
            try:
                uri = parse_uri(f"sip:{target}")
            except SipError as exc:
                raise ValueError(f"sip target {address.target!r}: {exc}") from None
            if not isinstance(uri, SipUri) or not uri.user:
                raise ValueError(f"sip target {address.target!r}: expected user@host")
            if not host_names and not is_ip_literal(uri.host):
                raise ValueError(f"sip target {address.target!r}: the host must be an IP address")
            # A host name is looked up by the transport when the INVITE goes out (RFC 3263).
            destination, transport = uri_destination(uri, "UDP")
            return [DialTarget(str(uri), destination, transport)]
        raise NoRoute(f"destination type {kind!r} is not routable")

    async def dial(
        self,
        *,
        workspace_id: uuid.UUID,
        to: str = "",
        actions: Sequence[Action] = (),
        trunk: str | None = None,
        destination: PartyAddress | None = None,
        source: PartyAddress | None = None,
        variables: Mapping[str, str] | None = None,
    ) -> LiveCall:
        """Place an outbound call; the flow runs once the far end answers.

        ``to`` is an extension name or a number (:meth:`routes`); a platform API
        ``destination`` address goes through :meth:`address_routes` instead.
        """
        if destination is not None:
            targets = self.address_routes(destination, host_names=True)
        else:
            targets = self.routes(to, trunk)
            kind = "extension" if to in self.directory.extensions else "tel"
            destination = PartyAddress(kind, to)
        signalling = SipCallLeg(self, dial=targets)
        leg = RtpLeg(f"sip-out-{uuid.uuid4().hex[:8]}", pool=self.pool, clock=self.clock,
                     host=self.host, outgoing=True, signalling=signalling)  # fmt: skip
        if source is None:
            source = PartyAddress("sip", f"callbridge@{self.settings.sip_domain}")
        try:
            return await self.calls.start_call(
                workspace_id=workspace_id,
                direction=Direction.OUTGOING,
                source=source,
                destination=destination,
                leg=leg,
                actions=actions,
                variables=variables,
            )
        except BaseException:
            await leg.close()
            raise


class NoRoute(LookupError):
    """A destination callbridge cannot reach; ``missing`` when it does not exist at all."""

    def __init__(self, message: str, *, missing: bool = False) -> None:
        super().__init__(message)
        self.missing = missing


def hangup_reason(event: CallEnded) -> tuple[HangupReason, HangupBy]:
    """Platform API spec §6.2 mapping of a SIP call's end."""
    by = HangupBy.REMOTE if event.by_remote else HangupBy.LOCAL
    outcome, status = event.outcome, event.status
    if outcome is Outcome.NORMAL:
        return HangupReason.NORMAL, by
    if outcome is Outcome.CANCELLED:
        return HangupReason.CANCEL, by
    if outcome in (Outcome.REJECTED, Outcome.TIMEOUT) and not event.call.incoming:
        if status in (486, 600):
            return HangupReason.BUSY, by
        if event.call.progress_reported:
            return HangupReason.NOANSWER, by
    return HangupReason.FAILED, by


def _apply_media(leg: RtpLeg, negotiated: Negotiated, call: SipCall) -> None:
    leg.set_remote(
        negotiated.remote_address,
        negotiated.remote_port,
        negotiated.payload_type,
        negotiated.dtmf_payload_type,
        signalling_host=call.peer[0],
    )
    leg.set_direction(MediaDirection(negotiated.direction.value))
