"""The grammar catalogue: builtin URIs to grammar instances (h2b.md §10)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Final

from callbridge.speech.grammars.base import Grammar, GrammarError
from callbridge.speech.grammars.simple import (
    BooleanGrammar,
    KeywordsGrammar,
    Text2NumGrammar,
    TranscribeGrammar,
)
from callbridge.speech.grammars.spelled import (
    DigitsGrammar,
    MixedSpellingGrammar,
    PhoneNumberGrammar,
    ZipcodeGrammar,
)
from callbridge.speech.grammars.structured import DateGrammar, PostalAddressGrammar
from callbridge.speech.grammars.uri import GrammarRef, parse_grammar_uri

__all__ = ["CATALOGUE", "load_grammar"]

_Builder = Callable[[GrammarRef], Grammar]

#: Builtin type → (accepted parameters, builder).
CATALOGUE: Final[Mapping[str, tuple[frozenset[str], _Builder]]] = {
    TranscribeGrammar.type: (frozenset(), lambda r: TranscribeGrammar(r.uri)),
    Text2NumGrammar.type: (frozenset(), lambda r: Text2NumGrammar(r.uri)),
    BooleanGrammar.type: (frozenset(), lambda r: BooleanGrammar(r.uri)),
    KeywordsGrammar.type: (
        frozenset({"alternatives"}),
        lambda r: KeywordsGrammar(r.uri, r.params.get("alternatives")),
    ),
    MixedSpellingGrammar.type: (
        frozenset({"regex"}),
        lambda r: MixedSpellingGrammar(r.uri, r.params.get("regex")),
    ),
    DigitsGrammar.type: (
        frozenset({"regex", "length"}),
        lambda r: DigitsGrammar(r.uri, r.params.get("regex"), r.params.get("length")),
    ),
    PhoneNumberGrammar.type: (frozenset(), lambda r: PhoneNumberGrammar(r.uri)),
    ZipcodeGrammar.type: (frozenset(), lambda r: ZipcodeGrammar(r.uri)),
    PostalAddressGrammar.type: (frozenset(), lambda r: PostalAddressGrammar(r.uri)),
    DateGrammar.type: (frozenset(), lambda r: DateGrammar(r.uri)),
}


def load_grammar(uri: str, aliases: Mapping[str, str] | None = None) -> Grammar:
    """The grammar of ``uri`` (``session:`` ids resolved through ``aliases``).

    Raises :class:`GrammarError` for unknown grammars and unknown or invalid parameters.
    """
    ref = parse_grammar_uri(uri, aliases)
    entry = CATALOGUE.get(ref.type)
    if entry is None:
        raise GrammarError(f"unknown grammar {ref.type!r}; known: {', '.join(sorted(CATALOGUE))}")
    accepted, build = entry
    unknown = set(ref.params) - accepted
    if unknown:
        raise GrammarError(
            f"grammar {ref.type} does not accept parameter(s) {', '.join(sorted(unknown))}"
        )
    return build(ref)
