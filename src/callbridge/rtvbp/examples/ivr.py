"""A DTMF IVR: a menu "spoken" with tones (TTS arrives with the speech feature).

* On start: a two-tone menu prompt (440 Hz then 660 Hz).
* ``1``: one 600 Hz confirmation tone, and the pressed digit is stored with ``session.set``
  (``ivr.choice``); ``2``: moves to the next node of the call flow (``application.move``);
  ``0``: plays the menu again; ``#``: hangs up (``call.hangup``).
"""

from __future__ import annotations

from callbridge.media.tones import tone
from callbridge.rtvbp import catalog as c
from callbridge.rtvbp.sdk import RtvbpHandler

MENU = tone(440, 300) + bytes(1600) + tone(660, 300)
CONFIRM = tone(600, 200)


class IvrHandler(RtvbpHandler):
    async def on_start(self, init: c.SessionInitializeRequest) -> None:
        self.play(MENU)

    def play(self, pcm: bytes) -> None:
        self.send_audio(pcm)
        self.flush_audio()

    async def on_dtmf(self, event: c.DtmfEvent) -> None:
        if event.digit == "1":
            self.play(CONFIRM)
            await self.set({"ivr.choice": event.digit})
        elif event.digit == "2":
            await self.move(reason="caller chose 2")
        elif event.digit == "0":
            await self.clear()
            self.play(MENU)
        elif event.digit == "#":
            await self.hangup("caller pressed #")
