"""Structured values: postal addresses and calendar dates (h2b.md §10)."""

from __future__ import annotations

import calendar
import re
from typing import Final

from callbridge.speech.grammars.base import Grammar, Interpretation, MatchKind, normalize
from callbridge.speech.grammars.spelled import zip_pattern
from callbridge.speech.grammars.words import Piece, read_spoken

__all__ = ["DateGrammar", "PostalAddressGrammar"]

_STREET_TYPES: Final = frozenset(
    [
        "street",
        "st",
        "avenue",
        "ave",
        "road",
        "rd",
        "boulevard",
        "blvd",
        "lane",
        "ln",
        "drive",
        "dr",
        "court",
        "ct",
        "place",
        "pl",
        "way",
        "terrace",
        "parkway",
        "highway",
        "square",
        "circle",
        "crescent",
        "close",
        "row",
        "alley",
    ]
)
_STREET_PREFIXES: Final = frozenset(
    ["rue", "avenue", "boulevard", "allée", "chemin", "impasse", "place", "quai"]
)
_COMPLEMENT_WORDS: Final = frozenset(
    [
        "apartment",
        "apt",
        "suite",
        "unit",
        "floor",
        "building",
        "flat",
        "room",
        "bâtiment",
        "appartement",
        "étage",
    ]
)


class PostalAddressGrammar(Grammar):
    """``{number, street, zipcode, city, complement}``; partial when a part is missing."""

    type = "builtin:speech/postal_address"
    languages = frozenset({"en", "fr"})

    def interpret(self, transcript: str, language: str = "en-US") -> Interpretation:
        _, region = self.check_language(language)
        words = normalize(transcript).split()
        pieces = read_spoken(words)
        if not pieces:
            return self.no_match(transcript)
        number = ""
        rest = pieces
        lead = 0
        while lead < len(pieces) and pieces[lead].kind == "number" and lead < 2:
            lead += 1  # "one twenty three" is house number 123
        number, rest = "".join(p.text for p in pieces[:lead]), pieces[lead:]
        # The zipcode is the last run of numbers that forms a postal code.
        zipcode = ""
        zip_at = zip_end = len(rest)
        pattern = zip_pattern(region)
        for end in range(len(rest), 0, -1):
            run: list[Piece] = []
            for start in range(end - 1, -1, -1):
                if rest[start].kind != "number":
                    break
                run.insert(0, rest[start])
                digits = "".join(p.text for p in run)
                if pattern.fullmatch(digits):
                    zipcode, zip_at, zip_end = digits, start, end
            if zipcode:
                break
        middle = rest[:zip_at]
        after = rest[zip_end:] if zipcode else []
        complement_parts: list[str] = []
        kept: list[Piece] = []
        i = 0
        while i < len(middle):
            piece = middle[i]
            if piece.kind == "word" and piece.text in _COMPLEMENT_WORDS and i + 1 < len(middle):
                complement_parts += [piece.text, middle[i + 1].text]
                i += 2
                continue
            kept.append(piece)
            i += 1
        texts = [p.text for p in kept]
        city_words = [p.text for p in after]
        if not city_words:
            # "… main street springfield": the street ends at its type word.
            types = [k for k, t in enumerate(texts) if t in _STREET_TYPES]
            if types and types[-1] < len(texts) - 1 and texts[0] not in _STREET_PREFIXES:
                city_words = texts[types[-1] + 1 :]
                texts = texts[: types[-1] + 1]
        value: dict[str, str] = {
            "number": number,
            "street": " ".join(texts),
            "zipcode": zipcode,
            "city": " ".join(city_words),
            "complement": " ".join(complement_parts),
        }
        present = [k for k in ("number", "street", "zipcode", "city") if value[k]]
        if not value["street"] or len(present) < 2:
            return self.no_match(transcript)
        kind = MatchKind.FULL if len(present) == 4 else MatchKind.PARTIAL
        return self.result(kind, value, len(present) / 4, transcript)


