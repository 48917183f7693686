"""``callbridge phone`` (a subprocess) against callbridge's SIP service (in-process)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import numpy as np

from callbridge.cli.main import main
from callbridge.flows.model import Action
from callbridge.media.tones import tone
from callbridge.media.wav import read_wav, write_wav

sys.path.insert(0, str(Path(__file__).parents[1] / "telephony"))
from media_tools import dominant_frequency, rms
from sipp_harness import free_port, running, until


async def phone(*args: str, limit: float = 20.0) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "callbridge", "phone", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        async with asyncio.timeout(limit):
            out, _ = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(errors="replace")


def freqs(pcm: bytes) -> list[float]:
    out = []
    for i in range(0, len(pcm) - 1600 + 1, 1600):
        chunk = pcm[i : i + 1600]
        if rms(chunk) > 300:
            out.append(dominant_frequency(chunk))
    return out


async def test_phone_dials_the_default_flow_and_records_beep_and_echo(tmp_path: Path) -> None:
    write_wav(tmp_path / "in.wav", tone(440, 3000))
    record = tmp_path / "out.wav"
    async with running(tmp_path) as h:
        digits: list[str] = []
        h.platform.calls.add_dtmf_hook(lambda _live, event: digits.append(event.digit))
        code, out = await phone(
            "dial", f"sip:100@127.0.0.1:{h.port}", "--play", str(tmp_path / "in.wav"),
            "--record", str(record), "--dtmf", "12#", "--duration", "2.5",
            "--rtp-ports", "41000-41099",
        )  # fmt: skip
        assert code == 0, out
        (call,) = await h.wait_calls_ended(1)
    assert "answered" in out and "sent dtmf 12#" in out and "ended by local" in out
    assert digits == ["1", "2", "#"]
    assert call.source.target == "phone" and call.hangup_reason.value == "normal"
    heard = freqs(read_wav(record))
    assert any(abs(f - 1000) < 15 for f in heard[:5]), heard[:8]  # the beep
    echoed = [f for f in heard[5:] if abs(f - 440) < 15]
    assert len(echoed) >= 0.6 * len(heard[5:]) and len(echoed) >= 8, heard


async def test_phone_registers_auto_answers_and_receives_dtmf(tmp_path: Path) -> None:
    write_wav(tmp_path / "in.wav", tone(600, 5000))
    record = tmp_path / "heard.wav"
    async with running(tmp_path) as h:
        await h.add_extension("1001", "s3cret")
        task = asyncio.create_task(
            phone(
                "register", "--server", f"127.0.0.1:{h.port}", "--user", "1001",
                "--password", "s3cret", "--auto-answer", "--duration", "4",
                "--play", str(tmp_path / "in.wav"), "--record", str(record),
                "--rtp-ports", "41100-41199", "--sip-port", str(free_port()),
            )
        )  # fmt: skip
        location, clock = h.telephony.location, h.telephony.clock
        await until(lambda: location.lookup("1001", clock.monotonic()), limit=8)
        actions = [
            Action("beep"),
            Action("digits_send", {"digits": "9*"}),
            Action("echo", {"duration": 1000}),
            Action("hangup"),
        ]
        workspace = await h.workspace_id()
        await h.telephony.dial(workspace_id=workspace, to="1001", actions=actions)
        (call,) = await h.wait_calls_ended(1, limit=10)
        code, out = await task
        assert location.lookup("1001", clock.monotonic()) == []  # unregistered on exit
    assert code == 0, out
    assert "registered sip:1001@127.0.0.1 for 300 s" in out and "answered" in out
    assert call.tm_progressing is not None and call.hangup_by.value == "local"
    heard = freqs(read_wav(record))
    assert any(abs(f - 1000) < 15 for f in heard[:5]), heard[:8]
    assert sum(abs(f - 600) < 15 for f in heard) >= 5  # our own 600 Hz, echoed back


def test_phone_usage_errors(capsys: object) -> None:
    assert main(["phone", "dial", "not a uri"]) == 2
    assert main(["phone", "dial", "sip:1@127.0.0.1", "--dtmf", "12x"]) == 2
    assert main(["phone", "register", "--server", "nohost", "--user", "u"]) == 2
    del capsys


_unused = (json, np)
