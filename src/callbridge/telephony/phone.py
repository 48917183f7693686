"""A small SIP phone on callbridge's own core (``callbridge phone``), for demos and smoke tests.

It is the same machinery as the server — a sans-I/O :class:`~callbridge.sip.ua.UserAgent` on a
:class:`~callbridge.sip.transport.SipStack` (UDP + TCP), one :class:`~callbridge.rtp.leg.RtpLeg`
per call — without the call service: :class:`SoftPhone` drives the leg itself. It can register
(:class:`~callbridge.sip.registration.Registration`, digest, refresh at 90 %), dial a URI (digest
on 401/407), auto-answer incoming calls, play PCM into a call, record what it hears and send or
collect RFC 4733 digits. Every incoming INVITE is accepted (the phone trusts any source).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from callbridge.calls.model import HangupBy, HangupReason
from callbridge.legs.base import DtmfEvent, LegEnd, LegState
from callbridge.media.clock import Clock, SystemClock
from callbridge.media.constants import FRAME_BYTES, SILENCE_FRAME
from callbridge.rtp.leg import RtpLeg
from callbridge.rtp.port_pool import PortPool
from callbridge.rtp.session import MediaDirection
from callbridge.sip.auth import DigestServer
from callbridge.sip.errors import NegotiationError
from callbridge.sip.ids import SecretIdSource
from callbridge.sip.registration import Registration, RegState
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
)


class _TrustAll:
    """The phone's UA policy: any source may call it (no digest towards the phone)."""

    def trusted(self, host: str) -> bool:
        return True

    @property
    def passwords(self) -> Mapping[str, str]:
        return {}


@dataclass(eq=False)
class PhoneCall:
    """One call of the phone: its leg, what it heard and the digits it received."""

    sip: SipCall
    leg: RtpLeg
    heard: list[bytes] = field(default_factory=list)
    digits: list[str] = field(default_factory=list)
    play: bytearray = field(default_factory=bytearray)
    answered: asyncio.Event = field(default_factory=asyncio.Event)
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    outcome: Outcome | None = None
    status: int | None = None
    by_remote: bool = False

    # -- LegListener ---------------------------------------------------------------------------
    def on_leg_audio(self, frame: bytes) -> None:
        self.heard.append(frame)

    def on_leg_dtmf(self, event: DtmfEvent) -> None:
        self.digits.append(event.digit)

    def on_leg_state(self, state: LegState, end: LegEnd | None) -> None:
        if state is LegState.ANSWERED:
            self.answered.set()
        elif state is LegState.ENDED:
            self.ended.set()

    # -- FrameSource ---------------------------------------------------------------------------
    def next_frame(self) -> bytes:
        if len(self.play) >= FRAME_BYTES:
            frame = bytes(self.play[:FRAME_BYTES])
            del self.play[:FRAME_BYTES]
            return frame
        return SILENCE_FRAME

    @property
    def recording(self) -> bytes:
        return b"".join(self.heard)


