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
