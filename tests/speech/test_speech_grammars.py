"""Grammar URIs (h2b.md §9) and interpreters (§10) with many phrasings."""

from __future__ import annotations

import calendar
import random

import pytest

from callbridge.speech.grammars import (
    GrammarError,
    MatchKind,
    load_grammar,
    normalize,
    parse_grammar_uri,
    split_alternatives,
)

ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TEENS = [
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
ORD = {
    1: "first", 2: "second", 3: "third", 4: "fourth", 5: "fifth", 6: "sixth", 7: "seventh",
    8: "eighth", 9: "ninth", 10: "tenth", 11: "eleventh", 12: "twelfth", 13: "thirteenth",
    14: "fourteenth", 15: "fifteenth", 16: "sixteenth", 17: "seventeenth", 18: "eighteenth",
    19: "nineteenth", 20: "twentieth", 30: "thirtieth",
}  # fmt: skip


def words_below_100(n: int) -> str:
    if n < 10:
        return ONES[n]
    if n < 20:
        return TEENS[n - 10]
    return TENS[n // 10] + ("" if n % 10 == 0 else " " + ONES[n % 10])


def ordinal_words(n: int) -> str:
    if n in ORD:
        return ORD[n]
    return f"{TENS[n // 10]} {ORD[n % 10]}"


def year_words(y: int) -> str:
    hi, lo = divmod(y, 100)
    if y >= 2000 and lo < 10:
        return "two thousand" + ("" if lo == 0 else f" and {ONES[lo]}")
    if lo == 0:
        return f"{words_below_100(hi)} hundred"
    if lo < 10:
        return f"{words_below_100(hi)} oh {ONES[lo]}"
    return f"{words_below_100(hi)} {words_below_100(lo)}"


# -- URIs --------------------------------------------------------------------------------


def test_uri_query_is_split_unencoded() -> None:
    ref = parse_grammar_uri("builtin:speech/spelling/mixed?regex=[a-z]{2}[0-9]{9}[a-z]{2}")
    assert ref.type == "builtin:speech/spelling/mixed"
    assert ref.params == {"regex": "[a-z]{2}[0-9]{9}[a-z]{2}"}
    ref = parse_grammar_uri("builtin:speech/spelling/digits?regex=a=b&length=3")
    assert ref.params == {"regex": "a=b", "length": "3"}


def test_uri_percent_decoding_is_defensive() -> None:
    assert parse_grammar_uri("builtin:speech/keywords?alternatives=a%7Cb").params == {
        "alternatives": "a|b"
    }
    # Not valid percent-encoding: kept verbatim.
    assert parse_grammar_uri("builtin:speech/keywords?alternatives=100%").params == {
        "alternatives": "100%"
    }


def test_aliases_and_session_ids() -> None:
    for alias in ("builtin:grammar/none", "builtin:speech/none"):
        assert parse_grammar_uri(alias).type == "builtin:speech/transcribe"
    ref = parse_grammar_uri("session:g1", {"g1": "builtin:speech/boolean"})
    assert ref.type == "builtin:speech/boolean"
    with pytest.raises(GrammarError, match="unknown session"):
        parse_grammar_uri("session:nope", {})


@pytest.mark.parametrize(
    "uri",
    [
        "",
        "http://example.com/g.grxml",
        "builtin:speech/unknown",
        "builtin:speech/boolean?foo=1",
        "builtin:speech/keywords",
        "builtin:speech/spelling/digits?length=abc",
        "builtin:speech/spelling/digits?regex=[",
        "builtin:speech/spelling/digits?length=1&length=2",
    ],
)
def test_bad_uris_raise_grammar_error(uri: str) -> None:
    with pytest.raises(GrammarError):
        load_grammar(uri)


def test_keyword_escapes() -> None:
    assert split_alternatives(r"adresse|arrêt|allo\-media|a\|b") == [
        "adresse",
        "arrêt",
        "allo-media",
        "a|b",
    ]
    g = load_grammar(r"builtin:speech/keywords?alternatives=sales|customer support|bill\|ing")
    assert g.interpret("bill|ing").value == "bill|ing"


def test_unsupported_language_is_an_error() -> None:
    with pytest.raises(GrammarError, match="language"):
        load_grammar("builtin:speech/boolean").interpret("ja", "ja-JP")
    with pytest.raises(GrammarError, match="malformed"):
        load_grammar("builtin:speech/boolean").interpret("yes", "not a tag!")


# -- interpreters ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("yes", True), ("Yes.", True), ("yeah", True), ("yep!", True), ("sure", True),
        ("uh yes please", True), ("that's right", True), ("of course", True),
        ("absolutely", True), ("yes I would like that", True), ("okay", True),
        ("no", False), ("Nope.", False), ("nah", False), ("no thanks", False),
        ("absolutely not", False), ("not at all", False), ("of course not", False),
        ("no I don't want it", False),
    ],
)  # fmt: skip
def test_boolean(text: str, value: bool) -> None:
    result = load_grammar("builtin:speech/boolean").interpret(text)
    assert result.kind is MatchKind.FULL, text
    assert result.value is value
    assert 0 < result.confidence <= 1


