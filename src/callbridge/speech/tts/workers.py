"""Synthesis in worker processes: engine code never runs in the server process.

Piper's phonemiser is C code that keeps the GIL while it runs, so in a thread of the server
it delays the asyncio loop by as much; eSpeak NG allows one synthesis at a time per process
and takes the GIL for each audio callback (decision 044). :class:`SynthesisWorkers` runs an
engine in the supervised process pool of :mod:`callbridge.speech.asr.workers`:

* each worker process builds the engine **once** (an in-process copy, ``workers=0``) and
  warms it (:meth:`~callbridge.speech.tts.base.Synthesizer.preload`) before it is ready;
* a job is **one sentence** (:class:`SegmentJob` → 8 kHz PCM16). A prompt submits its
  sentences ahead (at most :data:`LOOKAHEAD` in flight) and hands each one over in order as
  soon as it exists, so the first audio waits for the first sentence only, concurrent prompts
  interleave sentence by sentence on the workers, and memory per prompt is bounded;
* pauses are silence made in the parent, the prompt cache stays in the parent;
* a worker that dies is restarted with a freshly loaded engine and the sentence it held is
  retried once (a sentence is retried whole, so no audio is duplicated); a prompt abandoned
  by its consumer cancels its queued sentences;
* admission is bounded (``workers + queue_size`` sentences), beyond that a prompt waits.

The pool starts on first use (or :meth:`SynthesisWorkers.start`) and stops in
:meth:`SynthesisWorkers.aclose`; a synthesizer dropped without ``aclose()`` stops its
workers when it is garbage-collected or at interpreter exit.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import deque
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from callbridge.speech.asr.workers import WorkerPool

if TYPE_CHECKING:
    from callbridge.speech.tts.base import Segment, Synthesizer, Voice

__all__ = ["LOOKAHEAD", "EngineFactory", "SegmentJob", "SynthesisWorkers"]

#: Sentences of one prompt submitted ahead of the one being handed over.
LOOKAHEAD: Final = 3


@dataclass(frozen=True, slots=True)
class SegmentJob:
    """One sentence to synthesise with ``voice`` (a worker returns its 8 kHz PCM16)."""

    segment: Segment
    voice: Voice


class _WorkerEngine:
    """The model of a worker process: an in-process engine, loaded and warmed once."""

    def __init__(self, engine: Synthesizer) -> None:
        engine.preload()
        self._engine = engine

    def run(self, job: SegmentJob) -> bytes:
        return self._engine.synthesize_segment(job.segment, job.voice)


@dataclass(frozen=True, slots=True)
class EngineFactory:
    """Picklable: builds the in-process engine in the worker (e.g. a ``functools.partial``
    of the engine class with ``workers=0``)."""

    build: Callable[[], Synthesizer]

    def __call__(self) -> _WorkerEngine:
        return _WorkerEngine(self.build())


def _discard(future: asyncio.Future[bytes]) -> None:
    """Cancel a sentence nobody will read (a queued one is skipped by the pool)."""
    if future.done():
        if not future.cancelled():
            future.exception()  # retrieved: no "exception was never retrieved" log
        return
    future.cancel()
    future.add_done_callback(lambda f: None if f.cancelled() else f.exception())


class SynthesisWorkers:
    """An engine's worker processes, owned by one :class:`Synthesizer`."""

    def __init__(
        self,
        owner: Synthesizer,
        build: Callable[[], Synthesizer],
        *,
        workers: int = 1,
        queue_size: int = 8,
        check: Callable[[], None] | None = None,
    ) -> None:
        if workers < 1 or queue_size < 0:
            raise ValueError("workers must be >= 1 and queue_size >= 0")
        self._owner = weakref.ref(owner)
        self._factory = EngineFactory(build)
        self._workers = workers
        self._queue_size = queue_size
        self._check = check
        self._name = f"tts-{owner.name or 'engine'}"
        self._pool: WorkerPool[SegmentJob, bytes] | None = None
        self._finalizer: weakref.finalize[..., Synthesizer] | None = None

    @property
    def pool(self) -> WorkerPool[SegmentJob, bytes] | None:
        """The running pool (``None`` before the first start and after :meth:`aclose`)."""
        return self._pool

    async def start(self) -> WorkerPool[SegmentJob, bytes]:
        """Start the worker processes (idempotent) and wait until each engine is warm."""
        pool = self._pool
        if pool is None:
            if self._check is not None:
                self._check()  # EngineUnavailable before spawning anything
            owner = self._owner()
            assert owner is not None  # called through the owner
            pool = WorkerPool(
                self._factory,
                kind="process",
                workers=self._workers,
                queue_size=self._queue_size,
                retries=1,
                name=self._name,
            )
            self._pool = pool
            # A synthesizer dropped without aclose() still stops its processes.
            self._finalizer = weakref.finalize(owner, pool.close)
        try:
            await pool.start()
        except BaseException:
            self._forget(pool)
            raise
        return pool

    def _forget(self, pool: WorkerPool[SegmentJob, bytes]) -> None:
        if self._pool is pool:
            self._pool = None
            if self._finalizer is not None:
                self._finalizer.detach()
                self._finalizer = None

    async def aclose(self) -> None:
        """Stop the worker processes (a later synthesis starts new ones)."""
        pool = self._pool
        if pool is not None:
            self._forget(pool)
            await pool.aclose()

    async def stream(
        self, segments: list[Segment], voice: Voice, rate: int
    ) -> AsyncGenerator[bytes, None]:
        """The PCM of each segment in order, each as soon as it is synthesised."""
        from callbridge.speech.tts.base import silence

        pool = await self.start()
        todo = iter(segments)
        ahead: deque[bytes | asyncio.Future[bytes]] = deque()

        def refill() -> None:
            while len(ahead) < LOOKAHEAD:
                segment = next(todo, None)
                if segment is None:
                    return
                if segment.pause_ms:
                    ahead.append(silence(segment.pause_ms, rate))
                else:
                    ahead.append(asyncio.ensure_future(pool.submit(SegmentJob(segment, voice))))

        try:
            refill()
            while ahead:
                head = ahead.popleft()
                pcm = head if isinstance(head, bytes) else await head
                refill()
                yield pcm
        finally:
            for item in ahead:
                if not isinstance(item, bytes):
                    _discard(item)
