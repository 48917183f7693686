"""The synthesizer interface: text or a small SSML subset → 8 kHz PCM16, sentence by sentence.

Supported SSML (anything else is rejected with :class:`SsmlError`, never spoken as markup):
``<speak>``, ``<break time="500ms|1s"/>`` (or ``strength=…``), ``<say-as interpret-as="digits">``
(also ``characters``/``spell-out``), ``<s>``/``<p>`` (sentence boundaries).

:meth:`Synthesizer.stream` yields :class:`AudioChunk` s as each sentence is produced, so the
first audio plays while the rest is synthesised. Engines run off the event loop: the built-in
ones in worker processes (:mod:`.workers`, decision 044: Piper's phonemiser holds the GIL,
eSpeak NG runs one synthesis per process), an engine without workers in a thread.
:class:`PromptCache` memoises whole prompts in this process.
"""

from __future__ import annotations

import asyncio
import re
import threading
import xml.etree.ElementTree as ET
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

from callbridge.media.constants import BYTES_PER_SECOND, bytes_for_ms
from callbridge.media.resample import Resampler

if TYPE_CHECKING:
    from callbridge.speech.tts.workers import SynthesisWorkers

__all__ = [
    "AudioChunk",
    "PromptCache",
    "Segment",
    "SsmlError",
    "Synthesizer",
    "Voice",
    "parse_text",
    "resample_chunks",
]

#: Longest input accepted (characters).
MAX_TEXT: Final = 20_000
#: Longest ``<break>`` (ms).
MAX_BREAK_MS: Final = 10_000
_STRENGTH_MS: Final = {"none": 0, "x-weak": 100, "weak": 200, "medium": 400, "strong": 700}
_STRENGTH_MS_X: Final = {"x-strong": 1000}
_SENTENCE_RE: Final = re.compile(r"(?<=[.!?;:])\s+")
_DIGIT_NAMES: Final = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
]


class SsmlError(ValueError):
    """The SSML is malformed or uses an unsupported element or attribute."""


@dataclass(frozen=True, slots=True)
class Voice:
    """A voice an engine offers."""

    name: str
    language: str
    gender: Literal["male", "female", "neutral"]
    engine: str


@dataclass(frozen=True, slots=True)
class Segment:
    """A sentence to speak (``text``) or a pause (``pause_ms``)."""

    text: str = ""
    pause_ms: int = 0


@dataclass(frozen=True, slots=True)
class AudioChunk:
    """8 kHz PCM16 mono; the prompt ends with an empty chunk marked ``final``.

    Chunks are handed over as soon as the engine produces them; the end of the prompt is
    an extra empty ``final`` chunk, so the first sentence never waits for the second.
    """

    pcm: bytes
    final: bool = False

    @property
    def duration_ms(self) -> float:
        """Duration of the chunk."""
        return len(self.pcm) * 1000 / BYTES_PER_SECOND


def _spell_digits(text: str) -> str:
    out = [_DIGIT_NAMES[int(c)] if c.isdigit() else c for c in text if not c.isspace()]
    return " ".join(out)


def _break_ms(elem: ET.Element) -> int:
    time = elem.get("time")
    if time is not None:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s)\s*", time)
        if match is None:
            raise SsmlError(f"bad <break time={time!r}> (expected e.g. 500ms or 1s)")
        value = float(match.group(1)) * (1000 if match.group(2) == "s" else 1)
        return min(int(value), MAX_BREAK_MS)
    strength = elem.get("strength", "medium")
    ms = (_STRENGTH_MS | _STRENGTH_MS_X).get(strength)
    if ms is None:
        raise SsmlError(f"bad <break strength={strength!r}>")
    return ms


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_RE.split(" ".join(text.split())) if s.strip()]


