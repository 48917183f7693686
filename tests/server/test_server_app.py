"""The ASGI app and the Platform in-process, on a real SQLite store (no mocks)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import Request
from pydantic import BaseModel

from callbridge.config import Settings, load_settings
from callbridge.media.clock import SystemClock
from callbridge.platform import Platform, PlatformStartError
from callbridge.server.app import create_app
from callbridge.server.errors import ApiError, accept_request_id


def settings_for(tmp_path: Path, **flags: object) -> Settings:
    # No SIP listener: these tests are about HTTP and must not depend on port 5060 being free.
    return load_settings(None, {}, {"data_dir": str(tmp_path / "data"), "sip_port": 0, **flags})


@pytest.fixture
async def platform(tmp_path: Path) -> AsyncIterator[Platform]:
    p = Platform(settings_for(tmp_path, http_max_body_bytes="100"))
    await p.start()
    try:
        yield p
    finally:
        await p.stop(1.0)


class Item(BaseModel):
    name: str
    size: int


def client_for(platform: Platform) -> httpx.AsyncClient:
    app = create_app(platform)

    @app.post("/test/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"length": len(await request.body())}

    @app.post("/test/item")
    async def item(body: Item) -> dict[str, str]:
        return {"name": body.name}

    @app.get("/test/boom")
    async def boom() -> None:
        raise RuntimeError("kaboom vb_" + "s" * 30)

    @app.get("/test/conflict")
    async def conflict() -> None:
        raise ApiError(409, "call already ended", reason="CALL_STATE_INVALID")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://cb.test")


async def test_platform_start_bootstraps_once(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    first = Platform(settings)
    assert isinstance(first.clock, SystemClock)
    with pytest.raises(RuntimeError):
        _ = first.calls
    await first.start()
    try:
        assert (tmp_path / "data" / "callbridge.db").is_file()
        result = first.bootstrap_result
        assert result is not None and result.created
        assert result.access_key_plaintext.startswith("vb_")
        assert await first.store.ping()
    finally:
        await first.stop(1.0)
    with pytest.raises(RuntimeError):
        _ = first.store

    second = Platform(settings)
    await second.start()
    try:
        assert second.bootstrap_result is None
    finally:
        await second.stop(1.0)


async def test_platform_stop_hangs_up_live_calls_before_closing_the_store(
    tmp_path: Path,
) -> None:
    from callbridge.calls.model import Address, CallStatus, Direction, HangupBy
    from callbridge.flows.model import Action
    from callbridge.legs.file_leg import FileLeg
    from callbridge.store import Store

    settings = settings_for(tmp_path)
    platform = Platform(settings)
    await platform.start()
    assert platform.bootstrap_result is not None
    wid = platform.bootstrap_result.workspace.id
    live = await platform.calls.start_call(
        workspace_id=wid,
        direction=Direction.INCOMING,
        source=Address(type="tel", target="+15550100"),
        destination=Address(type="tel", target="+15550200"),
        leg=FileLeg("drain-1", platform.clock),
        actions=[Action("answer"), Action("sleep", {"duration": 600_000})],
    )
    for _ in range(200):
        if live.call.status is CallStatus.PROGRESSING:
            break
        await asyncio.sleep(0.01)
    assert live.call.status is CallStatus.PROGRESSING
    await platform.stop(2.5)
    assert not live.is_live
    with pytest.raises(RuntimeError):
        _ = platform.calls
    await platform.stop(2.5)  # idempotent close
    reopened = await Store.open(settings.database)
    try:
        stored = await reopened.calls.get(wid, live.id)
    finally:
        await reopened.close()
    assert stored is not None and stored.status is CallStatus.HANGUP
    assert stored.hangup_by is HangupBy.LOCAL


async def test_platform_data_dir_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    platform = Platform(load_settings(None, {}, {"data_dir": str(blocker / "sub"), "sip_port": 0}))
    with pytest.raises(PlatformStartError, match=r"^data dir: cannot create"):
        await platform.start()


async def test_healthz_reports_unreachable_store(platform: Platform) -> None:
    async with client_for(platform) as client:
        ok = await client.get("/healthz")
        assert ok.status_code == 200 and ok.json()["store"] == "ok"
        await platform.close()
        down = await client.get("/healthz")
    assert down.status_code == 503
    body = down.json()
    assert body["store"] == "unreachable"
    assert set(body) == {"status", "version", "store"}


async def test_streamed_body_limit(platform: Platform) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(5):
            yield b"z" * 40

    async with client_for(platform) as client:
        fits = await client.post("/test/echo", content=b"a" * 100)
        assert fits.status_code == 200 and fits.json() == {"length": 100}
        too_big = await client.post("/test/echo", content=chunks())
    assert too_big.status_code == 413
    error = too_big.json()["error"]
    assert error["reason"] == "REQUEST_BODY_TOO_LARGE"
    assert error["request_id"] == too_big.headers["x-request-id"]


async def test_validation_errors_use_envelope(platform: Platform) -> None:
    async with client_for(platform) as client:
        bad_json = await client.post(
            "/test/item", content=b"{not json", headers={"Content-Type": "application/json"}
        )
        missing = await client.post("/test/item", json={"name": "x"})
        wrong = await client.post("/test/item", json={"name": "x", "size": "big"})
    assert bad_json.status_code == 400
    assert bad_json.json()["error"]["reason"] == "INVALID_JSON_BODY"
    assert missing.status_code == 400
    err = missing.json()["error"]
    assert err["status"] == "INVALID_ARGUMENT"
    assert err["reason"] == "MISSING_REQUEST_PARAMETER"
    assert err["details"][0]["field"] == "body.size"
    assert wrong.json()["error"]["reason"] == "INVALID_REQUEST_PARAMETER"


async def test_unhandled_error_is_500_envelope(
    platform: Platform, capsys: pytest.CaptureFixture[str]
) -> None:
    async with client_for(platform) as client:
        reply = await client.get("/test/boom", headers={"X-Request-Id": "r-1"})
        conflict = await client.get("/test/conflict")
    assert reply.status_code == 500
    assert reply.json() == {
        "error": {
            "status": "INTERNAL",
            "reason": "INTERNAL",
            "message": "internal error",
            "request_id": "r-1",
        }
    }
    assert reply.headers["x-request-id"] == "r-1"
    assert "kaboom" not in reply.text
    assert conflict.status_code == 409
    assert conflict.json()["error"]["reason"] == "CALL_STATE_INVALID"


def test_accept_request_id() -> None:
    assert accept_request_id("a.B-9_z") == "a.B-9_z"
    assert accept_request_id("x" * 64) == "x" * 64
    for bad in (None, "", "x" * 65, "no spaces", "ü"):
        generated = accept_request_id(bad)
        assert generated.startswith("req_") and len(generated) == 30
