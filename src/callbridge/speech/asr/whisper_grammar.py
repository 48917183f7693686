"""Grammar decisions on Whisper's readings, and the trimming of its repetition loops.

:class:`~callbridge.speech.asr.whisper.WhisperRecognizer` decodes an utterance for a grammar
with the grammar's hot words and style prompt (:func:`grammar_hints`) and then decides, with
the pure functions here, which reading a final keeps:

- decision 043: a final whose free reading is in the grammar but not cleanly (partial,
  unexplained words, digits written as numerals) is re-decoded restricted to the grammar's
  vocabulary (:func:`needs_constrained_pass`), and the restricted reading replaces the free
  one when it is a full match and cleaner (:func:`choose_reading`); every transcript has its
  repetition loops trimmed (:func:`trim_repetitions`);
- decision 046: a closed-set grammar's out-of-grammar reading is scored against the
  grammar's canonical answers (:func:`needs_answer_scoring`, :func:`choose_answer`, at
  :data:`ANSWER_MARGIN`), a code failing its grammar's regex against its confusable-symbol
  repairs (:func:`choose_repair`), and single numerals trigger the restricted pass too;
- decision 047 builds on them outside this module: keyword cue words live in the grammar's
  interpreter these functions consult, and a spelled code read here is re-checked for
  Whisper's "A" by PocketSphinx afterwards (:mod:`.spelled`).

Nothing here touches the model: the scores come from :mod:`.whisper_nbest`, the decodes from
:mod:`.whisper`, which re-exports every name of this module.
"""

from __future__ import annotations

import itertools
import math
import re
from typing import Final

from callbridge.speech.asr.base import Alternative, DecodeResult
from callbridge.speech.asr.whisper_nbest import CandidateScores
from callbridge.speech.grammars.base import Grammar, MatchKind

__all__ = [
    "ANSWER_MARGIN",
    "choose_answer",
    "choose_reading",
    "choose_repair",
    "grammar_hints",
    "needs_answer_scoring",
    "needs_constrained_pass",
    "trim_repetitions",
]

#: How much likelier (natural log, ~55x) a closed-set grammar's canonical answer must be
#: than Whisper's out-of-grammar free reading to replace it; read off the Piper clips of
#: the corpus (decision 046).
ANSWER_MARGIN: Final = 4.0
#: Tokens of spoken codes (digits and letters), which legitimately repeat.
_CODE_TOKEN_RE: Final = re.compile(
    r"^(\d+|zero|oh|one|two|three|four|five|six|seven|eight|nine|[a-z])$"
)
#: A digit written as a numeral.
_NUMERAL_RE: Final = re.compile(r"\d")


def grammar_hints(
    grammar: Grammar | None, language: str = "en-US"
) -> tuple[str | None, str | None]:
    """(hot words, prompt) Whisper gets for ``grammar`` (``None``, ``None`` for free speech)."""
    if grammar is None:
        return None, None
    constraint = grammar.constraint(language)
    return " ".join(constraint.keyphrases) or None, constraint.prompt


def needs_constrained_pass(grammar: Grammar, free: DecodeResult, language: str) -> bool:
    """True when the free reading matches ``grammar`` only partly, with words the
    interpreter cannot explain ("My code is 487 months", "a few 0 4 7") or with digits
    written as numerals ("It's 5, 220, 0, 967", "My code is 5"): the utterance is in the grammar (so
    rejection is not at stake) but its value is doubtful."""
    reading = grammar.interpret(free.transcript, language)
    return reading.kind is MatchKind.PARTIAL or (
        reading.kind is MatchKind.FULL
        and (reading.confidence < 1.0 or _grouped_numerals(free.transcript))
    )


def needs_answer_scoring(grammar: Grammar, free: DecodeResult, language: str) -> bool:
    """True when ``grammar`` has a closed set of answers (yes/no, keywords) and the free
    reading is not empty and matches none of them: Whisper may have written a likelier
    answer's sound as other words ("Thank you." for "Sales." in noise, decision 046)."""
    if not free.transcript.strip() or not grammar.constraint(language).answers:
        return False
    return grammar.interpret(free.transcript, language).kind is MatchKind.NONE


def choose_answer(
    grammar: Grammar,
    free: DecodeResult,
    scored: CandidateScores,
    language: str,
    *,
    margin: float = ANSWER_MARGIN,
) -> DecodeResult:
    """The best-scoring canonical answer when it is a full match of ``grammar`` and at least
    ``margin`` (natural log) likelier than the free reading (``scored.scores[0]``), with the
    free reading after it in ``nbest``; otherwise ``free``. An unscored free reading
    decides nothing."""
    if len(scored.scores) < 2 or not math.isfinite(scored.scores[0]):
        return free
    best = max(range(1, len(scored.scores)), key=lambda i: scored.scores[i])
    if scored.scores[best] < scored.scores[0] + margin:
        return free
    answer = scored.candidates[best]
    if grammar.interpret(answer, language).kind is not MatchKind.FULL:
        return free
    tokens = max(1, len(answer.split()))
    confidence = round(min(1.0, math.exp(scored.scores[best] / (tokens + 1))), 3)
    nbest = (Alternative(answer, confidence), Alternative(free.transcript, free.confidence))
    return DecodeResult(answer, confidence, (), nbest)


