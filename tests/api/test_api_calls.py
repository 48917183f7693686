"""``POST /v1.0/calls`` over HTTP (uvicorn on 127.0.0.1) with the SIP service running.

A :class:`~callbridge.telephony.phone.SoftPhone` registers as extension 1001 and auto-answers;
the created call must ring it, be answered and carry media both ways. The error cases check
the status, the JSON envelope and that no call was placed.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_harness import access_key, serving
from media_tools import dominant_frequency, rms
from sipp_harness import SIPP, Harness, finish, free_port, running, until

from callbridge.config import load_settings
from callbridge.media.tones import tone
from callbridge.platform import Platform
from callbridge.telephony.phone import PhoneCall, SoftPhone


def freqs(pcm: bytes) -> list[float]:
    out = []
    for i in range(0, len(pcm) - 1600 + 1, 1600):
        chunk = pcm[i : i + 1600]
        if rms(chunk) > 300:
            out.append(dominant_frequency(chunk))
    return out


async def registered_phone(h: Harness, user: str = "1001") -> SoftPhone:
    await h.add_extension(user, "s3cret")
    phone = SoftPhone(rtp_ports="41200-41299", user=user)
    phone.auto_answer = True
    await phone.start()
    registration = await phone.register(("127.0.0.1", h.port), user, "s3cret")
    assert registration.state.value == "registered"
    return phone


async def test_create_call_rings_the_extension_and_media_flows(tmp_path: Path) -> None:
    async with running(tmp_path) as h, serving(h.platform) as url:
        phone = await registered_phone(h)
        calls: list[PhoneCall] = []

        def on_call(call: PhoneCall) -> None:
            call.play.extend(tone(600, 3000))
            calls.append(call)

        phone.on_call = on_call
        try:
            body = {
                "source": {"type": "tel", "target": "+15550100"},
                "destinations": [{"type": "extension", "target_name": "1001"}],
                "actions": [
                    {"type": "beep"},
                    {"type": "echo", "option": {"duration": 1500}},
                    {"type": "hangup"},
                ],
                "metadata": {"ignored": True},
            }
            async with httpx.AsyncClient(base_url=url) as client:
                response = await client.post(
                    "/v1.0/calls", json=body, params={"accesskey": access_key(h.platform)}
                )
            assert response.status_code == 200, response.text
            payload = response.json()
            assert payload["groupcalls"] == []
            (created,) = payload["calls"]
            assert created["status"] == "dialing" and created["direction"] == "outgoing"
            assert created["destination"]["type"] == "extension"
            assert created["source"]["target"] == "+15550100"
            (call,) = await h.wait_calls_ended(1, limit=10)
            assert str(call.id) == created["id"]
            async with httpx.AsyncClient(base_url=url) as client:
                auth = {"Authorization": f"Bearer {access_key(h.platform)}"}
                got = await client.get(f"/v1.0/calls/{call.id}", headers=auth)
                assert got.status_code == 200 and got.json()["status"] == "hangup"
                assert got.json()["hangup_reason"] == "normal" and "tm_progressing" in got.json()
                _error(await client.get("/v1.0/calls/nope", headers=auth), 400, "INVALID_ID")
                missing = "/v1.0/calls/6f1c2d9e-8f43-4a55-9a52-2d0b1c3e4f50"
                _error(await client.get(missing, headers=auth), 404, "CALL_NOT_FOUND")
                _error(await client.get(missing), 401, "AUTHENTICATION_REQUIRED")
            assert call.tm_progressing is not None
            assert (call.hangup_reason.value, call.hangup_by.value) == ("normal", "local")
            await until(lambda: bool(calls) and calls[0].ended.is_set())
        finally:
            await phone.close()
    heard = freqs(b"".join(calls[0].heard))
    assert any(abs(f - 1000) < 15 for f in heard[:5]), heard[:8]  # the beep
    assert sum(abs(f - 600) < 15 for f in heard) >= 5, heard  # our tone, echoed back


@pytest.mark.skipif(SIPP is None, reason="sipp (Debian sip-tester) not installed")
async def test_sip_destination_given_by_host_name(tmp_path: Path) -> None:
    # `callbridge call --to user@localhost:port`: the name is resolved when the INVITE goes
    # out; sipp answers behind it.
    async with running(tmp_path) as h, serving(h.platform) as url:
        port = free_port()
        sipp = await h.sipp("uac_answer.xml", server=True, port=port)
        try:
            await asyncio.sleep(0.3)  # sipp binds its port
            body = {
                "destinations": [{"type": "sip", "target": f"5551234@localhost:{port}"}],
                "actions": [{"type": "sleep", "option": {"duration": 1000}}, {"type": "hangup"}],
            }
            auth = {"Authorization": f"Bearer {access_key(h.platform)}"}
            async with httpx.AsyncClient(base_url=url) as client:
                response = await client.post("/v1.0/calls", json=body, headers=auth)
            assert response.status_code == 200, response.text
            (created,) = response.json()["calls"]
            assert created["destination"]["target"] == f"5551234@localhost:{port}"
            assert await finish(sipp, h.tmp) == 0
        finally:
            if sipp.returncode is None:
                sipp.kill()
                await sipp.communicate()
        (call,) = await h.wait_calls_ended(1, limit=10)
        assert str(call.id) == created["id"]
        assert call.tm_progressing is not None  # sipp behind "localhost" answered
        assert (call.hangup_reason.value, call.hangup_by.value) == ("normal", "local")


async def test_sip_destination_whose_name_does_not_resolve_fails_the_call(
    tmp_path: Path,
) -> None:
    async with running(tmp_path) as h, serving(h.platform) as url:
        body = {
            # RFC 6761: names under .invalid never resolve.
            "destinations": [{"type": "sip", "target": "bob@nowhere.invalid"}],
            "actions": ACTIONS,
        }
        auth = {"Authorization": f"Bearer {access_key(h.platform)}"}
        async with httpx.AsyncClient(base_url=url) as client:
            response = await client.post("/v1.0/calls", json=body, headers=auth)
        assert response.status_code == 200, response.text
        (created,) = response.json()["calls"]
        assert created["status"] == "dialing"
        (call,) = await h.wait_calls_ended(1, limit=15)
        assert str(call.id) == created["id"]
        assert call.tm_progressing is None
        assert (call.hangup_reason.value, call.status.value) == ("failed", "hangup")


def _error(response: httpx.Response, status: int, reason: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["reason"] == reason, error
    assert error["request_id"] == response.headers["x-request-id"]
    assert error["message"]
    return dict(error)


ACTIONS = [{"type": "hangup"}]


async def test_errors_are_json_and_place_no_call(tmp_path: Path) -> None:
    async with running(tmp_path) as h, serving(h.platform) as url:
        await h.add_extension("1001", "s3cret")  # exists, not registered
        key = access_key(h.platform)
        auth = {"Authorization": f"Bearer {key}"}
        good = {"destinations": [{"type": "extension", "target": "1001"}], "actions": ACTIONS}
        async with httpx.AsyncClient(base_url=url) as client:

            async def post(body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
                return await client.post("/v1.0/calls", json=body, headers=headers or auth)

            # 401: nothing supplied, an unknown key, a JWT (none issued yet), a wrong cookie.
            _error(await client.post("/v1.0/calls", json=good), 401, "AUTHENTICATION_REQUIRED")
            bad = {"Authorization": "Bearer vb_" + "x" * 32}
            _error(await post(good, bad), 401, "INVALID_CREDENTIALS")
            _error(await post(good, {"Authorization": "Bearer a.b.c"}), 401, "INVALID_CREDENTIALS")
            # The first form present decides: a bad token cookie beats a good query key.
            client.cookies.set("token", "vb_nope")
            response = await client.post("/v1.0/calls", json=good, params={"accesskey": key})
            _error(response, 401, "INVALID_CREDENTIALS")
            client.cookies.clear()
            # 400/415: the body.
            raw = await client.post(
                "/v1.0/calls",
                content=b"{not json",
                headers={**auth, "Content-Type": "application/json"},
            )
            _error(raw, 400, "INVALID_JSON_BODY")
            form = await client.post("/v1.0/calls", content=b"to=1001", headers={
                **auth, "Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
            _error(form, 415, "UNSUPPORTED_MEDIA_TYPE")
            missing = _error(await post({"actions": ACTIONS}), 400, "MISSING_REQUEST_PARAMETER")
            assert missing["details"][0]["field"] == "destinations"
            no_actions = {"destinations": good["destinations"]}
            _error(await post(no_actions), 400, "MISSING_REQUEST_PARAMETER")
            unknown = {**good, "actions": [{"type": "dance"}]}
            assert (
                "unknown action type"
                in _error(await post(unknown), 400, "INVALID_ARGUMENT")["message"]
            )
            _error(await post({**good, "destinations": []}), 400, "INVALID_REQUEST_PARAMETER")
            _error(await post([1, 2]), 400, "INVALID_REQUEST_PARAMETER")
            tel = {**good, "destinations": [{"type": "tel", "target": "call me"}]}
            _error(await post(tel), 400, "INVALID_REQUEST_PARAMETER")
            # A host that is neither an address nor a host name (RFC 3261 hostname).
            for target in ("bob@exa mple.com", "bob@", "bob@[::1"):
                sip = {**good, "destinations": [{"type": "sip", "target": target}]}
                _error(await post(sip), 400, "INVALID_REQUEST_PARAMETER")
            # 404: unknown or unregistered extension, no trunk, unroutable type, unknown flow.
            for destination, words in [
                ({"type": "extension", "target_name": "1009"}, "not found"),
                ({"type": "extension", "target": "1001"}, "not registered"),
                ({"type": "tel", "target": "+15550100"}, "no trunk"),
                ({"type": "agent", "target": "00000000-0000-0000-0000-000000000001"}, "routable"),
            ]:
                error = _error(
                    await post({**good, "destinations": [destination]}), 404, "RESOURCE_NOT_FOUND"
                )
                assert words in error["message"], error
                assert error["details"][0]["field"] == "destinations.0.target"
            flow = {**good, "flow_id": "6f1c2d9e-8f43-4a55-9a52-2d0b1c3e4f50"}
            _error(await post(flow), 404, "FLOW_NOT_FOUND")
            # Every destination is checked before any call is placed.
            two = {**good, "destinations": [{"type": "sip", "target": "a@127.0.0.1:9"},
                                             {"type": "extension", "target": "1009"}]}  # fmt: skip
            _error(await post(two), 404, "RESOURCE_NOT_FOUND")
        await asyncio.sleep(0.1)
        assert await h.calls() == []


async def test_sip_service_off_is_503(tmp_path: Path) -> None:
    settings = load_settings(None, {}, {"data_dir": str(tmp_path / "data"), "sip_port": "0"})
    platform = Platform(settings)
    await platform.start()
    try:
        async with serving(platform) as url, httpx.AsyncClient(base_url=url) as client:
            body = {"destinations": [{"type": "tel", "target": "+1555"}], "actions": ACTIONS}
            response = await client.post(
                "/v1.0/calls",
                json=body,
                headers={"Authorization": f"Bearer {access_key(platform)}"},
            )
            _error(response, 503, "SERVICE_UNAVAILABLE")
    finally:
        await platform.stop(1.0)
