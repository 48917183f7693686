"""Spelled codes: digits, letters and digits, telephone numbers, postal codes (h2b.md §10)."""

from __future__ import annotations

import itertools
import re
import warnings
from collections.abc import Callable
from typing import Final

from callbridge.speech.grammars.base import (
    EngineConstraint,
    Grammar,
    GrammarError,
    Interpretation,
    MatchKind,
    jsgf,
    tokens,
)
from callbridge.speech.grammars.words import Piece, read_spoken

__all__ = ["DigitsGrammar", "MixedSpellingGrammar", "PhoneNumberGrammar", "ZipcodeGrammar"]

#: Words that may surround a spelled code without changing it.
FILLERS: Final = frozenset(
    [
        "uh",
        "um",
        "er",
        "ah",
        "well",
        "so",
        "my",
        "the",
        "a",
        "an",
        "number",
        "code",
        "is",
        "it's",
        "it",
        "is",
        "that's",
        "that",
        "was",
        "and",
        "then",
        "please",
        "its",
        "zip",
        "postcode",
        "postal",
        "phone",
        "telephone",
        "call",
        "me",
        "at",
        "on",
        "reference",
        "i",
        "think",
        "thank",
        "thanks",
        "you",
        "ok",
        "okay",
        "yes",
        "yeah",
        "sure",
    ]
)
_DIGIT_WORDS: Final = "zero | oh | one | two | three | four | five | six | seven | eight | nine"
#: Carrier words PocketSphinx may put around a spoken code (a subset of :data:`FILLERS`, so
#: the interpreter reads the decoder's output; no digit homophones such as "oh", "to", "for"
#: or "a"). Kept short: each word costs search time (27 words: 165 ms per digits clip, these
#: 8: 87 ms, none: 65 ms; same accuracy as 27 on the clips measured, decision 043).
CODE_CARRIER: Final = ("my", "code", "number", "is", "it's", "the", "uh", "um")
#: Carrier words a vocabulary-constrained Whisper pass may write around a code (no search
#: cost there; also a subset of :data:`FILLERS`).
_CODE_WORDS: Final = (
    *CODE_CARRIER, "er", "well", "so", "it", "its", "that's", "that", "was", "please", "zip",
    "postal", "phone", "reference", "thank", "you", "thanks", "okay", "yes", "sure",
)  # fmt: skip
#: Whisper prompts (its "previous text"): they set the style Whisper writes a code in. Without
#: one, tiny.en writes digit strings as numerals it groups and merges ("two one seven seven one"
#: -> "2 110 and 10 and 1"); after a prompt of spelled digits it spells them (decision 043).
DIGITS_PROMPT: Final = "Spoken digits: one two three four five six."
SPELLING_PROMPT: Final = "Spelled code: A, B, C, one, two, three."
_DIGIT_VOCABULARY: Final = tuple(_DIGIT_WORDS.split(" | "))
#: Vocabulary of a constrained decode of a digit string / a spelled code.
DIGITS_VOCABULARY: Final = (*_DIGIT_VOCABULARY, *_CODE_WORDS)
SPELLING_VOCABULARY: Final = (*_DIGIT_VOCABULARY, *"ABCDEFGHIJKLMNOPQRSTUVWXYZ", *_CODE_WORDS)
_LETTERS: Final = " | ".join("abcdefghijklmnopqrstuvwxyz")
#: Longest regex accepted in a URI parameter.
_MAX_REGEX: Final = 512


#: Symbols whose spoken names telephone-band ASR confuses (letter names of the E-set, "eight"
#: and "A", "four" and "R", ...; decisions 043 and 046). A spelled code that fails its regex
#: is repaired by swapping symbols within one of these groups.
CONFUSABLE: Final = ("a8jk", "bcdegptvz", "mn", "fsx", "r4", "iy", "o0", "qu")
_CONFUSED: Final = {c: group.replace(c, "") for group in CONFUSABLE for c in group}
_SPOKEN_DIGITS: Final = tuple(w for w in _DIGIT_WORDS.split(" | ") if w != "oh")
#: Most repairs proposed for one reading (each costs about a short decode to score).
MAX_REPAIRS: Final = 12


