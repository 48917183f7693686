"""SDP (RFC 8866) and offer/answer (RFC 3264) for G.711 audio and RFC 4733 telephone-events.

:func:`parse_sdp` / :meth:`SessionDescription.to_bytes` handle the syntax; unknown lines are
kept. :class:`SdpNegotiator` holds one side of one session: it makes offers (also the offer
callbridge puts in a 200 OK when an INVITE came without SDP, RFC 3264 §5 with RFC 3261
§13.2.1), answers remote offers, processes answers, manages hold through direction attributes
(RFC 3264 §8.4) and bumps the ``o=`` version only when the description changes (RFC 3264 §8).
No common codec raises :class:`NegotiationError`, which the UA maps to 488.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace

from callbridge.sip.errors import NegotiationError, SdpError
from callbridge.sip.ids import IdSource

#: Static payload types callbridge supports (RFC 3551 §6).
STATIC_CODECS = {0: "PCMU", 8: "PCMA"}
TELEPHONE_EVENT = "telephone-event"
_SESSION_ORDER = "vosiuepcbtrzka"
_MEDIA_ORDER = "icbka"


class Direction(enum.Enum):
    SENDRECV = "sendrecv"
    SENDONLY = "sendonly"
    RECVONLY = "recvonly"
    INACTIVE = "inactive"

    def answer(self) -> Direction:
        """The answerer's direction for an offered one (RFC 3264 §6.1)."""
        return _ANSWER_DIRECTION[self]

    @property
    def sends(self) -> bool:
        return self in (Direction.SENDRECV, Direction.SENDONLY)

    @property
    def receives(self) -> bool:
        return self in (Direction.SENDRECV, Direction.RECVONLY)


_ANSWER_DIRECTION = {
    Direction.SENDRECV: Direction.SENDRECV,
    Direction.SENDONLY: Direction.RECVONLY,
    Direction.RECVONLY: Direction.SENDONLY,
    Direction.INACTIVE: Direction.INACTIVE,
}


@dataclass
class Origin:
    username: str
    sess_id: str
    sess_version: int
    address: str
    nettype: str = "IN"
    addrtype: str = "IP4"

    def __str__(self) -> str:
        return (
            f"{self.username} {self.sess_id} {self.sess_version} "
            f"{self.nettype} {self.addrtype} {self.address}"
        )


@dataclass
class Media:
    """One m= section."""

    media: str
    port: int
    proto: str
    formats: list[str]
    connection: str | None = None
    attributes: list[tuple[str, str | None]] = field(default_factory=list)
    #: Other lines (i=, b=, k=) in order, as (type, value).
    lines: list[tuple[str, str]] = field(default_factory=list)

    def attribute(self, name: str) -> str | None:
        return next((v or "" for n, v in self.attributes if n == name), None)

    def attribute_values(self, name: str) -> list[str]:
        return [v or "" for n, v in self.attributes if n == name]

    def rtpmap(self) -> dict[str, tuple[str, int]]:
        """Payload type -> (encoding name, clock rate) from ``a=rtpmap``."""
        out: dict[str, tuple[str, int]] = {}
        for value in self.attribute_values("rtpmap"):
            pt, _sp, rest = value.partition(" ")
            name, _sl, clock = rest.strip().partition("/")
            clock = clock.partition("/")[0]
            if pt.isdigit() and name and clock.isdigit():
                out[pt] = (name, int(clock))
        return out

    def fmtp(self, pt: str) -> str | None:
        for value in self.attribute_values("fmtp"):
            fmt, _sp, params = value.partition(" ")
            if fmt == pt:
                return params.strip()
        return None

    def direction(self, session_default: Direction = Direction.SENDRECV) -> Direction:
        for name, _value in self.attributes:
            if name in Direction._value2member_map_:
                return Direction(name)
        return session_default


