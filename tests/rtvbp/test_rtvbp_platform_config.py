"""Settings ``rtvbp_token`` and ``rtvbp_jwt_keys_dir`` wired by the Platform at start, and the
recording service it attaches to the call service (real store, real sockets)."""

from __future__ import annotations

from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from rtvbp_harness import ScriptedApp, act, answer_initialize, recv_json, start_call

import callbridge.rtvbp.voice as voice
from callbridge.config.settings import Settings, load_settings
from callbridge.legs.file_leg import FileLeg
from callbridge.media.clock import SystemClock
from callbridge.platform import Platform, PlatformStartError
from callbridge.recordings.service import recordings_for


def _rsa_pem() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _settings(tmp_path: Path, **extra: str) -> Settings:
    return load_settings(None, {}, {"data_dir": str(tmp_path / "data"), "sip_port": 0, **extra})


async def test_platform_wires_token_keys_and_recordings(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "kid-1.pem").write_bytes(_rsa_pem())
    settings = load_settings(
        None,
        {},
        {
            "data_dir": str(tmp_path / "data"),
            "sip_port": 0,
            "rtvbp_token": "platform-secret",
            "rtvbp_jwt_keys_dir": str(keys),
        },
    )
    assert settings.masked_dict()["rtvbp_token"] == "********"
    platform = Platform(settings)
    await platform.start()
    try:
        assert "kid-1" in voice.SIGNING_KEYS
        assert platform.recordings is not None
        assert recordings_for(platform.calls) is platform.recordings
        app = ScriptedApp()
        async with app.running():
            # No token in the action: the configured default bearer token is sent.
            leg = FileLeg("cfg", SystemClock())
            live = await start_call(platform.calls, leg, [act("rtvbp_bridge", url=app.url)])
            ws = await app.accept()
            await answer_initialize(ws)
            await recv_json(ws)  # session.updated
            assert app.headers[0]["Authorization"] == "Bearer platform-secret"
            # A jwt action mints an RS256 token with the key loaded from the directory.
            leg2 = FileLeg("cfg2", SystemClock())
            live2 = await start_call(
                platform.calls,
                leg2,
                [act("rtvbp_bridge", url=app.url, jwt={"key_id": "kid-1", "account_id": "acc"})],
            )
            ws2 = await app.accept()
            await answer_initialize(ws2)
            bearer = app.headers[1]["Authorization"].removeprefix("Bearer ")
            assert jwt.get_unverified_header(bearer) == {
                "alg": "RS256",
                "kid": "kid-1",
                "typ": "JWT",
            }
            await platform.calls.hangup(live)
            await platform.calls.hangup(live2)
    finally:
        await platform.stop(5.0)
    assert voice._DEFAULT_TOKEN[0] is None  # forgotten with the platform


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not a key", "kid.pem: not an unencrypted PEM private key"),
        (
            ec.generate_private_key(ec.SECP256R1()).private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
            "kid.pem: not an RSA private key",
        ),
    ],
)
async def test_bad_key_directory_is_a_start_error(
    tmp_path: Path, content: bytes, message: str
) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "kid.pem").write_bytes(content)
    platform = Platform(_settings(tmp_path, rtvbp_jwt_keys_dir=str(keys)))
    with pytest.raises(PlatformStartError, match=f"rtvbp_jwt_keys_dir: {message}"):
        await platform.start()
    missing = Platform(_settings(tmp_path, rtvbp_jwt_keys_dir=str(tmp_path / "nope")))
    with pytest.raises(PlatformStartError, match="not a directory"):
        await missing.start()
