"""Run callbridge's SIP service in-process and sipp against it (scenarios in ``sipp/``)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from callbridge.calls.model import Call
from callbridge.config import load_settings
from callbridge.platform import Platform
from callbridge.telephony.model import Extension, Trunk
from callbridge.telephony.service import TelephonyService

SCENARIOS = Path(__file__).parent / "sipp"
SIPP = shutil.which("sipp")


def free_port() -> int:
    """A port free on 127.0.0.1 for both UDP and TCP (at the time of asking)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port")


class Harness:
    def __init__(self, platform: Platform, tmp: Path) -> None:
        self.platform = platform
        self.tmp = tmp

    @property
    def telephony(self) -> TelephonyService:
        assert self.platform.telephony is not None
        return self.platform.telephony

    @property
    def port(self) -> int:
        return self.telephony.port

    async def workspace_id(self) -> uuid.UUID:
        workspace = await self.platform.store.workspaces.first()
        assert workspace is not None
        return workspace.id

    async def add_extension(self, username: str, password: str) -> None:
        now = datetime.now(UTC)
        await self.platform.store.extensions.insert(
            Extension(uuid.uuid4(), await self.workspace_id(), username, password, now, now)
        )
        await self.telephony.refresh()

    async def add_trunk(
        self, name: str, port: int, username: str = "", password: str = "", **options: Any
    ) -> None:
        now = datetime.now(UTC)
        trunk = Trunk(
            uuid.uuid4(), await self.workspace_id(), name, "127.0.0.1", port, "udp", now, now,
            username=username, password=password, **options,
        )  # fmt: skip
        await self.platform.store.trunks.insert(trunk)
        await self.telephony.refresh()

    async def calls(self) -> list[Call]:
        return await self.platform.store.calls.list(await self.workspace_id())

    async def wait_calls_ended(self, count: int, limit: float = 10.0) -> list[Call]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        while True:
            calls = await self.calls()
            if len(calls) >= count and all(c.status.value == "hangup" for c in calls):
                return calls
            if loop.time() > deadline:
                raise AssertionError(f"calls did not end: {calls}")
            await asyncio.sleep(0.05)

    async def sipp(
        self,
        scenario: str,
        *,
        keys: dict[str, str] | None = None,
        extra: Sequence[str] = (),
        sipp_timeout: float = 15.0,
        port: int | None = None,
        server: bool = False,
    ) -> asyncio.subprocess.Process:
        """Start sipp (a client of callbridge unless ``server``); returns the process."""
        assert SIPP is not None
        args = [SIPP, "-sf", str(SCENARIOS / scenario)]
        if not server:
            args.append(f"127.0.0.1:{self.port}")
        args += ["-i", "127.0.0.1", "-mi", "127.0.0.1", "-p", str(port or free_port())]
        args += ["-m", "1", "-nostdin", "-timeout", f"{sipp_timeout}s", "-timeout_error"]
        args += ["-trace_err", "-mp", str(free_port())]
        for key, value in (keys or {}).items():
            args += ["-key", key, value]
        args += list(extra)
        return await asyncio.create_subprocess_exec(
            *args,
            cwd=self.tmp,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )

    async def run_sipp(self, scenario: str, **kwargs: Any) -> int:
        process = await self.sipp(scenario, **kwargs)
        return await finish(process, self.tmp)


async def until(check: Callable[[], object], limit: float = 5.0, step: float = 0.02) -> None:
    """Poll ``check`` until it is true; AssertionError after ``limit`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while True:
        if check():
            return
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {limit} s")
        await asyncio.sleep(step)


async def finish(process: asyncio.subprocess.Process, tmp: Path, limit: float = 30.0) -> int:
    try:
        async with asyncio.timeout(limit):
            _, err = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    code = process.returncode
    assert code is not None
    if code != 0:
        logs = await asyncio.to_thread(_error_logs, tmp)
        print(f"sipp exit {code}: {err.decode(errors='replace')[-2000:]}\n{logs}")
    return code


def _error_logs(tmp: Path) -> str:
    return "\n".join(p.read_text(errors="replace")[-3000:] for p in tmp.glob("*_errors.log"))


@contextlib.asynccontextmanager
async def running(
    tmp: Path,
    *,
    trust: str = "127.0.0.0/8",
    flow: str = "",
    configure: Callable[[], None] | None = None,
    rtp_ports: str = "32000-33999",
) -> AsyncIterator[Harness]:
    flags: dict[str, object] = {
        "data_dir": str(tmp / "data"),
        "sip_port": str(free_port()),
        "rtp_ports": rtp_ports,
        "sip_trust": trust,
        # sipp 3.6 answers only the first challenge and knows MD5 only.
        "sip_digest_algorithms": "MD5",
    }
    if flow:
        flags["sip_default_flow"] = flow
    platform = Platform(load_settings(None, {}, flags))
    await platform.start()
    try:
        yield Harness(platform, tmp)
    finally:
        await platform.stop(3.0)