@pytest.mark.parametrize(
    "text",
    [
        "", "I would like to book a flight to Paris tomorrow morning.", "yes no",
        "please call me back at home", "turn right at the corner after the bank",
    ],
)  # fmt: skip
def test_boolean_no_match(text: str) -> None:
    result = load_grammar("builtin:speech/boolean").interpret(text)
    assert result.kind is MatchKind.NONE
    assert result.value is None and result.confidence == 0


def test_keywords() -> None:
    g = load_grammar("builtin:speech/keywords?alternatives=sales|customer support|billing")
    assert g.interpret("Sales").value == "sales"
    assert g.interpret("customer support please").value == "customer support"
    assert g.interpret("I have a question about billing").value == "billing"
    assert g.interpret("customer suport").value == "customer support"  # fuzzy
    assert g.interpret("the weather is nice").kind is MatchKind.NONE
    constraint = g.constraint()
    assert constraint.jsgf is not None and "customer support" in constraint.jsgf
    assert constraint.keyphrases == ("sales", "customer support", "billing")


def test_keywords_cue_words_name_one_multi_word_alternative() -> None:
    g = load_grammar(
        "builtin:speech/keywords?alternatives="
        "billing|technical support|sales|cancel my subscription|opening hours|sales support"
    )
    # "support" is in two alternatives, "my" is a carrier, "sales" is a whole alternative.
    assert g._cues == {"technical": 1, "cancel": 3, "subscription": 3, "opening": 4, "hours": 4}
    for text, value in [
        ("$7 for technical.", "technical support"),
        ("What are you opening now?", "opening hours"),
        ("I want to cancel it", "cancel my subscription"),
    ]:
        result = g.interpret(text)
        assert (result.kind, result.value) == (MatchKind.FULL, value)
        assert result.confidence == g.CUE_CONFIDENCE
    for text in ("$7 for support.", "my hours are technical", "the weather is nice"):
        assert g.interpret(text).kind is MatchKind.NONE  # shared, conflicting or no cue
    assert g.interpret("opening hours").confidence == 1.0  # phrases still match in full


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("four five one two nine", "45129"), ("4 5 1 2 9", "45129"), ("45129", "45129"),
        ("4-5-1-2-9.", "45129"), ("my code is four five one two nine", "45129"),
        ("double four five triple one", "445111"), ("forty five one twenty nine", "45129"),
        ("oh four five", "045"), ("zero", "0"),
    ],
)  # fmt: skip
def test_digits(text: str, value: str) -> None:
    result = load_grammar("builtin:speech/spelling/digits").interpret(text)
    assert (result.kind, result.value) == (MatchKind.FULL, value)