def parse_text(text: str) -> list[Segment]:
    """Plain text or SSML (starting with ``<speak``) → sentences and pauses."""
    if len(text) > MAX_TEXT:
        raise SsmlError(f"text longer than {MAX_TEXT} characters")
    stripped = text.strip()
    if not stripped.startswith("<speak"):
        return [Segment(s) for s in _sentences(stripped)]
    try:
        root = ET.fromstring(stripped)  # noqa: S314 - no DTDs/entities are expanded
    except ET.ParseError as exc:
        raise SsmlError(f"malformed SSML: {exc}") from exc
    if root.tag.split("}")[-1] != "speak":
        raise SsmlError("SSML root must be <speak>")
    segments: list[Segment] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            joined = re.sub(r"\s+([.,!?;:])", r"\1", " ".join(pending))
            segments.extend(Segment(s) for s in _sentences(joined))
            pending.clear()

    def walk(elem: ET.Element) -> None:
        if elem.text:
            pending.append(elem.text)
        for child in elem:
            tag = child.tag.split("}")[-1]
            if tag == "break":
                flush()
                segments.append(Segment(pause_ms=_break_ms(child)))
            elif tag == "say-as":
                how = child.get("interpret-as", "")
                inner = "".join(child.itertext())
                if how == "digits":
                    pending.append(_spell_digits(inner))
                elif how in ("characters", "spell-out"):
                    pending.append(" ".join(
                        _spell_digits(c) if c.isdigit() else c for c in inner if not c.isspace()
                    ))  # fmt: skip
                else:
                    raise SsmlError(f"unsupported say-as interpret-as={how!r}")
            elif tag in ("s", "p"):
                flush()
                walk(child)
                flush()
            else:
                raise SsmlError(f"unsupported SSML element <{tag}>")
            if child.tail:
                pending.append(child.tail)

    walk(root)
    flush()
    return segments


def resample_chunks(resampler: Resampler, pcm: bytes, last: bool) -> bytes:
    """Push engine audio through a stateful resampler (flush on the last chunk)."""
    out = resampler.process(pcm)
    if last:
        out += resampler.flush()
    return out