def spell(code: str) -> str:
    """A code written the way Whisper writes it after :data:`SPELLING_PROMPT` ("kw896" ->
    "K, W, eight, nine, six.")."""
    return ", ".join(_SPOKEN_DIGITS[int(c)] if c.isdigit() else c.upper() for c in code) + "."


def confusion_repairs(
    code: str, accepts: Callable[[str], bool], limit: int = MAX_REPAIRS
) -> list[str]:
    """Codes ``accepts`` takes that differ from ``code`` by swapping confusable symbols: all
    single swaps first, then pairs, at most ``limit`` (in position order)."""
    found: list[str] = []
    singles = [(i, alt) for i, c in enumerate(code) for alt in _CONFUSED.get(c, "")]
    for i, alt in singles:
        candidate = code[:i] + alt + code[i + 1 :]
        if accepts(candidate):
            found.append(candidate)
    if not found:
        for (i, a), (j, b) in itertools.combinations(singles, 2):
            if i == j:
                continue
            chars = list(code)
            chars[i], chars[j] = a, b
            if accepts("".join(chars)):
                found.append("".join(chars))
            if len(found) >= limit:
                break
    return found[:limit]


def _compile(regex: str | None) -> re.Pattern[str] | None:
    if regex is None or regex == "":
        return None
    if len(regex) > _MAX_REGEX:
        raise GrammarError(f"regex parameter longer than {_MAX_REGEX} characters")
    try:
        return re.compile(regex)
    except re.error as exc:
        raise GrammarError(f"invalid regex parameter {regex!r}: {exc}") from exc


#: Whisper's spellings of digit words it mishears in digit strings ("for five one to").
_DIGIT_HOMOPHONES: Final = {"for": "four", "fore": "four", "to": "two", "too": "two"}
_MIXED_TOKEN_RE: Final = re.compile(r"(?=[a-z]*\d)(?=\d*[a-z])[a-z\d]+")
_ORDINAL_RE: Final = re.compile(r"\d+(st|nd|rd|th)")
_CAPS_RE: Final = re.compile(r"\b[A-Z]{2,8}\b")
_NOT_SPELLED: Final = frozenset({"OK", "ID", "PIN", "US", "USA", "UK", "AM", "PM"})


def _digit_like(token: str) -> bool:
    return token.isdigit() or token in _DIGIT_WORDS.split(" | ")


def code_tokens(transcript: str, *, letters: bool) -> list[str]:
    """Tokens of a spoken code as Whisper writes it, normalised for :func:`read_spoken`:

    * letters run together with digits are split ("AB12" → ``a b 1 2``), and with
      ``letters`` so are short all-capital words ("ABC" → ``a b c``);
    * "for"/"to" (and "fore"/"too") next to a digit are the digits four and two.
    """
    if letters:
        transcript = _CAPS_RE.sub(
            lambda m: m.group(0) if m.group(0) in _NOT_SPELLED else " ".join(m.group(0)),
            transcript,
        )
    out: list[str] = []
    for token in tokens(transcript):
        if _MIXED_TOKEN_RE.fullmatch(token) and not _ORDINAL_RE.fullmatch(token):
            out.extend(re.findall(r"\d+|[a-z]", token))
        else:
            out.append(token)
    for i, token in enumerate(out):
        if token in _DIGIT_HOMOPHONES and (
            (i > 0 and _digit_like(out[i - 1])) or (i + 1 < len(out) and _digit_like(out[i + 1]))
        ):
            out[i] = _DIGIT_HOMOPHONES[token]
    return out


