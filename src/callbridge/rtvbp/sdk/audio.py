"""Agent audio out of an RTVBP application: exact frames, paced with a bounded lead (§4).

:class:`AudioSender` accepts PCM16 of any length, cuts exact 320-byte frames (padding only on
:meth:`flush`), and sends them no further ahead of real time than ``lead_seconds`` (default
1 s): the voice plays at real time anyway, and a small lead means a barge-in clear has little
to discard. Unsent audio stays here, where :meth:`clear` drops it at once.

The pacing is a virtual play-out position: each frame sent advances it by 20 ms; a frame may
go when ``position - now < lead``. After a pause the position catches up with ``now``, so a
pause never turns into a burst.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final

from callbridge.media.clock import Clock
from callbridge.media.constants import BYTES_PER_SECOND, FRAME_BYTES, FRAME_SECONDS

DEFAULT_LEAD_SECONDS: Final = 1.0
#: Unsent audio kept at most (10 minutes); more raises ``BufferError``.
MAX_UNSENT_BYTES: Final = 600 * BYTES_PER_SECOND


class AudioSender:
    """Paces frames into ``send_frame`` (which must not block)."""

    def __init__(
        self,
        send_frame: Callable[[bytes], None],
        clock: Clock,
        *,
        lead_seconds: float = DEFAULT_LEAD_SECONDS,
    ) -> None:
        self._send = send_frame
        self._clock = clock
        self.lead_seconds = lead_seconds
        self._buf = bytearray()
        self._position = 0.0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.frames_sent = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="rtvbp-audio-sender")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    @property
    def unsent_bytes(self) -> int:
        return len(self._buf)

    def write(self, pcm: bytes) -> None:
        """Queue PCM16 audio of any length (whole frames go out as soon as pacing allows)."""
        if len(self._buf) + len(pcm) > MAX_UNSENT_BYTES:
            raise BufferError("more than 10 minutes of unsent audio")
        self._buf += pcm
        # Within the lead, whole frames go out right here (an echo or a streaming TTS writes
        # one frame at a time: waking the sender task for each was a task switch per frame);
        # the task only handles what pacing holds back.
        if self._task is not None and not self._pump(inline=True):
            self._wake.set()

    def flush(self) -> None:
        """Pad the trailing partial frame with silence so it is sent too."""
        partial = len(self._buf) % FRAME_BYTES
        if partial:
            self._buf += bytes(FRAME_BYTES - partial)
            self._wake.set()

    def clear(self) -> int:
        """Drop every unsent byte; returns how many."""
        dropped = len(self._buf)
        self._buf.clear()
        self._position = self._clock.monotonic()
        return dropped

    def _pump(self, *, inline: bool = False) -> bool:
        """Send the whole frames pacing allows now; ``True`` when none is left waiting.

        ``inline`` (called from :meth:`write`): a frame the session refuses is put back and
        left to the task, which decides (as before) that the session is over.
        """
        while len(self._buf) >= FRAME_BYTES:
            now = self._clock.monotonic()
            self._position = max(self._position, now)
            if self._position - now >= self.lead_seconds - 1e-9:
                return False
            frame = bytes(self._buf[:FRAME_BYTES])
            del self._buf[:FRAME_BYTES]
            try:
                self._send(frame)
            except Exception:  # the session ended: nothing more can be sent
                if inline:
                    self._buf[:0] = frame
                    return False
                self._buf.clear()
                self._closed = True
                return True
            self.frames_sent += 1
            self._position += FRAME_SECONDS
        return True

    async def _run(self) -> None:
        while not self._closed:
            if len(self._buf) < FRAME_BYTES:
                self._wake.clear()
                await self._wake.wait()
                continue
            if self._pump():
                continue
            ahead = self._position - self._clock.monotonic()
            await self._clock.sleep(ahead - self.lead_seconds + 1e-4)
