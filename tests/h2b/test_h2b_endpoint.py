"""``/bots`` on a live in-process server (real uvicorn, real socket, real SQLite), driven by the
uhlive SDK's own ``Recognizer`` codec; the speech engine is the scripted fake."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import uvicorn
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from callbridge.calls.model import Address, Call, CallStatus, Direction
from callbridge.config.settings import load_settings
from callbridge.h2b.accounting import list_sessions
from callbridge.media.g711 import alaw_encode
from callbridge.platform import Platform
from callbridge.server.app import create_app
from callbridge.speech.asr.fake import FakeRecognizer, ScriptedUtterance
from callbridge.store import StoreBusyError
from callbridge.store import store as store_module

uhlive = pytest.importorskip("uhlive.stream.recognition")

KEY = "vb_" + "h2bTestKey0123456789abcdefXYZ"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tone(ms: int, amplitude: int = 8000) -> bytes:
    n = ms * 8
    return b"".join(
        int(amplitude * math.sin(2 * math.pi * 440 * i / 8000)).to_bytes(2, "little", signed=True)
        for i in range(n)
    )


def silence(ms: int) -> bytes:
    return bytes(ms * 16)


@dataclass
class Live:
    port: int
    fake: FakeRecognizer
    platform: Platform

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/bots"


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[Live]:
    settings = load_settings(
        None,
        {},
        {"data_dir": str(tmp_path / "data"), "sip_port": 0, "bootstrap_access_key": KEY},
    )
    platform = Platform(settings)
    await platform.start()
    app = create_app(platform)
    fake = FakeRecognizer()
    app.state.h2b_recognizer = fake
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(10):
        while not server.started:  # noqa: ASYNC110 - uvicorn exposes no started event
            await asyncio.sleep(0.01)
    try:
        yield Live(port, fake, platform)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        await platform.close()


async def _recv(ws: ClientConnection, rec: object, wait: float = 5.0) -> object:
    async with asyncio.timeout(wait):
        data = await ws.recv()
    assert isinstance(data, str)
    return rec.receive(data)  # type: ignore[attr-defined]


async def _stream(ws: ClientConnection, pcm: bytes, chunk: int = 960) -> None:
    for i in range(0, len(pcm), chunk):
        await ws.send(pcm[i : i + chunk])


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "bearer nope"},
        {"Authorization": f"Basic {KEY}"},
        {"Authorization": "bearer"},
    ],
)
async def test_bad_credentials_get_401_before_upgrade(live: Live, headers: dict[str, str]) -> None:
    with pytest.raises(InvalidStatus) as info:
        async with connect(live.url, additional_headers=headers):
            pass  # pragma: no cover
    assert info.value.response.status_code == 401


async def test_sdk_session_lifecycle(live: Live) -> None:
    live.fake.add(ScriptedUtterance("yes", 0.95))
    _url, headers = uhlive.build_connection_request(KEY)
    assert headers["Authorization"].startswith("bearer ")
    rec = uhlive.Recognizer()
    async with connect(live.url, additional_headers=headers) as ws:
        await ws.send(rec.open(custom_id="cust-1", session_id="s-1"))
        opened = await _recv(ws, rec)
        assert isinstance(opened, uhlive.Opened) and len(rec.channel_id) == 13
        await ws.send(rec.set_params(speech_language="en", no_input_timeout=5000))
        assert isinstance(await _recv(ws, rec), uhlive.ParamsSet)
        await ws.send(rec.get_params())
        params = await _recv(ws, rec)
        assert isinstance(params, uhlive.DefaultParams)
        assert params.headers["no_input_timeout"] == 5000
        await ws.send(rec.define_grammar("speech/boolean", "yn"))
        assert isinstance(await _recv(ws, rec), uhlive.GrammarDefined)
        await ws.send(rec.recognize("session:yn", speech_complete_timeout=300))
        assert isinstance(await _recv(ws, rec), uhlive.RecognitionInProgress)
        await _stream(ws, silence(200) + tone(400) + silence(1500))
        start = await _recv(ws, rec)
        assert isinstance(start, uhlive.StartOfInput)
        done = await _recv(ws, rec)
        assert isinstance(done, uhlive.RecognitionComplete)
        assert done.completion_cause is uhlive.CompletionCause.Success
        assert done.body.nlu.value is True and done.body.nlu.type == "builtin:speech/boolean"
        assert done.body.grammar_uri == "session:yn"
        assert done.body.asr.transcript == "yes"
        await ws.send(rec.close())
        assert isinstance(await _recv(ws, rec), uhlive.Closed)
        await ws.send(silence(60))  # stray audio after CLOSE: no event
        await ws.send(rec.open(audio_codec="g711a"))
        assert isinstance(await _recv(ws, rec), uhlive.Opened)
        await ws.send(rec.recognize("builtin:speech/boolean", no_input_timeout=300))
        assert isinstance(await _recv(ws, rec), uhlive.RecognitionInProgress)
        await _stream(ws, alaw_encode(silence(600)), 480)
        done = await _recv(ws, rec)
        assert done.completion_cause is uhlive.CompletionCause.NoInputTimeout
        await ws.send(rec.close())
        closed = await _recv(ws, rec)
        assert isinstance(closed, uhlive.Closed)
    async with asyncio.timeout(5):
        while True:
            workspace = live.platform.bootstrap_result
            assert workspace is not None
            rows = await list_sessions(live.platform.store, workspace.workspace.id)
            if len(rows) == 2:
                break
            await asyncio.sleep(0.02)
    first, second = rows
    assert (first.custom_id, first.session_id, first.recognitions) == ("cust-1", "s-1", 1)
    # recognized audio ends with the recognition (speech ends at 600 ms + 300 ms complete
    # timeout; the fake's result arrives asynchronously), not with the stream
    assert 900 <= first.recognized_ms <= 2100
    assert first.recognized_seconds == first.recognized_ms / 1000
    assert (second.audio_codec, second.recognized_ms) == ("g711a", 300)


async def test_errors_are_events_and_scheme_is_case_insensitive(live: Live) -> None:
    rec = uhlive.Recognizer()
    async with connect(live.url, additional_headers={"Authorization": f"BeArEr {KEY}"}) as ws:
        await ws.send("{not json")
        bad = await _recv(ws, rec)
        assert isinstance(bad, uhlive.MethodNotValid) and bad.request_id == 0
        await ws.send(json.dumps({"command": "STOP", "request_id": 5}))
        assert isinstance(await _recv(ws, rec), uhlive.MethodNotAllowed)
        await ws.send("x" * (64 * 1024 + 1))
        assert isinstance(await _recv(ws, rec), uhlive.MethodNotValid)
        await ws.send(rec.open())
        await _recv(ws, rec)
        await ws.send(rec.recognize("session:toto"))
        failed = await _recv(ws, rec)
        assert isinstance(failed, uhlive.MethodFailed)
        assert failed.completion_cause is uhlive.CompletionCause.GramLoadFailure
        assert failed.completion_reason == "unknown grammar 'session:toto'"


async def test_wall_clock_silence_ends_a_recognition(live: Live) -> None:
    rec = uhlive.Recognizer()
    _url, headers = uhlive.build_connection_request(KEY)
    async with connect(live.url, additional_headers=headers) as ws:
        await ws.send(rec.open())
        await _recv(ws, rec)
        await ws.send(rec.recognize("builtin:speech/boolean", no_input_timeout=500))
        await _recv(ws, rec)
        done = await _recv(ws, rec, wait=5.0)  # no audio at all was sent
        assert done.completion_cause is uhlive.CompletionCause.NoInputTimeout


async def test_oversized_chunk_closes_with_1009(live: Live) -> None:
    async with connect(
        live.url, additional_headers={"Authorization": f"bearer {KEY}"}, max_size=None
    ) as ws:
        await ws.send(bytes(1024 * 1024 + 1))
        with pytest.raises(ConnectionClosed) as info:
            async with asyncio.timeout(5):
                await ws.recv()
    assert info.value.rcvd is not None and info.value.rcvd.code == 1009


async def _open_and_close(url: str, n: int) -> None:
    rec = uhlive.Recognizer()
    async with connect(url, additional_headers={"Authorization": f"bearer {KEY}"}) as ws:
        await ws.send(rec.open(custom_id=f"c-{n}", session_id=f"s-{n}"))
        assert isinstance(await _recv(ws, rec, 30), uhlive.Opened)
        await ws.send(rec.close())
        assert isinstance(await _recv(ws, rec, 30), uhlive.Closed)


@pytest.fixture
def short_busy_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    # Requested before ``live``: its store opens with a 50 ms SQLite busy timeout, so store
    # accesses that compete for the write lock by busy-polling fail within the test.
    monkeypatch.setattr(store_module, "SQLITE_BUSY_TIMEOUT_MS", 50)


async def test_simultaneous_connects_under_store_load_all_succeed(
    short_busy_timeout: None, live: Live
) -> None:
    # 30 connects at once (each: key check, a session, its accounting row) while the same
    # process writes 300 calls: the store queues its writers and reads do not wait for them
    # (decision 025), so nobody gets a 500 or a 503.
    bootstrap = live.platform.bootstrap_result
    assert bootstrap is not None
    workspace_id = bootstrap.workspace.id
    store = live.platform.store

    async def write_call() -> None:
        now = datetime.now(UTC)
        call = Call(uuid.uuid4(), workspace_id, Direction.INCOMING,
                    Address(type="tel", target="+1555"), Address(type="tel", target="+1556"),
                    CallStatus.RINGING, now, now)  # fmt: skip
        stored = await store.calls.insert(call)
        await store.calls.update(dataclasses.replace(stored, status=CallStatus.HANGUP))

    load = asyncio.gather(*(write_call() for _ in range(300)))
    results = await asyncio.gather(
        *(_open_and_close(live.url, n) for n in range(30)), return_exceptions=True
    )
    await load
    assert [r for r in results if r is not None] == []
    async with asyncio.timeout(10):
        while len(rows := await list_sessions(store, workspace_id)) < 30:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    assert sorted(r.custom_id for r in rows) == sorted(f"c-{n}" for n in range(30))


async def test_store_failure_at_connect_is_a_503_with_a_json_body(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def busy(*_args: object, **_kwargs: object) -> None:
        raise StoreBusyError("SQLite write lock held elsewhere")

    monkeypatch.setattr(live.platform.store.access_keys, "find_by_token", busy)
    with pytest.raises(InvalidStatus) as info:
        async with connect(live.url, additional_headers={"Authorization": f"bearer {KEY}"}):
            pass  # pragma: no cover
    response = info.value.response
    assert response.status_code == 503
    error = json.loads(response.body)["error"]
    assert error["reason"] == "SERVICE_UNAVAILABLE", error
    assert "store is not available" in error["message"], error
    monkeypatch.undo()
    await _open_and_close(live.url, 0)  # and it recovers
