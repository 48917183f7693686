"""The asyncio shell of one H2B connection: engine outputs to a speech engine and a socket.

:class:`H2BConnection` owns an :class:`~callbridge.h2b.engine.H2BEngine` and executes what it
returns: events go to ``send_text``; :class:`StartRecognizer` opens a
:class:`~callbridge.speech.asr.base.RecognitionSession` of the injected
:class:`~callbridge.speech.asr.base.Recognizer` and a task that feeds its events back into the
engine; :class:`PushAudio` frames are pushed (awaiting the engine's back-pressure);
:class:`StopRecognizer` abandons a session in the background; :class:`SessionEnded` goes to
``on_session_end`` (accounting). One lock serialises every engine call, so the engine sees a
single ordered stream of inputs.

:meth:`H2BConnection.fill_silence` implements the wall-clock rule of h2b.md §2: once a running
recognition has received no audio for a second, the missing time is fed as silence.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Final

from callbridge.h2b.engine import (
    H2BEngine,
    Output,
    PushAudio,
    Send,
    SessionEnded,
    SessionRecord,
    StartRecognizer,
    StopRecognizer,
)
from callbridge.observability.logging import get_logger
from callbridge.speech.asr.base import RecognitionSession, Recognizer
from callbridge.speech.grammars.base import Grammar

__all__ = ["SILENCE_FILL_AFTER_S", "H2BConnection", "language_check"]

log = get_logger(__name__)

#: Wall time without audio after which the gap counts as silence (h2b.md §2).
SILENCE_FILL_AFTER_S: Final = 1.0


def language_check(recognizer: Recognizer) -> Callable[[str, Sequence[Grammar]], bool]:
    """A ``language_supported`` callback asking ``recognizer`` about each grammar."""

    def check(language: str, grammars: Sequence[Grammar]) -> bool:
        try:
            if len(grammars) == 1:
                return recognizer.supports(grammars[0], language)
            return recognizer.supports(None, language)
        except Exception:  # an engine that cannot answer does not serve the language
            log.exception("recognizer.supports failed", language=language)
            return False

    return check


class H2BConnection:
    """One WebSocket's sessions (see the module docstring)."""

    def __init__(
        self,
        engine: H2BEngine,
        recognizer: Recognizer,
        send_text: Callable[[str], Awaitable[None]],
        *,
        on_session_end: Callable[[SessionRecord], Awaitable[None]] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self._recognizer = recognizer
        self._send_text = send_text
        self._on_session_end = on_session_end
        self._monotonic = monotonic
        self._lock = asyncio.Lock()
        self._sessions: dict[int, RecognitionSession] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._last_audio = monotonic()
        self._closed = False

    # -- inputs ----------------------------------------------------------------------------

    async def on_text(self, text: str) -> None:
        """A text frame from the client."""
        async with self._lock:
            await self._execute(self.engine.handle_text(text))

    async def on_audio(self, data: bytes) -> None:
        """A binary frame from the client."""
        async with self._lock:
            self._last_audio = self._monotonic()
            await self._execute(self.engine.handle_audio(data))

    async def fill_silence(self) -> None:
        """Call periodically: feed the wall-clock gap as silence once it reaches 1 s."""
        now = self._monotonic()
        gap = now - self._last_audio
        if gap < SILENCE_FILL_AFTER_S:
            return
        async with self._lock:
            self._last_audio = now
            if self.engine.active_recognizer is None:
                return
            await self._execute(self.engine.handle_silence(int(gap * 1000)))

    async def close(self) -> None:
        """The socket is gone: drop the session, stop every speech session, wait for tasks."""
        if self._closed:
            return
        self._closed = True
        async with self._lock:
            await self._execute(self.engine.connection_lost())
        for rec_id in list(self._sessions):
            self._stop(rec_id)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- outputs ---------------------------------------------------------------------------

    async def _execute(self, outputs: list[Output]) -> None:
        for item in outputs:
            if isinstance(item, Send):
                if not self._closed:
                    await self._send_text(item.event.to_json())
            elif isinstance(item, PushAudio):
                session = self._sessions.get(item.rec_id)
                if session is not None:
                    for frame in item.frames:
                        await session.push(frame)
            elif isinstance(item, StartRecognizer):
                await self._start(item)
            elif isinstance(item, StopRecognizer):
                self._stop(item.rec_id)
            elif isinstance(item, SessionEnded) and self._on_session_end is not None:
                self._spawn(self._on_session_end(item.record))

    async def _start(self, item: StartRecognizer) -> None:
        session = self._recognizer.open_session(item.options)
        self._sessions[item.rec_id] = session
        self._spawn(self._pump(item.rec_id, session))
        for frame in item.preroll:
            await session.push(frame)

    def _stop(self, rec_id: int) -> None:
        session = self._sessions.pop(rec_id, None)
        if session is not None:
            self._spawn(session.aclose())

    def _spawn(self, coro: Awaitable[None]) -> None:
        async def run() -> None:
            try:
                await coro
            except Exception:
                log.exception("h2b background task failed")

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _pump(self, rec_id: int, session: RecognitionSession) -> None:
        async for event in session.events():
            if rec_id not in self._sessions:
                continue  # abandoned: drain until aclose() ends the stream
            async with self._lock:
                await self._execute(self.engine.handle_recognizer(rec_id, event))