def test_digits_length_and_regex() -> None:
    g = load_grammar("builtin:speech/spelling/digits?length=4")
    assert g.interpret("one two three four").kind is MatchKind.FULL
    partial = g.interpret("one two three")
    assert (partial.kind, partial.value) == (MatchKind.PARTIAL, "123")
    g = load_grammar("builtin:speech/spelling/digits?regex=[0-9]{2}")
    assert g.interpret("forty two").value == "42"
    assert g.interpret("hello there").kind is MatchKind.NONE
    assert "<digit> <digit> <digit> <digit>" in (
        load_grammar("builtin:speech/spelling/digits?length=4").constraint().jsgf or ""
    )


def test_mixed_spelling_reference_transcript() -> None:
    g = load_grammar("builtin:speech/spelling/mixed?regex=[a-z]{2}[0-9]{9}[a-z]{2}")
    text = "l e one hundred thirty seven one hundred thirty seven eight hundred sixty six c n"
    assert g.interpret(text).value == "le137137866cn"
    assert g.interpret("L E 137 137 866 C N").value == "le137137866cn"
    g = load_grammar("builtin:speech/spelling/mixed?regex=[a-z]{2}[0-9]{3}[a-z]{2}")
    assert g.interpret("bravo charlie three oh five foxtrot zulu").value == "bc305fz"
    assert g.interpret("b c 3 o 5 f z").value == "bc305fz"  # o read as 0 for the regex
    assert g.interpret("b c 3").kind is MatchKind.PARTIAL


def test_phone_number_e164() -> None:
    g = load_grammar("builtin:speech/spelling/phone_number")
    us = g.interpret("my number is six five oh, two five three, double one two three")
    assert (us.kind, us.value) == (MatchKind.FULL, "+16502531123")
    assert g.interpret("(650) 253-1123").value == "+16502531123"
    fr = g.interpret("zero six one two three four five six seven eight", "fr-FR")
    assert fr.value == "+33612345678"
    assert g.interpret("plus three three six one two three four five six seven eight").value == (
        "+33612345678"
    )
    assert g.interpret("one two three").kind is not MatchKind.FULL
    assert g.interpret("no idea").kind is MatchKind.NONE


def test_zipcode() -> None:
    g = load_grammar("builtin:speech/zipcode")
    assert g.interpret("nine oh two one oh").value == "90210"
    assert g.interpret("my zip code is 10001").value == "10001"
    assert g.interpret("seventy two thousand", "fr-FR").value == "72000"
    assert g.interpret("one two").kind is MatchKind.PARTIAL


def test_postal_address() -> None:
    g = load_grammar("builtin:speech/postal_address")
    fr = g.interpret("trente sept rue du docteur leroy soixante douze mille le mans", "fr-FR")
    assert fr.kind is MatchKind.NONE or fr.kind is not MatchKind.FULL  # French numbers: later
    spec = g.interpret("thirty seven rue du docteur leroy seventy two thousand le mans", "fr-FR")
    assert spec.kind is MatchKind.FULL
    assert spec.value == {
        "number": "37",
        "street": "rue du docteur leroy",
        "zipcode": "72000",
        "city": "le mans",
        "complement": "",
    }
    us = g.interpret("one twenty three main street apartment four springfield six two seven oh one")
    assert us.value == {
        "number": "123",
        "street": "main street",
        "zipcode": "62701",
        "city": "springfield",
        "complement": "apartment 4",
    }
    partial = g.interpret("twelve oak avenue boston")
    assert partial.kind is MatchKind.PARTIAL
    assert partial.value == {
        "number": "12",
        "street": "oak avenue",
        "zipcode": "",
        "city": "boston",
        "complement": "",
    }
    assert g.interpret("hello").kind is MatchKind.NONE


