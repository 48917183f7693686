"""SIP messages: parsing with limits, validation, serialisation and stream framing.

RFC 3261 §7 (message syntax), §7.3.1 (header field format, folding, comma lists), §7.5
(framing), §18.3 (Content-Length on streams), §20 (headers), §25 (ABNF). Malformed requests
raise :class:`SipParseError` with ``status`` 400 (or 505 for another SIP version, 513 for an
oversized message) and a reason phrase naming the problem; the same error type is raised for
malformed responses, which the caller drops (§18.1.2). Nothing else escapes the parser.

Header values are decoded as UTF-8 with ``surrogateescape`` so that any octet sequence
round-trips unchanged. Unknown headers are kept verbatim and never interpreted.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from callbridge.sip.errors import SipParseError
from callbridge.sip.header_grammar import is_token, split_outside
from callbridge.sip.headers import (
    CSeq,
    NameAddr,
    SipUri,
    Via,
    parse_contacts,
    parse_cseq,
    parse_name_addr,
    parse_uri,
    parse_via,
)

SIP_VERSION = "SIP/2.0"
CRLF = b"\r\n"

#: Compact forms (RFC 3261 §7.3.3 and the event/refer/session-timer extensions).
COMPACT_FORMS = {
    "i": "Call-ID",
    "m": "Contact",
    "e": "Content-Encoding",
    "l": "Content-Length",
    "c": "Content-Type",
    "f": "From",
    "s": "Subject",
    "k": "Supported",
    "t": "To",
    "v": "Via",
    "o": "Event",
    "r": "Refer-To",
    "b": "Referred-By",
    "u": "Allow-Events",
    "x": "Session-Expires",
}

_CANONICAL_NAMES = [
    "Accept", "Accept-Encoding", "Accept-Language", "Alert-Info", "Allow", "Allow-Events",
    "Authentication-Info", "Authorization", "Call-ID", "Call-Info", "Contact",
    "Content-Disposition", "Content-Encoding", "Content-Language", "Content-Length",
    "Content-Type", "CSeq", "Date", "Error-Info", "Event", "Expires", "From", "In-Reply-To",
    "Max-Forwards", "MIME-Version", "Min-Expires", "Organization", "Priority",
    "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Require", "RAck", "Reason",
    "Record-Route", "Refer-To", "Referred-By", "Reply-To", "Require", "Retry-After", "Route",
    "RSeq", "Server", "Session-Expires", "Subject", "Supported", "Timestamp", "To",
    "Unsupported", "User-Agent", "Via", "Warning", "WWW-Authenticate",
]  # fmt: skip
_CANONICAL = {name.lower(): name for name in _CANONICAL_NAMES}

#: Headers whose value is a comma-separated list (RFC 3261 §7.3.1) and may be split.
LIST_HEADERS = frozenset(
    n.lower()
    for n in (
        "Accept",
        "Accept-Encoding",
        "Accept-Language",
        "Alert-Info",
        "Allow",
        "Allow-Events",
        "Call-Info",
        "Contact",
        "Content-Encoding",
        "Content-Language",
        "Error-Info",
        "In-Reply-To",
        "Proxy-Require",
        "Record-Route",
        "Require",
        "Route",
        "Supported",
        "Unsupported",
        "Via",
        "Warning",
    )
)

#: Headers that may appear at most once (RFC 3261 §7.3.1, §20; RFC 4475 §3.3.9/§3.3.10).
#: Checked in this fixed order so that the reason phrase does not depend on hash seeding.
_SINGLE_NAMES = ("Call-ID", "CSeq", "From", "To", "Max-Forwards", "Content-Length", "Content-Type")
SINGLE_HEADERS = frozenset(n.lower() for n in _SINGLE_NAMES)

_MANDATORY = ("To", "From", "Call-ID", "CSeq", "Via")
_DATE_RE = re.compile(
    r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
    r" \d{4} \d{2}:\d{2}:\d{2} GMT"
)
_VERSION_RE = re.compile(r"SIP/\d+\.\d+")

REASON_PHRASES = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
    183: "Session Progress", 200: "OK", 202: "Accepted", 300: "Multiple Choices",
    301: "Moved Permanently", 302: "Moved Temporarily", 400: "Bad Request",
    401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    406: "Not Acceptable", 407: "Proxy Authentication Required", 408: "Request Timeout",
    413: "Request Entity Too Large", 415: "Unsupported Media Type",
    416: "Unsupported URI Scheme", 420: "Bad Extension", 423: "Interval Too Brief",
    480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist",
    482: "Loop Detected", 483: "Too Many Hops", 486: "Busy Here", 487: "Request Terminated",
    488: "Not Acceptable Here", 491: "Request Pending", 500: "Server Internal Error",
    501: "Not Implemented", 503: "Service Unavailable", 504: "Server Time-out",
    505: "Version Not Supported", 513: "Message Too Large", 600: "Busy Everywhere",
    603: "Decline", 604: "Does Not Exist Anywhere", 606: "Not Acceptable",
}  # fmt: skip


@functools.lru_cache(maxsize=256)
def canonical_name(name: str) -> str:
    """The canonical spelling of a header name (compact forms expanded); unknown names as is."""
    lower = name.lower()
    if lower in COMPACT_FORMS:
        return COMPACT_FORMS[lower]
    return _CANONICAL.get(lower, name)


@functools.lru_cache(maxsize=256)
def _lookup_key(name: str) -> str:
    """The lower-cased canonical name :class:`Headers` compares with (memoised)."""
    return canonical_name(name).lower()


@dataclass(frozen=True)
class Limits:
    """Parser limits (callbridge SIP spec §4)."""

    max_message: int = 65536
    max_line: int = 8192
    max_headers: int = 200


DEFAULT_LIMITS = Limits()


class Headers:
    """Ordered header fields; names are case-insensitive, every instance kept in order."""

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str]] = [(canonical_name(n), v) for n, v in items]

    @staticmethod
    def _key(name: str) -> str:
        return _lookup_key(name)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def get(self, name: str) -> str | None:
        """The first instance's value, or ``None``."""
        key = self._key(name)
        return next((v for n, v in self._items if n.lower() == key), None)

    def get_all(self, name: str) -> list[str]:
        """Every instance's value, in order (not comma-split)."""
        key = self._key(name)
        return [v for n, v in self._items if n.lower() == key]

    def values(self, name: str) -> list[str]:
        """Every element of a list header: instances comma-split outside quotes and ``<>``."""
        out: list[str] = []
        for value in self.get_all(name):
            out.extend(p.strip(" \t") for p in split_outside(value, ","))
        return out

    def add(self, name: str, value: str) -> None:
        self._items.append((canonical_name(name), value))

    def add_first(self, name: str, value: str) -> None:
        self._items.insert(0, (canonical_name(name), value))

    def remove(self, name: str) -> None:
        key = self._key(name)
        self._items = [(n, v) for n, v in self._items if n.lower() != key]

    def set(self, name: str, value: str) -> None:
        """Replace every instance by one, at the position of the first (or at the end)."""
        key = self._key(name)
        for i, (n, _v) in enumerate(self._items):
            if n.lower() == key:
                self._items[i] = (canonical_name(name), value)
                self._items = [
                    item for j, item in enumerate(self._items) if j <= i or item[0].lower() != key
                ]
                return
        self.add(name, value)

    def copy(self) -> Headers:
        return Headers(self._items)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Headers) and self._items == other._items

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


