"""``callbridge call`` (a subprocess) against a running server (in-process platform + uvicorn)
with ``callbridge phone`` (a subprocess) registered as extension 1001 and auto-answering."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from callbridge.cli.call import destination
from callbridge.media.tones import tone
from callbridge.media.wav import read_wav, write_wav

sys.path.insert(0, str(Path(__file__).parents[1] / "telephony"))
sys.path.insert(0, str(Path(__file__).parents[1] / "api"))
from api_harness import access_key, free_tcp_port, serving
from media_tools import dominant_frequency, rms
from sipp_harness import free_port, running, until


async def cli(
    *args: str, env: dict[str, str] | None = None, limit: float = 20.0
) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "callbridge", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, **(env or {})},
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
    chunks = (pcm[i : i + 1600] for i in range(0, len(pcm) - 1600 + 1, 1600))
    return [dominant_frequency(c) for c in chunks if rms(c) > 300]


async def test_call_rings_a_registered_phone_answered_with_media(tmp_path: Path) -> None:
    write_wav(tmp_path / "in.wav", tone(600, 6000))
    record = tmp_path / "heard.wav"
    async with running(tmp_path) as h, serving(h.platform) as url:
        await h.add_extension("1001", "s3cret")
        phone = asyncio.create_task(
            cli(
                "phone", "register", "--server", f"127.0.0.1:{h.port}", "--user", "1001",
                "--password", "s3cret", "--auto-answer", "--duration", "8",
                "--play", str(tmp_path / "in.wav"), "--record", str(record),
                "--rtp-ports", "41300-41399", "--sip-port", str(free_port()),
            )
        )  # fmt: skip
        location, clock = h.telephony.location, h.telephony.clock
        await until(lambda: location.lookup("1001", clock.monotonic()), limit=8)
        actions = json.dumps([{"type": "beep"}, {"type": "echo", "option": {"duration": 1500}},
                              {"type": "hangup"}])  # fmt: skip
        env = {"CALLBRIDGE_ACCESS_KEY": access_key(h.platform)}
        code, out = await cli(
            "call", "--to", "1001", "--actions", actions, "--url", url, "--wait", "15", env=env
        )
        assert code == 0, out
        (call,) = await h.wait_calls_ended(1, limit=10)
        phone_code, phone_out = await phone
    lines = out.strip().splitlines()
    assert lines[0] == f"call {call.id} to extension:1001: dialing"
    assert f"call {call.id}: progressing" in lines
    assert lines[-1] == f"call {call.id}: hangup normal (local)"
    assert call.tm_progressing is not None and call.hangup_by.value == "local"
    assert phone_code == 0 and "answered" in phone_out, phone_out
    heard = freqs(read_wav(record))
    assert any(abs(f - 1000) < 15 for f in heard[:5]), heard[:8]  # the beep
    assert sum(abs(f - 600) < 15 for f in heard) >= 5, heard  # its own tone, echoed


async def test_call_errors(tmp_path: Path) -> None:
    async with running(tmp_path) as h, serving(h.platform) as url:
        key = access_key(h.platform)
        code, out = await cli("call", "--to", "1009", "--url", url, "--token", key)
        assert code == 1
        assert "callbridge: 404 RESOURCE_NOT_FOUND: destinations[0]: extension '1009'" in out
        code, out = await cli("call", "--to", "1009", "--url", url, "--token", "vb_" + "x" * 32)
        assert (code, out.strip()) == (
            1,
            "callbridge: 401 INVALID_CREDENTIALS: invalid credentials",
        )
        code, out = await cli("call", "--to", "1009", "--url", url, "--token", key,
                              "--actions", "[]")  # fmt: skip
        assert code == 2 and "--actions must be a non-empty JSON array" in out
        unreachable = f"http://127.0.0.1:{free_tcp_port()}"
        code, out = await cli("call", "--to", "1", "--url", unreachable, "--token", key)
        assert code == 2 and "cannot reach" in out
        code, out = await cli("call", "--to", "1", "--url", url, env={"CALLBRIDGE_ACCESS_KEY": ""})
        assert code == 2 and "no access key" in out


def test_destination_shapes() -> None:
    assert destination("1001", "auto") == {
        "type": "extension", "target": "1001", "target_name": "1001"
    }  # fmt: skip
    assert destination("+15550100", "auto") == {"type": "tel", "target": "+15550100"}
    assert destination("sip:bob@127.0.0.1", "auto") == {"type": "sip", "target": "bob@127.0.0.1"}
    assert destination("5550100", "tel") == {"type": "tel", "target": "5550100"}