def test_text2num_and_transcribe() -> None:
    t2n = load_grammar("builtin:speech/text2num")
    assert t2n.interpret("I want twenty three tickets").value == "i want 23 tickets"
    assert t2n.interpret("je voudrais changer trois billets", "fr-FR").value == (
        "je voudrais changer 3 billets"
    )
    free = load_grammar("builtin:speech/transcribe")
    assert free.interpret("Hello, World!").value == "hello world"
    assert free.interpret("  ").kind is MatchKind.NONE
    assert free.constraint().free


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("March fifth, twenty twenty four", (5, 3, 2024, True)),
        ("the 31st of December 1999", (31, 12, 1999, True)),
        ("3/5/2024", (5, 3, 2024, True)),
        ("2024-03-05", (5, 3, 2024, True)),
        ("july fourth", (4, 7, None, False)),
        ("february thirtieth two thousand and one", (30, 2, 2001, False)),
        ("february twenty ninth two thousand", (29, 2, 2000, True)),
        ("the twenty first", (21, None, None, False)),
    ],
)
def test_date(text: str, value: tuple[int | None, int | None, int | None, bool]) -> None:
    result = load_grammar("builtin:speech/date").interpret(text)
    day, month, year, valid = value
    assert result.value == {"day": day, "month": month, "year": year, "valid": valid}
    full = day is not None and month is not None and year is not None
    assert result.kind is (MatchKind.FULL if full else MatchKind.PARTIAL)


def test_date_day_first_region() -> None:
    result = load_grammar("builtin:speech/date").interpret("3/5/2024", "en-GB")
    assert result.value == {"day": 3, "month": 5, "year": 2024, "valid": True}


# -- property-style loops ----------------------------------------------------------------


def test_property_spoken_numbers_round_trip() -> None:
    rng = random.Random(1234)
    g = load_grammar("builtin:speech/spelling/digits")
    for _ in range(400):
        groups = [rng.randrange(0, 100) for _ in range(rng.randrange(1, 5))]
        spoken: list[str] = []
        expected = ""
        for n in groups:
            if n < 10 or n % 10 == 0 or rng.random() < 0.3:
                # digit by digit ("seventy" then "five" would rightly read as 75)
                spoken += [ONES[int(c)] if rng.random() < 0.8 else c for c in str(n)]
            else:
                spoken.append(words_below_100(n))
            expected += str(n)
        text = " ".join(spoken)
        result = g.interpret(text)
        assert result.value == expected, text


def test_property_hundreds_and_thousands() -> None:
    rng = random.Random(99)
    g = load_grammar("builtin:speech/spelling/digits")
    for _ in range(300):
        n = rng.randrange(100, 100_000)
        thousands, rest = divmod(n, 1000)
        hundreds, low = divmod(rest, 100)
        parts: list[str] = []
        if thousands:
            parts.append(f"{words_below_100(thousands)} thousand")
        if hundreds:
            parts.append(f"{ONES[hundreds]} hundred")
        if low:
            parts.append(("and " if rng.random() < 0.3 and parts else "") + words_below_100(low))
        text = " ".join(parts)
        assert g.interpret(text).value == str(n), text


def test_property_dates() -> None:
    rng = random.Random(2024)
    g = load_grammar("builtin:speech/date")
    month_names = [m.lower() for m in calendar.month_name]
    for _ in range(500):
        year = rng.randrange(1900, 2100)
        month = rng.randrange(1, 13)
        day = rng.randrange(1, calendar.monthrange(year, month)[1] + 1)
        style = rng.randrange(5)
        if style == 0:
            text = f"{month_names[month]} {ordinal_words(day)} {year_words(year)}"
        elif style == 1:
            text = f"the {ordinal_words(day)} of {month_names[month]} {year_words(year)}"
        elif style == 2:
            text = f"{month_names[month].title()} {day}, {year}"
        elif style == 3:
            text = f"{month}/{day}/{year}"
        else:
            text = f"{day} {month_names[month][:3]} {year}"
        result = g.interpret(text)
        assert result.value == {"day": day, "month": month, "year": year, "valid": True}, text
        assert result.kind is MatchKind.FULL