class SoftPhone:
    """A SIP phone: one UA on ``host:port`` (0 = any free port), RTP from ``rtp_ports``."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        rtp_ports: str = "40000-40999",
        user: str = "phone",
        clock: Clock | None = None,
        on_call: Callable[[PhoneCall], None] | None = None,
    ) -> None:
        self.host = host
        self.user = user
        self.clock: Clock = clock or SystemClock()
        self.ids = SecretIdSource()
        self.pool = PortPool.parse(rtp_ports)
        self.auto_answer = False
        self.on_call = on_call
        config = UaConfig(
            host=host, port=port, domain=host, user_agent="callbridge-phone", registrar=False
        )
        digest = DigestServer(host, secrets.token_bytes(32), self.ids)
        self.ua = UserAgent(config, self.ids, _TrustAll(), digest)
        self.stack = SipStack(self.ua, self.clock, self._on_events, host=host, port=port)
        self.calls: dict[str, PhoneCall] = {}
        self.registrations: list[Registration] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Event()

    @property
    def port(self) -> int:
        return self.stack.port

    async def start(self) -> None:
        await self.stack.start()
        if self.stack.port != self.ua.config.port:
            from dataclasses import replace

            self.ua.config = replace(self.ua.config, port=self.stack.port)

    async def close(self) -> None:
        for call in list(self.calls.values()):
            await self.hangup(call)
        for registration in self.registrations:
            await self.unregister(registration)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.stack.close()

    async def _wait(self, check: Callable[[], bool], limit: float) -> None:
        async with asyncio.timeout(limit):
            while not check():
                self._changed.clear()
                await self._changed.wait()

    def _spawn(self, coro: object, name: str) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro, name=name)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- registration ---------------------------------------------------------------------------
    async def register(
        self,
        server: Address,
        user: str,
        password: str | None,
        *,
        transport: str = "UDP",
        expires: int = 300,
        limit: float = 10.0,
    ) -> Registration:
        """Register ``user`` at ``server``; returns once registered or failed (see ``state``)."""
        registration = Registration(
            self.ua,
            registrar=f"sip:{server[0]}:{server[1]}",
            destination=server,
            transport=transport,
            user=user,
            password=password,
            expires=expires,
            on_change=lambda _r: self._changed.set(),
        )
        self.registrations.append(registration)
        self.stack.run(registration.start)
        done = (RegState.REGISTERED, RegState.FAILED)
        await self._wait(lambda: registration.state in done, limit)
        return registration

    async def unregister(self, registration: Registration, limit: float = 3.0) -> None:
        """Remove the binding (``Expires: 0``) and stop refreshing."""
        if registration.state is RegState.STOPPED:
            return
        self.stack.run(registration.stop)
        with contextlib.suppress(TimeoutError):
            await self._wait(lambda: registration.state is RegState.STOPPED, limit)

    # -- calls ------------------------------------------------------------------------------------
    def _new_leg(self, name: str, outgoing: bool) -> RtpLeg:
        return RtpLeg(name, pool=self.pool, clock=self.clock, host=self.host, outgoing=outgoing)

    async def dial(
        self,
        uri: str,
        destination: Address,
        *,
        transport: str = "UDP",
        credentials: tuple[str, str] | None = None,
    ) -> PhoneCall:
        """Send the INVITE; the call is answered when ``call.answered`` is set."""
        leg = self._new_leg(f"phone-{len(self.calls) + 1}", outgoing=True)
        try:
            await leg.prepare()
            negotiator = SdpNegotiator(self.host, leg.port, self.ids)
            sip = self.ua.client.invite(
                target=uri, destination=destination, transport=transport,
                negotiator=negotiator, now=self.clock.monotonic(), from_user=self.user,
                credentials=credentials,
            )  # fmt: skip
        except BaseException:
            await leg.close()
            raise
        self.stack.flush()
        call = PhoneCall(sip, leg)
        leg.attach(call, call.next_frame)
        self.calls[sip.id] = call
        await leg.start()
        return call

    async def hangup(self, call: PhoneCall) -> None:
        # Forget the call first: the UA's own CallEnded for our BYE must not end the leg twice.
        self.calls.pop(call.sip.id, None)
        if not call.sip.ended:
            self.stack.run(lambda now: self.ua.hangup(call.sip, now))
        if call.outcome is None:
            call.outcome = Outcome.NORMAL
        await call.leg.ended(HangupReason.NORMAL, HangupBy.LOCAL)
        call.ended.set()

    def _on_events(self, events: list[UaEvent]) -> None:
        for event in events:
            if isinstance(event, IncomingCall):
                self._spawn(self._incoming(event.call), f"phone-in-{event.call.id}")
                continue
            call = self.calls.get(event.call.id)
            if call is None:
                continue
            if isinstance(event, CallProgress) and call.leg.state is LegState.DIALING:
                call.leg.ringing()
            elif isinstance(event, CallAnswered):
                _apply(call.leg, event.negotiated, event.call)
                call.leg.answered()
            elif isinstance(event, MediaChanged | CallConfirmed) and event.negotiated is not None:
                _apply(call.leg, event.negotiated, event.call)
            elif isinstance(event, CallEnded):
                self.calls.pop(event.call.id, None)
                call.outcome, call.status = event.outcome, event.status
                call.by_remote = event.by_remote
                by = HangupBy.REMOTE if event.by_remote else HangupBy.LOCAL
                self._spawn(call.leg.ended(HangupReason.NORMAL, by), f"phone-end-{call.sip.id}")
                call.ended.set()

    async def _incoming(self, sip: SipCall) -> None:
        if not self.auto_answer:
            self.stack.run(lambda now: self.ua.reject(sip, 486, now))
            return
        leg = self._new_leg(f"phone-in-{sip.id}", outgoing=False)
        try:
            negotiator = SdpNegotiator(self.host, leg.port, self.ids)
            negotiated = self.ua.prepare_answer(sip, negotiator)
        except NegotiationError:
            self.stack.run(lambda now: self.ua.reject(sip, 488, now, warning="Incompatible media"))
            await leg.close()
            return
        if negotiated is not None:
            _apply(leg, negotiated, sip)
        call = PhoneCall(sip, leg)
        leg.attach(call, call.next_frame)
        self.calls[sip.id] = call
        await leg.start()
        if self.on_call is not None:
            self.on_call(call)
        self.stack.run(lambda now: self.ua.answer(sip, now))
        leg.answered()


def _apply(leg: RtpLeg, negotiated: Negotiated, call: SipCall) -> None:
    leg.set_remote(
        negotiated.remote_address,
        negotiated.remote_port,
        negotiated.payload_type,
        negotiated.dtmf_payload_type,
        signalling_host=call.peer[0],
    )
    leg.set_direction(MediaDirection(negotiated.direction.value))
