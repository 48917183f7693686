"""Barge-in demo: a long "agent" prompt that stops as soon as the caller speaks.

The handler queues a 10 s prompt (alternating tones). A simple energy detector on the caller's
frames (mean absolute amplitude above a threshold for 3 frames in a row) signals speech: the
handler calls :meth:`~callbridge.rtvbp.sdk.RtvbpHandler.barge_in` (drop unsent audio,
``audio.speech.started``, ``audio.buffer.clear``) and reports what the voice discarded with an
``output.transcript.done`` event.
"""

from __future__ import annotations

import numpy as np

from callbridge.media.tones import tone
from callbridge.rtvbp import catalog as c
from callbridge.rtvbp.sdk import RtvbpHandler

PROMPT = b"".join(tone(500 + 100 * (i % 3), 500) for i in range(20))
SPEECH_LEVEL = 500.0
SPEECH_FRAMES = 3


class BargeInHandler(RtvbpHandler):
    def __init__(self) -> None:
        super().__init__()
        self.loud_frames = 0
        self.barged = False
        self.discarded = -1

    async def on_start(self, init: c.SessionInitializeRequest) -> None:
        self.output_transcript_delta("Welcome to the long prompt ")
        self.send_audio(PROMPT)
        self.flush_audio()

    async def on_audio(self, frame: bytes) -> None:
        level = float(np.abs(np.frombuffer(frame, dtype="<i2").astype(np.float64)).mean())
        self.loud_frames = self.loud_frames + 1 if level > SPEECH_LEVEL else 0
        if self.loud_frames >= SPEECH_FRAMES and not self.barged:
            self.barged = True
            self.discarded = await self.barge_in()
            self.output_transcript_done(f"interrupted ({self.discarded} bytes discarded)")
