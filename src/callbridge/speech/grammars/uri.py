"""Grammar URIs (h2b.md §9): ``builtin:<path>[?k=v[&k=v…]]`` and ``session:<id>`` aliases.

The uhlive SDK sends query strings unencoded (``regex=[a-z]{2}[0-9]{9}``,
``alternatives=a|b|arrêt``), so the parser splits on the first ``?``, then on ``&``, then on
the first ``=`` of each pair, and percent-decodes only well-formed ``%XX`` escapes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from callbridge.speech.grammars.base import GrammarError

__all__ = ["GrammarRef", "parse_grammar_uri", "split_alternatives"]

_PERCENT_RE: Final = re.compile(r"%([0-9a-fA-F]{2})")
#: Aliases of the free-speech grammar.
ALIASES: Final = {
    "builtin:grammar/none": "builtin:speech/transcribe",
    "builtin:speech/none": "builtin:speech/transcribe",
}
#: Longest accepted URI (characters).
MAX_URI_LENGTH: Final = 4096


@dataclass(frozen=True, slots=True)
class GrammarRef:
    """A parsed builtin grammar URI: ``type`` (URI without query) and its parameters."""

    uri: str
    type: str
    params: Mapping[str, str]

    @property
    def path(self) -> str:
        """The builtin path, e.g. ``speech/spelling/digits``."""
        return self.type.removeprefix("builtin:")


def _percent_decode(text: str) -> str:
    if "%" not in text:
        return text
    raw = _PERCENT_RE.sub(lambda m: f"\x00{m.group(1)}", text)
    out = bytearray()
    i = 0
    while i < len(raw):
        if raw[i] == "\x00":
            out.append(int(raw[i + 1 : i + 3], 16))
            i += 3
        else:
            out.extend(raw[i].encode())
            i += 1
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError:
        return text  # not percent-encoding after all: keep it verbatim


def parse_grammar_uri(uri: str, aliases: Mapping[str, str] | None = None) -> GrammarRef:
    """Parse ``uri``; ``session:<id>`` is resolved through ``aliases`` (id → builtin URI).

    Raises :class:`GrammarError` for an empty, overlong, unknown-scheme or unresolvable URI
    and for duplicate parameters.
    """
    if not isinstance(uri, str) or not uri.strip():
        raise GrammarError("empty grammar URI")
    if len(uri) > MAX_URI_LENGTH:
        raise GrammarError(f"grammar URI longer than {MAX_URI_LENGTH} characters")
    uri = uri.strip()
    if uri.startswith("session:"):
        content_id = uri.removeprefix("session:")
        target = (aliases or {}).get(content_id)
        if target is None:
            raise GrammarError(f"unknown session grammar alias {content_id!r}")
        if target.startswith("session:"):
            raise GrammarError(f"session alias {content_id!r} must resolve to a builtin URI")
        return parse_grammar_uri(target)
    if not uri.startswith("builtin:"):
        raise GrammarError(f"unsupported grammar URI {uri!r} (expected builtin:… or session:…)")
    base, sep, query = uri.partition("?")
    base = ALIASES.get(base, base)
    params: dict[str, str] = {}
    if sep and query:
        for pair in query.split("&"):
            if not pair:
                continue
            key, _, value = pair.partition("=")
            key = _percent_decode(key).strip()
            if not key:
                raise GrammarError(f"empty parameter name in grammar URI {uri!r}")
            if key in params:
                raise GrammarError(f"duplicate parameter {key!r} in grammar URI {uri!r}")
            params[key] = _percent_decode(value)
    return GrammarRef(uri, base, params)


def split_alternatives(text: str) -> list[str]:
    """Split a keyword list on unescaped ``|``; ``\\`` escapes the next character."""
    items: list[str] = []
    current: list[str] = []
    chars = iter(text)
    for ch in chars:
        if ch == "\\":
            current.append(next(chars, ""))
        elif ch == "|":
            items.append("".join(current))
            current = []
        else:
            current.append(ch)
    items.append("".join(current))
    return [item.strip() for item in items if item.strip()]