@dataclass
class SessionDescription:
    origin: Origin
    session_name: str = "-"
    connection: str | None = None
    attributes: list[tuple[str, str | None]] = field(default_factory=list)
    media: list[Media] = field(default_factory=list)
    #: Other session-level lines (t=, b=, i=, ...) in order, as (type, value).
    lines: list[tuple[str, str]] = field(default_factory=lambda: [("t", "0 0")])

    @property
    def direction(self) -> Direction:
        for name, _value in self.attributes:
            if name in Direction._value2member_map_:
                return Direction(name)
        return Direction.SENDRECV

    def to_bytes(self) -> bytes:
        out = ["v=0", f"o={self.origin}", f"s={self.session_name}"]
        lines = [(t, v) for t, v in self.lines]
        if self.connection is not None:
            lines.append(("c", f"IN {_addrtype(self.connection)} {self.connection}"))
        lines.sort(key=lambda item: _SESSION_ORDER.index(item[0]))
        out += [f"{t}={v}" for t, v in lines]
        out += [_attr(n, v) for n, v in self.attributes]
        for m in self.media:
            out.append(f"m={m.media} {m.port} {m.proto} {' '.join(m.formats)}")
            mlines = list(m.lines)
            if m.connection is not None:
                mlines.append(("c", f"IN {_addrtype(m.connection)} {m.connection}"))
            mlines.sort(key=lambda item: _MEDIA_ORDER.index(item[0]))
            out += [f"{t}={v}" for t, v in mlines]
            out += [_attr(n, v) for n, v in m.attributes]
        return ("\r\n".join(out) + "\r\n").encode()


def _attr(name: str, value: str | None) -> str:
    return f"a={name}" if value is None else f"a={name}:{value}"


def _addrtype(address: str) -> str:
    return "IP6" if ":" in address else "IP4"


def _parse_connection(value: str) -> str:
    parts = value.split()
    if len(parts) != 3 or parts[0] != "IN" or parts[1] not in ("IP4", "IP6"):
        raise SdpError(f"Bad c= line: {value!r}")
    return parts[2].partition("/")[0]


