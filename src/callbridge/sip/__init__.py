"""callbridge.sip: the sans-I/O SIP core (RFC 3261 with RFC 6026, RFC 3581, digest, SDP).

No sockets, no asyncio, no clock reads: callers pass ``now`` and get typed events, bytes to send
and timer deadlines back; randomness comes from an injected :class:`IdSource`. See
``docs/decisions/020-sip-core-sans-io-layers-timers-nonces.md`` for the layering.
"""

from callbridge.sip.auth import AuthResult, DigestClient, DigestServer
from callbridge.sip.dialog import Dialog, DialogId, DialogState, DialogTable, TwoXXRetransmitter
from callbridge.sip.errors import (
    AuthError,
    NegotiationError,
    SdpError,
    SipError,
    SipParseError,
    TransactionError,
)
from callbridge.sip.headers import (
    AbsoluteUri,
    CSeq,
    NameAddr,
    SipUri,
    Via,
    parse_name_addr,
    parse_uri,
    parse_via,
    uri_equal,
)
from callbridge.sip.ids import IdSource, SecretIdSource, SeededIdSource
from callbridge.sip.message import (
    Headers,
    Limits,
    Request,
    Response,
    StreamFramer,
    make_response,
    parse_message,
)
from callbridge.sip.sdp import Direction, Negotiated, SdpNegotiator, parse_sdp
from callbridge.sip.transaction import TimerConfig, TransactionLayer

__all__ = [
    "AbsoluteUri",
    "AuthError",
    "AuthResult",
    "CSeq",
    "Dialog",
    "DialogId",
    "DialogState",
    "DialogTable",
    "DigestClient",
    "DigestServer",
    "Direction",
    "Headers",
    "IdSource",
    "Limits",
    "NameAddr",
    "Negotiated",
    "NegotiationError",
    "Request",
    "Response",
    "SdpError",
    "SdpNegotiator",
    "SecretIdSource",
    "SeededIdSource",
    "SipError",
    "SipParseError",
    "SipUri",
    "StreamFramer",
    "TimerConfig",
    "TransactionError",
    "TransactionLayer",
    "TwoXXRetransmitter",
    "Via",
    "make_response",
    "parse_message",
    "parse_name_addr",
    "parse_sdp",
    "parse_uri",
    "parse_via",
    "uri_equal",
]
