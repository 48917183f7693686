"""The HTTP app of an in-process platform served by uvicorn on 127.0.0.1 (a real socket)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import uvicorn

from callbridge.platform import Platform
from callbridge.server.app import create_app

sys.path.insert(0, str(Path(__file__).parents[1] / "telephony"))


def free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def serving(platform: Platform) -> AsyncIterator[str]:
    """Serve ``platform``'s app; yields the base URL ``http://127.0.0.1:<port>``."""
    port = free_tcp_port()
    config = uvicorn.Config(
        create_app(platform), host="127.0.0.1", port=port, lifespan="off", log_level="warning",
        loop="none",
    )  # fmt: skip
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(), name="uvicorn")
    try:
        async with asyncio.timeout(10):
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


def access_key(platform: Platform) -> str:
    result = platform.bootstrap_result
    assert result is not None
    return result.access_key_plaintext