@pytest.mark.parametrize(
    ("uri", "text"),
    [
        ("builtin:speech/spelling/mixed", "My neighbor has a very friendly cat."),
        ("builtin:speech/spelling/mixed", "I would rather not answer that question."),
        ("builtin:speech/spelling/digits", "I would like to order two large pizzas tonight."),
    ],
)
def test_spelled_grammars_reject_sentences_with_a_stray_letter_or_number(
    uri: str, text: str
) -> None:
    # A stray "a", "I" or number word in a sentence is not a spelled code (corpus finding).
    assert load_grammar(uri).interpret(text).kind is MatchKind.NONE


@pytest.mark.parametrize(
    "text",
    [
        "4 5 1 2", "45 12", "4512", "4512.", "4,512", "4-5-1-2", "4.5.1.2", "45-12", "#4512",
        "four five one two", "Four, five, one, two.", "four-five-one-two", "forty five twelve",
        "Forty-five, twelve.", "45 1 2", "Four five, one two.", "45. 12.",
        "For five one two.", "Four five one to.", "four five one too", "It's 4512.",
        "It is 4512, thank you.", "4 5 1 2, thank you.", "Sure, it is 4512.", "Yeah, 4512.",
        "OK, 4512", "Okay. 4, 5, 1, 2.", "The number is 4 5 1 2", "Um, 4512", "4512 please",
        "four thousand five hundred twelve", "My code is forty five, twelve. Thanks.",
    ],
)  # fmt: skip
def test_digits_as_whisper_writes_them(text: str) -> None:
    """Whisper writes spoken digits as numerals, grouped or not, with punctuation,
    homophones ("for", "to") and politeness around them: all read as the same code."""
    result = load_grammar("builtin:speech/spelling/digits?length=4").interpret(text)
    assert (result.kind, result.value) == (MatchKind.FULL, "4512"), text


@pytest.mark.parametrize(
    "text",
    [
        "AB12", "Ab12.", "It is AB12.", "A B 1 2", "A, B, 1, 2.", "A-B-1-2", "a b one two",
        "alpha bravo one two", "Alpha Bravo 12", "A B twelve", "OK, AB12", "AB 12", "A B12",
        "AB twelve, thank you",
    ],
)  # fmt: skip
def test_mixed_spelling_as_whisper_writes_it(text: str) -> None:
    result = load_grammar("builtin:speech/spelling/mixed?regex=[a-z]{2}[0-9]{2}").interpret(text)
    assert (result.kind, result.value) == (MatchKind.FULL, "ab12"), text


def test_code_tokens_split_caps_and_alnum_but_keep_words_and_ordinals() -> None:
    from callbridge.speech.grammars.spelled import code_tokens

    assert code_tokens("The code is 4B7KQ", letters=True) == [
        "the", "code", "is", "4", "b", "7", "k", "q"
    ]  # fmt: skip
    assert code_tokens("ABC 123, OK", letters=True) == ["a", "b", "c", "123", "ok"]
    assert code_tokens("ABC 123", letters=False) == ["abc", "123"]
    assert code_tokens("the 1st of May", letters=False) == ["the", "1st", "of", "may"]
    assert code_tokens("I want to pay for it", letters=False) == [
        "i", "want", "to", "pay", "for", "it"
    ]  # fmt: skip
    assert code_tokens("5 to 9 for 2", letters=False) == ["5", "two", "9", "four", "2"]


@pytest.mark.parametrize(
    "text",
    [
        "I want to pay for it tomorrow.",
        "We are open from 9 in the morning until 6 in the evening.",
        "I need to transfer 200 dollars to my daughter's account.",
        "Thank you for calling, how can I help you today?",
    ],
)  # fmt: skip
def test_digits_still_reject_sentences(text: str) -> None:
    assert load_grammar("builtin:speech/spelling/digits").interpret(text).kind is MatchKind.NONE


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("720-074199", "720074199"), ("2 1, 0, 7", "2107"), ("seven, two, oh, seven", "7207"),
        ("Double-seven two.", "772"), ("It's two-one-seven-seven-one.", "21771"),
        ("Seven two zero seven four one nine nine.", "72074199"), ("Triple 5 9", "5559"),
        ("The number is two, zero, four, seven.", "2047"), ("My code is... 4 8 7 1.", "4871"),
        ("zero-zero seven", "007"), ("Number: 2 0 4 7", "2047"),
    ],
)  # fmt: skip
def test_digits_in_more_whisper_formats(text: str, value: str) -> None:
    result = load_grammar("builtin:speech/spelling/digits").interpret(text)
    assert (result.kind, result.value, result.confidence) == (MatchKind.FULL, value, 1.0), text


