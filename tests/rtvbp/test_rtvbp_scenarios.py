"""The four conformance scenarios (scenarios/*.json) over a real loopback WebSocket, every case
run twice: callbridge as **voice** against a scripted application, and the SDK as
**application** against a scripted voice (RTVBP spec §8.1).

Steps the implementation originates are compared structurally (ids normalised; call and session
ids and wall-clock times are the implementation's own); scripted steps are sent with fresh ids
and the typed outcome the implementation observed is asserted.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from rtvbp_harness import (
    HoldLeg,
    ScriptedApp,
    act,
    load,
    recv_json,
    start_call,
    wait_for,
)
from websockets.asyncio.client import ClientConnection, connect

from callbridge.calls.service import CallService, LiveCall
from callbridge.legs.file_leg import ScheduledDigit
from callbridge.media.clock import SystemClock
from callbridge.media.constants import FRAME_BYTES
from callbridge.rtvbp import catalog as c
from callbridge.rtvbp.sdk import HandlerServer, RtvbpHandler
from callbridge.rtvbp.voice import BridgeOptions, BridgeOutcome, VoiceBridge


def case(scenario: str, name: str) -> list[dict[str, Any]]:
    spec = load(f"scenarios/{scenario}.json")
    (found,) = [k for k in spec["cases"] if k["name"] == name]
    steps: list[dict[str, Any]] = found["steps"]
    return steps


def frame(kind: str, **body: Any) -> str:
    out: dict[str, Any] = {"version": "1"}
    out.update(body)
    return json.dumps(out)


# -- callbridge as voice --------------------------------------------------------------------
class VoiceRun:
    def __init__(self, live: LiveCall, bridge: VoiceBridge, ws: Any, task: Any) -> None:
        self.live, self.bridge, self.ws, self.task = live, bridge, ws, task

    async def outcome(self) -> BridgeOutcome:
        result: BridgeOutcome = await asyncio.wait_for(self.task, 8)
        return result


async def voice_under_test(
    service: CallService, app: ScriptedApp, leg: HoldLeg | None = None, **options: Any
) -> VoiceRun:
    leg = leg or HoldLeg("scenario", SystemClock())
    live = await start_call(service, leg, [act("answer"), act("sleep", duration=60000)])
    await wait_for(live.answered.is_set)
    bridge = VoiceBridge(
        service, live, BridgeOptions(url=app.url, application_id="app-1", **options)
    )
    task = asyncio.create_task(bridge.run())
    ws = await app.accept()
    return VoiceRun(live, bridge, ws, task)


async def finish(run: VoiceRun) -> None:
    """Stop the bridge as the voice would; the scripted application answers the terminate."""
    stopping = asyncio.create_task(run.bridge.stop("completed"))
    while (msg := await recv_json(run.ws)).get("method") != "session.terminate":
        pass
    await run.ws.send(frame("r", response=msg["id"], result={}))
    await run.ws.close()
    await stopping


@pytest.fixture
async def app() -> AsyncIterator[ScriptedApp]:
    scripted = ScriptedApp()
    async with scripted.running():
        yield scripted


async def test_voice_initialize_updated_dtmf(rt_service: CallService, app: ScriptedApp) -> None:
    steps = case("initialize-updated-dtmf", "canonical")
    leg = HoldLeg("dtmf", SystemClock(), dtmf=[ScheduledDigit(0.6, "5", 120)])
    run = await voice_under_test(rt_service, app, leg)
    init = await recv_json(run.ws)
    expected = json.loads(json.dumps(steps[0]["params"]))
    expected["call"]["id"] = str(run.live.id)
    expected["call"]["session_id"] = run.bridge.session_id
    assert init["method"] == steps[0]["method"] and init["params"] == expected
    assert init["id"].startswith(run.bridge.session_id + "-")
    await run.ws.send(frame("r", response=init["id"], result=steps[1]["result"]))
    updated = await recv_json(run.ws)
    assert (updated["event"], updated["data"]) == (steps[2]["event"], steps[2]["data"])
    dtmf = await recv_json(run.ws)
    assert dtmf["event"] == "dtmf"
    data = dtmf["data"]
    # The voice numbers keys from 0 (§3.3); the scripted 7 is a mid-session value.
    assert data["seq"] == 0 and data["digit"] == steps[3]["data"]["digit"]
    assert data["released_at"] - data["pressed_at"] == 120
    assert list(data) == list(steps[3]["data"])
    run.bridge.live.leg.hold = False  # type: ignore[attr-defined]
    await rt_service.hangup(run.live)
    hangup = await recv_json(run.ws)
    assert (hangup["event"], hangup["data"]) == ("call.hangup", {"reason": "api"})
    term = await recv_json(run.ws)
    assert (term["method"], term["params"]) == ("session.terminate", {"reason": "hangup"})
    await run.ws.send(frame("r", response=term["id"], result={}))
    await run.ws.close()
    assert (await run.outcome()).result == "hungup"


async def test_voice_ping_both_directions(rt_service: CallService, app: ScriptedApp) -> None:
    steps = case("ping", "both-directions")
    run = await voice_under_test(rt_service, app, ping_interval_ms=100)
    init = await recv_json(run.ws)
    await run.ws.send(frame("r", response=init["id"], result={"audio_codec": None}))
    assert (await recv_json(run.ws))["event"] == "session.updated"
    ping = await recv_json(run.ws)
    assert ping["method"] == steps[0]["method"]
    assert isinstance(ping["params"]["t0"], int) and ping["params"]["t0"] > 1_600_000_000_000
    assert set(ping["params"]) <= set(steps[0]["params"])
    await run.ws.send(frame("r", response=ping["id"], result=steps[1]["result"]))
    await run.ws.send(frame("q", id="app-ping-1", method="ping", params=steps[2]["params"]))
    while (answer := await recv_json(run.ws)).get("response") != "app-ping-1":
        assert answer.get("method") == "ping"  # the voice's next measurement may interleave
    result = answer["result"]
    assert list(result) == list(steps[3]["result"])
    assert result["t0"] == steps[3]["result"]["t0"] and result["data"] == {"probe": "canonical"}
    assert result["t1"] > 0 and result["t2"] >= result["t1"]
    assert result["owd"] == result["t2"] - result["t0"]
    await finish(run)
    assert (await run.outcome()).result == "terminated"


async def test_voice_barge_in_clear(rt_service: CallService, app: ScriptedApp) -> None:
    steps = case("barge-in", "speech-started-clear-buffer")
    leg = HoldLeg("barge", SystemClock())
    leg.hold = True  # frames stay queued, as if waiting for RTP
    run = await voice_under_test(rt_service, app, leg)
    init = await recv_json(run.ws)
    await run.ws.send(frame("r", response=init["id"], result={"audio_codec": None}))
    await recv_json(run.ws)
    await run.ws.send(frame("e", id="s1", event=steps[0]["event"], data=steps[0]["data"]))
    await run.ws.send(bytes(FRAME_BYTES))
    await run.ws.send(frame("q", id="c1", method=steps[1]["method"], params=steps[1]["params"]))
    answer = await recv_json(run.ws)
    assert answer == {"version": "1", "response": "c1", "result": steps[2]["result"]}
    await wait_for(lambda: len(run.bridge.app_events) == 1)
    assert run.bridge.app_events[0].data == c.AudioSpeechStartedEvent("sender")
    await finish(run)
    await run.outcome()


async def test_voice_application_call_hangup(rt_service: CallService, app: ScriptedApp) -> None:
    steps = case("termination", "application-call-hangup")
    run = await voice_under_test(rt_service, app)
    init = await recv_json(run.ws)
    await run.ws.send(frame("r", response=init["id"], result={"audio_codec": None}))
    await recv_json(run.ws)
    await run.ws.send(frame("q", id="h1", method=steps[0]["method"], params=steps[0]["params"]))
    answer = await recv_json(run.ws)
    assert answer == {"version": "1", "response": "h1", "result": steps[1]["result"]}
    await asyncio.wait_for(run.ws.wait_closed(), 5)
    assert run.ws.close_code == 1000
    assert (await run.outcome()).result == "hungup"


async def test_voice_session_terminate(rt_service: CallService, app: ScriptedApp) -> None:
    steps = case("termination", "voice-session-terminate")
    run = await voice_under_test(rt_service, app)
    init = await recv_json(run.ws)
    await run.ws.send(frame("r", response=init["id"], result={"audio_codec": None}))
    await recv_json(run.ws)
    stopping = asyncio.create_task(run.bridge.stop(steps[0]["params"]["reason"]))
    term = await recv_json(run.ws)
    assert (term["method"], term["params"]) == (steps[0]["method"], steps[0]["params"])
    await run.ws.send(frame("r", response=term["id"], result=steps[1]["result"]))
    await run.ws.close()
    await stopping
    assert (await run.outcome()).result == "terminated"


async def test_voice_rejects_reverse_terminate(rt_service: CallService, app: ScriptedApp) -> None:
    steps = case("termination", "reverse-session-terminate-rejection")
    run = await voice_under_test(rt_service, app)
    init = await recv_json(run.ws)
    await run.ws.send(frame("r", response=init["id"], result={"audio_codec": None}))
    await recv_json(run.ws)
    await run.ws.send(frame("q", id="t1", method=steps[0]["method"], params=steps[0]["params"]))
    answer = await recv_json(run.ws)
    assert answer == {"version": "1", "response": "t1", "error": steps[1]["error"]}
    # The session continues.
    await run.ws.send(frame("q", id="p1", method="ping", params={"t0": 1}))
    assert (await recv_json(run.ws))["response"] == "p1"
    await finish(run)
    await run.outcome()


# -- the SDK as application -------------------------------------------------------------------
class StubHandler(RtvbpHandler):
    """Returns the scripted results; records what it observed."""

    def __init__(self) -> None:
        super().__init__()
        self.observed: list[c.Payload] = []

    async def initialize(self, init: c.SessionInitializeRequest) -> c.SessionInitializeResponse:
        self.observed.append(init)
        return c.SessionInitializeResponse(None)

    async def on_session_updated(self, event: c.SessionUpdatedEvent) -> None:
        self.observed.append(event)

    async def on_dtmf(self, event: c.DtmfEvent) -> None:
        self.observed.append(event)


@pytest.fixture
async def sdk() -> AsyncIterator[HandlerServer]:
    async with HandlerServer({"/app": StubHandler}) as server:
        yield server


async def scripted_voice(server: HandlerServer) -> tuple[ClientConnection, StubHandler]:
    """Connect as the voice and run the canonical initialize exchange."""
    ws = await connect(f"{server.url}/app", subprotocols=["rtvbp.v1"])  # type: ignore[list-item]
    steps = case("initialize-updated-dtmf", "canonical")
    await ws.send(frame("q", id="init-x", method="session.initialize", params=steps[0]["params"]))
    answer = await recv_json(ws)
    assert answer == {"version": "1", "response": "init-x", "result": steps[1]["result"]}
    handler = server.handlers[-1]
    assert isinstance(handler, StubHandler)
    return ws, handler


async def test_app_initialize_updated_dtmf(sdk: HandlerServer) -> None:
    steps = case("initialize-updated-dtmf", "canonical")
    ws, handler = await scripted_voice(sdk)
    assert ws.subprotocol == "rtvbp.v1"
    await ws.send(frame("e", id="u", event="session.updated", data=steps[2]["data"]))
    await ws.send(frame("e", id="d", event="dtmf", data=steps[3]["data"]))
    await wait_for(lambda: len(handler.observed) == 3)
    assert handler.observed == [
        c.SessionInitializeRequest.from_json(steps[0]["params"]),
        c.SessionUpdatedEvent.from_json(steps[2]["data"]),
        c.DtmfEvent.from_json(steps[3]["data"]),
    ]
    await ws.close()


async def test_app_ping_both_directions(sdk: HandlerServer) -> None:
    steps = case("ping", "both-directions")
    ws, handler = await scripted_voice(sdk)
    await ws.send(frame("q", id="vp", method="ping", params=steps[0]["params"]))
    result = (await recv_json(ws))["result"]
    assert list(result) == list(steps[1]["result"])
    assert result["t0"] == steps[1]["result"]["t0"] and result["data"] == steps[1]["result"]["data"]
    assert result["owd"] == result["t2"] - result["t0"] and result["t1"] > 0
    pinging = asyncio.create_task(handler.ping(data={"probe": "canonical"}, rtt=42))
    request = await recv_json(ws)
    assert request["method"] == "ping" and list(request["params"]) == list(steps[2]["params"])
    assert request["params"]["rtt"] == 42 and request["params"]["data"] == {"probe": "canonical"}
    await ws.send(frame("r", response=request["id"], result=steps[3]["result"]))
    assert await pinging == c.PingResponse.from_json(steps[3]["result"])
    await ws.close()


async def test_app_barge_in(sdk: HandlerServer) -> None:
    steps = case("barge-in", "speech-started-clear-buffer")
    ws, handler = await scripted_voice(sdk)
    handler.send_audio(bytes(FRAME_BYTES * 100))  # 2 s, 1 s of it still unsent
    barging = asyncio.create_task(handler.barge_in())
    event = await recv_json(ws)
    assert (event["event"], event["data"]) == (steps[0]["event"], steps[0]["data"])
    request = await recv_json(ws)
    assert (request["method"], request["params"]) == (steps[1]["method"], steps[1]["params"])
    await ws.send(frame("r", response=request["id"], result=steps[2]["result"]))
    assert await barging == 320
    assert handler.unsent_audio_bytes == 0
    await ws.close()


async def test_app_call_hangup(sdk: HandlerServer) -> None:
    steps = case("termination", "application-call-hangup")
    ws, handler = await scripted_voice(sdk)
    hanging = asyncio.create_task(handler.hangup("caller"))
    request = await recv_json(ws)
    assert (request["method"], request["params"]) == (steps[0]["method"], steps[0]["params"])
    await ws.send(frame("r", response=request["id"], result=steps[1]["result"]))
    await ws.close()  # the voice handled a terminal operation: it closes
    assert await asyncio.wait_for(hanging, 3) is None


async def test_app_voice_session_terminate(sdk: HandlerServer) -> None:
    steps = case("termination", "voice-session-terminate")
    ws, _ = await scripted_voice(sdk)
    await ws.send(frame("q", id="vt", method=steps[0]["method"], params=steps[0]["params"]))
    answer = await recv_json(ws)
    assert answer == {"version": "1", "response": "vt", "result": steps[1]["result"]}
    await asyncio.wait_for(ws.wait_closed(), 3)
    assert ws.close_code == 1000  # terminal: flushed, then closed by the application


async def test_app_cannot_send_reverse_terminate(sdk: HandlerServer) -> None:
    ws, handler = await scripted_voice(sdk)
    with pytest.raises(ValueError, match=r"cannot send 'session\.terminate'"):
        await handler.connection.request("session.terminate", c.SessionTerminateRequest("x"))
    assert not hasattr(handler, "terminate")
    await ws.close()
