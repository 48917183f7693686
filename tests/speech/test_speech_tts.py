"""The synthesizer interface with a fake engine: SSML subset, streaming, voices, cache."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from callbridge.speech.tts import PromptCache, Segment, SsmlError, Synthesizer, Voice, parse_text


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
