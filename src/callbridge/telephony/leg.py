"""``SipCallLeg``: the :class:`~callbridge.rtp.leg.LegSignalling` hook of a SIP call's RtpLeg.

The call service drives every leg the same way (``start``, ``answer``, ``hangup``); for a SIP
leg those become 180 Ringing / the outbound INVITE, the 200 OK with our SDP, and CANCEL, BYE
or a final rejection. What the network does (answer, hold, BYE from the peer) comes back as UA
events handled by :class:`~callbridge.telephony.service.TelephonyService`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from callbridge.calls.model import HangupReason
from callbridge.rtp.leg import RtpLeg
from callbridge.sip.sdp import SdpNegotiator
from callbridge.sip.transaction import Address
from callbridge.sip.ua_model import CallAnswered, CallEnded, CallProgress, SipCall, UaEvent

if TYPE_CHECKING:
    from callbridge.telephony.service import TelephonyService


@dataclass(frozen=True)
class DialTarget:
    """Where an outbound INVITE goes."""

    uri: str
    destination: Address
    transport: str
    credentials: tuple[str, str] | None = None
    from_user: str = "callbridge"


class SipCallLeg:
    """Signalling of one SIP call for its RtpLeg.

    Inbound: ``call`` is set at creation. Outbound: :meth:`start` sends one INVITE per
    :class:`DialTarget` — an extension with several registered contacts is **forked**: every
    contact rings, the first 2xx wins, the other branches get CANCEL (or BYE when their 2xx
    crossed ours). The branches are kept here, on the call's leg; a groupcall object in the API
    comes later. :meth:`branch_event` filters the branches' UA events down to the one call the
    call service sees.
    """

    def __init__(
        self,
        service: TelephonyService,
        *,
        call: SipCall | None = None,
        dial: DialTarget | Sequence[DialTarget] | None = None,
    ) -> None:
        if (call is None) == (dial is None):
            raise ValueError("a SIP leg is either inbound (call) or outbound (dial)")
        self.service = service
        self._inbound = call
        self.targets: tuple[DialTarget, ...] = (
            (dial,) if isinstance(dial, DialTarget) else tuple(dial or ())
        )
        if dial is not None and not self.targets:
            raise ValueError("nothing to dial")
        #: Outbound INVITEs in flight or answered, one per target (the fork's branches).
        self.branches: list[SipCall] = []
        self.winner: SipCall | None = None
        self._ended: list[CallEnded] = []
        self.rtp: RtpLeg | None = None
        #: Set once callbridge itself ends the call (the UA's CallEnded is then ignored).
        self.local_hangup = False

    @property
    def dial(self) -> DialTarget | None:
        return self.targets[0] if self.targets else None

    @property
    def call(self) -> SipCall | None:
        """The SIP call of this leg: the inbound one, the answered branch, or the only one."""
        if self._inbound is not None:
            return self._inbound
        if self.winner is not None:
            return self.winner
        return self.branches[0] if len(self.branches) == 1 else None

    @property
    def forked(self) -> bool:
        return len(self.targets) > 1

    async def start(self, leg: RtpLeg) -> None:
        self.rtp = leg
        stack = self.service.stack
        if self._inbound is not None:
            call = self._inbound
            stack.run(lambda now: self.service.ua.ring(call, now))
            return
        for target in self.targets:
            negotiator = SdpNegotiator(leg.host, leg.port, self.service.ids)
            stack.run(partial(self._invite, leg, target, negotiator))

    def _invite(
        self, leg: RtpLeg, target: DialTarget, negotiator: SdpNegotiator, now: float
    ) -> list[UaEvent]:
        call = self.service.ua.client.invite(
            target=target.uri,
            destination=target.destination,
            transport=target.transport,
            negotiator=negotiator,
            now=now,
            from_user=target.from_user,
            credentials=target.credentials,
        )
        self.branches.append(call)
        self.service.bind(call, leg, self)
        return []

    def branch_event(self, event: UaEvent) -> UaEvent | None:
        """What the call service sees of a forked call's UA event (``None``: absorbed)."""
        call = event.call
        ua, stack = self.service.ua, self.service.stack
        if isinstance(event, CallAnswered):
            if self.winner is None:
                self.winner = call
                for other in self.branches:
                    if other is not call and not other.ended:
                        stack.run(partial(ua.hangup, other))  # CANCEL (or BYE if answered)
                return event
            if call is not self.winner:
                stack.run(partial(ua.hangup, call))  # a second 2xx: ACKed, then BYE
                return None
            return event
        if isinstance(event, CallEnded):
            if call is self.winner:
                return event
            self._ended.append(event)
            if self.winner is None and all(b.ended for b in self.branches):
                return _most_telling(self._ended)
            return None
        if isinstance(event, CallProgress):
            return event if self.winner is None else None
        return event if call is self.winner else None

    async def answer(self, leg: RtpLeg) -> None:
        call = self.call
        if call is None or call.ended:
            raise RuntimeError("the SIP call is gone")
        self.service.stack.run(lambda now: self.service.ua.answer(call, now))

    async def hangup(self, leg: RtpLeg, reason: HangupReason) -> None:
        self.local_hangup = True
        calls = [self._inbound] if self._inbound is not None else list(self.branches)
        for call in calls:
            if call is not None and not call.ended:
                self.service.stack.run(partial(self.service.ua.hangup, call))


def _most_telling(ended: list[CallEnded]) -> CallEnded:
    """How a fork that nobody answered ends: busy beats no-answer beats any other failure."""
    for event in ended:
        if event.status in (486, 600):
            return event
    for event in ended:
        if event.call.progress_reported:
            return event
    return ended[-1]
