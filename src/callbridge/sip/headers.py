"""Structured SIP header values: URIs, name-addr, Via, CSeq, contacts, auth parameters.

Grammar references are RFC 3261 §25.1 (ABNF) and §20 (header field semantics); URI
comparison follows §19.1.4. Parsers take the *unfolded* header value (the message layer has
already replaced CRLF+WSP by a space) and raise :class:`SipParseError` on anything the grammar
does not allow. Values are kept in their escaped wire form so that serialising an unmodified
object gives back the same text; comparison works on normalised escapes.

The parsed values are immutable, so the parsers of the headers every message is read for
(URI, name-addr, Via, CSeq) are memoised on the header text (:data:`PARSE_CACHE` entries
each): one transaction reads its From, To, Via and CSeq many times, and a dialog's requests
repeat the same values (decision 024).

The grammar primitives these parsers are built from (character classes, escaping, quoting,
splitting, generic parameters, host/port, token lists) live in
:mod:`callbridge.sip.header_grammar` and are re-exported here.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from callbridge.sip.errors import SipParseError
from callbridge.sip.header_grammar import (
    UNRESERVED,
    WS,
    Params,
    check_chars,
    escape,
    format_hostport,
    format_params,
    get_param,
    has_param,
    is_token,
    iter_tokens,
    normalise_escapes,
    parse_hostport,
    parse_params,
    parse_quoted,
    quote,
    set_param,
    split_outside,
    unescape,
    unquote,
)

#: Entries of each memoised header parser (bounded: header values are at most a line long).
PARSE_CACHE = 1024

# RFC 3261 §25.1 character classes of the URI components (§19.1.1).
_USER_CHARS = UNRESERVED | frozenset("&=+$,;?/%")
_PASSWORD_CHARS = UNRESERVED | frozenset("&=+$,%")
_PARAM_CHARS = UNRESERVED | frozenset("[]/:&+$%")
_HEADER_CHARS = UNRESERVED | frozenset("[]/?:+$%")
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*")


# ---------------------------------------------------------------------------------------------
# URIs
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AbsoluteUri:
    """A URI of a scheme other than sip/sips (``tel:``, ``http:``, unknown schemes), kept opaque."""

    scheme: str
    opaque: str

    def __str__(self) -> str:
        return f"{self.scheme}:{self.opaque}"


@dataclass(frozen=True)
class SipUri:
    """A SIP or SIPS URI (RFC 3261 §19.1). Components are kept in escaped wire form."""

    host: str
    user: str | None = None
    password: str | None = None
    port: int | None = None
    params: Params = ()
    headers: tuple[tuple[str, str], ...] = ()
    scheme: str = "sip"

    def __str__(self) -> str:
        userinfo = ""
        if self.user is not None:
            userinfo = self.user
            if self.password is not None:
                userinfo += ":" + self.password
            userinfo += "@"
        text = f"{self.scheme}:{userinfo}{format_hostport(self.host, self.port)}"
        text += format_params(self.params)
        if self.headers:
            text += "?" + "&".join(f"{n}={v}" for n, v in self.headers)
        return text

    @property
    def user_unescaped(self) -> str | None:
        return None if self.user is None else unescape(self.user)

    def param(self, name: str) -> str | None:
        """URI parameter value, unescaped (``""`` for a valueless parameter); names are
        compared case-insensitively after unescaping (RFC 3261 §19.1.4)."""
        lname = name.lower()
        for n, v in self.params:
            if unescape(n).lower() == lname:
                return "" if v is None else unescape(v)
        return None

    @property
    def transport(self) -> str | None:
        value = self.param("transport")
        return None if value is None else value.lower()

    def with_param(self, name: str, value: str | None) -> SipUri:
        return replace(self, params=set_param(self.params, name, value))

    def without_headers(self) -> SipUri:
        return replace(self, headers=())


Uri = SipUri | AbsoluteUri


@functools.lru_cache(maxsize=PARSE_CACHE)
def parse_uri(text: str) -> Uri:
    """Parse a URI: a full :class:`SipUri` for sip/sips, an :class:`AbsoluteUri` otherwise."""
    scheme, colon, rest = text.partition(":")
    if not colon or not _SCHEME_RE.fullmatch(scheme):
        raise SipParseError(f"Bad URI: {text[:60]!r}")
    if scheme.lower() not in ("sip", "sips"):
        if not rest or any(c in ' \t<>"' for c in rest):
            raise SipParseError(f"Bad URI: {text[:60]!r}")
        return AbsoluteUri(scheme.lower(), rest)
    return _parse_sip_uri(scheme.lower(), rest)


def parse_sip_uri(text: str) -> SipUri:
    """Parse a URI that must be sip: or sips:."""
    uri = parse_uri(text)
    if not isinstance(uri, SipUri):
        raise SipParseError(f"Not a SIP URI: {text[:60]!r}")
    return uri


def _parse_sip_uri(scheme: str, rest: str) -> SipUri:
    user: str | None = None
    password: str | None = None
    at = rest.find("@")
    if at >= 0:
        userinfo, hostpart = rest[:at], rest[at + 1 :]
        user, colon, pw = userinfo.partition(":")
        if not user:
            raise SipParseError("Bad URI: empty user")
        check_chars(user, _USER_CHARS, "URI user")
        if colon:
            check_chars(pw, _PASSWORD_CHARS, "URI password")
            password = pw
    else:
        hostpart = rest
    hostpart, qmark, headers_text = hostpart.partition("?")
    hostport, semi, params_text = hostpart.partition(";")
    host, port = parse_hostport(hostport, "URI host")
    params: list[tuple[str, str | None]] = []
    if semi:
        for piece in params_text.split(";"):
            name, eq, value = piece.partition("=")
            if not name:
                raise SipParseError("Bad URI: empty parameter")
            check_chars(name, _PARAM_CHARS, "URI parameter")
            if eq:
                if not value:
                    raise SipParseError(f"Bad URI: empty value for {name}")
                check_chars(value, _PARAM_CHARS, "URI parameter")
            params.append((name, value if eq else None))
    headers: list[tuple[str, str]] = []
    if qmark:
        for piece in headers_text.split("&"):
            name, eq, value = piece.partition("=")
            if not name or not eq:
                raise SipParseError("Bad URI: malformed header component")
            check_chars(name, _HEADER_CHARS, "URI header")
            check_chars(value, _HEADER_CHARS, "URI header")
            headers.append((name, value))
    return SipUri(
        host=host,
        user=user,
        password=password,
        port=port,
        params=tuple(params),
        headers=tuple(headers),
        scheme=scheme,
    )


_MUST_MATCH_PARAMS = ("user", "ttl", "method", "maddr", "transport")


def uri_equal(a: Uri, b: Uri) -> bool:
    """URI equivalence per RFC 3261 §19.1.4.

    Scheme and host are case-insensitive, userinfo case-sensitive; escapes of unreserved
    characters equal the characters; a port (even 5060) never equals an omitted port;
    ``user``, ``ttl``, ``method``, ``maddr`` and ``transport`` must match when present in
    either URI (the §19.1.4 examples count ``transport=udp`` against none as different); any
    other parameter is compared only when present in both; header components must all match.
    """
    if isinstance(a, AbsoluteUri) or isinstance(b, AbsoluteUri):
        return (
            isinstance(a, AbsoluteUri)
            and isinstance(b, AbsoluteUri)
            and a.scheme == b.scheme
            and a.opaque == b.opaque
        )
    if a.scheme != b.scheme or a.host.lower() != b.host.lower() or a.port != b.port:
        return False
    norm = normalise_escapes
    if (a.user is None) != (b.user is None) or (a.password is None) != (b.password is None):
        return False
    if a.user is not None and b.user is not None and norm(a.user) != norm(b.user):
        return False
    if a.password is not None and b.password is not None and norm(a.password) != norm(b.password):
        return False
    pa = {norm(n).lower(): norm(v or "").lower() for n, v in a.params}
    pb = {norm(n).lower(): norm(v or "").lower() for n, v in b.params}
    for name in set(pa) | set(pb):
        if name in pa and name in pb:
            if pa[name] != pb[name]:
                return False
        elif name in _MUST_MATCH_PARAMS:
            return False
    ha = sorted((n.lower(), norm(v).lower()) for n, v in a.headers)
    hb = sorted((n.lower(), norm(v).lower()) for n, v in b.headers)
    return ha == hb


# ---------------------------------------------------------------------------------------------
# name-addr / addr-spec (From, To, Contact, Route, Record-Route)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NameAddr:
    """``[display-name] <uri> *(;param)`` or ``addr-spec *(;param)`` (RFC 3261 §20.10, §20.20).

    ``display_name`` is unquoted (``None`` when absent). Serialisation always uses angle
    brackets, which is always legal.
    """

    uri: Uri
    display_name: str | None = None
    params: Params = ()

    def __str__(self) -> str:
        name = "" if self.display_name is None else quote(self.display_name) + " "
        return f"{name}<{self.uri}>{format_params(self.params)}"

    def param(self, name: str) -> str | None:
        return unquote(get_param(self.params, name))

    @property
    def tag(self) -> str | None:
        return self.param("tag")

    def with_tag(self, tag: str) -> NameAddr:
        return replace(self, params=set_param(self.params, "tag", tag))

    @property
    def expires(self) -> int | None:
        """The Contact ``expires`` parameter (RFC 3261 §20.10), ``None`` when absent/invalid."""
        value = self.param("expires")
        return int(value) if value is not None and value.isdigit() else None

    @property
    def q(self) -> float | None:
        value = self.param("q")
        try:
            return None if value is None else float(value)
        except ValueError:
            return None


@functools.lru_cache(maxsize=PARSE_CACHE)
def parse_name_addr(text: str) -> NameAddr:
    """Parse one name-addr or addr-spec with header parameters (RFC 3261 §25.1)."""
    text = text.strip(WS)
    if not text:
        raise SipParseError("Empty address")
    display: str | None = None
    if text.startswith('"'):
        display, end = parse_quoted(text)
        rest = text[end:].lstrip(WS)
        if not rest.startswith("<"):
            raise SipParseError("Bad address: quoted display name without <URI>")
        return _parse_bracketed(display, rest)
    angle = text.find("<")
    if angle >= 0:
        name_text = text[:angle].strip(WS)
        if name_text:
            words = name_text.split()
            if not all(is_token(w) for w in words):
                raise SipParseError(f"Bad display name: {name_text[:40]!r}")
            display = " ".join(words)
        return _parse_bracketed(display, text[angle:])
    # addr-spec: the URI ends at the first ";" or whitespace; parameters belong to the header.
    end = len(text)
    for i, char in enumerate(text):
        if char in ";" + WS:
            end = i
            break
    uri_text, rest = text[:end], text[end:].lstrip(WS)
    if any(c in uri_text for c in ",?"):
        raise SipParseError("Bad address: URI with ',' or '?' must be in <>")
    params: Params = ()
    if rest:
        if not rest.startswith(";"):
            raise SipParseError("Bad address: junk after URI")
        params = parse_params(rest[1:], "address parameter")
    return NameAddr(parse_uri(uri_text), None, params)


def _parse_bracketed(display: str | None, text: str) -> NameAddr:
    close = text.find(">")
    if close < 0:
        raise SipParseError("Bad address: missing '>'")
    uri_text = text[1:close]
    if uri_text != uri_text.strip(WS) or not uri_text:
        raise SipParseError("Bad address: whitespace inside <>")
    rest = text[close + 1 :].strip(WS)
    params: Params = ()
    if rest:
        if not rest.startswith(";"):
            raise SipParseError("Bad address: junk after '>'")
        params = parse_params(rest[1:], "address parameter")
    return NameAddr(parse_uri(uri_text), display, params)


# ---------------------------------------------------------------------------------------------
# Via
# ---------------------------------------------------------------------------------------------

BRANCH_COOKIE = "z9hG4bK"
_VIA_RE = re.compile(
    r"([^\s/]+)[ \t]*/[ \t]*([^\s/]+)[ \t]*/[ \t]*([^\s/;]+)[ \t]+([^\s;]+)[ \t]*(?:;(.*))?",
    re.DOTALL,
)


@dataclass(frozen=True)
class Via:
    """One via-parm (RFC 3261 §20.42, RFC 3581 ``rport``)."""

    transport: str
    host: str
    port: int | None = None
    params: Params = ()
    protocol: str = "SIP/2.0"

    def __str__(self) -> str:
        sent_by = format_hostport(self.host, self.port)
        return f"{self.protocol}/{self.transport} {sent_by}{format_params(self.params)}"

    @property
    def branch(self) -> str | None:
        return get_param(self.params, "branch")

    @property
    def is_rfc3261(self) -> bool:
        """True when the branch carries the RFC 3261 magic cookie (§8.1.1.7)."""
        branch = self.branch
        return branch is not None and branch.startswith(BRANCH_COOKIE)

    @property
    def received(self) -> str | None:
        return get_param(self.params, "received")

    @property
    def has_rport(self) -> bool:
        return has_param(self.params, "rport")

    @property
    def rport(self) -> int | None:
        """The ``rport`` value, ``None`` when absent or empty (RFC 3581 §4)."""
        value = get_param(self.params, "rport")
        return int(value) if value else None

    @property
    def sent_by(self) -> tuple[str, int | None]:
        return self.host.lower(), self.port

    def with_param(self, name: str, value: str | None) -> Via:
        return replace(self, params=set_param(self.params, name, value))


@functools.lru_cache(maxsize=PARSE_CACHE)
def parse_via(text: str) -> Via:
    """Parse one via-parm; ``SIP / 2.0 / UDP host`` with LWS around ``/`` is legal."""
    match = _VIA_RE.fullmatch(text.strip(WS))
    if not match:
        raise SipParseError(f"Bad Via: {text.strip()[:60]!r}")
    name, version, transport, sent_by, params_text = match.groups()
    if not (is_token(name) and is_token(version) and is_token(transport)):
        raise SipParseError("Bad Via: sent-protocol")
    host, port = parse_hostport(sent_by, "Via sent-by")
    params = parse_params(params_text, "Via parameter") if params_text is not None else ()
    for pname, value in params:
        lname = pname.lower()
        if lname == "branch" and not value:
            raise SipParseError("Bad Via: empty branch")
        if lname == "rport" and value is not None and not (value.isdigit() and len(value) < 6):
            raise SipParseError("Bad Via: rport")
        if lname in ("received", "maddr") and not value:
            raise SipParseError(f"Bad Via: empty {lname}")
        if lname == "ttl" and not (value and value.isdigit() and int(value) <= 255):
            raise SipParseError("Bad Via: ttl")
    return Via(transport.upper(), host, port, params, f"{name.upper()}/{version}")


# ---------------------------------------------------------------------------------------------
# CSeq
# ---------------------------------------------------------------------------------------------

MAX_CSEQ = 2**32 - 1


@dataclass(frozen=True)
class CSeq:
    """CSeq (RFC 3261 §20.16): a 32-bit sequence number and the method."""

    number: int
    method: str

    def __str__(self) -> str:
        return f"{self.number} {self.method}"


@functools.lru_cache(maxsize=PARSE_CACHE)
def parse_cseq(text: str) -> CSeq:
    parts = text.split()
    if len(parts) != 2 or not parts[0].isdigit() or not is_token(parts[1]):
        raise SipParseError("Bad CSeq")
    if len(parts[0]) > 12 or int(parts[0]) > MAX_CSEQ:
        raise SipParseError("Bad CSeq: number out of range")
    return CSeq(int(parts[0]), parts[1])


# ---------------------------------------------------------------------------------------------
# Contact lists
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ContactStar:
    """``Contact: *`` (RFC 3261 §10.2.2), only legal in a REGISTER with ``Expires: 0``."""

    def __str__(self) -> str:
        return "*"


def parse_contacts(values: Iterable[str]) -> list[NameAddr] | ContactStar:
    """Parse the comma-separated values of every Contact header instance."""
    items = [v for value in values for v in split_outside(value, ",")]
    if any(item.strip(WS) == "*" for item in items):
        if len(items) != 1:
            raise SipParseError("Bad Contact: '*' mixed with other contacts")
        return ContactStar()
    return [parse_name_addr(item) for item in items]


# ---------------------------------------------------------------------------------------------
# Authentication parameters (WWW-Authenticate, Authorization, Proxy-*) — RFC 3261 §25.1
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuthParams:
    """``scheme name=value, ...``; ``params`` holds unquoted values under lower-case names."""

    scheme: str
    params: dict[str, str] = field(default_factory=dict)

    def get(self, name: str) -> str | None:
        return self.params.get(name.lower())


def parse_auth(text: str) -> AuthParams:
    """Parse a challenge or credentials header value."""
    text = text.strip(WS)
    scheme, _sep, rest = text.partition(" ")
    if not is_token(scheme):
        raise SipParseError("Bad auth header: scheme")
    params: dict[str, str] = {}
    rest = rest.strip(WS)
    if rest:
        for piece in split_outside(rest, ","):
            name, eq, value = piece.partition("=")
            name = name.strip(WS)
            value = value.strip(WS)
            if not is_token(name) or not eq:
                raise SipParseError(f"Bad auth parameter: {piece.strip()[:40]!r}")
            if value.startswith('"'):
                content, end = parse_quoted(value)
                if end != len(value):
                    raise SipParseError(f"Bad auth parameter value for {name}")
                value = content
            elif not value or any(c in WS for c in value):
                raise SipParseError(f"Bad auth parameter value for {name}")
            params[name.lower()] = value
    return AuthParams(scheme, params)


_AUTH_UNQUOTED = frozenset({"algorithm", "qop", "nc", "stale"})


def format_auth(scheme: str, params: Iterable[tuple[str, str]], *, challenge: bool) -> str:
    """Serialise auth parameters; ``qop`` is quoted in a challenge and bare in credentials."""
    pieces: list[str] = []
    for name, value in params:
        bare = name in _AUTH_UNQUOTED and not (challenge and name == "qop")
        pieces.append(f"{name}={value}" if bare else f"{name}={quote(value)}")
    return f"{scheme} " + ", ".join(pieces)


__all__ = [
    "BRANCH_COOKIE",
    "MAX_CSEQ",
    "PARSE_CACHE",
    "AbsoluteUri",
    "AuthParams",
    "CSeq",
    "ContactStar",
    "NameAddr",
    "Params",
    "SipUri",
    "Uri",
    "Via",
    "escape",
    "format_auth",
    "format_hostport",
    "format_params",
    "get_param",
    "has_param",
    "is_token",
    "iter_tokens",
    "parse_auth",
    "parse_contacts",
    "parse_cseq",
    "parse_hostport",
    "parse_name_addr",
    "parse_params",
    "parse_quoted",
    "parse_sip_uri",
    "parse_uri",
    "parse_via",
    "quote",
    "set_param",
    "split_outside",
    "unescape",
    "unquote",
    "uri_equal",
]
