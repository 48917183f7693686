"""The asyncio shell with the scripted FakeRecognizer (real VAD endpointing on tones)."""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

from h2b_harness import EPOCH_MS, SUFFIX

from callbridge.h2b.adapter import H2BConnection, language_check
from callbridge.h2b.engine import H2BEngine, SessionRecord
from callbridge.speech.asr.base import Recognizer
from callbridge.speech.asr.fake import FakeRecognizer, ScriptedUtterance
from callbridge.speech.grammars import load_grammar


def tone(ms: int) -> bytes:
    return b"".join(
        int(8000 * math.sin(2 * math.pi * 440 * i / 8000)).to_bytes(2, "little", signed=True)
        for i in range(ms * 8)
    )


def silence(ms: int) -> bytes:
    return bytes(ms * 16)


class Rig:
    def __init__(self, recognizer: Recognizer, **kwargs: Any) -> None:
        self.sent: list[dict[str, Any]] = []
        self.records: list[SessionRecord] = []
        self.request_id = 0
        self.now = 0.0
        self.engine = H2BEngine(epoch_ms=lambda: EPOCH_MS, channel_suffix=lambda: SUFFIX)

        async def send(text: str) -> None:
            self.sent.append(json.loads(text))

        async def on_end(record: SessionRecord) -> None:
            self.records.append(record)

        self.conn = H2BConnection(
            self.engine, recognizer, send, on_session_end=on_end, monotonic=lambda: self.now
        )

    async def cmd(self, name: str, headers: dict[str, Any] | None = None, body: str = "") -> None:
        self.request_id += 1
        frame = {
            "command": name,
            "request_id": self.request_id,
            "channel_id": self.engine.channel_id,
            "headers": headers or {},
            "body": body,
        }
        await self.conn.on_text(json.dumps(frame))

    async def stream(self, pcm: bytes, chunk: int = 960) -> None:
        for i in range(0, len(pcm), chunk):
            await self.conn.on_audio(pcm[i : i + chunk])
            await asyncio.sleep(0)

    async def wait_for(self, event: str) -> dict[str, Any]:
        async with asyncio.timeout(5):
            while True:
                for e in self.sent:
                    if e["event"] == event:
                        return e
                await asyncio.sleep(0.005)

    def names(self) -> list[str]:
        return [e["event"] for e in self.sent]


async def test_normal_mode_success() -> None:
    rig = Rig(FakeRecognizer([ScriptedUtterance("no", 0.9)]))
    await rig.cmd("OPEN")
    await rig.cmd("RECOGNIZE", {"speech_complete_timeout": 300}, "builtin:speech/boolean")
    await rig.stream(silence(200) + tone(500) + silence(1500))
    done = await rig.wait_for("RECOGNITION-COMPLETE")
    assert done["completion_cause"] == "Success" and done["body"]["nlu"]["value"] is False
    assert rig.names() == [
        "OPENED",
        "RECOGNITION-IN-PROGRESS",
        "START-OF-INPUT",
        "RECOGNITION-COMPLETE",
    ]
    await rig.cmd("CLOSE")
    await rig.conn.close()
    assert rig.records and rig.records[0].recognitions == 1


async def test_hotword_mode_over_several_utterances() -> None:
    rig = Rig(FakeRecognizer(["well", "four two", "seven"]))
    await rig.cmd("OPEN")
    await rig.cmd(
        "RECOGNIZE",
        {"recognition_mode": "hotword", "hotword_max_duration": 10000},
        "builtin:speech/spelling/digits?length=3",
    )
    await rig.stream(tone(300) + silence(600) + tone(300) + silence(600) + tone(300) + silence(600))
    done = await rig.wait_for("RECOGNITION-COMPLETE")
    assert done["completion_cause"] == "Success" and done["body"]["nlu"]["value"] == "427"
    assert "START-OF-INPUT" not in rig.names()
    await rig.conn.close()


async def test_stop_then_late_results_are_ignored() -> None:
    rig = Rig(FakeRecognizer(["yes"], delay=0.05))
    await rig.cmd("OPEN")
    await rig.cmd("RECOGNIZE", {}, "builtin:speech/boolean")
    await rig.stream(tone(300) + silence(400))
    await rig.cmd("STOP")
    await asyncio.sleep(0.15)
    assert rig.names()[-1] == "STOPPED"
    assert "RECOGNITION-COMPLETE" not in rig.names()
    await rig.conn.close()


async def test_close_during_recognition_and_connection_loss() -> None:
    rig = Rig(FakeRecognizer())
    await rig.cmd("OPEN")
    await rig.cmd("RECOGNIZE", {}, "builtin:speech/boolean")
    await rig.stream(silence(100))
    await rig.cmd("CLOSE")
    assert rig.names()[-1] == "CLOSED"
    await rig.cmd("OPEN")
    await rig.cmd("RECOGNIZE", {}, "builtin:speech/boolean")
    await rig.conn.close()
    await rig.conn.close()  # idempotent
    assert len(rig.records) == 2


async def test_silence_fill_after_a_second_without_audio() -> None:
    rig = Rig(FakeRecognizer())
    await rig.conn.fill_silence()  # nothing open: nothing happens
    await rig.cmd("OPEN")
    await rig.cmd("RECOGNIZE", {"no_input_timeout": 1500}, "builtin:speech/boolean")
    rig.now = 0.5
    await rig.conn.fill_silence()
    assert rig.names()[-1] == "RECOGNITION-IN-PROGRESS"
    rig.now = 1.0
    await rig.conn.fill_silence()
    assert rig.names()[-1] == "RECOGNITION-IN-PROGRESS"
    rig.now = 2.0
    await rig.conn.fill_silence()
    done = await rig.wait_for("RECOGNITION-COMPLETE")
    assert done["completion_cause"] == "NoInputTimeout"
    rig.now = 5.0
    await rig.conn.fill_silence()  # idle session: the gap is not counted
    await rig.conn.close()


class _Picky(FakeRecognizer):
    def supports(self, grammar: object, language: str = "en-US") -> bool:
        if language == "boom":
            raise RuntimeError("engine confused")
        return language.startswith("en") and grammar is not None


def test_language_check() -> None:
    check = language_check(_Picky())
    boolean = load_grammar("builtin:speech/boolean")
    assert check("en", [boolean]) is True
    assert check("fr", [boolean]) is False
    assert check("en", [boolean, boolean]) is False  # several grammars: free mode asked
    assert check("boom", [boolean]) is False
