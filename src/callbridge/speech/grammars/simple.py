"""Free-speech, boolean and keyword grammars (h2b.md §10)."""

from __future__ import annotations

import difflib
import warnings
from typing import Final

from callbridge.speech.grammars.base import (
    EngineConstraint,
    Grammar,
    GrammarError,
    Interpretation,
    MatchKind,
    jsgf,
    normalize,
    tokens,
)
from callbridge.speech.grammars.uri import split_alternatives

__all__ = ["BooleanGrammar", "KeywordsGrammar", "Text2NumGrammar", "TranscribeGrammar"]


class TranscribeGrammar(Grammar):
    """Free speech; the value is the normalised transcript."""

    type = "builtin:speech/transcribe"
    languages = frozenset({"en", "fr", "es", "de"})

    def interpret(self, transcript: str, language: str = "en-US") -> Interpretation:
        text = normalize(transcript)
        if not text:
            return self.no_match(transcript)
        return self.result(MatchKind.FULL, text, 1.0, transcript)


class Text2NumGrammar(Grammar):
    """Free speech with numbers written as digits (Allo-Media's ``text2num``)."""

    type = "builtin:speech/text2num"
    languages = frozenset({"en", "fr", "es", "de", "pt", "it", "nl"})

    def interpret(self, transcript: str, language: str = "en-US") -> Interpretation:
        lang, _ = self.check_language(language)
        text = normalize(transcript)
        if not text:
            return self.no_match(transcript)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from text_to_num import alpha2digit  # type: ignore[import-untyped]
        value = str(alpha2digit(text, lang))
        return self.result(MatchKind.FULL, value, 1.0, transcript)


_YES_STRONG: Final = ("yes", "yeah", "yep", "yup", "yea", "affirmative", "aye")
_NO_STRONG: Final = ("no", "nope", "nah", "negative")
_YES_WEAK: Final = (
    "sure", "right", "correct", "okay", "ok", "absolutely", "certainly", "of course",
    "fine", "indeed", "definitely", "that's right", "that is right", "that's correct",
    "alright", "all right", "please do", "go ahead",
)  # fmt: skip
_NO_WEAK: Final = (
    "wrong", "incorrect", "not really", "no way", "not at all", "of course not",
    "absolutely not", "definitely not", "never", "don't", "do not", "not now",
)  # fmt: skip
_FILLERS: Final = frozenset(
    [
        "uh",
        "um",
        "er",
        "ah",
        "oh",
        "well",
        "i",
        "think",
        "so",
        "it",
        "is",
        "it's",
        "that's",
        "please",
        "thanks",
        "thank",
        "you",
        "sir",
        "madam",
    ]
)
#: Whisper prompt of yes/no answers (decision 043).
BOOLEAN_PROMPT: Final = "Yes. No."
#: Carrier words a constrained decoder may put around a keyword ("I need … please"); short,
#: as each word costs PocketSphinx search time.
REQUEST_CARRIER: Final = (
    "uh", "um", "i", "need", "want", "to", "a", "the", "my", "about", "question", "please",
    "me", "put", "through", "what", "are", "your",
)  # fmt: skip
#: Utterances longer than this do not count weak cues ("right", "sure").
_WEAK_MAX_TOKENS: Final = 4
#: Shortest word of a multi-word alternative that identifies it alone (decision 047).
_CUE_MIN_CHARS: Final = 4
#: Common words that never identify an alternative on their own (besides the carriers).
_NOT_CUES: Final = frozenset([
    "about", "after", "again", "also", "back", "been", "call", "could", "from", "have", "here",
    "just", "know", "like", "more", "much", "only", "other", "over", "some", "than", "that",
    "them", "then", "there", "they", "this", "very", "were", "what", "when", "where", "which",
    "will", "with", "would", "your",
])  # fmt: skip


def _sentence(phrase: str) -> str:
    """A phrase written as an answer said alone ("of course" -> "Of course.")."""
    return phrase[:1].upper() + phrase[1:] + "."


def _find_phrases(words: list[str], phrases: tuple[str, ...]) -> list[tuple[int, int]]:
    """Token spans where any of ``phrases`` occurs (longest first, no overlaps)."""
    spans: list[tuple[int, int]] = []
    taken = [False] * len(words)
    for phrase in sorted(phrases, key=lambda p: -len(p.split())):
        parts = phrase.split()
        n = len(parts)
        for i in range(len(words) - n + 1):
            if words[i : i + n] == parts and not any(taken[i : i + n]):
                spans.append((i, i + n))
                for j in range(i, i + n):
                    taken[j] = True
    return spans


