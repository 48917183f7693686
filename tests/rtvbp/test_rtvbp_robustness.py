"""Bad and unusual input on both roles over real sockets: odd and huge binary frames, invalid
JSON, ``"version":"2"``, requests before initialize, silent peers, negotiation, bearer/JWT
checks before the upgrade, TLS, the CLI (RTVBP spec §1, §2.2, §4, §8.3)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import ssl
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from rtvbp_harness import (
    HoldLeg,
    ScriptedApp,
    act,
    answer_initialize,
    load,
    make_self_signed,
    raw_upgrade,
    recv_json,
    start_call,
    wait_for,
)
from websockets.asyncio.client import ClientConnection, connect

from callbridge.calls.service import CallService
from callbridge.cli.common import CommandError
from callbridge.cli.main import build_parser
from callbridge.cli.rtvbp import build_server
from callbridge.media.clock import SystemClock
from callbridge.media.constants import FRAME_BYTES
from callbridge.rtvbp import catalog as c
from callbridge.rtvbp.examples.echo import EchoHandler
from callbridge.rtvbp.sdk import (
    HandlerServer,
    JwtValidator,
    NotInitialized,
    RequestTimeout,
    RtvbpHandler,
    StaticToken,
    connect_handler,
)
from callbridge.rtvbp.tokens import BABELFORCE_ISSUER, BABELFORCE_SUBJECT, mint_jwt
from callbridge.rtvbp.voice import BridgeOptions, VoiceBridge

INIT = json.dumps(
    {
        "version": "1",
        "id": "init-1",
        "method": "session.initialize",
        "params": load("scenarios/initialize-updated-dtmf.json")["cases"][0]["steps"][0]["params"],
    }
)


def ping(rid: str) -> str:
    return json.dumps({"version": "1", "id": rid, "method": "ping", "params": {"t0": 1}})


async def until_response(ws: Any, rid: str) -> dict[str, Any]:
    while (msg := await recv_json(ws)).get("response") != rid:
        pass
    return msg


# -- callbridge as voice ----------------------------------------------------------------------
@pytest.fixture
async def app() -> AsyncIterator[ScriptedApp]:
    scripted = ScriptedApp()
    async with scripted.running():
        yield scripted


async def held_bridge(
    service: CallService, app: ScriptedApp, **options: Any
) -> tuple[VoiceBridge, Any, asyncio.Task[Any]]:
    leg = HoldLeg("robust", SystemClock())
    leg.hold = True
    live = await start_call(service, leg, [act("answer"), act("sleep", duration=60000)])
    await wait_for(live.answered.is_set)
    bridge = VoiceBridge(service, live, BridgeOptions(url=app.url, **options))
    task = asyncio.create_task(bridge.run())
    return bridge, await app.accept(), task


async def test_voice_accepts_any_binary_size_and_drops_bad_text(
    rt_service: CallService, app: ScriptedApp
) -> None:
    bridge, ws, task = await held_bridge(rt_service, app)
    # Requests before initialize completed: 500; ping is answered at any time.
    init = await recv_json(ws)
    await ws.send(
        json.dumps({"version": "1", "id": "g0", "method": "session.get", "params": {"keys": []}})
    )
    await ws.send(ping("p0"))
    early = [await recv_json(ws), await recv_json(ws)]
    assert early[0]["error"] == {"code": 500, "message": "session not initialized"}
    assert early[1]["response"] == "p0" and early[1]["result"]["t0"] == 1
    await ws.send(
        json.dumps({"version": "1", "response": init["id"], "result": {"audio_codec": None}})
    )
    assert (await recv_json(ws))["event"] == "session.updated"
    for size in (161, 1, 479):  # odd and short frames: re-cut with a carry
        await ws.send(b"\x11" * size)
    await ws.send("{")
    await ws.send('{"version":"2","id":"x","method":"ping","params":{"t0":1}}')
    await ws.send('{"version":"1","id":"y","method":"ping","params":{"t0":0}}')
    assert (await until_response(ws, "y"))["error"]["code"] == 400
    assert bridge.session.dropped_frames == 2
    clear = json.dumps({"version": "1", "id": "c", "method": "audio.buffer.clear", "params": {}})
    await ws.send(clear)
    assert (await until_response(ws, "c"))["result"] == {"len": 641}
    # A 1 MiB frame: accepted, queued up to the playout limit, the rest dropped and counted.
    await ws.send(b"\x22" * (1 << 20))
    await ws.send(clear.replace('"c"', '"c2"'))
    cleared = (await until_response(ws, "c2"))["result"]["len"]
    limit = int(10.0 * 16000)  # the call's producer lead limit (10 s)
    assert cleared == limit + (1 << 20) % FRAME_BYTES
    assert bridge.dropped_audio_bytes == (1 << 20) - (1 << 20) % FRAME_BYTES - limit
    # More than 1 MiB in one message: the voice closes (1009) and the bridge fails.
    await ws.send(b"\x00" * ((1 << 20) + 1))
    outcome = await asyncio.wait_for(task, 5)
    assert outcome.result == "failed" and "connection lost" in (outcome.error or "")


async def test_voice_emits_audio_info(rt_service: CallService, app: ScriptedApp) -> None:
    bridge, ws, task = await held_bridge(rt_service, app, audio_info_seconds=0.2)
    await answer_initialize(ws)
    await ws.send(b"\x00" * 3200)
    infos = []
    while len(infos) < 2:
        msg = await recv_json(ws)
        if msg.get("event") == "audio.info":
            infos.append(msg["data"])
    first, second = infos
    assert list(first) == ["read", "write"]
    assert list(first["read"]) == ["bytes", "bytes_per_second", "bytes_total"]
    assert first["write"]["bytes_total"] == 3200 and second["write"]["bytes"] == 0
    assert first["read"]["bytes"] % FRAME_BYTES == 0 and first["read"]["bytes"] > 0
    assert first["read"]["bytes_per_second"] == pytest.approx(first["read"]["bytes"] / 0.2)
    total = second["read"]["bytes_total"]
    assert total == first["read"]["bytes"] + second["read"]["bytes"]
    c.AudioInfoEvent.from_json(second)
    stopping = asyncio.create_task(bridge.stop("completed"))
    term = await until_response_method(ws, "session.terminate")
    await ws.send(json.dumps({"version": "1", "response": term["id"], "result": {}}))
    await stopping
    assert (await asyncio.wait_for(task, 5)).result == "terminated"


async def until_response_method(ws: Any, method: str) -> dict[str, Any]:
    while (msg := await recv_json(ws)).get("method") != method:
        pass
    return msg


async def test_voice_subprotocol_not_offered_fails(rt_service: CallService) -> None:
    rogue = ScriptedApp(subprotocol="rtvbp.demo.v1")
    async with rogue.running():
        leg = HoldLeg("rogue", SystemClock())
        live = await start_call(rt_service, leg, [act("answer"), act("sleep", duration=60000)])
        bridge = VoiceBridge(rt_service, live, BridgeOptions(url=rogue.url))
        outcome = await asyncio.wait_for(bridge.run(), 5)
    assert outcome.result == "failed" and "handshake" in (outcome.error or "")


# -- the SDK as application ------------------------------------------------------------------
class Recorder(EchoHandler):
    def __init__(self) -> None:
        super().__init__()
        self.frames: list[bytes] = []
        self.early_error: Exception | None = None

    async def on_audio(self, frame: bytes) -> None:
        self.frames.append(frame)
        await super().on_audio(frame)


@pytest.fixture
async def sdk() -> AsyncIterator[HandlerServer]:
    server = HandlerServer({"/rec": Recorder}, authenticate=StaticToken("tok"), request_timeout=0.3)
    async with server:
        yield server


async def voice(server: HandlerServer, **kw: Any) -> ClientConnection:
    return await connect(
        f"{server.url}/rec",
        additional_headers={"Authorization": "Bearer tok"},
        max_size=None,
        max_queue=None,
        **kw,
    )


async def test_sdk_handles_odd_huge_and_invalid_input(sdk: HandlerServer) -> None:
    ws = await voice(sdk)
    await ws.send(b"\x05" * 161)  # audio before initialize: buffered, never dropped
    await ws.send(ping("early"))  # ping before initialize: answered
    assert (await until_response(ws, "early"))["result"]["t0"] == 1
    handler = sdk.handlers[-1]
    assert isinstance(handler, Recorder)
    with pytest.raises(NotInitialized):
        await handler.set({"a": 1})
    await ws.send(INIT)
    assert (await until_response(ws, "init-1"))["result"]["audio_codec"]["id"] == "L16/8000/1"
    await ws.send(b"\x05" * 479)
    echoed = await asyncio.wait_for(ws.recv(), 3)
    assert echoed == b"\x05" * FRAME_BYTES  # exact frames out, whatever came in
    assert await asyncio.wait_for(ws.recv(), 3) == b"\x05" * FRAME_BYTES
    await ws.send("{")
    await ws.send("[1,2]")
    await ws.send('{"version":"2","id":"v2","method":"ping","params":{"t0":1}}')
    await ws.send('{"version":"1","id":"u","method":"no.such.method"}')
    assert (await until_response(ws, "u"))["error"] == {
        "code": 501,
        "message": "unknown method: no.such.method",
    }
    await ws.send(b"\x07" * (1 << 20))  # 1 MiB of audio in one message
    await ws.send(ping("after"))
    assert (await until_response(ws, "after"))["response"] == "after"
    await wait_for(lambda: len(handler.frames) >= 100)
    assert all(len(f) == FRAME_BYTES for f in handler.frames)
    session = sdk.sessions[-1] if sdk.sessions else None
    assert session is None  # still running
    # A voice that never answers: the request times out (server request timeout 0.3 s).
    with pytest.raises(RequestTimeout):
        await handler.get("x")
    await ws.close()
    await wait_for(lambda: bool(sdk.sessions))
    assert sdk.sessions[-1].dropped_frames == 3


async def test_sdk_default_initialize_rejects_unsupported_codecs(sdk: HandlerServer) -> None:
    ws = await voice(sdk)
    init = json.loads(INIT)
    init["params"]["audio_codec_offerings"] = [
        {"id": "PCMU/8000/1", "name": "PCMU", "sample_rate": 8000, "bit_depth": 8, "channels": 1}
    ]
    await ws.send(json.dumps(init))
    answer = await until_response(ws, "init-1")
    assert answer["error"] == {"code": 400, "message": "no supported audio codec"}
    await ws.send(INIT)  # a second, acceptable offer still works
    assert "result" in await until_response(ws, "init-1")
    await ws.send(INIT)
    assert (await until_response(ws, "init-1"))["error"]["message"] == "session already initialized"
    await ws.close()


NEGOTIATION = load("profiles/negotiation.json")


@pytest.mark.parametrize(
    "case", NEGOTIATION["valid"] + NEGOTIATION["invalid"], ids=lambda k: k["name"]
)
async def test_negotiation_against_a_live_server(sdk: HandlerServer, case: dict[str, Any]) -> None:
    headers: list[tuple[str, str]] = [("Authorization", "Bearer tok")]
    if case["offered"]:
        headers.append(("Sec-WebSocket-Protocol", ", ".join(case["offered"])))
    status, got, body = await raw_upgrade(sdk.port, headers, "/rec")
    served = case.get("selectedToken") in (None, "rtvbp.v1")
    if "error" in case or not served:
        # Tokens this server does not implement yet are rejected like unknown ones (§8.2).
        assert (status == 400 and body.startswith(b"Unsupported WebSocket subprotocol")) or (
            case.get("error") == "invalid-token" and status == 400
        )
        return
    assert status == 101
    assert got.get("sec-websocket-protocol") == case["selectedToken"]


async def test_auth_before_upgrade(sdk: HandlerServer) -> None:
    status, headers, _ = await raw_upgrade(sdk.port, {}, "/rec")
    assert status == 401 and headers["www-authenticate"] == "Bearer"
    status, _, _ = await raw_upgrade(sdk.port, {"Authorization": "Bearer nope"}, "/rec")
    assert status == 401
    status, _, _ = await raw_upgrade(sdk.port, {"Authorization": "Basic dG9r"}, "/rec")
    assert status == 401
    status, _, _ = await raw_upgrade(sdk.port, {"Authorization": "Bearer tok"}, "/nowhere")
    assert status == 404
    # Browser carrier: the credential rides in the subprotocol list; only rtvbp.v1 is echoed.
    offer = {"Sec-WebSocket-Protocol": "rtvbp.v1, bearer.dG9r"}
    status, headers, _ = await raw_upgrade(sdk.port, offer, "/rec")
    assert status == 101 and headers["sec-websocket-protocol"] == "rtvbp.v1"
    assert not sdk.handlers or len(sdk.handlers) == 1


async def test_origin_allowlist() -> None:
    async with HandlerServer(EchoHandler, origins=["https://ok.example"]) as server:
        status, _, _ = await raw_upgrade(server.port, {"Origin": "https://evil.example"})
        assert status == 403
        status, _, _ = await raw_upgrade(server.port, {"Origin": "https://ok.example"})
        assert status == 101


async def test_tls_with_a_self_signed_certificate(tmp_path: Path) -> None:
    cert, key = make_self_signed(tmp_path)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    async with HandlerServer(EchoHandler, ssl_context=server_ctx) as server:
        trusting = ssl.create_default_context(cafile=str(cert))
        async with connect(server.url, ssl=trusting) as ws:
            await ws.send(INIT)
            assert "result" in await until_response(ws, "init-1")
            await ws.send(b"\x09" * 640)
            assert await asyncio.wait_for(ws.recv(), 3) == b"\x09" * FRAME_BYTES
        with pytest.raises(ssl.SSLCertVerificationError):
            await connect(server.url, ssl=ssl.create_default_context())


async def test_client_mode_against_a_voice_server() -> None:
    """Roles are not socket sides: the application dials a voice that listens."""
    from websockets.asyncio.server import serve

    seen: list[Any] = []

    async def voice_side(ws: Any) -> None:
        await ws.send(INIT)
        seen.append(await until_response(ws, "init-1"))
        await ws.send(json.dumps({"version": "1", "id": "t", "method": "session.terminate",
                                  "params": {"reason": "completed"}}))  # fmt: skip
        seen.append(await until_response(ws, "t"))
        await ws.wait_closed()

    async with serve(voice_side, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        session = await asyncio.wait_for(
            connect_handler(f"ws://127.0.0.1:{port}", EchoHandler(), token="t"), 5
        )
    assert session.state.value == "closed"
    assert seen[1]["result"] == {}


# -- JWT -------------------------------------------------------------------------------------
def keypair() -> tuple[bytes, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return (
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    )


def test_jwt_validator_contract() -> None:
    old_priv, old_pub = keypair()
    new_priv, new_pub = keypair()
    validator = JwtValidator({"old": old_pub, "new": new_pub}, ["acc-1"])
    good = mint_jwt(new_priv, account_id="acc-1", key_id="new")
    assert validator(good)
    claims = validator.claims(good)
    assert (claims["iss"], claims["sub"], claims["aud"]) == (
        BABELFORCE_ISSUER,
        BABELFORCE_SUBJECT,
        "acc-1",
    )
    assert claims["exp"] - claims["iat"] == 3600
    # kid only picks the key; an unknown kid tries every key; the signature decides.
    assert validator(mint_jwt(old_priv, account_id="acc-1", key_id="rotated-away"))
    assert not validator(mint_jwt(old_priv, account_id="acc-1", key_id="new"))
    assert not validator(mint_jwt(new_priv, account_id="acc-2", key_id="new"))
    assert validator.last_error == "InvalidAudienceError"
    expired = mint_jwt(new_priv, account_id="acc-1", key_id="new", now=time.time() - 7200)
    assert not validator(expired) and validator.last_error == "ExpiredSignatureError"
    now = int(time.time())
    base = {"iss": BABELFORCE_ISSUER, "sub": BABELFORCE_SUBJECT, "aud": "acc-1", "iat": now}
    no_exp = pyjwt.encode(base, new_priv, algorithm="RS256", headers={"kid": "new"})
    assert not validator(no_exp)
    other_sub = pyjwt.encode(
        {**base, "sub": "someone", "exp": now + 60}, new_priv, algorithm="RS256"
    )
    assert not validator(other_sub)
    other_iss = pyjwt.encode({**base, "iss": "x", "exp": now + 60}, new_priv, algorithm="RS256")
    assert not validator(other_iss)
    hs = pyjwt.encode({**base, "exp": now + 60}, "k" * 32, algorithm="HS256")
    assert not validator(hs) and validator.last_error == "InvalidAlgorithmError"
    assert not validator(None) and not validator("not-a-jwt")
    assert not JwtValidator({}, ["acc-1"])(good)
    assert not StaticToken("a")(None) and StaticToken("a")("a") and not StaticToken("a")("b")


# -- CLI -------------------------------------------------------------------------------------
def parse(*argv: str) -> Any:
    return build_parser().parse_args(["rtvbp-handler", *argv])


def test_cli_arguments_are_validated(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="go together"):
        build_server(parse("--tls-cert", "x"))
    with pytest.raises(CommandError, match="exclusive"):
        build_server(parse("--token", "a", "--jwt-public-key", "k"))
    with pytest.raises(CommandError, match="must not be empty"):
        build_server(parse("--token", ""))
    with pytest.raises(CommandError, match="--jwt-account"):
        build_server(parse("--jwt-public-key", "k"))
    with pytest.raises(CommandError, match="cannot read"):
        build_server(parse("--jwt-public-key", str(tmp_path / "none"), "--jwt-account", "a"))
    with pytest.raises(CommandError, match="TLS"):
        build_server(parse("--tls-cert", str(tmp_path / "c"), "--tls-key", str(tmp_path / "k")))
    with pytest.raises(CommandError, match="--port"):
        build_server(parse("--port", "70000"))
    _, pub = keypair()
    (tmp_path / "pub.pem").write_bytes(pub)
    server = build_server(
        parse("--example", "ivr", "--jwt-public-key", str(tmp_path / "pub.pem"),
              "--jwt-account", "a", "--path", "/ivr")
    )  # fmt: skip
    assert isinstance(server.authenticate, JwtValidator) and "/ivr" in server.routes


async def test_cli_runs_the_echo_example_with_a_token(tmp_path: Path) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "callbridge", "rtvbp-handler", "--example", "echo",
        "--port", str(port), "--token", "SECRET",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 15)
        assert b"listening on ws://127.0.0.1:" in line
        status, _, _ = await raw_upgrade(port, {"Authorization": "Bearer wrong"})
        assert status == 401
        async with connect(
            f"ws://127.0.0.1:{port}", additional_headers={"Authorization": "Bearer SECRET"}
        ) as ws:
            await ws.send(INIT)
            assert "result" in await until_response(ws, "init-1")
            await ws.send(b"\x03" * 320)
            assert await asyncio.wait_for(ws.recv(), 3) == b"\x03" * 320
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(proc.wait(), 5)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def test_handler_errors_become_500(sdk: HandlerServer) -> None:
    class Broken(RtvbpHandler):
        async def on_terminate(self, reason: str) -> None:
            raise RuntimeError("kaput")

    async with HandlerServer(Broken) as server, connect(server.url) as ws:
        await ws.send(INIT)
        await until_response(ws, "init-1")
        term = {"version": "1", "id": "t", "method": "session.terminate",
                "params": {"reason": "x"}}  # fmt: skip
        await ws.send(json.dumps(term))
        assert (await until_response(ws, "t"))["error"] == {"code": 500, "message": "kaput"}
        # A failed terminal operation does not end the session.
        await ws.send(ping("still"))
        assert (await until_response(ws, "still"))["result"]["t0"] == 1