_MONTHS: Final = (
    {name.lower(): index for index, name in enumerate(calendar.month_name) if name}
    | {name.lower()[:3]: index for index, name in enumerate(calendar.month_name) if name}
    | {"sept": 9}
)
_NUMERIC_DATE_RE: Final = re.compile(r"\b(\d{1,4})[/.-](\d{1,2})[/.-](\d{1,4})\b")
_DAY_FIRST_REGIONS: Final = frozenset({"GB", "FR", "BE", "DE", "ES", "IT", "IE", "AU", "NZ", "IN"})


def _year_of(numbers: list[Piece]) -> int | None:
    """A year from one or two spoken numbers ("2024", "twenty twenty four", "nineteen 99")."""
    if len(numbers) == 1 and len(numbers[0].text) == 4:
        return numbers[0].value
    if len(numbers) == 2 and 10 <= numbers[0].value <= 99 and len(numbers[1].text) <= 2:
        return numbers[0].value * 100 + numbers[1].value
    if len(numbers) == 2 and numbers[0].value in (19, 20) and numbers[1].value < 10:
        return numbers[0].value * 100 + numbers[1].value  # "nineteen oh five" → 1905
    if len(numbers) == 3 and numbers[1].value == 0 and numbers[2].value < 10:
        return numbers[0].value * 100 + numbers[2].value
    return None


class DateGrammar(Grammar):
    """``{day, month, year, valid}``; partial when a part is missing."""

    type = "builtin:speech/date"

    def _value(
        self, day: int | None, month: int | None, year: int | None, text: str
    ) -> Interpretation:
        if day is not None and not 1 <= day <= 31:
            day = None
        if month is not None and not 1 <= month <= 12:
            month = None
        if day is None and month is None and year is None:
            return self.no_match(text)
        valid = False
        if day is not None and month is not None and year is not None:
            valid = 1 <= year <= 9999 and day <= calendar.monthrange(year, month)[1]
        value: dict[str, int | bool | None] = {
            "day": day,
            "month": month,
            "year": year,
            "valid": valid,
        }
        parts = sum(x is not None for x in (day, month, year))
        kind = MatchKind.FULL if parts == 3 else MatchKind.PARTIAL
        return self.result(kind, value, (parts / 3) * (1.0 if valid or parts < 3 else 0.5), text)

    def interpret(self, transcript: str, language: str = "en-US") -> Interpretation:
        _, region = self.check_language(language)
        numeric = _NUMERIC_DATE_RE.search(transcript)
        if numeric:
            a, b, c = (int(g) for g in numeric.groups())
            if len(numeric.group(1)) == 4:
                return self._value(c, b, a, transcript)
            d, m = (a, b) if region in _DAY_FIRST_REGIONS else (b, a)
            return self._value(d, m, c + 2000 if c < 100 else c, transcript)
        words = [w for w in normalize(transcript).split() if w not in ("the", "of", "on")]
        month_at = next((i for i, w in enumerate(words) if w in _MONTHS), None)
        if month_at is None:
            pieces = read_spoken(words)
            ordinals = [p for p in pieces if p.kind == "number" and p.ordinal]
            if len(ordinals) == 1:
                return self._value(ordinals[0].value, None, None, transcript)
            return self.no_match(transcript)
        month = _MONTHS[words[month_at]]
        before = [p for p in read_spoken(words[:month_at]) if p.kind == "number"]
        after = [p for p in read_spoken(words[month_at + 1 :]) if p.kind == "number"]
        day: int | None = None
        if before and before[-1].value <= 31:
            day = before[-1].value  # "the fifth of march …"
        elif after and (after[0].ordinal or after[0].value <= 31):
            day, after = after[0].value, after[1:]  # "march fifth …"
        year = _year_of(after) if after else None
        return self._value(day, month, year, transcript)
