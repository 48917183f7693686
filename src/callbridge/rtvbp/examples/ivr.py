"""A DTMF IVR whose menus are spoken with callbridge's own TTS (tones without speech engines).

* On start: the menu prompt.
* ``1``: a confirmation prompt, and the pressed digit is stored with ``session.set``
  (``ivr.choice``); ``2``: moves to the next node of the call flow (``application.move``);
  ``0``: clears what is still playing and plays the menu again; ``#``: hangs up
  (``call.hangup``).

The prompts are synthesised once, before the handler serves calls
(:func:`spoken_prompts`), and shared by every call: a handler never synthesises on the
call's audio path. :data:`TONE_PROMPTS` stand in when the speech extra is not installed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from callbridge.media.tones import tone
from callbridge.rtvbp import catalog as c
from callbridge.rtvbp.sdk import RtvbpHandler

MENU_TEXT = (
    "Welcome to callbridge. Press 1 to confirm, press 2 to continue, "
    "press 0 to hear this menu again, or press the pound key to hang up."
)
CONFIRM_TEXT = "Thank you, your choice is saved."


@dataclass(frozen=True, slots=True)
class IvrPrompts:
    """The IVR's prompts as 8 kHz PCM16; ``source`` names where they came from."""

    menu: bytes
    confirm: bytes
    source: str


#: Two-tone menu (440 Hz then 660 Hz) and a 600 Hz confirmation: the no-speech fallback.
TONE_PROMPTS = IvrPrompts(
    menu=tone(440, 300) + bytes(1600) + tone(660, 300),
    confirm=tone(600, 200),
    source="tones",
)


async def spoken_prompts(engine: str = "piper", voice: str | None = None) -> IvrPrompts:
    """Synthesise the menus with a TTS engine of :mod:`callbridge.speech.registry`.

    Raises :class:`callbridge.speech.EngineUnavailable` when the engine is not installed
    and ``ValueError`` for an unknown engine or voice.
    """
    from callbridge.speech.registry import create_synthesizer

    synth = create_synthesizer(engine)
    try:
        menu = await synth.synthesize(MENU_TEXT, voice=voice)
        confirm = await synth.synthesize(CONFIRM_TEXT, voice=voice)
    finally:
        await synth.aclose()
    return IvrPrompts(menu=menu, confirm=confirm, source=engine)


class IvrHandler(RtvbpHandler):
    """The IVR; :attr:`prompts` are tones unless built by :func:`ivr_handler`."""

    prompts: ClassVar[IvrPrompts] = TONE_PROMPTS

    async def on_start(self, init: c.SessionInitializeRequest) -> None:
        self.play(self.prompts.menu)

    def play(self, pcm: bytes) -> None:
        self.send_audio(pcm)
        self.flush_audio()

    async def on_dtmf(self, event: c.DtmfEvent) -> None:
        if event.digit == "1":
            self.play(self.prompts.confirm)
            await self.set({"ivr.choice": event.digit})
        elif event.digit == "2":
            await self.move(reason="caller chose 2")
        elif event.digit == "0":
            await self.clear()
            self.play(self.prompts.menu)
        elif event.digit == "#":
            await self.hangup("caller pressed #")


def ivr_handler(prompts: IvrPrompts) -> type[IvrHandler]:
    """An :class:`IvrHandler` class that plays ``prompts`` (for :class:`HandlerServer`)."""
    return type("SpokenIvrHandler", (IvrHandler,), {"prompts": prompts})