def _spelled(pieces: list[Piece], *, letters: bool) -> tuple[str, int, int]:
    """(code, code words, unexplained words) of the pieces; a number counts as many words
    as it has digits ("4512" was four spoken digits), at least as many as it had tokens."""
    out: list[str] = []
    used = 0
    unexplained = 0
    for piece in pieces:
        span = piece.end - piece.start
        if piece.kind == "number" or (piece.kind == "letter" and letters):
            out.append(piece.text)
            used += max(span, len(piece.text)) if piece.kind == "number" else span
        elif piece.text not in FILLERS:
            unexplained += span
    return "".join(out), used, unexplained


def _confidence(used: int, unexplained: int) -> float:
    # Callers reject a transcript with more unexplained words than code words (a sentence
    # with a stray "I" or "a" is not a spelled code), so this stays within [1/3, 1].
    return 1.0 if not unexplained else max(0.3, used / (used + 2 * unexplained))


class DigitsGrammar(Grammar):
    """Digits only; ``regex`` or ``length`` constrains the digit string."""

    type = "builtin:speech/spelling/digits"

    def __init__(self, uri: str, regex: str | None = None, length: str | None = None) -> None:
        super().__init__(uri)
        self.regex = _compile(regex)
        self.length: int | None = None
        if length:
            if not length.isdigit() or not 1 <= int(length) <= 64:
                raise GrammarError(f"length parameter must be an integer 1..64, got {length!r}")
            self.length = int(length)

    def _accepts(self, code: str) -> bool:
        if self.length is not None and len(code) != self.length:
            return False
        return self.regex is None or self.regex.fullmatch(code) is not None

    def interpret(self, transcript: str, language: str = "en-US") -> Interpretation:
        self.check_language(language)
        code, used, unexplained = _spelled(
            read_spoken(code_tokens(transcript, letters=False)), letters=False
        )
        if not code or unexplained > used:
            return self.no_match(transcript)
        conf = _confidence(used, unexplained)
        if self._accepts(code):
            return self.result(MatchKind.FULL, code, conf, transcript)
        return self.result(MatchKind.PARTIAL, code, conf * 0.5, transcript)

    def constraint(self, language: str = "en-US") -> EngineConstraint:
        self.check_language(language)
        body = " ".join(["<digit>"] * self.length) if self.length else "<digit>+"
        grammar = jsgf(body, [f"<digit> = {_DIGIT_WORDS};"], carrier=CODE_CARRIER)
        return EngineConstraint(grammar, prompt=DIGITS_PROMPT, vocabulary=DIGITS_VOCABULARY)


class MixedSpellingGrammar(Grammar):
    """Spelled letters and digits; the value is lower case without spaces matching ``regex``."""

    type = "builtin:speech/spelling/mixed"

    def __init__(self, uri: str, regex: str | None = None) -> None:
        super().__init__(uri)
        self.regex = _compile(regex)

    def interpret(self, transcript: str, language: str = "en-US") -> Interpretation:
        self.check_language(language)
        code, used, unexplained = _spelled(
            read_spoken(code_tokens(transcript, letters=True)), letters=True
        )
        if not code or unexplained > used:
            return self.no_match(transcript)
        conf = _confidence(used, unexplained)
        if self.regex is None or self.regex.fullmatch(code):
            return self.result(MatchKind.FULL, code, conf, transcript)
        # "o" and "0" sound alike: retry with the reading the regex wants.
        for a, b in (("o", "0"), ("0", "o")):
            alt = code.replace(a, b)
            if self.regex.fullmatch(alt):
                return self.result(MatchKind.FULL, alt, conf * 0.9, transcript)
        return self.result(MatchKind.PARTIAL, code, conf * 0.5, transcript)

    def repairs(self, transcript: str, language: str = "en-US") -> tuple[str, ...]:
        """With a ``regex``: a partial reading's code with confusable symbols swapped so that
        the regex accepts it (:func:`confusion_repairs`), spelled as Whisper writes codes."""
        reading = self.interpret(transcript, language)
        regex = self.regex
        if (
            regex is None
            or reading.kind is not MatchKind.PARTIAL
            or not isinstance(reading.value, str)
        ):
            return ()
        fixes = confusion_repairs(reading.value, lambda c: regex.fullmatch(c) is not None)
        return tuple(spell(code) for code in fixes)

    def constraint(self, language: str = "en-US") -> EngineConstraint:
        self.check_language(language)
        rules = [f"<digit> = {_DIGIT_WORDS};", f"<letter> = {_LETTERS};"]
        grammar = jsgf("( <letter> | <digit> )+", rules, carrier=CODE_CARRIER)
        return EngineConstraint(grammar, prompt=SPELLING_PROMPT, vocabulary=SPELLING_VOCABULARY)


