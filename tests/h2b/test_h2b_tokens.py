"""The OIDC-style token endpoint and its tokens on /bots (live in-process server)."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import uvicorn
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from callbridge.auth.model import Workspace
from callbridge.config.settings import load_settings
from callbridge.h2b.tokens import TOKEN_TTL_S, TokenIssuer
from callbridge.platform import Platform
from callbridge.server.app import create_app
from callbridge.speech.asr.fake import FakeRecognizer

KEY = "vb_" + "h2bTokenKey0123456789abcdefXY"
PATH = "/realms/uhlive/protocol/openid-connect/token"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def base(tmp_path: Path) -> AsyncIterator[str]:
    settings = load_settings(
        None,
        {},
        {"data_dir": str(tmp_path / "data"), "sip_port": 0, "bootstrap_access_key": KEY},
    )
    platform = Platform(settings)
    await platform.start()
    app = create_app(platform)
    app.state.h2b_recognizer = FakeRecognizer()
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(10):
        while not server.started:  # noqa: ASYNC110 - uvicorn exposes no started event
            await asyncio.sleep(0.01)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        await platform.close()


@pytest.mark.parametrize(
    ("form", "status", "error"),
    [
        ({"grant_type": "client_credentials", "client_id": "c", "client_secret": KEY}, 200, None),
        (
            {
                "grant_type": "password",
                "client_id": "c",
                "client_secret": KEY,
                "username": "u",
                "password": KEY,
                "scope": "openid",
            },
            200,
            None,
        ),
        (
            {"grant_type": "client_credentials", "client_id": "c", "client_secret": "no"},
            401,
            "invalid_client",
        ),
        (
            {
                "grant_type": "password",
                "client_id": "c",
                "client_secret": KEY,
                "username": "u",
                "password": "x",
            },
            400,
            "invalid_grant",
        ),
        (
            {"grant_type": "password", "client_id": "c", "client_secret": KEY},
            400,
            "invalid_request",
        ),
        (
            {"grant_type": "implicit", "client_id": "c", "client_secret": KEY},
            400,
            "unsupported_grant_type",
        ),
        ({"client_id": "c", "client_secret": KEY}, 400, "invalid_request"),
        ({"grant_type": "client_credentials", "client_secret": KEY}, 400, "invalid_request"),
    ],
)
async def test_token_endpoint(
    base: str, form: dict[str, str], status: int, error: str | None
) -> None:
    async with httpx.AsyncClient() as client:
        resp = await client.post(f"http://{base}{PATH}", data=form)
    assert resp.status_code == status, resp.text
    body = resp.json()
    if error is None:
        assert body["token_type"] == "Bearer" and body["expires_in"] == TOKEN_TTL_S
        async with connect(
            f"ws://{base}/bots",
            additional_headers={"Authorization": f"bearer {body['access_token']}"},
        ) as ws:
            await ws.send(
                '{"command":"OPEN","request_id":1,"channel_id":"","headers":{},"body":""}'
            )
            assert '"OPENED"' in str(await ws.recv())
    else:
        assert body["error"] == error and body["error_description"]


async def test_bad_realm_and_bad_form(base: str) -> None:
    async with httpx.AsyncClient() as client:
        resp = await client.post(
            f"http://{base}/realms/other/protocol/openid-connect/token", data={}
        )
        assert resp.status_code == 404 and resp.json()["error"] == "invalid_request"
        resp = await client.post(f"http://{base}{PATH}", content=b"\xff\xfe=1")
        assert resp.status_code == 400
        resp = await client.post(f"http://{base}{PATH}", content=b"a=" + b"x" * 20000)
        assert resp.status_code == 400
    with pytest.raises(InvalidStatus):
        async with connect(
            f"ws://{base}/bots", additional_headers={"Authorization": "bearer h2b_forged"}
        ):
            pass  # pragma: no cover


def test_issuer_expiry_and_bound() -> None:
    now = [0.0]
    issuer = TokenIssuer(monotonic=lambda: now[0])
    ws = Workspace(id=uuid.uuid4(), name="w", tm_create=datetime.now(UTC))
    token = issuer.issue(ws)
    assert issuer.redeem(token) == ws
    now[0] = TOKEN_TTL_S - 0.001
    assert issuer.redeem(token) == ws
    now[0] = TOKEN_TTL_S
    assert issuer.redeem(token) is None
    assert issuer.redeem(token) is None
    small = TokenIssuer(monotonic=lambda: now[0], max_tokens=10)
    tokens = [small.issue(ws) for _ in range(25)]
    assert len(small._tokens) <= 10
    assert small.redeem(tokens[-1]) == ws and small.redeem(tokens[0]) is None
    now[0] += TOKEN_TTL_S + 1
    small.issue(ws)  # expired ones are purged first
    assert len(small._tokens) == 1
