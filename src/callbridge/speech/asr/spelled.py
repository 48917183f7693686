"""A PocketSphinx check of the symbols Whisper confuses in spelled codes (decision 047).

After the spelled-code prompt ("Spelled code: A, B, C, one, two, three.") ``tiny.en`` often
writes the digit "eight" as the letter "A" ("J, W, A, nine, six" for "J, W, eight, nine,
six"); both are /eɪ/, "eight" adds a final /t/. Rescoring with Whisper cannot overturn it
(its teacher-forced scores rank the alternatives as its greedy decode did, decision 046), but a
PocketSphinx search that only has to choose, at each such position, between the letter and the
digit — every other symbol fixed to Whisper's reading — hears the /t/.

The search is a *confusion network* over Whisper's code: one JSGF word per symbol in order,
the symbols to re-check (:data:`SPHINX_CHECKS`) as an alternation of their choices, carrier
words around. The letter A is the dictionary word ``a.`` (CMUdict: ``EY`` only): the word
``a`` also has the article's schwa, which matches any short vowel.

The check is one-way because Whisper's error is: on the 192 spelled clips measured (the
corpus and a held-out set, decision 047; readings of the right length) every "eight" Whisper
wrote was right (16 of 16), while 22 of its 35 "A"s were an "eight". Letting PocketSphinx also
turn Whisper's "eight" into "A" broke two right codes of eSpeak voices. The other groups of
the spelled grammars' ``CONFUSABLE`` (checked both ways) broke at least as many right symbols
as they fixed (the E-set, f/s, m/n, j/k, r/4, q/u) or changed nothing (i/y).

This module is pure (no engine): :func:`confusion_jsgf` builds the search and
:func:`choose_code` applies its answer; :class:`~callbridge.speech.asr.sphinx.SphinxRecognizer`
runs it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from callbridge.speech.asr.base import Alternative, DecodeResult
from callbridge.speech.grammars.base import Grammar, MatchKind, jsgf
from callbridge.speech.grammars.spelled import CODE_CARRIER, spell

__all__ = ["SPHINX_CHECKS", "choose_code", "confusion_jsgf"]

#: Symbol of Whisper's reading -> the symbols PocketSphinx chooses between at its position
#: (decision 047: only Whisper's "A", which is often a spoken "eight").
SPHINX_CHECKS: Final = {"a": "a8"}
_DIGIT_NAMES: Final = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                       "nine")  # fmt: skip
#: The letter A as its name only (see the module docstring).
LETTER_A: Final = "a."
_SYMBOL_OF: Final = {
    **{name: str(i) for i, name in enumerate(_DIGIT_NAMES)},
    "oh": "0",
    LETTER_A: "a",
    **{c: c for c in "bcdefghijklmnopqrstuvwxyz"},
}
_CARRIER: Final = frozenset(CODE_CARRIER)


def _word(symbol: str) -> str:
    """The PocketSphinx word(s) of one code symbol."""
    if symbol == "0":
        return "( zero | oh )"
    if symbol.isdigit():
        return _DIGIT_NAMES[int(symbol)]
    return LETTER_A if symbol == "a" else symbol


def confusion_jsgf(code: str, checks: Mapping[str, str] = SPHINX_CHECKS) -> str | None:
    """A JSGF grammar that spells ``code`` (lower-case letters and digits) symbol by symbol,
    each symbol that ``checks`` maps replaced by the alternation of its choices, with
    :data:`CODE_CARRIER` words around; ``None`` when no symbol is to be checked (nothing to
    choose) or ``code`` has another character."""
    if not code or any(c not in _SYMBOL_OF.values() for c in code):
        return None
    if not any(c in checks for c in code):
        return None
    parts = []
    for c in code:
        choices = checks.get(c, "")
        parts.append("( " + " | ".join(_word(s) for s in choices) + " )" if choices else _word(c))
    return jsgf(" ".join(parts), carrier=CODE_CARRIER)


def choose_code(
    grammar: Grammar,
    reading: DecodeResult,
    code: str,
    heard: str,
    language: str = "en-US",
    checks: Mapping[str, str] = SPHINX_CHECKS,
) -> DecodeResult:
    """``reading`` (whose grammar value is ``code``) with the symbols PocketSphinx chose in
    the confusion network of ``code`` (``heard``, its transcript), when that changes the code
    and ``grammar`` accepts the result in full; otherwise ``reading`` unchanged. ``heard``
    must spell one symbol per symbol of ``code`` (carrier words aside), or it decides
    nothing. Only symbols that ``checks`` maps can change, to one of their choices. The new
    reading is written the way Whisper writes codes
    (:func:`~callbridge.speech.grammars.spelled.spell`), the old one follows in ``nbest``."""
    words = [w for w in heard.lower().split() if w not in _CARRIER]
    symbols = [_SYMBOL_OF.get(w) for w in words]
    if len(symbols) != len(code) or None in symbols:
        return reading
    chosen = "".join(
        s if s is not None and s in checks.get(c, "") else c
        for c, s in zip(code, symbols, strict=True)
    )
    if chosen == code:
        return reading
    text = spell(chosen)
    check = grammar.interpret(text, language)
    if check.kind is not MatchKind.FULL or check.value != chosen:
        return reading
    confidence = round(reading.confidence * 0.9, 3)
    nbest = (Alternative(text, confidence), Alternative(reading.transcript, reading.confidence))
    return DecodeResult(text, confidence, (), nbest)
