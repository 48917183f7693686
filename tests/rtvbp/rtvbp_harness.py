"""Access to the vendored RTVBP conformance vectors (tests/vectors/rtvbp, see its README)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from websockets.asyncio.server import ServerConnection, serve
from websockets.typing import Subprotocol

from callbridge.calls.model import Address, Direction
from callbridge.calls.service import CallService, LiveCall
from callbridge.flows.model import Action
from callbridge.legs.file_leg import FileLeg
from callbridge.media.constants import SILENCE_FRAME
from callbridge.rtvbp.envelope import ABSENT, ErrorObject, Event, Frame, Request, Response

ROOT = Path(__file__).resolve().parent.parent / "vectors" / "rtvbp"


def load(rel: str) -> Any:
    return json.loads((ROOT / rel).read_text(encoding="utf-8"))


def golden_files(sub: str) -> list[Path]:
    return sorted((ROOT / "golden" / sub).rglob("*.json"))


def semantic_frame(spec: dict[str, Any]) -> Frame:
    """A frames.json / scenario ``frame`` object as an envelope frame."""
    kind = spec["kind"]
    if kind == "request":
        return Request(spec["id"], spec["method"], spec.get("params", ABSENT))
    if kind == "event":
        return Event(spec["id"], spec["event"], spec.get("data", ABSENT))
    err = spec.get("error")
    error = ErrorObject(err["code"], err["message"], err.get("data", ABSENT)) if err else None
    return Response(spec["response"], spec.get("result", ABSENT), error)


# -- live calls -------------------------------------------------------------------------------


CALLER = "+12025550100"
CALLEE = "+12025550101"


def act(type_: str, **option: Any) -> Action:
    return Action(type=type_, option=dict(option))


async def start_call(service: CallService, leg: FileLeg, actions: list[Action]) -> LiveCall:
    wid = (await service.store.workspaces.create("rtvbp-test")).id
    return await service.start_call(
        workspace_id=wid,
        direction=Direction.INCOMING,
        source=Address(type="tel", target=CALLER),
        destination=Address(type="tel", target=CALLEE),
        leg=leg,
        actions=actions,
    )


async def wait_for(predicate: Callable[[], bool], limit: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + limit
    while not predicate():
        if loop.time() > end:
            raise AssertionError(f"condition not met within {limit} s")
        await asyncio.sleep(0.01)


class HoldLeg(FileLeg):
    """A file leg whose playout can be held (frames stay queued, as if waiting for RTP)."""

    hold = False

    def _next_outbound(self) -> bytes:
        return SILENCE_FRAME if self.hold else super()._next_outbound()


# -- a scripted peer over a real WebSocket ----------------------------------------------------
async def recv_json(ws: Any, limit: float = 3.0) -> dict[str, Any]:
    """The next text message as JSON (binary messages are skipped)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + limit
    while True:
        msg = await asyncio.wait_for(ws.recv(), max(0.01, end - loop.time()))
        if isinstance(msg, str):
            out: dict[str, Any] = json.loads(msg)
            return out


class ScriptedApp:
    """A raw WebSocket server playing the application role from a test script."""

    def __init__(self, status: int | None = None, subprotocol: str | None = "auto") -> None:
        self.connections: asyncio.Queue[ServerConnection] = asyncio.Queue()
        self.headers: list[dict[str, str]] = []
        self.status = status
        self.subprotocol = subprotocol
        self._done = asyncio.Event()
        self.port = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/bridge"

    async def _handler(self, ws: ServerConnection) -> None:
        await self.connections.put(ws)
        await self._done.wait()

    def _process(self, conn: ServerConnection, request: Any) -> Any:
        self.headers.append({k: v for k, v in request.headers.raw_items()})
        if self.status is not None:
            return conn.respond(self.status, "refused\n")
        return None

    def _select(self, conn: ServerConnection, offered: Any) -> Subprotocol | None:
        if self.subprotocol == "auto":
            return Subprotocol("rtvbp.v1") if "rtvbp.v1" in offered else None
        return Subprotocol(self.subprotocol) if self.subprotocol else None

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[ScriptedApp]:
        async with serve(
            self._handler,
            "127.0.0.1",
            0,
            process_request=self._process,
            select_subprotocol=self._select,
            max_size=2**21,
        ) as server:
            self.port = next(iter(server.sockets)).getsockname()[1]
            try:
                yield self
            finally:
                self._done.set()

    async def accept(self, limit: float = 5.0) -> ServerConnection:
        return await asyncio.wait_for(self.connections.get(), limit)


async def answer_initialize(ws: Any, result: Any = None) -> dict[str, Any]:
    """Read session.initialize, answer it (default: echo the first offer), return it."""
    init = await recv_json(ws)
    assert init["method"] == "session.initialize", init
    if result is None:
        result = {"audio_codec": init["params"]["audio_codec_offerings"][0]}
    await ws.send(json.dumps({"version": "1", "response": init["id"], "result": result}))
    return init


def make_self_signed(tmp: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 made with the openssl CLI."""
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


async def raw_upgrade(
    port: int, headers: dict[str, str] | list[tuple[str, str]], path: str = "/"
) -> tuple[int, dict[str, str], bytes]:
    """Send a raw HTTP Upgrade and return the status, headers and start of the body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    items = headers.items() if isinstance(headers, dict) else headers
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
        *(f"{k}: {v}" for k, v in items),
    ]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    status_line, *header_lines = head.decode().split("\r\n")
    parsed = {}
    for line in header_lines:
        if ":" in line:
            k, v = line.split(":", 1)
            parsed[k.strip().lower()] = v.strip()
    body = b""
    length = int(parsed.get("content-length", "0"))
    if length:
        body = await asyncio.wait_for(reader.readexactly(length), 5)
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()
    return int(status_line.split()[1]), parsed, body


Hook = Callable[[], Awaitable[None]]
