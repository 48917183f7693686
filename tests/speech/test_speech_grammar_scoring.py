"""Decision rules of grammar-aware scoring (decision 046): closed-set answers against the free
reading, confusable-symbol repairs of spelled codes, the numeral trigger of the restricted
pass. Made-up scores and readings; no engine."""

from __future__ import annotations

import math

from callbridge.speech.asr.base import DecodeResult
from callbridge.speech.asr.whisper import (
    choose_answer,
    choose_repair,
    needs_answer_scoring,
    needs_constrained_pass,
)
from callbridge.speech.asr.whisper_nbest import CandidateScores
from callbridge.speech.grammars import MatchKind, load_grammar
from callbridge.speech.grammars.spelled import confusion_repairs, spell

KEYWORDS = "builtin:speech/keywords?alternatives=billing|technical support|sales"
BOOLEAN = "builtin:speech/boolean"
MIXED = "builtin:speech/spelling/mixed?regex=[a-z]{2}[0-9]{3}"


def scores(free: str, *pairs: tuple[str, float], free_score: float = -10.0) -> CandidateScores:
    texts = (free, *(text for text, _ in pairs))
    return CandidateScores(
        "", 0.0, candidates=texts, scores=(free_score, *(score for _, score in pairs))
    )


def test_closed_set_grammars_have_answers_that_they_read_back() -> None:
    keywords = load_grammar(KEYWORDS)
    answers = keywords.constraint().answers
    assert answers == ("Billing.", "Technical support.", "Sales.")
    for answer, value in zip(answers, ("billing", "technical support", "sales"), strict=True):
        reading = keywords.interpret(answer)
        assert reading.kind is MatchKind.FULL and reading.value == value
    boolean = load_grammar(BOOLEAN)
    values = {boolean.interpret(a).value for a in boolean.constraint().answers}
    assert values == {True, False}
    assert all(boolean.interpret(a).kind is MatchKind.FULL for a in boolean.constraint().answers)
    for uri in ("builtin:speech/spelling/digits", "builtin:speech/date", "builtin:speech/zipcode"):
        assert load_grammar(uri).constraint().answers == ()


def test_answer_scoring_is_asked_only_for_out_of_grammar_closed_set_readings() -> None:
    keywords = load_grammar(KEYWORDS)
    assert needs_answer_scoring(keywords, DecodeResult("Thank you.", 0.5), "en-US")
    assert not needs_answer_scoring(keywords, DecodeResult("Sales, please.", 0.9), "en-US")
    assert not needs_answer_scoring(keywords, DecodeResult("", 0.0), "en-US")
    digits = load_grammar("builtin:speech/spelling/digits")
    assert not needs_answer_scoring(digits, DecodeResult("Thank you.", 0.5), "en-US")


def test_an_answer_replaces_the_free_reading_only_past_the_margin() -> None:
    grammar = load_grammar(KEYWORDS)
    free = DecodeResult("Thank you.", 0.4)
    far = scores("Thank you.", ("Billing.", -30.0), ("Sales.", -5.0))
    chosen = choose_answer(grammar, free, far, "en-US", margin=4.0)
    assert chosen.transcript == "Sales."
    assert [a.transcript for a in chosen.nbest] == ["Sales.", "Thank you."]
    assert 0.0 < chosen.confidence <= 1.0
    near = scores("Thank you.", ("Billing.", -30.0), ("Sales.", -7.0))
    assert choose_answer(grammar, free, near, "en-US", margin=4.0) is free
    unscored = scores("Thank you.", ("Sales.", -1.0), free_score=-math.inf)
    assert choose_answer(grammar, free, unscored, "en-US") is free
    assert choose_answer(grammar, free, scores("Thank you."), "en-US") is free
    # A candidate the grammar does not read as a full answer never wins.
    odd = scores("Thank you.", ("Something else.", 0.0))
    assert choose_answer(grammar, free, odd, "en-US", margin=1.0) is free


def test_spelled_codes_are_written_as_whisper_writes_them() -> None:
    assert spell("kw896") == "K, W, eight, nine, six."
    assert spell("a0") == "A, zero."
    grammar = load_grammar(MIXED)
    assert grammar.interpret(spell("kw896")).value == "kw896"


def test_confusable_symbols_repair_a_code_to_its_regex() -> None:
    def accepts(code: str) -> bool:
        return len(code) == 5 and code[:2].isalpha() and code[2:].isdigit()

    assert confusion_repairs("kwa96", accepts) == ["kw896"]  # "eight" heard as "A"
    assert confusion_repairs("mb1r3", accepts) == ["mb143"]  # "four" heard as "R"
    assert confusion_repairs("xw896", lambda c: False) == []
    # Two swaps when no single one is enough ("eight" as "A" and "four" as "R"); bounded.
    assert confusion_repairs("kwa9r", accepts) == ["kw894"]
    assert len(confusion_repairs("bbbbb", lambda c: True, limit=3)) == 3


def test_grammar_repairs_only_partial_readings_with_a_regex() -> None:
    grammar = load_grammar(MIXED)
    assert grammar.interpret("K, W, A, nine, six.").kind is MatchKind.PARTIAL
    assert grammar.repairs("K, W, A, nine, six.") == ("K, W, eight, nine, six.",)
    assert grammar.repairs("K, W, eight, nine, six.") == ()  # a full match
    assert grammar.repairs("Thank you very much.") == ()  # no match: nothing to repair
    assert load_grammar("builtin:speech/spelling/mixed").repairs("K, W, A, nine, six.") == ()
    assert load_grammar(BOOLEAN).repairs("Yes.") == ()


def test_a_repair_replaces_the_reading_alone_or_by_score() -> None:
    reading = DecodeResult("K, W, A, nine, six.", 0.8)
    one = choose_repair(reading, ("K, W, eight, nine, six.",), None)
    assert one.transcript == "K, W, eight, nine, six."
    assert [a.transcript for a in one.nbest] == [one.transcript, reading.transcript]
    two = ("M, D, one, four, three.", "M, B, one, four, three.")
    ranked = CandidateScores(
        "", 0.0, candidates=("M, B, one, R, three.", *two), scores=(-3.0, -9.0, -4.0)
    )
    assert choose_repair(reading, two, ranked).transcript == "M, B, one, four, three."
    unscored = CandidateScores("", 0.0, candidates=("x", *two), scores=(-1.0, -math.inf, -math.inf))
    assert choose_repair(reading, two, unscored) is reading
    assert choose_repair(reading, two, None) is reading  # several repairs need scores
    assert choose_repair(reading, (), None) is reading


def test_numerals_in_a_spelled_digits_reading_ask_for_the_restricted_pass() -> None:
    digits = load_grammar("builtin:speech/spelling/digits")
    assert needs_constrained_pass(digits, DecodeResult("My code is 5", 0.9), "en-US")
    assert needs_constrained_pass(digits, DecodeResult("It's 5, 220, 0, 967", 0.9), "en-US")
    assert not needs_constrained_pass(digits, DecodeResult("four five one", 0.9), "en-US")