class Synthesizer(ABC):
    """A text-to-speech engine producing 8 kHz PCM16."""

    #: Engine name used by discovery and the CLI (``piper``, ``espeak``).
    name: str = ""
    #: Output rate: 8 kHz (the internal format) unless an engine was built for another
    #: rate (e.g. ``callbridge say --wideband``).
    sample_rate: int = 8000

    @abstractmethod
    def voices(self) -> list[Voice]:
        """The voices available."""

    def voice_for(self, language: str = "en-US", gender: str | None = None) -> Voice:
        """The best voice for a language (and gender); ValueError if none."""
        lang = language.lower().replace("_", "-")
        candidates = [v for v in self.voices() if v.language.lower() == lang] or [
            v for v in self.voices() if v.language.lower().split("-")[0] == lang.split("-")[0]
        ]
        if gender:
            candidates = [v for v in candidates if v.gender == gender] or candidates
        if not candidates:
            raise ValueError(f"{self.name} has no voice for language {language!r}")
        return candidates[0]

    @abstractmethod
    def synthesize_sentences(self, segments: list[Segment], voice: Voice) -> Iterator[bytes]:
        """Blocking, in this process: yield PCM16 per segment (a worker thread or process)."""

    def plan(self, segments: list[Segment]) -> list[Segment]:
        """The segments a worker synthesises one by one (an engine may split the first
        sentence for a faster first audio); :meth:`synthesize_sentences` applies it itself."""
        return segments

    def synthesize_segment(self, segment: Segment, voice: Voice) -> bytes:
        """Blocking, in this process: one planned segment's PCM16 (a worker process's job)."""
        return b"".join(self.synthesize_sentences([segment], voice))

    def preload(self) -> None:  # noqa: B027 - optional hook
        """Blocking, in this process: load and warm the engine (worker processes call it)."""

    #: The engine's worker processes; ``None``: synthesis runs in a thread of this process.
    _workers: SynthesisWorkers | None = None

    def worker_pids(self) -> list[int | None]:
        """The worker processes' ids (empty when synthesis runs in this process)."""
        workers = self._workers
        pool = workers.pool if workers is not None else None
        return pool.worker_pids() if pool is not None else []

    async def start(self) -> None:
        """Load and warm the engine (its worker processes, or in a thread), so the first
        prompt does not pay for it; otherwise the first :meth:`stream` does."""
        if self._workers is not None:
            await self._workers.start()
        else:
            await asyncio.to_thread(self.preload)

    async def stream(
        self, text: str, *, voice: str | None = None, language: str = "en-US"
    ) -> AsyncIterator[AudioChunk]:
        """Synthesise ``text``/SSML; yields one chunk per sentence or pause as produced,
        then an empty ``final`` chunk."""
        segments = parse_text(text)
        chosen = self._voice_named(voice) if voice else self.voice_for(language)
        if self._workers is not None:
            pieces = self._workers.stream(self.plan(segments), chosen, self.sample_rate)
            try:
                async for pcm in pieces:
                    yield AudioChunk(pcm)
            finally:
                await pieces.aclose()
            yield AudioChunk(b"", final=True)
            return
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue(maxsize=4)
        stop = threading.Event()

        def produce() -> None:
            try:
                for pcm in self.synthesize_sentences(segments, chosen):
                    if stop.is_set():
                        return
                    asyncio.run_coroutine_threadsafe(queue.put(pcm), loop).result()
            except BaseException as exc:
                asyncio.run_coroutine_threadsafe(queue.put(exc), loop).result()
            else:
                asyncio.run_coroutine_threadsafe(queue.put(None), loop).result()

        producer = loop.run_in_executor(None, produce)
        try:
            while True:
                item = await queue.get()
                if isinstance(item, BaseException):
                    raise item
                if item is None:
                    break
                yield AudioChunk(item)  # at once: no look-ahead for the last chunk
            yield AudioChunk(b"", final=True)
        finally:
            stop.set()
            while not producer.done():
                while not queue.empty():
                    queue.get_nowait()
                await asyncio.sleep(0.001)
            await producer

    async def synthesize(
        self, text: str, *, voice: str | None = None, language: str = "en-US"
    ) -> bytes:
        """The whole prompt as 8 kHz PCM16."""
        return b"".join([c.pcm async for c in self.stream(text, voice=voice, language=language)])

    def _voice_named(self, name: str) -> Voice:
        for v in self.voices():
            if v.name == name:
                return v
        raise ValueError(f"{self.name} has no voice {name!r}")

    async def aclose(self) -> None:
        """Release the engine (stops its worker processes; a later prompt restarts them)."""
        if self._workers is not None:
            await self._workers.aclose()


def silence(ms: int, rate: int = 8000) -> bytes:
    """``ms`` milliseconds of PCM16 silence (8 kHz unless ``rate``)."""
    if rate == 8000:
        return bytes(bytes_for_ms(ms))
    return bytes(2 * (rate * ms // 1000))


class PromptCache:
    """An LRU cache of synthesised prompts, bounded in bytes."""

    def __init__(self, synthesizer: Synthesizer, max_bytes: int = 32 * 1024 * 1024) -> None:
        self._synth = synthesizer
        self._max = max_bytes
        self._size = 0
        self._items: OrderedDict[tuple[str, str, str], bytes] = OrderedDict()
        self.hits = 0
        self.misses = 0

    async def get(self, text: str, *, voice: str | None = None, language: str = "en-US") -> bytes:
        """The prompt's audio, synthesised on first use."""
        key = (self._synth.name, voice or f"lang:{language}", text)
        pcm = self._items.get(key)
        if pcm is not None:
            self.hits += 1
            self._items.move_to_end(key)
            return pcm
        self.misses += 1
        pcm = await self._synth.synthesize(text, voice=voice, language=language)
        if len(pcm) <= self._max:
            self._items[key] = pcm
            self._size += len(pcm)
            while self._size > self._max:
                _, old = self._items.popitem(last=False)
                self._size -= len(old)
        return pcm
