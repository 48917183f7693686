"""Grammar interface: a transcript interpreter plus the engine constraint it can express.

Every grammar of the catalogue (:mod:`.catalogue`) is deterministic: the same transcript and
language give the same :class:`Interpretation`. The match kind is explicit, because the H2B
face reports ``Match``, ``PartialMatch`` and ``NoMatch`` differently (h2b.md §5, §10).
"""

from __future__ import annotations

import enum
import re
import unicodedata
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, TypeAlias

__all__ = [
    "EngineConstraint",
    "Grammar",
    "GrammarError",
    "Interpretation",
    "JsonValue",
    "MatchKind",
    "normalize",
    "region_of",
    "tokens",
]

JsonValue: TypeAlias = (
    str | int | float | bool | Sequence["JsonValue"] | Mapping[str, "JsonValue"] | None
)


class GrammarError(ValueError):
    """A grammar URI or parameter is invalid, unknown, or unsupported for the language."""


class MatchKind(enum.StrEnum):
    """How much of the grammar a transcript satisfied."""

    FULL = "full"
    PARTIAL = "partial"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class Interpretation:
    """The value a grammar extracted from a transcript.

    ``type`` is the grammar's builtin URI without its query (H2B ``nlu.type``); ``value`` has
    the shape of h2b.md §10; ``confidence`` is in [0, 1] (0 for no match).
    """

    type: str
    kind: MatchKind
    value: JsonValue
    confidence: float
    transcript: str

    @property
    def matched(self) -> bool:
        """True for a full or partial match."""
        return self.kind is not MatchKind.NONE


@dataclass(frozen=True, slots=True)
class EngineConstraint:
    """What a grammar can tell a constrained engine.

    ``jsgf`` is a complete JSGF 1.0 grammar (public rule ``<main>``) or ``None`` when the
    grammar is free speech; ``keyphrases`` are phrases for keyword spotting or decoder
    biasing (Whisper hot words); ``prompt`` is a short text in the style the grammar
    expects (digits spelled out as words, letters as capitals), given to Whisper as its
    previous-text prompt so that it writes the utterance the way the interpreter reads it
    best (decision 043); ``vocabulary`` bounds what a constrained Whisper pass may write.
    """

    jsgf: str | None = None
    keyphrases: tuple[str, ...] = field(default=())
    prompt: str | None = None
    #: Words a vocabulary-constrained decoder may write (payload and carrier words); empty
    #: when the grammar cannot bound its vocabulary.
    vocabulary: tuple[str, ...] = field(default=())
    #: Canonical answers of a closed-set grammar, written as a speaker would say them alone
    #: ("Yes.", "Technical support."); empty for open grammars (codes, dates, free speech).
    answers: tuple[str, ...] = field(default=())

    @property
    def free(self) -> bool:
        """True when the engine should decode free speech."""
        return self.jsgf is None


_LANG_RE: Final = re.compile(r"^([a-zA-Z]{2,3})(?:[-_]([a-zA-Z]{2}|\d{3}))?$")
_DEFAULT_REGION: Final = {"en": "US", "fr": "FR", "es": "ES", "de": "DE", "it": "IT", "pt": "PT"}


def region_of(language: str) -> tuple[str, str]:
    """Split ``en-US``/``fr``/``fr_BE`` into (``en``, ``US``), defaulting the region.

    Raises :class:`GrammarError` for a malformed tag.
    """
    match = _LANG_RE.match(language.strip())
    if match is None:
        raise GrammarError(f"malformed language tag {language!r} (expected e.g. 'en-US')")
    lang = match.group(1).lower()
    region = (match.group(2) or _DEFAULT_REGION.get(lang, "")).upper()
    return lang, region


_PUNCT_RE: Final = re.compile(r"[^\w'+/]+")


def normalize(text: str) -> str:
    """Lower-case, NFC, hyphens and punctuation to spaces (apostrophes, ``+`` and ``/`` kept)."""
    text = unicodedata.normalize("NFC", text).lower()
    text = text.replace("’", "'")
    text = _PUNCT_RE.sub(" ", text)
    # Drop apostrophes that do not join two letters ("'yes'" -> "yes", "it's" stays).
    text = re.sub(r"(?<!\w)'|'(?!\w)", " ", text)
    text = re.sub(r"(?<=\d)/(?!\d)|(?<!\d)/", " ", text)
    return " ".join(text.split())


def tokens(text: str) -> list[str]:
    """The normalised words of ``text``."""
    return normalize(text).split()


class Grammar(ABC):
    """A grammar of the catalogue, bound to its URI parameters."""

    #: Builtin URI without the query, e.g. ``builtin:speech/boolean``.
    type: str = ""
    #: Primary language subtags the interpreter supports.
    languages: frozenset[str] = frozenset({"en"})

    def __init__(self, uri: str) -> None:
        self.uri = uri

    def check_language(self, language: str) -> tuple[str, str]:
        """Return (language, region) or raise :class:`GrammarError` if unsupported."""
        lang, region = region_of(language)
        if lang not in self.languages:
            raise GrammarError(
                f"grammar {self.type} does not support language {language!r} "
                f"(supported: {', '.join(sorted(self.languages))})"
            )
        return lang, region

    @abstractmethod
    def interpret(self, transcript: str, language: str = "en-US") -> Interpretation:
        """Interpret ``transcript``; never raises for any transcript text."""

    def constraint(self, language: str = "en-US") -> EngineConstraint:
        """The engine constraint this grammar can express (free speech by default)."""
        self.check_language(language)
        return EngineConstraint()

    def repairs(self, transcript: str, language: str = "en-US") -> tuple[str, ...]:
        """Readings of ``transcript`` that a decoder may have misheard into it and that this
        grammar would accept in full, written as a decoder writes them (for candidate
        scoring, decision 046); empty when the grammar has none (the default)."""
        return ()

    def result(
        self, kind: MatchKind, value: JsonValue, confidence: float, text: str
    ) -> Interpretation:
        """Build an :class:`Interpretation` of this grammar."""
        conf = 0.0 if kind is MatchKind.NONE else max(0.0, min(1.0, confidence))
        return Interpretation(self.type, kind, value, round(conf, 3), text)

    def no_match(self, text: str) -> Interpretation:
        """A :attr:`MatchKind.NONE` interpretation."""
        return Interpretation(self.type, MatchKind.NONE, None, 0.0, text)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r})"


def jsgf(body: str, extra_rules: Sequence[str] = (), *, carrier: Sequence[str] = ()) -> str:
    """A JSGF 1.0 grammar whose public rule ``<main>`` is ``body``.

    With ``carrier`` words, any number of them may come before and after ``body`` (rule
    ``<carrier>``): callers wrap answers in phrases ("it's …", "my code is …", "… thank
    you") and a bare ``body`` forces a constrained decoder to spell those words as payload.
    The payload stays mandatory, so the search still always yields an in-grammar value.
    """
    rules = "".join(f"{rule}\n" for rule in extra_rules)
    if carrier:
        words = " | ".join(dict.fromkeys(carrier))
        body = f"<carrier>* ( {body} ) <carrier>*"
        rules += f"<carrier> = {words};\n"
    return f"#JSGF V1.0;\ngrammar callbridge;\npublic <main> = {body};\n{rules}"
