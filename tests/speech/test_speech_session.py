"""The recognizer interface with the fake engine: endpointing, ordering, grammar, errors."""

from __future__ import annotations

import asyncio

import pytest

from callbridge.media.constants import FRAME_BYTES
from callbridge.media.tones import tone
from callbridge.speech.asr import (
    FakeRecognizer,
    Final,
    Interim,
    NoMatch,
    RecognitionError,
    RecognitionEvent,
    ScriptedUtterance,
    SessionOptions,
    SpeechEnded,
    SpeechStarted,
)
from callbridge.speech.asr.base import DecodeResult
from callbridge.speech.asr.session import SegmentingSession
from callbridge.speech.grammars import MatchKind, load_grammar
from callbridge.speech.registry import asr_engines, create_recognizer, tts_engines


def frames(pcm: bytes) -> list[bytes]:
    pcm += bytes(-len(pcm) % FRAME_BYTES)
    return [pcm[i : i + FRAME_BYTES] for i in range(0, len(pcm), FRAME_BYTES)]


def speech(ms: int) -> bytes:
    return tone(440.0, ms, -12.0)


def silence(ms: int) -> bytes:
    return bytes(ms * 16)


async def run(session: object, audio: bytes) -> list[RecognitionEvent]:
    from callbridge.speech.asr.base import RecognitionSession

    assert isinstance(session, RecognitionSession)
    for frame in frames(audio):
        await session.push(frame)
    await session.finish()
    return [event async for event in session.events()]


async def test_two_utterances_in_order() -> None:
    fake = FakeRecognizer(["hello there", "goodbye"], delay=0.01)
    events = await run(
        fake.open_session(), silence(300) + speech(800) + silence(900) + speech(500) + silence(900)
    )
    kinds = [type(e).__name__ for e in events]
    both_first = ["SpeechStarted", "SpeechEnded"] * 2 + ["Final", "Final"]
    interleaved = ["SpeechStarted", "SpeechEnded", "Final"] * 2
    assert kinds in (both_first, interleaved)
    finals = [e for e in events if isinstance(e, Final)]
    assert [f.transcript for f in finals] == ["hello there", "goodbye"]
    started = [e for e in events if isinstance(e, SpeechStarted)]
    ended = [e for e in events if isinstance(e, SpeechEnded)]
    assert 280 <= started[0].time_ms <= 360
    assert 1080 <= ended[0].time_ms <= 1160
    assert finals[0].start_ms <= started[0].time_ms and finals[0].end_ms == ended[0].time_ms
    # The decoder got the utterance with pre-roll, not the whole stream.
    assert 800 * 16 <= len(fake.decoded[0]) <= 1400 * 16


async def test_open_utterance_is_closed_by_finish() -> None:
    fake = FakeRecognizer(["still talking"])
    events = await run(fake.open_session(), silence(200) + speech(600))
    assert isinstance(events[-1], Final) and events[-1].transcript == "still talking"


async def test_grammar_mode_interprets_and_rejects() -> None:
    grammar = load_grammar("builtin:speech/boolean")
    fake = FakeRecognizer(
        ["Yeah.", "I want to book a flight", ScriptedUtterance("yes", rejected=True), ""]
    )
    audio = b"".join(speech(400) + silence(800) for _ in range(4))
    events = await run(fake.open_session(SessionOptions(grammar=grammar)), audio)
    results = [e for e in events if isinstance(e, Final | NoMatch)]
    assert isinstance(results[0], Final)
    assert results[0].interpretation is not None
    assert results[0].interpretation.kind is MatchKind.FULL
    assert results[0].interpretation.value is True
    assert isinstance(results[1], NoMatch) and results[1].reason == "out of grammar"
    assert isinstance(results[2], NoMatch) and results[2].reason == "scripted rejection"
    assert isinstance(results[3], NoMatch) and results[3].reason == "no speech recognized"


