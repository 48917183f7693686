"""Data shared by the UA core (:mod:`callbridge.sip.ua`) and its client half
(:mod:`callbridge.sip.ua_client`): configuration, the per-call record, its state table and
the typed events the UA hands to the application (the telephony layer).

Sans-I/O like the rest of :mod:`callbridge.sip`: nothing here reads a clock or opens a socket.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from callbridge.sip.auth import DigestClient
from callbridge.sip.dialog import Dialog, TwoXXRetransmitter
from callbridge.sip.errors import TransactionError
from callbridge.sip.header_grammar import format_hostport
from callbridge.sip.headers import SipUri
from callbridge.sip.message import Request, Response
from callbridge.sip.sdp import Negotiated, SdpNegotiator, SessionDescription
from callbridge.sip.transaction import Address, TransactionKey

#: Methods callbridge implements (``Allow``); REGISTER is added where the registrar runs.
ALLOW = ("INVITE", "ACK", "CANCEL", "BYE", "OPTIONS")
#: Methods that exist but callbridge does not accept (→ 405 with ``Allow``, not 501).
KNOWN_METHODS = frozenset(
    {
        *ALLOW,
        "REGISTER",
        "INFO",
        "UPDATE",
        "PRACK",
        "SUBSCRIBE",
        "NOTIFY",
        "REFER",
        "MESSAGE",
        "PUBLISH",
    }
)
#: Option tags callbridge implements (``Supported``; anything in ``Require`` else → 420).
SUPPORTED: tuple[str, ...] = ()
SDP_TYPE = "application/sdp"


@dataclass(frozen=True)
class UaConfig:
    """Where the UA is reachable and which Request-URI hosts it serves."""

    host: str  # advertised address: Via sent-by, Contact, SDP
    port: int
    domain: str  # the realm and the AOR domain of extensions
    served_hosts: frozenset[str] = frozenset()
    user_agent: str = "callbridge"
    registrar: bool = True
    #: Unauthenticated out-of-dialog requests accepted per source host per second, and burst.
    rate_per_second: float = 20.0
    rate_burst: float = 40.0

    def serves(self, host: str) -> bool:
        host = host.lower().strip("[]")
        return host in self.served_hosts or host in (self.host.lower(), self.domain.lower())

    def contact(self, transport: str, user: str = "callbridge") -> str:
        """Our Contact; over TCP it carries ``;transport=tcp`` (spec §5)."""
        uri = f"sip:{user}@{format_hostport(self.host, self.port)}"
        if transport.upper() != "UDP":
            uri += f";transport={transport.lower()}"
        return f"<{uri}>"

    @property
    def allow(self) -> str:
        return ", ".join((*ALLOW, "REGISTER") if self.registrar else ALLOW)


class Policy(Protocol):
    """Who may call in: trusted sources need no digest; others authenticate as extensions."""

    def trusted(self, host: str) -> bool: ...

    @property
    def passwords(self) -> Mapping[str, str]: ...


class Outcome(enum.StrEnum):
    """How a call ended, exactly one per call (spec §7)."""

    NORMAL = "normal"  # answered, then BYE
    CANCELLED = "cancelled"  # CANCEL before answer (487)
    REJECTED = "rejected"  # a final non-2xx (status in the event)
    TIMEOUT = "timeout"  # Timer B (408) or no ACK for our 2xx
    TRANSPORT_FAILURE = "transport-failure"
    FAILED = "failed"  # media negotiation failed after answer, or similar


class CallState(enum.StrEnum):
    OFFERED = "offered"  # UAS: INVITE received, no response from the application yet
    CALLING = "calling"  # UAC: INVITE sent
    EARLY = "early"  # a provisional was sent / received
    ANSWERED = "answered"  # UAS: 2xx sent, no ACK yet
    CONFIRMED = "confirmed"
    CANCELLING = "cancelling"  # UAC: CANCEL sent (or to be sent at the first provisional)
    ENDED = "ended"


_C = CallState
CALL_TABLE: dict[CallState, frozenset[CallState]] = {
    _C.OFFERED: frozenset({_C.EARLY, _C.ANSWERED, _C.ENDED}),
    _C.CALLING: frozenset({_C.EARLY, _C.CONFIRMED, _C.CANCELLING, _C.ENDED}),
    _C.EARLY: frozenset({_C.ANSWERED, _C.CONFIRMED, _C.CANCELLING, _C.ENDED}),
    _C.ANSWERED: frozenset({_C.CONFIRMED, _C.ENDED}),
    _C.CONFIRMED: frozenset({_C.ENDED}),
    _C.CANCELLING: frozenset({_C.ENDED}),
    _C.ENDED: frozenset(),
}
del _C


@dataclass(eq=False)
class SipCall:
    """One INVITE dialog usage as the UA sees it (inbound or outbound)."""

    id: str
    incoming: bool
    invite: Request  # the initial INVITE (the latest one sent, for an authenticated UAC)
    peer: Address
    transport: str
    local_tag: str
    state: CallState
    server_key: TransactionKey | None = None
    client_key: TransactionKey | None = None
    dialog: Dialog | None = None
    negotiator: SdpNegotiator | None = None
    offer: SessionDescription | None = None  # the remote offer of the INVITE (UAS)
    local_sdp: bytes | None = None
    negotiated: Negotiated | None = None
    answer_in_ack: bool = False  # UAS: we offered in the 2xx, the answer comes in the ACK
    final: Response | None = None  # the 2xx we retransmit until the ACK
    retransmitter: TwoXXRetransmitter | None = None
    ack: Request | None = None  # UAC: ACK for the 2xx, re-sent for retransmitted 2xx
    ack_destination: tuple[Address, str] | None = None
    digest: DigestClient | None = None
    provisional: bool = False
    progress_reported: bool = False
    cancel_requested: bool = False
    bye_pending: bool = False  # UAS: hang up once the ACK arrives (§15)
    username: str | None = None  # authenticated extension, "" for a trusted source
    reinvite_key: TransactionKey | None = None  # our pending re-INVITE
    reinvite_retry_at: float | None = None
    hold: bool = False
    ended_outcome: Outcome | None = None
    extra: dict[str, object] = field(default_factory=dict)

    def move(self, target: CallState) -> None:
        if target is self.state:
            return
        if target not in CALL_TABLE[self.state]:
            raise TransactionError(f"call {self.id}: {self.state.value} -> {target.value}")
        self.state = target

    @property
    def ended(self) -> bool:
        return self.state is CallState.ENDED

    @property
    def request_user(self) -> str:
        """The user part of the Request-URI (the dialled extension or number)."""
        try:
            uri = self.invite.request_uri
        except Exception:  # tel: URIs and the like
            return self.invite.uri.partition(":")[2].split(";")[0]
        return uri.user_unescaped or ""


# -- events ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class IncomingCall:
    """A new, authorised inbound INVITE: call ``prepare_answer``/``ring``/``answer`` or
    ``reject``."""

    call: SipCall


@dataclass(frozen=True)
class CallProgress:
    """Our outbound INVITE got a 180/183."""

    call: SipCall
    status: int


@dataclass(frozen=True)
class CallAnswered:
    """Our outbound INVITE got a 2xx with an acceptable answer (the ACK is sent)."""

    call: SipCall
    negotiated: Negotiated


@dataclass(frozen=True)
class CallConfirmed:
    """The ACK for our 2xx arrived; ``negotiated`` is set when it carried the SDP answer."""

    call: SipCall
    negotiated: Negotiated | None


@dataclass(frozen=True)
class MediaChanged:
    """A re-INVITE changed the session (hold, resume, new address)."""

    call: SipCall
    negotiated: Negotiated


@dataclass(frozen=True)
class CallEnded:
    """The call is over: exactly one per call."""

    call: SipCall
    outcome: Outcome
    status: int | None
    by_remote: bool


UaEvent = IncomingCall | CallProgress | CallAnswered | CallConfirmed | MediaChanged | CallEnded


def uri_destination(uri: SipUri, default_transport: str) -> tuple[Address, str]:
    """Where to send a request for ``uri`` (no DNS SRV yet: host and port, 5060 default)."""
    transport = (uri.transport or default_transport).upper()
    maddr = uri.param("maddr")
    host = (maddr or uri.host).strip("[]")
    return (host, uri.port or 5060), transport