def choose_repair(
    reading: DecodeResult, repairs: tuple[str, ...], scored: CandidateScores | None
) -> DecodeResult:
    """The repaired reading of a code that failed its grammar's regex (see
    :meth:`~callbridge.speech.grammars.base.Grammar.repairs`): the only repair, or the
    best-scoring one (``scored`` holds the reading then the repairs), with the reading after
    it in ``nbest``. Without usable scores the reading stands."""
    if not repairs:
        return reading
    if scored is None:
        best = repairs[0] if len(repairs) == 1 else None
    else:
        pairs = zip(scored.scores[1:], scored.candidates[1:], strict=False)
        finite = [(s, t) for s, t in pairs if math.isfinite(s)]
        best = max(finite)[1] if finite else None
    if best is None:
        return reading
    confidence = round(reading.confidence * 0.9, 3)
    nbest = (Alternative(best, confidence), Alternative(reading.transcript, reading.confidence))
    return DecodeResult(best, confidence, (), nbest)


def _grouped_numerals(transcript: str) -> bool:
    """True when the transcript writes digits as numerals ("5, 220, 0, 967", "My code is 5"):
    after a prompt of spelled digits, tiny.en writes numerals when it leaves that style, and
    then groups, merges and drops digits; restricted to digit words it spells them right
    (decision 043; single numerals too since decision 046)."""
    return _NUMERAL_RE.search(transcript) is not None


def choose_reading(
    grammar: Grammar, free: DecodeResult, constrained: DecodeResult, language: str
) -> DecodeResult:
    """The constrained pass's reading when it is a full match and the free one is not clean
    (partial, unexplained words, or grouped numerals the constrained one does not have);
    otherwise the free reading. The other reading follows in ``nbest``."""
    reading = grammar.interpret(free.transcript, language)
    check = grammar.interpret(constrained.transcript, language)
    better = check.kind is MatchKind.FULL and (
        reading.kind is not MatchKind.FULL
        or check.confidence > reading.confidence
        or (_grouped_numerals(free.transcript) and not _grouped_numerals(constrained.transcript))
    )
    if reading.kind is MatchKind.NONE or not better:
        return free
    nbest = (Alternative(constrained.transcript, constrained.confidence), *free.nbest)
    return DecodeResult(constrained.transcript, constrained.confidence, (), nbest)


def _token_key(token: str) -> str:
    return re.sub(r"[^\w']", "", token.lower())


def trim_repetitions(tokens: list[str], max_n: int = 8) -> list[int]:
    """Indices of ``tokens`` to keep once repeated runs are collapsed to one occurrence.

    tiny.en loops on noise ("I think, 8th and 8th. I think, 8th and 8th. …", "Sure. Sure.
    Sure. …"). A run of an n-gram repeated back to back is cut to its first occurrence when
    the n-gram has 3+ words and occurs twice, or has 1–2 words and occurs 3+ times; n-grams
    made only of digits and letters (spoken codes legitimately repeat: "one two one two",
    "double seven") need 3+ occurrences of 4+ tokens, 4+ of 2–3 tokens or 5+ of one token.
    Runs of one token are handled as 1-grams; a partial repetition ending the transcript
    (a loop cut by the token bound) goes with the run.
    """
    keys = [_token_key(t) for t in tokens]
    keep = list(range(len(tokens)))
    # A sentence said twice in a row ("six one nine. six one nine.") is kept once, and so
    # is one followed by its own beginning at the end (a loop cut by the token bound).
    sentences: list[tuple[int, int]] = []
    start = 0
    for i, token in enumerate(tokens):
        if token.endswith((".", "?", "!")) or i == len(tokens) - 1:
            sentences.append((start, i + 1))
            start = i + 1
    drop: set[int] = set()
    for (a, b), (c, d) in itertools.pairwise(sentences):
        if keys[a:b] == keys[c:d] and any(keys[a:b]):
            drop.update(range(c, d))
        elif d == len(keys) and d - c < b - a and keys[c:d] == keys[a : a + d - c]:
            drop.update(range(c, d))  # the start of the same sentence again, cut off
    if drop:
        keep = [i for i in keep if i not in drop]
        keys = [k for i, k in enumerate(keys) if i not in drop]
    changed = True
    while changed:
        changed = False
        for n in range(min(max_n, len(keys) // 2), 0, -1):
            i = 0
            while i + 2 * n <= len(keys):
                gram = keys[i : i + n]
                if not all(gram) or (n > 1 and len(set(gram)) == 1):  # runs: as 1-grams
                    i += 1
                    continue
                code = all(_CODE_TOKEN_RE.match(k) for k in gram)
                j, reps = i + n, 1
                while j + n <= len(keys) and keys[j : j + n] == gram:
                    j, reps = j + n, reps + 1
                needed = (3 if n >= 4 else 4 if n >= 2 else 5) if code else (2 if n >= 3 else 3)
                if reps >= needed:
                    # A loop cut by the token bound ends in a partial repetition.
                    k = 0
                    while j + k < len(keys) and k < n and keys[j + k] == gram[k]:
                        k += 1
                    if j + k == len(keys):
                        j += k
                    del keys[i + n : j]
                    del keep[i + n : j]
                    changed = True
                i += 1
    return keep