@pytest.mark.parametrize(
    ("uri", "words"),
    [
        ("builtin:speech/spelling/digits", "one two three"),
        ("builtin:speech/spelling/phone_number", "one two three"),
        ("builtin:speech/zipcode", "one two three"),
        ("builtin:speech/spelling/mixed", "a b one two"),
        ("builtin:speech/boolean", "yes no"),
    ],
)
def test_constraints_prompt_whisper_in_the_interpreters_style(uri: str, words: str) -> None:
    constraint = load_grammar(uri).constraint()
    assert constraint.prompt is not None
    assert all(w in normalize(constraint.prompt).split() for w in words.split())
    assert set(words.split()) <= {normalize(w) for w in constraint.vocabulary}


def test_keywords_prompt_and_vocabulary_are_the_alternatives() -> None:
    g = load_grammar("builtin:speech/keywords?alternatives=billing|technical support|sales")
    constraint = g.constraint()
    assert constraint.prompt == "billing, technical support, sales."
    assert {"billing", "technical", "support", "sales"} <= set(constraint.vocabulary)
    assert constraint.keyphrases == ("billing", "technical support", "sales")


def _carrier_words(jsgf_text: str) -> list[str]:
    [rule] = [line for line in jsgf_text.splitlines() if line.startswith("<carrier> =")]
    return rule.removeprefix("<carrier> =").rstrip(";").replace("|", " ").split()


@pytest.mark.parametrize(
    ("uri", "payload", "value"),
    [
        ("builtin:speech/spelling/digits", "four five one two", "4512"),
        ("builtin:speech/spelling/digits?length=4", "four five one two", "4512"),
        ("builtin:speech/zipcode", "nine four one zero five", "94105"),
        ("builtin:speech/boolean", "yes", True),
        ("builtin:speech/boolean", "no", False),
        ("builtin:speech/keywords?alternatives=billing|technical support|sales", "sales", "sales"),
    ],
)
def test_jsgf_carrier_words_surround_the_payload_and_interpret_away(
    uri: str, payload: str, value: object
) -> None:
    """The constrained decoder may wrap the payload in carrier words; every such reading must
    still interpret to the payload's value (carriers are words the interpreter ignores)."""
    g = load_grammar(uri)
    text = g.constraint().jsgf or ""
    assert "public <main> = <carrier>* (" in text and ") <carrier>*;" in text
    carriers = _carrier_words(text)
    assert carriers
    for word in carriers:
        for reading in (f"{word} {payload}", f"{payload} {word}"):
            result = g.interpret(reading)
            assert (result.kind, result.value) == (MatchKind.FULL, value), reading


def test_code_carriers_are_no_digit_homophones() -> None:
    from callbridge.speech.grammars.spelled import CODE_CARRIER

    assert not {"oh", "o", "to", "too", "for", "fore", "a", "ate", "won"} & set(CODE_CARRIER)


def test_boolean_jsgf_answers_are_all_interpretable() -> None:
    g = load_grammar("builtin:speech/boolean")
    text = g.constraint().jsgf or ""
    [rule] = [line for line in text.splitlines() if line.startswith("<answer> =")]
    answers = rule.removeprefix("<answer> =").rstrip(";").split("|")
    assert len(answers) > 20
    for answer in answers:
        result = g.interpret(answer.strip())
        assert result.kind is MatchKind.FULL, answer
