"""Server test harness (imported by test modules): real ``callbridge serve`` processes.

Every process started through ``start_server`` is killed at teardown, whatever the test did;
every wait is bounded.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import httpx
import pytest

CALLBRIDGE = Path(sys.executable).parent / "callbridge"
READY_TIMEOUT = 30.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The test environment without CALLBRIDGE_* settings (tooling variables are kept)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("CALLBRIDGE_") or k.startswith("CALLBRIDGE_TEST_")
    }
    env.update(extra or {})
    return env


@dataclass
class ServerProcess:
    proc: subprocess.Popen[bytes]
    port: int
    workdir: Path
    scheme: str = "http"
    _files: list[object] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def stdout(self) -> str:
        return (self.workdir / "stdout.txt").read_text(errors="replace")

    def stderr(self) -> str:
        return (self.workdir / "stderr.txt").read_text(errors="replace")

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Poll /healthz until it answers; fail with the server's stderr if it exits first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"server exited early ({self.proc.returncode}):\n{self.stderr()}")
            try:
                httpx.get(self.base_url + "/healthz", timeout=1.0, verify=False)
                return
            except httpx.TransportError:
                time.sleep(0.05)
        pytest.fail(f"server not ready within {timeout} s:\n{self.stderr()}")

    def wait_exit(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def signal_and_wait(self, sig: int, timeout: float) -> tuple[int, float]:
        """Send ``sig``; return (exit code, seconds until exit)."""
        started = time.monotonic()
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=timeout)
        return code, time.monotonic() - started


class StartServer(Protocol):
    def __call__(
        self,
        *args: str,
        env: Mapping[str, str] | None = None,
        data_dir: Path | None = None,
        port: int | None = None,
        scheme: str = "http",
        wait: bool = True,
    ) -> ServerProcess: ...


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[StartServer]:
    """Start ``callbridge serve --http-port <free> --data-dir <tmp>/data [args]``."""
    started: list[ServerProcess] = []
    counter = 0

    def start(
        *args: str,
        env: Mapping[str, str] | None = None,
        data_dir: Path | None = None,
        port: int | None = None,
        scheme: str = "http",
        wait: bool = True,
    ) -> ServerProcess:
        nonlocal counter
        counter += 1
        workdir = tmp_path / f"proc{counter}"
        workdir.mkdir()
        chosen = port if port is not None else free_port()
        command = [
            str(CALLBRIDGE),
            "serve",
            "--http-port",
            str(chosen),
            "--data-dir",
            str(data_dir if data_dir is not None else tmp_path / "data"),
            # HTTP tests do not need SIP, and must not depend on port 5060 being free.
            *([] if "--sip-port" in args else ["--sip-port", "0"]),
            *args,
        ]
        with (
            open(workdir / "stdout.txt", "wb") as out,
            open(workdir / "stderr.txt", "wb") as err,
        ):
            proc = subprocess.Popen(
                command,
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                env=clean_env(env),
                cwd=tmp_path,
            )
        server = ServerProcess(proc, chosen, workdir, scheme)
        started.append(server)
        if wait:
            server.wait_ready()
        return server

    try:
        yield start
    finally:
        for server in started:
            if server.proc.poll() is None:
                server.proc.send_signal(signal.SIGKILL)
                server.proc.wait(timeout=10)
