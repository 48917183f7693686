"""English spoken-form lexicon: digit and number words, ordinals, spelled letters.

:func:`read_spoken` turns normalised tokens into a sequence of :class:`Piece`: numbers (with
the digit string the speaker meant), letters, and other words. Rules, chosen for spelled
codes and telephone numbers rather than for arithmetic:

* a unit after a unit starts a new number ("four five" → ``4``, ``5``);
* a unit after a bare tens word completes it ("forty two" → ``42``);
* a tens word after any number starts a new one ("nineteen eighty four" → ``19``, ``84``);
* ``hundred``/``thousand`` multiply the number so far ("one hundred thirty seven" → ``137``,
  "seventy two thousand" → ``72000``); ``and`` inside such a number is skipped;
* ``double``/``triple`` repeat the next digit; ``oh`` is zero next to other digits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal

__all__ = ["LETTER_WORDS", "ORDINALS", "Piece", "read_spoken"]

UNITS: Final = {
    "zero": 0, "oh": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
    "seven": 7, "eight": 8, "nine": 9,
}  # fmt: skip
TEENS: Final = {
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
    "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19,
}  # fmt: skip
TENS: Final = {
    "twenty": 20, "thirty": 30, "forty": 40, "fourty": 40, "fifty": 50, "sixty": 60,
    "seventy": 70, "eighty": 80, "ninety": 90,
}  # fmt: skip
ORDINALS: Final = {
    "first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7,
    "eighth": 8, "ninth": 9, "tenth": 10, "eleventh": 11, "twelfth": 12, "thirteenth": 13,
    "fourteenth": 14, "fifteenth": 15, "sixteenth": 16, "seventeenth": 17, "eighteenth": 18,
    "nineteenth": 19, "twentieth": 20, "thirtieth": 30,
}  # fmt: skip
MULTIPLIERS: Final = {"hundred": 100, "thousand": 1000}
REPEATERS: Final = {"double": 2, "triple": 3}
LETTER_WORDS: Final = {
    "alpha": "a", "alfa": "a", "bravo": "b", "charlie": "c", "delta": "d", "echo": "e",
    "foxtrot": "f", "golf": "g", "hotel": "h", "india": "i", "juliet": "j", "juliett": "j",
    "kilo": "k", "lima": "l", "mike": "m", "november": "n", "oscar": "o", "papa": "p",
    "quebec": "q", "romeo": "r", "sierra": "s", "tango": "t", "uniform": "u", "victor": "v",
    "whiskey": "w", "xray": "x", "yankee": "y", "zulu": "z",
    "bee": "b", "be": "b", "cee": "c", "see": "c", "sea": "c", "dee": "d", "gee": "g",
    "jay": "j", "kay": "k", "el": "l", "ell": "l", "em": "m", "en": "n", "pee": "p",
    "cue": "q", "queue": "q", "are": "r", "ar": "r", "ess": "s", "tee": "t", "tea": "t",
    "vee": "v", "ex": "x", "why": "y", "zed": "z", "zee": "z", "aitch": "h",
}  # fmt: skip
_CONJUNCTIONS: Final = frozenset({"and"})
_ORDINAL_DIGITS_RE: Final = re.compile(r"^(\d+)(st|nd|rd|th)$")


@dataclass(frozen=True, slots=True)
class Piece:
    """One element of a spoken sequence.

    ``kind`` is ``number`` (``text`` holds the digits as spoken, ``value`` the integer,
    ``ordinal`` set for "fifth"/"5th"), ``letter`` (``text`` is one lower-case letter) or
    ``word`` (anything else, ``text`` is the token). ``start``/``end`` index the tokens.
    """

    kind: Literal["number", "letter", "word"]
    text: str
    value: int = 0
    ordinal: bool = False
    start: int = 0
    end: int = 0


class _NumberBuilder:
    """Accumulates one spoken number (see the module rules)."""

    def __init__(self, start: int) -> None:
        self.start = start
        self.total = 0  # completed thousands part
        self.current = 0  # below-thousand part
        self.last: str = ""  # category of the last token: unit/teen/tens/hundred/thousand
        self.ordinal = False

    def accepts(self, category: str) -> bool:
        if self.ordinal:
            return False
        last = self.last
        if category == "unit":
            return last in ("tens", "hundred", "thousand")
        if category == "teen" or category == "tens":
            return last in ("hundred", "thousand")
        if category == "hundred":
            return last in ("unit", "teen", "tens") and self.current < 100
        if category == "thousand":
            return last in ("unit", "teen", "tens", "hundred") and self.total == 0
        return False

    def add(self, category: str, value: int, index: int) -> None:
        if category == "hundred":
            self.current *= 100
        elif category == "thousand":
            self.total = (self.total + self.current) * 1000
            self.current = 0
        else:
            self.current += value
        self.last = category
        self.end = index + 1

    def piece(self) -> Piece:
        value = self.total + self.current
        return Piece("number", str(value), value, self.ordinal, self.start, self.end)


def _category(token: str) -> tuple[str, int, bool] | None:
    if token in UNITS:
        return "unit", UNITS[token], False
    if token in TEENS:
        return "teen", TEENS[token], False
    if token in TENS:
        return "tens", TENS[token], False
    if token in MULTIPLIERS:
        kind = "hundred" if MULTIPLIERS[token] == 100 else "thousand"
        return kind, MULTIPLIERS[token], False
    if token in ORDINALS:
        value = ORDINALS[token]
        return ("unit" if value < 10 else "teen" if value < 20 else "tens"), value, True
    return None


def read_spoken(words: list[str]) -> list[Piece]:
    """Read normalised tokens into numbers, letters and other words (see module rules)."""
    pieces: list[Piece] = []
    builder: _NumberBuilder | None = None
    repeat = 1

    def close() -> None:
        nonlocal builder
        if builder is not None:
            pieces.append(builder.piece())
            builder = None

    for index, token in enumerate(words):
        if token in REPEATERS:
            close()
            repeat = REPEATERS[token]
            continue
        digits_match = _ORDINAL_DIGITS_RE.match(token)
        if token.isdigit() or digits_match:
            close()
            text = digits_match.group(1) if digits_match else token
            for _ in range(repeat):
                pieces.append(
                    Piece("number", text, int(text), bool(digits_match), index, index + 1)
                )
            repeat = 1
            continue
        cat = _category(token)
        if cat is None:
            if (
                token in _CONJUNCTIONS
                and builder is not None
                and builder.last in ("hundred", "thousand")
            ):
                continue
            close()
            if repeat > 1 and token in ("u", "you"):  # "double u"
                pieces.append(Piece("letter", "w", 0, False, index - 1, index + 1))
            elif len(token) == 1 and token.isalpha():
                pieces.extend([Piece("letter", token, 0, False, index, index + 1)] * repeat)
            elif token in LETTER_WORDS:
                pieces.extend(
                    [Piece("letter", LETTER_WORDS[token], 0, False, index, index + 1)] * repeat
                )
            else:
                pieces.append(Piece("word", token, 0, False, index, index + 1))
            repeat = 1
            continue
        category, value, ordinal = cat
        if repeat > 1 and category == "unit":
            close()
            for _ in range(repeat):
                pieces.append(Piece("number", str(value), value, False, index, index + 1))
            repeat = 1
            continue
        repeat = 1
        if builder is not None and builder.accepts(category):
            builder.add(category, value, index)
        else:
            close()
            if category in ("hundred", "thousand"):  # a bare "hundred" means one hundred
                builder = _NumberBuilder(index)
                builder.add("unit", 1, index)
            else:
                builder = _NumberBuilder(index)
            builder.add(category, value, index)
        if ordinal:
            builder.ordinal = True
            close()
    close()
    return pieces