class PhoneNumberGrammar(Grammar):
    """A telephone number in E.164; the country comes from the language's region."""

    type = "builtin:speech/spelling/phone_number"
    languages = frozenset({"en", "fr", "es", "de"})

    def interpret(self, transcript: str, language: str = "en-US") -> Interpretation:
        _, region = self.check_language(language)
        words = tokens(transcript)
        plus = any(w in ("plus", "+") for w in words) or transcript.strip().startswith("+")
        code, used, unexplained = _spelled(
            read_spoken([w.lstrip("+") for w in words if w not in ("plus", "+")]), letters=False
        )
        if not code:
            return self.no_match(transcript)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import phonenumbers
        try:
            number = phonenumbers.parse(("+" if plus else "") + code, region)
        except phonenumbers.NumberParseException:
            return self.result(MatchKind.PARTIAL, code, 0.2, transcript)
        e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
        conf = _confidence(used, unexplained)
        if phonenumbers.is_valid_number(number):
            return self.result(MatchKind.FULL, e164, conf, transcript)
        return self.result(MatchKind.PARTIAL, e164, conf * 0.5, transcript)

    def constraint(self, language: str = "en-US") -> EngineConstraint:
        self.check_language(language)
        grammar = jsgf("[ plus ] <digit>+", [f"<digit> = {_DIGIT_WORDS};"], carrier=CODE_CARRIER)
        return EngineConstraint(grammar, prompt=DIGITS_PROMPT, vocabulary=DIGITS_VOCABULARY)


#: Postal code shapes per region (digits as spoken, separators removed).
_ZIP_PATTERNS: Final = {
    "US": re.compile(r"\d{5}(\d{4})?"),
    "FR": re.compile(r"\d{5}"),
    "DE": re.compile(r"\d{5}"),
    "ES": re.compile(r"\d{5}"),
    "BE": re.compile(r"\d{4}"),
    "CH": re.compile(r"\d{4}"),
}
_ZIP_DEFAULT: Final = re.compile(r"\d{4,6}")


def zip_pattern(region: str) -> re.Pattern[str]:
    """The postal code pattern of a region (4–6 digits where unknown)."""
    return _ZIP_PATTERNS.get(region, _ZIP_DEFAULT)


class ZipcodeGrammar(Grammar):
    """A postal code of the language's region, as a digit string."""

    type = "builtin:speech/zipcode"
    languages = frozenset({"en", "fr", "es", "de"})

    def interpret(self, transcript: str, language: str = "en-US") -> Interpretation:
        _, region = self.check_language(language)
        code, used, unexplained = _spelled(
            read_spoken(code_tokens(transcript, letters=False)), letters=False
        )
        if not code or unexplained > used:
            return self.no_match(transcript)
        conf = _confidence(used, unexplained)
        if zip_pattern(region).fullmatch(code):
            return self.result(MatchKind.FULL, code, conf, transcript)
        return self.result(MatchKind.PARTIAL, code, conf * 0.5, transcript)

    def constraint(self, language: str = "en-US") -> EngineConstraint:
        self.check_language(language)
        grammar = jsgf("<digit>+", [f"<digit> = {_DIGIT_WORDS};"], carrier=CODE_CARRIER)
        return EngineConstraint(grammar, prompt=DIGITS_PROMPT, vocabulary=DIGITS_VOCABULARY)
