"""The engine-independent streaming session: endpointing on the loop, decoding elsewhere.

:class:`SegmentingSession` runs the WebRTC VAD with hysteresis
(:class:`~callbridge.media.vad.SpeechSegmenter`) on the 8 kHz frames — microseconds of C per
frame, so it stays on the event loop — and hands each endpointed utterance to an async
``decode`` callable that runs the engine off the loop (a :class:`~.workers.WorkerPool`).

* A pre-roll of recent frames is prepended to each utterance so the onset is not clipped.
* Interim hypotheses re-decode the growing utterance at most every ``interim_interval_ms``,
  and never more than one at a time per session; late interims are dropped.
* At the endpoint the utterance's interim decode, if still queued or running, is cancelled:
  the final is submitted at once and never waits behind a stale interim of its own session
  (a queued job whose future is cancelled is skipped by the worker pool).
* Finals are decoded concurrently but emitted in utterance order. At most ``max_pending``
  finals per session may be in flight: beyond that :meth:`push` awaits (back-pressure).
* With ``SessionOptions.join_within_ms``, the audio after an utterance is kept for that long;
  speech starting within it reopens the utterance from its start, pause included, so its
  final covers the whole chain (and starts where the chain did).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Final as TFinal

from callbridge.media.constants import FRAME_BYTES, FRAME_MS
from callbridge.media.vad import SpeechSegmenter, VoiceActivityDetector, WebRtcVAD
from callbridge.speech.asr.base import (
    DecodeResult,
    Final,
    Interim,
    NoMatch,
    RecognitionError,
    RecognitionEvent,
    RecognitionSession,
    SessionOptions,
    SpeechEnded,
    SpeechStarted,
    Word,
)
from callbridge.speech.grammars.base import MatchKind

__all__ = ["Decode", "SegmentingSession"]

log = logging.getLogger(__name__)

#: ``decode(pcm8k, final, options)``: decode one utterance off the event loop.
Decode = Callable[[bytes, bool, SessionOptions], Awaitable[DecodeResult]]
#: Audio kept before the detected start of speech.
PREROLL_MS: TFinal = 200
#: Silence kept after the detected end of speech.
TAIL_MS: TFinal = 200
_END: TFinal = object()


class SegmentingSession(RecognitionSession):
    """A :class:`RecognitionSession` over any utterance decoder (see the module docstring)."""

    def __init__(
        self,
        decode: Decode,
        options: SessionOptions,
        *,
        vad: VoiceActivityDetector | None = None,
        max_pending: int = 2,
    ) -> None:
        self._decode = decode
        self._options = options
        self._segmenter = SpeechSegmenter(
            vad or WebRtcVAD(options.vad_aggressiveness),
            start_frames=max(1, options.speech_start_ms // FRAME_MS),
            end_frames=max(1, options.speech_end_ms // FRAME_MS),
        )
        preroll = PREROLL_MS // FRAME_MS + self._segmenter_start_frames(options)
        self._recent: deque[bytes] = deque(maxlen=preroll)
        self._utterance: list[bytes] | None = None
        #: Every frame since the start of the last utterance while a following one may still
        #: join it (``join_within_ms``), with that utterance's start and end.
        self._chain: list[bytes] | None = None
        self._chain_start_ms = 0
        self._chain_end_ms = 0
        self._utt_id = 0
        self._utt_start_ms = 0
        self._last_interim_ms = 0
        self._interim_task: asyncio.Task[None] | None = None
        self._finals: list[asyncio.Task[None]] = []
        self._last_final: asyncio.Task[None] | None = None
        self._slots = asyncio.Semaphore(max_pending)
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self._index = 0
        self._closed = False
        self._ended = False
        #: Interim decodes cancelled because the utterance ended first.
        self.interims_cancelled = 0
        self._stale: set[asyncio.Task[None]] = set()

    @staticmethod
    def _segmenter_start_frames(options: SessionOptions) -> int:
        return max(1, options.speech_start_ms // FRAME_MS)

    @property
    def options(self) -> SessionOptions:
        """The session's options."""
        return self._options

    async def push(self, frame: bytes) -> None:
        if self._closed:
            raise RuntimeError("recognition session is finished or closed")
        if len(frame) != FRAME_BYTES:
            raise ValueError(f"expected a {FRAME_BYTES}-byte 8 kHz PCM16 frame, got {len(frame)}")
        frame = bytes(frame)
        self._index += 1
        now_ms = self._index * FRAME_MS
        self._recent.append(frame)
        event = self._segmenter.feed(frame)
        if self._utterance is None:
            chain = self._chain
            if chain is not None:
                chain.append(frame)
                if now_ms - self._chain_end_ms > self._options.join_within_ms:
                    chain = self._chain = None
            if event is not None and event.kind == "speech_started":
                self._utt_id += 1
                self._chain = None
                if chain is not None and now_ms - self._chain_start_ms < (
                    self._options.max_utterance_ms
                ):  # the speaker went on: one utterance, pause included
                    self._utterance = chain
                    self._utt_start_ms = self._chain_start_ms
                else:
                    self._utterance = list(self._recent)
                    self._utt_start_ms = now_ms - len(self._utterance) * FRAME_MS
                self._last_interim_ms = now_ms
                self._emit(SpeechStarted(event.time_ms))
            return
        self._utterance.append(frame)
        if event is not None and event.kind == "speech_ended":
            await self._end_utterance(event.time_ms)
            return
        if now_ms - self._utt_start_ms >= self._options.max_utterance_ms:
            self._segmenter.reset()
            await self._end_utterance(now_ms, joinable=False)
            return
        self._maybe_interim(now_ms)

    def _maybe_interim(self, now_ms: int) -> None:
        opts = self._options
        if not opts.interim_results or now_ms - self._last_interim_ms < opts.interim_interval_ms:
            return
        if self._interim_task is not None and not self._interim_task.done():
            return  # one interim decode at a time: skip this slot
        assert self._utterance is not None
        self._last_interim_ms = now_ms
        pcm = b"".join(self._utterance)
        self._interim_task = asyncio.create_task(self._interim(pcm, self._utt_id, now_ms))

    async def _interim(self, pcm: bytes, utt_id: int, now_ms: int) -> None:
        try:
            result = await self._decode(pcm, False, self._options)
        except Exception as exc:  # interims are best effort
            log.debug("interim decode failed: %s", exc)
            return
        if utt_id == self._utt_id and self._utterance is not None and result.transcript:
            self._emit(Interim(result.transcript, now_ms))

    async def _end_utterance(self, end_ms: int, *, joinable: bool = True) -> None:
        assert self._utterance is not None
        keep = (end_ms - self._utt_start_ms + TAIL_MS) // FRAME_MS
        pcm = b"".join(self._utterance[: max(1, keep)])
        start_ms = self._utt_start_ms
        self._chain = None
        if joinable and self._options.join_within_ms:
            self._chain = self._utterance  # every frame so far: the pause goes on from here
            self._chain_start_ms, self._chain_end_ms = start_ms, end_ms
        self._utterance = None
        self._cancel_interim()
        self._emit(SpeechEnded(end_ms))
        await self._slots.acquire()  # back-pressure: too many finals in flight
        previous = self._last_final
        task = asyncio.create_task(self._final(pcm, start_ms, end_ms, previous))
        self._last_final = task
        self._finals.append(task)
        self._finals = [t for t in self._finals if not t.done()]

    def _cancel_interim(self) -> None:
        """Drop the open utterance's interim decode: the final supersedes it."""
        task, self._interim_task = self._interim_task, None
        if task is not None and not task.done():
            task.cancel()
            self.interims_cancelled += 1
            self._stale.add(task)
            task.add_done_callback(self._stale.discard)

    async def _final(
        self, pcm: bytes, start_ms: int, end_ms: int, previous: asyncio.Task[None] | None
    ) -> None:
        try:
            try:
                result: DecodeResult | BaseException = await self._decode(pcm, True, self._options)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                result = exc
            if previous is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await previous  # keep results in utterance order
            self._emit(self._event_for(result, start_ms, end_ms))
        finally:
            self._slots.release()

    def _event_for(
        self, result: DecodeResult | BaseException, start_ms: int, end_ms: int
    ) -> RecognitionEvent:
        if isinstance(result, BaseException):
            log.warning("recognition failed: %s", result)
            return RecognitionError(f"{type(result).__name__}: {result}", start_ms, end_ms)
        if result.rejected:
            return NoMatch(result.reason or "rejected", start_ms, end_ms, result.transcript)
        if not result.transcript.strip():
            return NoMatch("no speech recognized", start_ms, end_ms)
        words = tuple(
            Word(w.text, w.start_ms + start_ms, w.end_ms + start_ms, w.confidence)
            for w in result.words
        )
        interpretation = None
        grammar = self._options.grammar
        if grammar is not None:
            interpretation = grammar.interpret(result.transcript, self._options.language)
            if interpretation.kind is MatchKind.NONE:
                return NoMatch("out of grammar", start_ms, end_ms, result.transcript)
        return Final(
            result.transcript,
            result.confidence,
            start_ms,
            end_ms,
            words,
            result.nbest,
            interpretation,
        )

    def _emit(self, event: RecognitionEvent) -> None:
        self._queue.put_nowait(event)

    async def finish(self) -> None:
        if self._closed:
            return
        event = self._segmenter.finish()
        if self._utterance is not None:
            await self._end_utterance(event.time_ms if event else self._index * FRAME_MS)
        self._closed = True
        self._cancel_interim()
        if self._finals or self._stale:
            await asyncio.gather(*self._finals, *self._stale, return_exceptions=True)
        self._end_events()

    def _end_events(self) -> None:
        if not self._ended:
            self._ended = True
            self._queue.put_nowait(_END)

    async def aclose(self) -> None:
        if self._ended:
            return
        self._closed = True
        tasks = [t for t in [*self._finals, *self._stale, self._interim_task] if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._finals = []
        self._end_events()

    async def events(self) -> AsyncIterator[RecognitionEvent]:
        while True:
            item = await self._queue.get()
            if item is _END:
                return
            yield item  # type: ignore[misc]
