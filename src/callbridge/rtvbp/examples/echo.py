"""Echo: play the caller's audio back to them, frame for frame. ``#`` hangs up."""

from __future__ import annotations

from callbridge.rtvbp import catalog as c
from callbridge.rtvbp.sdk import RtvbpHandler


class EchoHandler(RtvbpHandler):
    """Every caller frame is sent straight back (the voice plays it at real time)."""

    async def on_audio(self, frame: bytes) -> None:
        self.send_audio(frame)

    async def on_dtmf(self, event: c.DtmfEvent) -> None:
        if event.digit == "#":
            await self.hangup("caller pressed #")
