"""The shipped example handlers, bridged from real calls (file legs, real clock, loopback)."""

from __future__ import annotations

import asyncio

import numpy as np
from rtvbp_harness import act, start_call

from callbridge.calls.service import CallService
from callbridge.legs.file_leg import FileLeg, ScheduledDigit
from callbridge.media.clock import SystemClock
from callbridge.media.constants import FRAME_BYTES
from callbridge.media.tones import tone
from callbridge.rtvbp.examples.barge_in import BargeInHandler
from callbridge.rtvbp.examples.ivr import IvrHandler, ivr_handler, spoken_prompts
from callbridge.rtvbp.sdk import HandlerServer
from callbridge.rtvbp.voice import RESULT_VARIABLE


def frames(pcm: bytes | bytearray) -> list[bytes]:
    return [bytes(pcm[i : i + FRAME_BYTES]) for i in range(0, len(pcm), FRAME_BYTES)]


async def test_ivr_menu_set_and_move(rt_service: CallService) -> None:
    async with HandlerServer(IvrHandler) as server:
        leg = FileLeg(
            "ivr",
            SystemClock(),
            dtmf=[ScheduledDigit(1.2, "1", 80), ScheduledDigit(1.8, "2", 80)],
        )
        after = act("sleep", duration=20)
        live = await start_call(rt_service, leg, [act("rtvbp_bridge", url=server.url), after])
        await asyncio.wait_for(live.ended.wait(), 6)
    assert live.variables["ivr.choice"] == "1"
    assert live.variables[RESULT_VARIABLE] == "moved"
    loud = [i for i, f in enumerate(frames(leg.recorded)) if f != bytes(FRAME_BYTES)]
    assert len(loud) >= 30  # the menu (two 300 ms tones) and the 200 ms confirmation


async def test_ivr_speaks_its_menu_with_tts(rt_service: CallService) -> None:
    prompts = await spoken_prompts("espeak")
    assert prompts.source == "espeak" and len(prompts.menu) > 3 * 16000  # seconds of speech
    async with HandlerServer(ivr_handler(prompts)) as server:
        leg = FileLeg("ivr-tts", SystemClock(), hangup_after=1.6)
        live = await start_call(rt_service, leg, [act("rtvbp_bridge", url=server.url)])
        await asyncio.wait_for(live.ended.wait(), 6)
    heard = bytes(leg.recorded)
    # The caller heard the synthesised menu itself, sample for sample (after the bridge's
    # delay): a 0.5 s stretch of speech from inside the prompt is in the recording.
    speech = prompts.menu[8000:16000]
    assert np.abs(np.frombuffer(speech, dtype="<i2")).max() > 1000
    at = heard.find(speech)
    assert at >= 0 and at % 2 == 0


async def test_barge_in_example_stops_the_prompt(rt_service: CallService) -> None:
    caller = bytes(int(0.6 * 16000)) + tone(300, 1000, amplitude_dbfs=-6.0)
    async with HandlerServer(BargeInHandler) as server:
        leg = FileLeg("barge", SystemClock(), play=caller, hangup_after=2.2)
        live = await start_call(rt_service, leg, [act("rtvbp_bridge", url=server.url)])
        await asyncio.wait_for(live.ended.wait(), 6)
        handler = server.handlers[0]
    assert isinstance(handler, BargeInHandler)
    assert handler.barged and handler.discarded > 0
    heard = np.frombuffer(bytes(leg.recorded), dtype="<i2")
    assert np.abs(heard[: int(0.5 * 8000)]).max() > 1000  # the prompt played …
    assert not heard[int(1.0 * 8000) :].any()  # … and stopped at the caller's speech
