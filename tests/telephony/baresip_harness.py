"""baresip (Debian 1.0.0) as a real softphone, driven over its ``ctrl_tcp`` module.

Each :class:`Baresip` gets its own config directory in tmp: SIP and control ports on 127.0.0.1,
``g711`` only, ``aufile`` as the audio source (a WAV that outlasts the call), ``sndfile`` to dump
both directions of every call (``dump-*-enc.wav`` = what baresip sent, ``dump-*-dec.wav`` = what
it received; 1.0.0 has no aufile player) and the ``aubridge`` ``nil`` device as the player, so
no sound card is needed. The control socket speaks netstring-framed JSON: commands
``{"command", "params", "token"}`` get responses with ``"response": true`` and the same token;
events (``"event": true``, ``type``) arrive on the same socket and are queued here.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import shutil
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np

BARESIP = shutil.which("baresip")
MODULES = Path("/usr/lib/baresip/modules")

CONFIG = """\
poll_method\t\tepoll
sip_listen\t\t127.0.0.1:{sip_port}
net_interface\t\t127.0.0.1
call_local_timeout\t120
call_max_calls\t\t4
audio_player\t\taubridge,nil
audio_alert\t\taubridge,nil
audio_source\t\taufile,{source}
ausrc_srate\t\t8000
auplay_srate\t\t8000
ausrc_channels\t\t1
auplay_channels\t\t1
rtp_ports\t\t{rtp_low}-{rtp_high}
jitter_buffer_delay\t1-5
module_path\t\t{modules}
module\t\t\tg711.so
module\t\t\taufile.so
module\t\t\tsndfile.so
module\t\t\taubridge.so
module_tmp\t\taccount.so
module_app\t\tmenu.so
module_app\t\tctrl_tcp.so
ctrl_tcp_listen\t\t127.0.0.1:{ctrl_port}
snd_path\t\t{dump}
"""


def write_tone_wav(path: Path, freq_hz: float, seconds: float, rate: int = 8000) -> None:
    t = np.arange(int(seconds * rate)) / rate
    samples = (np.sin(2 * np.pi * freq_hz * t) * 8000).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())


def read_wav(path: Path) -> bytes:
    with wave.open(str(path), "rb") as wav:
        assert wav.getframerate() == 8000 and wav.getnchannels() == 1
        return wav.readframes(wav.getnframes())


def _netstring(obj: dict[str, Any]) -> bytes:
    data = json.dumps(obj).encode()
    return str(len(data)).encode() + b":" + data + b","


class Baresip:
    """One baresip process and its control connection."""

    def __init__(self, root: Path, sip_port: int, ctrl_port: int, rtp_low: int) -> None:
        self.root = root
        self.sip_port = sip_port
        self.ctrl_port = ctrl_port
        self.config = root / "config"
        self.dump = root / "dump"
        self.source = root / "source.wav"
        self.rtp_low = rtp_low
        self.process: asyncio.subprocess.Process | None = None
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.seen: list[dict[str, Any]] = []
        self._responses: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._tokens = itertools.count(1)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self._log = root / "baresip.log"

    async def start(self, accounts: str, tone_hz: float = 440.0) -> None:
        self.config.mkdir(parents=True)
        self.dump.mkdir()
        write_tone_wav(self.source, tone_hz, 60.0)
        (self.config / "config").write_text(
            CONFIG.format(
                sip_port=self.sip_port,
                ctrl_port=self.ctrl_port,
                source=self.source,
                rtp_low=self.rtp_low,
                rtp_high=self.rtp_low + 99,
                modules=MODULES,
                dump=self.dump,
            )
        )
        (self.config / "accounts").write_text(accounts + "\n")
        assert BARESIP is not None
        log = self._log.open("wb")
        try:
            self.process = await asyncio.create_subprocess_exec(
                BARESIP, "-f", str(self.config), stdin=asyncio.subprocess.DEVNULL,
                stdout=log, stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip
        finally:
            log.close()
        # Connect as soon as ctrl_tcp listens: events raised before that are lost.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while True:
            try:
                self._reader, self._writer = await asyncio.open_connection(
                    "127.0.0.1", self.ctrl_port
                )
                break
            except OSError:
                if loop.time() > deadline or self.process.returncode is not None:
                    raise RuntimeError(f"baresip did not start:\n{self.log_tail()}") from None
                await asyncio.sleep(0.05)
        self._task = asyncio.create_task(self._read(), name="baresip-ctrl")

    def log_tail(self) -> str:
        try:
            return self._log.read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    async def _read(self) -> None:
        reader = self._reader
        assert reader is not None
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                length = await reader.readuntil(b":")
                body = await reader.readexactly(int(length[:-1]) + 1)
                message = json.loads(body[:-1])
                if message.get("response"):
                    future = self._responses.pop(str(message.get("token")), None)
                    if future is not None and not future.done():
                        future.set_result(message)
                elif message.get("event"):
                    self.seen.append(message)
                    self.events.put_nowait(message)

    async def command(self, command: str, params: str = "", limit: float = 5.0) -> dict[str, Any]:
        writer = self._writer
        assert writer is not None
        token = str(next(self._tokens))
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._responses[token] = future
        writer.write(_netstring({"command": command, "params": params, "token": token}))
        await writer.drain()
        async with asyncio.timeout(limit):
            return await future

    async def wait_event(self, *types: str, limit: float = 8.0) -> dict[str, Any]:
        """The next event of one of ``types`` (others are skipped but kept in ``seen``)."""
        try:
            async with asyncio.timeout(limit):
                while True:
                    event = await self.events.get()
                    if event.get("type") in types:
                        return event
        except TimeoutError:
            seen = [e.get("type") for e in self.seen]
            raise AssertionError(
                f"no {types} from baresip; saw {seen}\n{self.log_tail()}"
            ) from None

    def dumps(self) -> tuple[bytes, bytes]:
        """(what baresip sent, what it received) of its last call, as PCM16 8 kHz."""
        enc = sorted(self.dump.glob("dump-*-enc.wav"))
        dec = sorted(self.dump.glob("dump-*-dec.wav"))
        assert enc and dec, f"no sndfile dumps in {self.dump}"
        return read_wav(enc[-1]), read_wav(dec[-1])

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await self._writer.wait_closed()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        process = self.process
        if process is not None and process.returncode is None:
            process.terminate()
            try:
                async with asyncio.timeout(3):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()


@contextlib.asynccontextmanager
async def baresip(
    root: Path,
    accounts: str,
    *,
    sip_port: int,
    ctrl_port: int,
    rtp_low: int,
    tone_hz: float = 440.0,
) -> AsyncIterator[Baresip]:
    phone = Baresip(root, sip_port, ctrl_port, rtp_low)
    try:
        await phone.start(accounts, tone_hz)
        yield phone
    finally:
        await phone.close()