@dataclass
class _Message:
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""

    @property
    def call_id(self) -> str:
        return (self.headers.get("Call-ID") or "").strip()

    @property
    def cseq(self) -> CSeq:
        return parse_cseq(self.headers.get("CSeq") or "")

    @property
    def vias(self) -> list[Via]:
        return [parse_via(v) for v in self.headers.values("Via")]

    @property
    def top_via(self) -> Via:
        values = self.headers.values("Via")
        if not values:
            raise SipParseError("Missing Via")
        return parse_via(values[0])

    @property
    def from_(self) -> NameAddr:
        return parse_name_addr(self.headers.get("From") or "")

    @property
    def to(self) -> NameAddr:
        return parse_name_addr(self.headers.get("To") or "")

    @property
    def contacts(self) -> list[NameAddr]:
        parsed = parse_contacts(self.headers.get_all("Contact"))
        return parsed if isinstance(parsed, list) else []

    def _head_lines(self) -> list[str]:
        lines = []
        for name, value in self.headers:
            if name.lower() != "content-length":
                lines.append(f"{name}: {value}")
        lines.append(f"Content-Length: {len(self.body)}")
        return lines

    def _encode(self, start: str) -> bytes:
        head = "\r\n".join([start, *self._head_lines()]) + "\r\n\r\n"
        return head.encode("utf-8", "surrogateescape") + self.body