def parse_sdp(data: bytes | str) -> SessionDescription:
    """Parse a session description (RFC 8866 §5); raises :class:`SdpError` on bad syntax."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError as exc:
        raise SdpError("SDP is not UTF-8") from exc
    raw = [line for line in text.replace("\r\n", "\n").split("\n") if line.strip()]
    if not raw or raw[0].strip() != "v=0":
        raise SdpError("SDP must start with v=0")
    origin: Origin | None = None
    session_name: str | None = None
    sdp: SessionDescription | None = None
    session_lines: list[tuple[str, str]] = []
    session_attrs: list[tuple[str, str | None]] = []
    connection: str | None = None
    media: list[Media] = []
    for line in raw[1:]:
        kind, eq, value = line.partition("=")
        if len(kind) != 1 or not eq or not kind.isalpha():
            raise SdpError(f"Bad SDP line: {line[:40]!r}")
        if kind == "m":
            parts = value.split()
            if len(parts) < 4 or not parts[1].partition("/")[0].isdigit():
                raise SdpError(f"Bad m= line: {value!r}")
            port = int(parts[1].partition("/")[0])
            if port > 65535:
                raise SdpError("Bad m= port")
            media.append(Media(parts[0], port, parts[2], parts[3:]))
            continue
        if kind == "a":
            name, colon, attr_value = value.partition(":")
            if not name:
                raise SdpError("Empty attribute")
            target = media[-1].attributes if media else session_attrs
            target.append((name, attr_value if colon else None))
        elif kind == "c":
            address = _parse_connection(value)
            if media:
                media[-1].connection = address
            else:
                connection = address
        elif media:
            if kind not in _MEDIA_ORDER:
                raise SdpError(f"Unexpected {kind}= line in a media section")
            media[-1].lines.append((kind, value))
        elif kind == "o":
            parts = value.split()
            if len(parts) != 6 or not parts[2].isdigit():
                raise SdpError("Bad o= line")
            origin = Origin(parts[0], parts[1], int(parts[2]), parts[5], parts[3], parts[4])
        elif kind == "s":
            session_name = value
        elif kind in _SESSION_ORDER and kind != "v":
            session_lines.append((kind, value))
        else:
            raise SdpError(f"Unexpected {kind}= line")
    if origin is None or session_name is None:
        raise SdpError("SDP needs o= and s=")
    if not any(t == "t" for t, _v in session_lines):
        raise SdpError("SDP needs t=")
    sdp = SessionDescription(origin, session_name, connection, session_attrs, media, session_lines)
    return sdp


# ---------------------------------------------------------------------------------------------
# Offer / answer
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Negotiated:
    """The outcome of one offer/answer exchange for the audio stream."""

    codec: str  # "PCMU" or "PCMA"
    payload_type: int
    dtmf_payload_type: int | None
    remote_address: str
    remote_port: int
    #: Our direction (what we may do): sendrecv, or sendonly/recvonly/inactive when on hold.
    direction: Direction
    remote_ptime: int | None = None


def _codec_of(media: Media, pt: str) -> str | None:
    """The supported codec a format stands for (encoding names compare case-insensitively)."""
    rtpmap = media.rtpmap()
    if pt in rtpmap:
        name, clock = rtpmap[pt]
        upper = name.upper()
        if clock == 8000 and upper in ("PCMU", "PCMA"):
            return upper
        return None
    if pt.isdigit() and int(pt) in STATIC_CODECS:
        return STATIC_CODECS[int(pt)]
    return None


def _dtmf_pt(media: Media) -> str | None:
    for pt, (name, clock) in media.rtpmap().items():
        if name.lower() == TELEPHONE_EVENT and clock == 8000 and pt in media.formats:
            return pt
    return None


def _is_held(sdp: SessionDescription, media: Media) -> bool:
    address = media.connection or sdp.connection
    return address in ("0.0.0.0", "::")  # noqa: S104 - RFC 2543 hold marker, not a bind


class SdpNegotiator:
    """One side of one media session (one per dialog)."""

    def __init__(
        self,
        address: str,
        port: int,
        ids: IdSource,
        *,
        codecs: tuple[str, ...] = ("PCMU", "PCMA"),
        dtmf_payload_type: int = 101,
        username: str = "callbridge",
    ) -> None:
        if not codecs or any(c not in ("PCMU", "PCMA") for c in codecs):
            raise ValueError("codecs must be a non-empty selection of PCMU and PCMA")
        self.address = address
        self.port = port
        self.codecs = codecs
        self.dtmf_payload_type = dtmf_payload_type
        self._origin = Origin(username, str(int(ids.token(32), 16)), 0, address)
        self._last_body: bytes | None = None
        self._pending_offer: SessionDescription | None = None
        self._remote_origin: tuple[str, str, int] | None = None
        #: True while we hold the peer (our offers/answers say sendonly or inactive).
        self.hold = False

    # -- building --------------------------------------------------------------------------

    def _finish(self, sdp: SessionDescription) -> SessionDescription:
        """Set ``o=`` version: +1 whenever the description differs from the last one sent."""
        sdp.origin = replace(self._origin)
        body = sdp.to_bytes()
        if self._last_body is None or body != self._last_body:
            if self._last_body is not None:
                self._origin.sess_version += 1
                sdp.origin = replace(self._origin)
            self._last_body = sdp.to_bytes()
        return sdp

    def _audio(
        self, formats: list[str], rtpmaps: list[tuple[str, str]], direction: Direction
    ) -> Media:
        attrs: list[tuple[str, str | None]] = [("rtpmap", f"{pt} {name}") for pt, name in rtpmaps]
        for pt, name in rtpmaps:
            if name.lower().startswith(TELEPHONE_EVENT):
                attrs.append(("fmtp", f"{pt} 0-16"))
        attrs += [("ptime", "20"), (direction.value, None)]
        return Media("audio", self.port, "RTP/AVP", formats, None, attrs)

    def _base(self, media: list[Media]) -> SessionDescription:
        return SessionDescription(replace(self._origin), "-", self.address, [], media)

    def create_offer(self) -> SessionDescription:
        """Our offer (also for a 200 OK answering an INVITE without SDP)."""
        pts = {"PCMU": "0", "PCMA": "8"}
        formats = [pts[c] for c in self.codecs] + [str(self.dtmf_payload_type)]
        rtpmaps = [(pts[c], f"{c}/8000") for c in self.codecs]
        rtpmaps.append((str(self.dtmf_payload_type), f"{TELEPHONE_EVENT}/8000"))
        direction = Direction.SENDONLY if self.hold else Direction.SENDRECV
        offer = self._finish(self._base([self._audio(formats, rtpmaps, direction)]))
        self._pending_offer = offer
        return offer

    def create_answer(self, offer: SessionDescription) -> tuple[SessionDescription, Negotiated]:
        """Answer a remote offer; :class:`NegotiationError` when no audio codec is common."""
        result: Negotiated | None = None
        answer_media: list[Media] = []
        for media in offer.media:
            accepted = None
            if result is None and media.media == "audio" and media.proto == "RTP/AVP":
                accepted = self._answer_audio(offer, media)
            if accepted is None:
                rejected = Media(media.media, 0, media.proto, media.formats[:1] or ["0"])
                answer_media.append(rejected)
                continue
            answer_media.append(accepted[0])
            result = accepted[1]
        if result is None:
            raise NegotiationError("no common codec")
        return self._finish(self._base(answer_media)), result

    def _answer_audio(
        self, offer: SessionDescription, media: Media
    ) -> tuple[Media, Negotiated] | None:
        if media.port == 0:
            return None
        chosen = next(
            ((pt, c) for pt in media.formats if (c := _codec_of(media, pt)) in self.codecs),
            None,
        )
        if chosen is None:
            return None
        pt, codec = chosen
        formats, rtpmaps = [pt], [(pt, f"{codec}/8000")]
        dtmf = _dtmf_pt(media)
        if dtmf is not None:
            formats.append(dtmf)
            rtpmaps.append((dtmf, f"{TELEPHONE_EVENT}/8000"))
        remote = media.direction(offer.direction)
        if _is_held(offer, media) and remote is Direction.SENDRECV:
            remote = Direction.SENDONLY
        ours = remote.answer()
        if self.hold:
            ours = Direction.SENDONLY if ours.sends else Direction.INACTIVE
        negotiated = Negotiated(
            codec=codec,
            payload_type=int(pt),
            dtmf_payload_type=int(dtmf) if dtmf is not None else None,
            remote_address=media.connection or offer.connection or "",
            remote_port=media.port,
            direction=ours,
            remote_ptime=_ptime(media),
        )
        return self._audio(formats, rtpmaps, ours), negotiated

    def process_answer(self, answer: SessionDescription) -> Negotiated:
        """Apply the peer's answer to our pending offer."""
        offer = self._pending_offer
        if offer is None:
            raise SdpError("no offer is pending")
        if len(answer.media) != len(offer.media):
            raise NegotiationError("answer does not match the offer's m-lines")
        self._pending_offer = None
        media = answer.media[0]
        offered = set(offer.media[0].formats)
        chosen = next(
            (
                (pt, c)
                for pt in media.formats
                if pt in offered and (c := _codec_of(media, pt)) in self.codecs
            ),
            None,
        )
        if media.port == 0 or chosen is None:
            raise NegotiationError("no common codec in the answer")
        dtmf = _dtmf_pt(media)
        remote = media.direction(answer.direction)
        ours = remote.answer()
        return Negotiated(
            codec=chosen[1],
            payload_type=int(chosen[0]),
            dtmf_payload_type=int(dtmf) if dtmf is not None else None,
            remote_address=media.connection or answer.connection or "",
            remote_port=media.port,
            direction=ours,
            remote_ptime=_ptime(media),
        )

    def remote_changed(self, sdp: SessionDescription) -> bool:
        """False when the peer repeated its previous description (same o= id and version):
        the UA then keeps the media as is (RFC 3264 §8). Call it for every remote SDP."""
        key = (sdp.origin.username, sdp.origin.sess_id, sdp.origin.sess_version)
        changed = key != self._remote_origin
        self._remote_origin = key
        return changed


def _ptime(media: Media) -> int | None:
    value = media.attribute("ptime")
    return int(value) if value is not None and value.isdigit() else None