async def test_interims_are_rate_bounded() -> None:
    fake = FakeRecognizer([ScriptedUtterance("one two three", interim="one two")])
    options = SessionOptions(interim_results=True, interim_interval_ms=300)
    session = fake.open_session(options)
    for frame in frames(speech(2000)):
        await session.push(frame)
        await asyncio.sleep(0)
    for frame in frames(silence(800)):
        await session.push(frame)
    await session.finish()
    events = [e async for e in session.events()]
    interims = [e for e in events if isinstance(e, Interim)]
    assert 2 <= len(interims) <= 7
    assert all(i.text == "one two" for i in interims)
    assert events.index(interims[-1]) < next(
        i for i, e in enumerate(events) if isinstance(e, Final)
    )


async def test_final_is_not_queued_behind_a_stale_interim() -> None:
    """At the endpoint the running interim decode is cancelled and the final goes at once."""
    from callbridge.media.vad import EnergyVAD

    interim_started = asyncio.Event()
    interim_cancelled = asyncio.Event()
    finals_at: list[float] = []
    loop = asyncio.get_running_loop()

    async def decode(pcm: bytes, final: bool, options: SessionOptions) -> DecodeResult:
        if not final:
            interim_started.set()
            try:
                await asyncio.sleep(30)  # a slow interim on a busy engine
            except asyncio.CancelledError:
                interim_cancelled.set()
                raise
            return DecodeResult("stale", 0.5)
        finals_at.append(loop.time())
        return DecodeResult("the final", 0.9)

    options = SessionOptions(interim_results=True, interim_interval_ms=200, speech_end_ms=300)
    session = SegmentingSession(decode, options, vad=EnergyVAD(-40))
    for frame in frames(speech(600)):
        await session.push(frame)
    await asyncio.wait_for(interim_started.wait(), 1)
    for frame in frames(silence(400)):
        await session.push(frame)
    ended_at = loop.time()
    await asyncio.wait_for(interim_cancelled.wait(), 1)
    await session.finish()
    events = [e async for e in session.events()]
    assert [e.transcript for e in events if isinstance(e, Final)] == ["the final"]
    assert not any(isinstance(e, Interim) for e in events)
    assert session.interims_cancelled == 1
    assert finals_at and finals_at[0] - ended_at < 0.05  # submitted at the endpoint


async def test_engine_failure_is_an_event_not_a_crash() -> None:
    calls = 0

    async def decode(pcm: bytes, final: bool, options: SessionOptions) -> DecodeResult:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("engine exploded")
        return DecodeResult("fine", 0.8)

    session = SegmentingSession(decode, SessionOptions())
    from callbridge.media.vad import EnergyVAD

    session = SegmentingSession(decode, SessionOptions(), vad=EnergyVAD(-40))
    events = await run(session, speech(400) + silence(800) + speech(400) + silence(800))
    results = [e for e in events if isinstance(e, Final | NoMatch | RecognitionError)]
    assert isinstance(results[0], RecognitionError) and "engine exploded" in results[0].message
    assert isinstance(results[1], Final) and results[1].transcript == "fine"


async def test_back_pressure_bounds_pending_finals() -> None:
    gate = asyncio.Event()
    pending = 0
    peak = 0

    async def decode(pcm: bytes, final: bool, options: SessionOptions) -> DecodeResult:
        nonlocal pending, peak
        pending += 1
        peak = max(peak, pending)
        await gate.wait()
        pending -= 1
        return DecodeResult("x", 1.0)

    from callbridge.media.vad import EnergyVAD

    session = SegmentingSession(decode, SessionOptions(), vad=EnergyVAD(-40), max_pending=2)
    audio = b"".join(speech(200) + silence(600) for _ in range(5))

    async def feed() -> None:
        for frame in frames(audio):
            await session.push(frame)

    feeder = asyncio.create_task(feed())
    await asyncio.sleep(0.2)
    assert not feeder.done()  # blocked by back-pressure: 3rd utterance waits
    assert peak == 2
    gate.set()
    await feeder
    await session.finish()
    assert sum(isinstance(e, Final) for e in [e async for e in session.events()]) == 5


