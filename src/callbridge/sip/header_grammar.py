"""RFC 3261 header-field grammar primitives shared by the structured header parsers.

Character classes and ``token`` (RFC 3261 §25.1), ``%XX`` escaping and its comparison form
(§19.1.2, §19.1.4), quoted strings and splitting on separators outside quotes and ``<...>``
(§7.3.1), ``generic-param`` lists (§25.1), ``host [":" port]`` (§19.1.1, §25.1) and
comma-separated token lists (``Allow`` §20.5, ``Require`` §20.32, ``Supported`` §20.37).
Parsers take the *unfolded* header value and raise :class:`SipParseError` on anything the
grammar does not allow.

The structured values built from these (URIs, name-addr, Via, CSeq, contacts, auth
parameters) live in :mod:`callbridge.sip.headers`, which re-exports the public primitives it
defined before they moved here (everything but ``UNRESERVED``, ``WS``, ``check_chars`` and
``normalise_escapes``).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator

from callbridge.sip.errors import SipParseError

Params = tuple[tuple[str, str | None], ...]

# RFC 3261 §25.1 character classes.
_ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_MARK = "-_.!~*'()"
#: ``unreserved`` characters: never need escaping, and their escapes equal the characters.
UNRESERVED = frozenset(_ALNUM + _MARK)
_TOKEN = frozenset(_ALNUM + "-.!%*_+`'~")
_HOST_CHARS = frozenset(_ALNUM + "-.")
_ESCAPE_RE = re.compile(r"%([0-9A-Fa-f]{2})")
#: Linear white space left in an unfolded header value.
WS = " \t"


def is_token(text: str) -> bool:
    """True when ``text`` is a non-empty RFC 3261 ``token``."""
    return bool(text) and _TOKEN.issuperset(text)


def check_chars(text: str, allowed: frozenset[str], what: str) -> None:
    """Raise unless ``text`` uses only ``allowed`` characters and well-formed ``%XX`` escapes."""
    if allowed.issuperset(text) and "%" not in text:
        return  # the common case, checked in C
    for i, char in enumerate(text):
        if char not in allowed:
            raise SipParseError(f"Bad {what}: character {char!r}")
        if char == "%" and not _ESCAPE_RE.match(text, i):
            raise SipParseError(f"Bad {what}: broken %-escape")


def unescape(text: str) -> str:
    """Decode ``%XX`` escapes (RFC 3261 §19.1.2); bytes are read as UTF-8."""
    raw = _ESCAPE_RE.sub(lambda m: chr(int(m.group(1), 16) + 0xDC00), text)
    data = bytearray()
    for char in raw:
        code = ord(char)
        data.extend(bytes([code - 0xDC00]) if 0xDC00 <= code <= 0xDCFF else char.encode())
    return data.decode("utf-8", "surrogateescape")


def escape(text: str, allowed: frozenset[str]) -> str:
    """Escape every character of ``text`` outside ``allowed`` as ``%XX`` octets."""
    out: list[str] = []
    for char in text:
        if char in allowed and char != "%":
            out.append(char)
        else:
            out.extend(f"%{b:02X}" for b in char.encode("utf-8", "surrogateescape"))
    return "".join(out)


def normalise_escapes(text: str) -> str:
    """Canonical escaping for comparison (RFC 3261 §19.1.4).

    Escapes of unreserved characters are decoded, the others get upper-case hex.
    """

    def fix(match: re.Match[str]) -> str:
        char = chr(int(match.group(1), 16))
        return char if char in UNRESERVED else "%" + match.group(1).upper()

    return _ESCAPE_RE.sub(fix, text)


# ---------------------------------------------------------------------------------------------
# Splitting respecting quoted strings and <...>
# ---------------------------------------------------------------------------------------------


def split_outside(text: str, sep: str) -> list[str]:
    """Split ``text`` on ``sep`` outside quoted strings and ``<...>`` (RFC 3261 §7.3.1).

    A quoted string honours ``\\`` quoted-pairs. An unterminated quote raises.
    """
    if '"' not in text and "<" not in text:
        return text.split(sep)  # nothing to respect: the plain split is the same
    parts: list[str] = []
    current: list[str] = []
    in_quote = False
    in_angle = False
    i = 0
    while i < len(text):
        char = text[i]
        if in_quote:
            current.append(char)
            if char == "\\" and i + 1 < len(text):
                current.append(text[i + 1])
                i += 1
            elif char == '"':
                in_quote = False
        elif char == '"':
            in_quote = True
            current.append(char)
        elif char == "<" and not in_angle:
            in_angle = True
            current.append(char)
        elif char == ">" and in_angle:
            in_angle = False
            current.append(char)
        elif char == sep and not in_angle:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
        i += 1
    if in_quote:
        raise SipParseError("Unbalanced quotes")
    parts.append("".join(current))
    return parts


def parse_quoted(text: str, start: int = 0) -> tuple[str, int]:
    """Parse a quoted-string at ``text[start]``; return (unquoted content, index after it)."""
    if start >= len(text) or text[start] != '"':
        raise SipParseError("Expected quoted string")
    out: list[str] = []
    i = start + 1
    while i < len(text):
        char = text[i]
        if char == "\\":
            if i + 1 >= len(text) or text[i + 1] in "\r\n":
                raise SipParseError("Bad quoted-pair")
            out.append(text[i + 1])
            i += 2
            continue
        if char == '"':
            return "".join(out), i + 1
        out.append(char)
        i += 1
    raise SipParseError("Unbalanced quotes")


def quote(text: str) -> str:
    """Quote ``text`` as a quoted-string, escaping ``"`` and ``\\``."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def unquote(value: str | None) -> str | None:
    """The content of a parameter value, without surrounding quotes when it was quoted."""
    if value is None or not value.startswith('"'):
        return value
    content, end = parse_quoted(value)
    return content if end == len(value) else value