@dataclass
class Request(_Message):
    """A SIP request. ``uri`` is the Request-URI text."""

    method: str = "OPTIONS"
    uri: str = ""

    @property
    def request_uri(self) -> SipUri:
        uri = parse_uri(self.uri)
        if not isinstance(uri, SipUri):
            raise SipParseError("Request-URI is not a SIP URI", 416)
        return uri

    @property
    def max_forwards(self) -> int:
        """Max-Forwards; a missing header is treated as 70 (callbridge SIP spec §4)."""
        value = self.headers.get("Max-Forwards")
        return 70 if value is None else int(value.strip())

    def to_bytes(self) -> bytes:
        return self._encode(f"{self.method} {self.uri} {SIP_VERSION}")


@dataclass
class Response(_Message):
    """A SIP response."""

    status: int = 200
    reason: str = "OK"

    def to_bytes(self) -> bytes:
        return self._encode(f"{SIP_VERSION} {self.status} {self.reason}")


Message = Request | Response


# ---------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------


def _decode(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def _split_head(data: bytes, limits: Limits) -> tuple[list[str], bytes]:
    """Strip leading CRLFs, split the header section into unfolded lines, return the body."""
    start = 0
    while data.startswith(CRLF, start):
        start += 2
    end = data.find(b"\r\n\r\n", start)
    if end < 0:
        raise SipParseError("Missing empty line after headers")
    raw_lines = data[start:end].split(CRLF)
    lines: list[str] = []
    for raw in raw_lines:
        if len(raw) > limits.max_line:
            raise SipParseError("Header line too long", 513)
        text = _decode(raw)
        if text[:1] in (" ", "\t") and lines:
            # §7.3.1: CRLF followed by whitespace continues the previous line (LWS = SP).
            if not lines[-1] or len(lines) == 1:
                raise SipParseError("Continuation line without a header")
            lines[-1] = lines[-1] + " " + text.lstrip(" \t")
            if len(lines[-1]) > limits.max_line:
                raise SipParseError("Header line too long", 513)
        else:
            lines.append(text)
    return lines, data[end + 4 :]


def _parse_header_lines(lines: list[str], limits: Limits) -> list[tuple[str, str]]:
    if len(lines) > limits.max_headers:
        raise SipParseError("Too many headers")
    items: list[tuple[str, str]] = []
    for line in lines:
        name, colon, value = line.partition(":")
        name = name.rstrip(" \t")
        if not colon or not is_token(name):
            raise SipParseError(f"Malformed header line: {line[:40]!r}")
        items.append((name, value.strip(" \t")))
    return items


def _parse_start_line(line: str) -> tuple[bool, str, str, int, str]:
    """Return (is_request, method, uri, status, reason)."""
    if line.startswith("SIP/"):
        version, _sp, rest = line.partition(" ")
        if version != SIP_VERSION:
            raise SipParseError("Version Not Supported", 505)
        code, _sp, reason = rest.partition(" ")
        if len(code) != 3 or not code.isdigit() or not 100 <= int(code) <= 699:
            raise SipParseError("Bad status code")
        return False, "", "", int(code), reason
    parts = line.split(" ")
    if len(parts) != 3 or not all(parts):
        raise SipParseError("Malformed request line")
    method, uri, version = parts
    if not is_token(method):
        raise SipParseError("Bad method")
    if version != SIP_VERSION:
        if _VERSION_RE.fullmatch(version):
            raise SipParseError("Version Not Supported", 505)
        raise SipParseError("Malformed request line")
    return True, method, uri, 0, ""


def parse_message(
    data: bytes, *, limits: Limits = DEFAULT_LIMITS, stream: bool = False
) -> Request | Response:
    """Parse and validate one message (a datagram, or a frame from :class:`StreamFramer`).

    On a datagram Content-Length (if present) governs the body and extra octets are
    discarded (§18.3); without it the body runs to the end. A frame from a stream must carry
    Content-Length (``stream=True``).
    """
    if len(data) > limits.max_message:
        raise SipParseError("Message Too Large", 513)
    try:
        lines, rest = _split_head(data, limits)
    except SipParseError as exc:
        exc.is_request = not data.lstrip(b"\r\n").startswith(b"SIP/")
        raise
    if len(lines[0]) > limits.max_line:
        raise SipParseError("Start line too long", 513)
    items: list[tuple[str, str]] | None = None
    try:
        items = _parse_header_lines(lines[1:], limits)
    except SipParseError:
        items = None
    try:
        is_request, method, uri, status, reason = _parse_start_line(lines[0])
    except SipParseError as exc:
        exc.is_request = not lines[0].startswith("SIP/")
        exc.raw_headers = items
        exc.method = lines[0].split(" ", 1)[0] if exc.is_request else None
        raise
    try:
        if items is None:  # parse again for the error
            items = _parse_header_lines(lines[1:], limits)
        headers = Headers(items)
        body = _frame_body(headers, rest, stream)
        message: Request | Response
        if is_request:
            message = Request(headers=headers, body=body, method=method, uri=uri)
            validate_request(message)
        else:
            message = Response(headers=headers, body=body, status=status, reason=reason)
            validate_response(message)
    except SipParseError as exc:
        exc.is_request = is_request
        exc.raw_headers = items
        exc.method = method if is_request else None
        raise
    return message


def _frame_body(headers: Headers, rest: bytes, stream: bool) -> bytes:
    lengths = headers.get_all("Content-Length")
    if len(lengths) > 1:
        raise SipParseError("Multiple Content-Length headers")
    if not lengths:
        if stream:
            raise SipParseError("Missing Content-Length on a stream transport")
        return rest
    text = lengths[0].strip()
    if not text.isdigit() or len(text) > 9:
        raise SipParseError("Bad Content-Length")
    length = int(text)
    if length > len(rest):
        raise SipParseError("Content-Length larger than the body")
    return rest[:length]


def _check_common(message: Request | Response) -> CSeq:
    for name in _MANDATORY:
        if not message.headers.get_all(name):
            raise SipParseError(f"Missing {name} header")
    for name in _SINGLE_NAMES:
        if len(message.headers.get_all(name)) > 1:
            raise SipParseError(f"Multiple {name} headers")
    if not message.call_id or any(c in " \t" for c in message.call_id):
        raise SipParseError("Bad Call-ID")
    try:
        cseq = message.cseq
    except SipParseError as exc:
        raise SipParseError(f"Bad CSeq header: {exc.reason}") from exc
    for name in ("From", "To"):
        try:
            parse_name_addr(message.headers.get(name) or "")
        except SipParseError as exc:
            raise SipParseError(f"Bad {name} header: {exc.reason}") from exc
    try:
        vias = message.vias
    except SipParseError as exc:
        raise SipParseError(f"Bad Via header: {exc.reason}") from exc
    if not vias:
        raise SipParseError("Missing Via header")
    try:
        parse_contacts(message.headers.get_all("Contact"))
    except SipParseError as exc:
        raise SipParseError(f"Bad Contact header: {exc.reason}") from exc
    return cseq


def validate_request(request: Request) -> None:
    """Reject requests a UAS must answer with 400 (RFC 3261 §8.2.2, §25; RFC 4475 §3.1.2)."""
    cseq = _check_common(request)
    if cseq.method != request.method:
        raise SipParseError("CSeq method does not match the request method")
    if request.uri.startswith("<"):
        raise SipParseError("Request-URI enclosed in <>")
    try:
        uri = parse_uri(request.uri)
    except SipParseError as exc:
        raise SipParseError(f"Bad Request-URI: {exc.reason}") from exc
    if isinstance(uri, SipUri) and uri.headers:
        raise SipParseError("Request-URI must not contain headers")
    max_forwards = request.headers.get("Max-Forwards")
    if max_forwards is not None:
        text = max_forwards.strip()
        if not text.isdigit() or len(text) > 5 or int(text) > 255:
            raise SipParseError("Bad Max-Forwards")
    date = request.headers.get("Date")
    if date is not None and not _DATE_RE.fullmatch(date.strip()):
        raise SipParseError("Bad Date header (RFC 1123 date in GMT required)")
    for name in ("Expires", "Min-Expires"):
        value = request.headers.get(name)
        if value is not None and not value.strip().isdigit():
            raise SipParseError(f"Bad {name} header")


def validate_response(response: Response) -> None:
    """Check a response's mandatory headers (RFC 3261 §8.1.3.1); failures mean drop it."""
    _check_common(response)


# ---------------------------------------------------------------------------------------------
# Stream framing (§18.3)
# ---------------------------------------------------------------------------------------------

#: Returned by :meth:`StreamFramer.feed` for a double-CRLF keepalive (RFC 5626 §3.5.1); the
#: transport answers it with a single CRLF.
KEEPALIVE = b"\r\n\r\n"
_CL_RE = re.compile(rb"^(?:content-length|l)[ \t]*:[ \t]*(\S*)[ \t]*$", re.IGNORECASE)


class StreamFramer:
    """Cut a byte stream (TCP/TLS) into complete messages using Content-Length (§18.3).

    ``feed`` returns complete frames (bytes of one message each, or :data:`KEEPALIVE`).
    It raises :class:`SipParseError` when the stream can no longer be framed (header section
    over the limit, missing or bad Content-Length); the connection must then be closed.
    """

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        self._limits = limits
        self._buffer = bytearray()

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer.extend(data)
        frames: list[bytes] = []
        while True:
            frame = self._next_frame()
            if frame is None:
                return frames
            frames.append(frame)

    def _next_frame(self) -> bytes | None:
        buf = self._buffer
        if buf.startswith(KEEPALIVE):
            del buf[:4]
            return KEEPALIVE
        while buf.startswith(CRLF) and len(buf) >= 4:
            del buf[:2]
        if buf == CRLF:
            return None
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > self._limits.max_message:
                raise SipParseError("Header section too large", 513)
            return None
        length: int | None = None
        folded = re.sub(rb"\r\n[ \t]+", b" ", bytes(buf[:end]))
        for line in folded.split(CRLF)[1:]:
            match = _CL_RE.match(line)
            if match:
                value = match.group(1)
                if length is not None or not value.isdigit() or len(value) > 9:
                    raise SipParseError("Bad Content-Length on a stream transport")
                length = int(value)
        if length is None:
            raise SipParseError("Missing Content-Length on a stream transport")
        total = end + 4 + length
        if total > self._limits.max_message:
            raise SipParseError("Message Too Large", 513)
        if len(buf) < total:
            return None
        frame = bytes(buf[:total])
        del buf[:total]
        return frame


# ---------------------------------------------------------------------------------------------
# Building responses (§8.2.6)
# ---------------------------------------------------------------------------------------------


def make_response(
    request: Request,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    body: bytes = b"",
) -> Response:
    """A response to ``request`` copying Via, From, To, Call-ID and CSeq (RFC 3261 §8.2.6.2).

    ``to_tag`` is added to To when it has none (not for 100 Trying, §8.2.6.1).
    """
    headers = Headers()
    for value in request.headers.get_all("Via"):
        headers.add("Via", value)
    headers.add("From", request.headers.get("From") or "")
    to = request.headers.get("To") or ""
    if to_tag is not None and status != 100:
        address = parse_name_addr(to)
        if address.tag is None:
            to = f"{to};tag={to_tag}"
    headers.add("To", to)
    headers.add("Call-ID", request.headers.get("Call-ID") or "")
    headers.add("CSeq", request.headers.get("CSeq") or "")
    if status == 100 and request.headers.get("Timestamp") is not None:
        headers.add("Timestamp", request.headers.get("Timestamp") or "")
    return Response(
        headers=headers,
        body=body,
        status=status,
        reason=reason if reason is not None else REASON_PHRASES.get(status, "Unknown"),
    )


def error_response(error: SipParseError) -> Response | None:
    """The 4xx/5xx answer to a malformed request, or ``None`` when none can be built.

    A response needs the request's Via, From, To, Call-ID and CSeq; when they cannot be
    recovered verbatim the request is dropped (RFC 3261 §8.2.2 leaves no other choice). A
    malformed ACK is dropped too: ACKs are never answered.
    """
    if not error.is_request or error.raw_headers is None:
        return None
    if error.method == "ACK":
        return None  # an ACK is never answered, not even a malformed one (RFC 3261 §17.2.1)
    raw = Headers(error.raw_headers)
    headers = Headers()
    for name in ("Via", "From", "To", "Call-ID", "CSeq"):
        values = raw.get_all(name)
        if not values:
            return None
        for value in values if name == "Via" else values[:1]:
            headers.add(name, value)
    reason = error.reason.replace("\r", " ").replace("\n", " ")
    return Response(headers=headers, status=error.status, reason=reason)