async def test_bad_frames_and_closed_session() -> None:
    session = FakeRecognizer().open_session()
    with pytest.raises(ValueError, match="320-byte"):
        await session.push(b"\x00" * 100)
    await session.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await session.push(bytes(FRAME_BYTES))
    assert [e async for e in session.events()] == []


def test_session_options_validation() -> None:
    with pytest.raises(ValueError):
        SessionOptions(interim_interval_ms=10)
    with pytest.raises(ValueError):
        SessionOptions(max_utterance_ms=10)


def test_registry_lists_builtins_and_finds_plugins_by_entry_point(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from importlib.metadata import EntryPoint

    import callbridge.speech.registry as registry

    assert {"whisper", "sphinx"} <= set(asr_engines())
    assert "fake" not in asr_engines()  # test doubles are never production engines
    assert {"piper", "espeak"} <= set(tts_engines())
    plugin = EntryPoint(
        name="fake", value="callbridge.speech.asr.fake:FakeRecognizer", group=registry.ASR_GROUP
    )
    monkeypatch.setattr(
        registry,
        "entry_points",
        lambda group: [plugin] if group == registry.ASR_GROUP else [],
    )
    assert isinstance(create_recognizer("fake"), FakeRecognizer)
    with pytest.raises(ValueError, match="unknown ASR engine"):
        create_recognizer("nope")


def test_sphinx_evidence_band_maps_confidence_and_decides() -> None:
    """The evidence band (decision 042): accept / uncertain / reject without any engine."""
    from callbridge.speech.asr.base import Alternative
    from callbridge.speech.asr.sphinx import SphinxRecognizer, SphinxResult

    rec = SphinxRecognizer(accept_evidence=-2000.0, reject_evidence=-8000.0)

    def band(evidence: float | None) -> tuple[float, str, bool]:
        raw = SphinxResult("yes", 1.0, nbest=(Alternative("yes", 1.0),), evidence=evidence)
        result, kind = rec._with_evidence(raw)
        assert result.nbest[0].confidence == result.confidence
        return result.confidence, kind, result.rejected

    assert band(-1000.0) == (1.0, "accepted", False)
    assert band(-5000.0) == (0.5, "uncertain", False)
    assert band(-9000.0) == (0.0, "rejected", True)
    assert band(None) == (1.0, "uncertain", False)  # no evidence: the cross-check decides
    default = SphinxRecognizer()  # band off: everything is uncertain, confidence untouched
    kept, kind = default._with_evidence(SphinxResult("yes", 1.0, evidence=-99999.0))
    assert (kept.confidence, kind, kept.rejected) == (1.0, "uncertain", False)
    with pytest.raises(ValueError):
        SphinxRecognizer(accept_evidence=-9000.0, reject_evidence=-8000.0)


def test_cross_check_fusion_rules() -> None:
    """Decision 043: the free reading rejects, agreement keeps PocketSphinx, a full match
    beats a partial one, and between two full readings Whisper's wins."""
    from callbridge.speech.asr.base import Alternative
    from callbridge.speech.asr.sphinx import SphinxRecognizer

    def res(text: str, conf: float = 0.8) -> DecodeResult:
        return DecodeResult(text, conf, nbest=(Alternative(text, conf),))

    four = load_grammar("builtin:speech/spelling/digits?length=4")
    check = SphinxRecognizer.cross_check
    rejected = check(res("four five one two"), res("I would rather not say."), four, "en-US")
    assert rejected.rejected and "out of grammar" in rejected.reason
    agreed = check(res("it's four five one two"), res("It's 4512.", 0.9), four, "en-US")
    assert (agreed.transcript, agreed.confidence) == ("it's four five one two", 0.9)
    # Whisper heard five digits (partial for length=4), PocketSphinx a full four-digit code.
    full = check(res("four five one two"), res("4 5 1 2 9"), four, "en-US")
    assert full.transcript == "four five one two" and not full.rejected
    assert [a.transcript for a in full.nbest] == ["four five one two", "4 5 1 2 9"]
    # Two full readings that differ: Whisper's.
    both = check(res("four five one two"), res("4 5 1 7"), four, "en-US")
    assert both.transcript == "4 5 1 7" and both.nbest[0].transcript == "4 5 1 7"
    # A sphinx result already rejected by an earlier layer stays rejected.
    early = DecodeResult("yes", 0.0, rejected=True, reason="band")
    assert check(early, res("4512"), four, "en-US") is early


def test_constrained_reading_replaces_only_a_doubtful_free_reading() -> None:
    from callbridge.speech.asr.whisper import choose_reading, needs_constrained_pass

    digits = load_grammar("builtin:speech/spelling/digits")
    clean = DecodeResult("It's two one seven seven one.", 0.9)
    doubtful = DecodeResult("My code is four eight seven months.", 0.5)
    oog = DecodeResult("The kids are playing in the garden.", 0.9)
    assert not needs_constrained_pass(digits, clean, "en-US")
    assert needs_constrained_pass(digits, doubtful, "en-US")
    assert not needs_constrained_pass(digits, oog, "en-US")  # rejection is not at stake
    constrained = DecodeResult("My code is four eight seven one.", 0.7)
    chosen = choose_reading(digits, doubtful, constrained, "en-US")
    assert chosen.transcript == constrained.transcript
    assert [a.transcript for a in chosen.nbest] == [constrained.transcript]
    # A constrained reading that is no cleaner, or an out-of-grammar free reading, loses.
    worse = DecodeResult("months four eight", 0.7)
    assert choose_reading(digits, doubtful, worse, "en-US") is doubtful
    assert choose_reading(digits, oog, constrained, "en-US") is oog


def test_grouped_numerals_ask_for_the_constrained_digit_reading() -> None:
    from callbridge.speech.asr.whisper import choose_reading, needs_constrained_pass

    digits = load_grammar("builtin:speech/spelling/digits")
    grouped = DecodeResult("It's 5, 220, 0, 967, 0.", 0.8)  # tiny.en merged "two zero"
    assert digits.interpret(grouped.transcript).confidence == 1.0  # explained, yet doubtful
    assert needs_constrained_pass(digits, grouped, "en-US")
    # Single numerals too (decision 046: "My code is 5" for "five five nine six").
    assert needs_constrained_pass(digits, DecodeResult("It's 5 2 2 0.", 0.8), "en-US")
    assert not needs_constrained_pass(digits, DecodeResult("It's five two.", 0.8), "en-US")
    spelled = DecodeResult("It's five two two zero nine six seven zero.", 0.7)
    assert choose_reading(digits, grouped, spelled, "en-US").transcript == spelled.transcript
    also_grouped = DecodeResult("It's 52209670.", 0.9)
    assert choose_reading(digits, grouped, also_grouped, "en-US") is grouped


async def test_second_opinion_keeps_an_in_grammar_reading_only_when_both_constrained_agree() -> (
    None
):
    """Free Whisper missed the grammar, PocketSphinx heard it: a vocabulary-restricted
    Whisper pass must give the same value for the reading to stand (decision 043)."""
    from typing import Any, cast

    from callbridge.speech.asr.sphinx import SphinxRecognizer
    from callbridge.speech.asr.whisper import WhisperRecognizer

    class Restricted:
        def __init__(self, text: str) -> None:
            self.text = text
            self.calls = 0

        async def transcribe_constrained(self, pcm: bytes, grammar: Any, **_: Any) -> Any:
            self.calls += 1
            return DecodeResult(self.text, 0.6)

    grammar = load_grammar("builtin:speech/keywords?alternatives=billing|sales")
    free = DecodeResult("For me through the mail please.", 0.6)
    sphinx = DecodeResult("put me through sales please", 1.0)

    async def fused(text: str, sphinx_result: DecodeResult = sphinx) -> DecodeResult:
        stub = Restricted(text)
        rec = SphinxRecognizer(verifier=cast(WhisperRecognizer, stub))
        whisper = await rec._second_opinion(b"", sphinx_result, free, grammar, "en-US", 8000)
        return rec.cross_check(sphinx_result, whisper, grammar, "en-US")

    agreed = await fused("Put me through the sales please.")
    assert not agreed.rejected and grammar.interpret(agreed.transcript).value == "sales"
    assert (await fused("I need billing.")).rejected  # a different value: no
    assert (await fused("So, please,")).rejected  # carriers only: out of grammar
    forced = DecodeResult("billing", 1.0)
    assert (await fused("billing", forced)).transcript == "billing"
    off = SphinxRecognizer(verifier=cast(WhisperRecognizer, Restricted("sales")))
    off.second_opinion = False
    whisper = await off._second_opinion(b"", sphinx, free, grammar, "en-US", 8000)
    assert whisper is free


async def finals_of(fake: FakeRecognizer, options: SessionOptions, audio: bytes) -> list[Final]:
    return [e for e in await run(fake.open_session(options), audio) if isinstance(e, Final)]


async def test_speech_resuming_within_the_join_window_is_decoded_with_what_came_before() -> None:
    fake = FakeRecognizer(["four five six", "four five six seven eight"])
    options = SessionOptions(speech_end_ms=200, join_within_ms=800)
    audio = silence(300) + speech(600) + silence(500) + speech(400) + silence(900)
    finals = await finals_of(fake, options, audio)
    assert [f.transcript for f in finals] == ["four five six", "four five six seven eight"]
    # The second final covers the first utterance, the pause and the new speech, and starts
    # where the first did, so a consumer can let it supersede the first.
    assert finals[1].start_ms == finals[0].start_ms
    assert finals[1].end_ms > finals[0].end_ms
    first, joined = fake.decoded
    assert joined.startswith(first[: len(first) - 200 * 16])  # same audio, tail aside
    assert len(joined) >= (600 + 500 + 400) * 16
    # Without the window the same audio gives two independent utterances.
    fake = FakeRecognizer(["four five six", "seven eight"])
    finals = await finals_of(fake, SessionOptions(speech_end_ms=200), audio)
    assert finals[1].start_ms > finals[0].end_ms
    assert len(fake.decoded[1]) < (400 + 600) * 16


async def test_a_pause_longer_than_the_join_window_starts_a_new_utterance() -> None:
    fake = FakeRecognizer(["yes", "hello"])
    options = SessionOptions(speech_end_ms=200, join_within_ms=300)
    audio = silence(300) + speech(500) + silence(1000) + speech(400) + silence(600)
    finals = await finals_of(fake, options, audio)
    assert finals[1].start_ms > finals[0].end_ms
    assert len(fake.decoded[1]) < 1000 * 16


async def test_a_forced_endpoint_is_not_joined() -> None:
    fake = FakeRecognizer(["a", "b", "c"])
    options = SessionOptions(speech_end_ms=200, join_within_ms=800, max_utterance_ms=1000)
    finals = await finals_of(fake, options, silence(200) + speech(2500) + silence(600))
    # Cut at the 1 s cap and not glued back together: every decode stays within the cap.
    assert len(finals) >= 2
    assert all(len(pcm) <= (1000 + 200) * 16 for pcm in fake.decoded)
    assert finals[1].start_ms > finals[0].start_ms  # its own start (pre-roll), not the chain's


def test_join_window_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="join_within_ms"):
        SessionOptions(join_within_ms=-1)