# ---------------------------------------------------------------------------------------------
# Generic parameters
# ---------------------------------------------------------------------------------------------


def parse_params(text: str, what: str = "parameter") -> Params:
    """Parse ``*( SEMI generic-param )`` (RFC 3261 §25.1); ``text`` starts after the first ``;``.

    Names are tokens; values are tokens, hosts or quoted strings (kept with their quotes).
    LWS around ``;`` and ``=`` is allowed; empty parameters are not.
    """
    params: list[tuple[str, str | None]] = []
    for piece in split_outside(text, ";"):
        name, eq, value = piece.partition("=")
        name = name.strip(WS)
        if not is_token(name):
            raise SipParseError(f"Bad {what}: {piece.strip(WS)!r}")
        if not eq:
            params.append((name, None))
            continue
        value = value.strip(WS)
        if value.startswith('"'):
            _content, end = parse_quoted(value)
            if end != len(value):
                raise SipParseError(f"Bad {what} value for {name}")
        elif not value or not all(c in _TOKEN or c in "[]:" for c in value):
            raise SipParseError(f"Bad {what} value for {name}")
        params.append((name, value))
    return tuple(params)


def format_params(params: Params) -> str:
    """Serialise parameters as ``;name=value`` pairs."""
    return "".join(f";{n}" if v is None else f";{n}={v}" for n, v in params)


def get_param(params: Params, name: str) -> str | None:
    """Value of the first parameter called ``name`` (case-insensitive); ``""`` when valueless."""
    lname = name.lower()
    for n, v in params:
        if n.lower() == lname:
            return "" if v is None else v
    return None


def has_param(params: Params, name: str) -> bool:
    lname = name.lower()
    return any(n.lower() == lname for n, _ in params)


def set_param(params: Params, name: str, value: str | None) -> Params:
    """Replace (in place) or append parameter ``name``."""
    lname = name.lower()
    out = list(params)
    for i, (n, _v) in enumerate(out):
        if n.lower() == lname:
            out[i] = (n, value)
            return tuple(out)
    out.append((name, value))
    return tuple(out)


# ---------------------------------------------------------------------------------------------
# Host and port
# ---------------------------------------------------------------------------------------------


def parse_hostport(text: str, what: str = "host") -> tuple[str, int | None]:
    """Parse ``host [ ":" port ]``; hosts are names, IPv4 addresses or ``[IPv6]`` references."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise SipParseError(f"Bad {what}: unterminated IPv6 reference")
        host = text[: end + 1]
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError as exc:
            raise SipParseError(f"Bad {what}: invalid IPv6 reference") from exc
        rest = text[end + 1 :]
    else:
        host, sep, port_text = text.partition(":")
        rest = sep + port_text
        if not host or not all(c in _HOST_CHARS for c in host):
            raise SipParseError(f"Bad {what}: {text!r}")
    if not rest:
        return host, None
    if not rest.startswith(":") or not rest[1:].isdigit() or len(rest) > 6:
        raise SipParseError(f"Bad {what} port: {text!r}")
    port = int(rest[1:])
    if port > 65535:
        raise SipParseError(f"Bad {what} port: {port}")
    return host, port


def format_hostport(host: str, port: int | None) -> str:
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return host if port is None else f"{host}:{port}"


# ---------------------------------------------------------------------------------------------
# Comma-separated token lists
# ---------------------------------------------------------------------------------------------


def iter_tokens(text: str) -> Iterator[str]:
    """Comma-separated tokens (``Require``, ``Supported``, ``Allow``), stripped, non-empty."""
    for piece in text.split(","):
        piece = piece.strip(WS)
        if piece:
            yield piece
