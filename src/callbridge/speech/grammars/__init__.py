"""Grammar catalogue and deterministic interpreters (h2b.md §9–§10), English first."""

from __future__ import annotations

from callbridge.speech.grammars.base import (
    EngineConstraint,
    Grammar,
    GrammarError,
    Interpretation,
    JsonValue,
    MatchKind,
    normalize,
)
from callbridge.speech.grammars.catalogue import CATALOGUE, load_grammar
from callbridge.speech.grammars.uri import GrammarRef, parse_grammar_uri, split_alternatives

__all__ = [
    "CATALOGUE",
    "EngineConstraint",
    "Grammar",
    "GrammarError",
    "GrammarRef",
    "Interpretation",
    "JsonValue",
    "MatchKind",
    "load_grammar",
    "normalize",
    "parse_grammar_uri",
    "split_alternatives",
]