class BooleanGrammar(Grammar):
    """Yes/no answers; value ``True``/``False``."""

    type = "builtin:speech/boolean"

    def interpret(self, transcript: str, language: str = "en-US") -> Interpretation:
        self.check_language(language)
        words = tokens(transcript)
        if not words:
            return self.no_match(transcript)
        weak_ok = len(words) <= _WEAK_MAX_TOKENS
        no_phrases = _NO_STRONG + (_NO_WEAK if weak_ok else ())
        # Negative phrases first: "absolutely not" must not count as "absolutely".
        no_spans = _find_phrases(words, no_phrases)
        rest = list(words)
        for start, end in no_spans:
            rest[start:end] = [""] * (end - start)
        yes_spans = _find_phrases(rest, _YES_STRONG + (_YES_WEAK if weak_ok else ()))
        if bool(yes_spans) == bool(no_spans):
            return self.no_match(transcript)  # nothing, or both polarities: ambiguous
        spans = yes_spans or no_spans
        covered = sum(end - start for start, end in spans)
        extra = [w for i, w in enumerate(words) if w not in _FILLERS and not any(
            s <= i < e for s, e in spans)]  # fmt: skip
        confidence = 1.0 if not extra else max(0.5, covered / (covered + len(extra)))
        return self.result(MatchKind.FULL, bool(yes_spans), confidence, transcript)

    def constraint(self, language: str = "en-US") -> EngineConstraint:
        self.check_language(language)
        words = ("yes", "yeah", "yep", "no", "nope", "correct", "sure", "right")
        # Every phrase the interpreter reads, so the constrained reading is interpretable.
        phrases = " | ".join(_YES_STRONG + _YES_WEAK + _NO_STRONG + _NO_WEAK)
        body = "<answer> [ <answer> ]"
        rules = [f"<answer> = {phrases};"]
        grammar = jsgf(body, rules, carrier=sorted(_FILLERS))
        vocabulary = tuple(dict.fromkeys(" ".join((phrases.replace("|", " "), *_FILLERS)).split()))
        # The hot words as answers said alone: each answer scored costs about one short
        # decode, so the list stays short (decision 046).
        answers = tuple(_sentence(w) for w in words)
        return EngineConstraint(
            grammar, words, prompt=BOOLEAN_PROMPT, vocabulary=vocabulary, answers=answers
        )


class KeywordsGrammar(Grammar):
    """One of the ``alternatives`` phrases; the value is the alternative, escapes removed."""

    type = "builtin:speech/keywords"
    languages = frozenset({"en", "fr", "es", "de"})
    #: Minimum similarity for a fuzzy match of the whole utterance to an alternative.
    FUZZY_RATIO: Final = 0.8
    #: Confidence of a match on cue words only (as low as the weakest fuzzy matches).
    CUE_CONFIDENCE: Final = 0.3

    def __init__(self, uri: str, alternatives: str | None) -> None:
        super().__init__(uri)
        if not alternatives:
            raise GrammarError("builtin:speech/keywords needs a non-empty 'alternatives' parameter")
        self.alternatives = split_alternatives(alternatives)
        if not self.alternatives:
            raise GrammarError("builtin:speech/keywords: 'alternatives' lists no phrase")
        self._normalized = [normalize(alt) for alt in self.alternatives]
        self._cues = self._cue_words()

    def _cue_words(self) -> dict[str, int]:
        """Words of multi-word alternatives that identify one alternative alone ("support"
        for "technical support"): in exactly one alternative, at least
        :data:`_CUE_MIN_CHARS` long, neither a carrier nor a common word."""
        owners: dict[str, set[int]] = {}
        for index, alt in enumerate(self._normalized):
            for word in alt.split():
                owners.setdefault(word, set()).add(index)
        cues: dict[str, int] = {}
        for index, alt in enumerate(self._normalized):
            parts = alt.split()
            if len(parts) < 2:
                continue
            for word in parts:
                if (
                    len(word) >= _CUE_MIN_CHARS
                    and word not in REQUEST_CARRIER
                    and word not in _NOT_CUES
                    and owners[word] == {index}
                ):
                    cues[word] = index
        return cues

    def interpret(self, transcript: str, language: str = "en-US") -> Interpretation:
        self.check_language(language)
        text = normalize(transcript)
        if not text:
            return self.no_match(transcript)
        words = text.split()
        best: tuple[float, int] | None = None
        for index, alt in enumerate(self._normalized):
            if not alt:
                continue
            if alt == text:
                return self.result(MatchKind.FULL, self.alternatives[index], 1.0, transcript)
            parts = alt.split()
            n = len(parts)
            score = 0.0
            for i in range(len(words) - n + 1):
                window = " ".join(words[i : i + n])
                if window == alt:
                    score = max(score, 0.7 + 0.3 * n / len(words))
                else:
                    ratio = difflib.SequenceMatcher(None, window, alt).ratio()
                    if ratio >= self.FUZZY_RATIO:
                        score = max(score, 0.6 * ratio * max(0.5, n / len(words)))
            if score and (best is None or score > best[0]):
                best = (score, index)
        if best is None:
            # Part of a multi-word alternative said alone or heard in noise ("$7 for support."
            # for "Technical support."): its cue words, when they all name one alternative.
            named = {self._cues[w] for w in words if w in self._cues}
            if len(named) != 1:
                return self.no_match(transcript)
            best = (self.CUE_CONFIDENCE, named.pop())
        return self.result(MatchKind.FULL, self.alternatives[best[1]], best[0], transcript)

    def constraint(self, language: str = "en-US") -> EngineConstraint:
        self.check_language(language)
        alts = tuple(dict.fromkeys(a for a in self._normalized if a))
        body = " | ".join(f"( {alt} )" for alt in alts)
        prompt = ", ".join(self.alternatives) + "."
        vocabulary = tuple(dict.fromkeys(" ".join((*alts, *REQUEST_CARRIER)).split()))
        grammar = jsgf(body, carrier=REQUEST_CARRIER)
        answers = tuple(dict.fromkeys(_sentence(alt) for alt in alts))
        return EngineConstraint(
            grammar, alts, prompt=prompt, vocabulary=vocabulary, answers=answers
        )
