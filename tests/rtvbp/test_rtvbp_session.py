"""The sans-I/O session runtime in virtual time (RTVBP spec §2.3, §5), one role at a time,
plus the SDK's paced audio sender on a virtual clock."""

from __future__ import annotations

import json
from typing import Any

import pytest

from callbridge.calls.model import IllegalTransition
from callbridge.media.clock import VirtualClock
from callbridge.media.constants import FRAME_BYTES
from callbridge.rtvbp import catalog as c
from callbridge.rtvbp.envelope import ErrorObject
from callbridge.rtvbp.errors import RemoteError, error_for
from callbridge.rtvbp.sdk.audio import AudioSender
from callbridge.rtvbp.session import (
    TRANSITIONS,
    InboundEvent,
    InboundRequest,
    NotInitialized,
    Session,
    SessionClosed,
    State,
)

INIT_PARAMS = c.SessionInitializeRequest(
    c.AppInfo("app-1"),
    c.CallInfo("call-1", "session-1", "+1", "+2"),
    (c.L16_8000_1,),
    None,
)


def frames(session: Session) -> list[dict[str, Any]]:
    return [json.loads(m) for m in session.data_to_send() if isinstance(m, str)]


def req(rid: str, method: str, params: Any = None) -> str:
    body: dict[str, Any] = {"version": "1", "id": rid, "method": method}
    if params is not None:
        body["params"] = params
    return json.dumps(body)


def resp(rid: str, result: Any = None, error: Any = None) -> str:
    body: dict[str, Any] = {"version": "1", "response": rid}
    if result is not None:
        body["result"] = result
    if error is not None:
        body["error"] = error
    return json.dumps(body)


def ev(name: str, data: Any) -> str:
    return json.dumps({"version": "1", "id": "e", "event": name, "data": data})


def active_voice(clock: VirtualClock) -> Session:
    s = Session("voice", session_id="v")
    s.connect()
    rid = s.request("session.initialize", INIT_PARAMS, clock.monotonic())
    s.receive_text(resp(rid, {"audio_codec": None}), 1)
    (done,) = s.take_completions()
    assert done.outcome == "ok"
    s.activate()
    s.data_to_send()
    return s


def active_app() -> Session:
    s = Session("application", session_id="a")
    s.connect()
    s.receive_text(req("i1", "session.initialize", INIT_PARAMS.to_json()), 1)
    item = s.next_inbound()
    assert isinstance(item, InboundRequest)
    s.respond("i1", c.SessionInitializeResponse(c.L16_8000_1))
    assert s.state is State.ACTIVE
    s.data_to_send()
    return s


def test_transition_table_is_enforced() -> None:
    s = Session("voice", session_id="v")
    assert s.state is State.INACTIVE and not s.is_open
    with pytest.raises(IllegalTransition):
        s.activate()
    s.connect()
    s.activate()
    with pytest.raises(IllegalTransition):
        s.connect()
    s.close()
    s.close()  # idempotent
    s.finish()
    assert s.state is State.CLOSED
    s.fail("late")  # over: ignored
    assert s.state is State.CLOSED
    assert all(not TRANSITIONS[t] for t in (State.CLOSED, State.FAILED))


def test_request_ids_timeouts_and_completions() -> None:
    clock = VirtualClock()
    s = active_voice(clock)
    rid = s.request("ping", c.PingRequest(5), clock.monotonic())
    assert rid == "v-2"
    assert s.next_deadline() == clock.monotonic() + 5.0
    s.poll(clock.monotonic() + 4.9)
    assert s.take_completions() == []
    s.poll(clock.monotonic() + 5.0)
    (done,) = s.take_completions()
    assert done.outcome == "timeout" and done.method == "ping"
    assert s.pending_requests == 0 and s.next_deadline() is None
    # A late response to the expired request is counted, not delivered.
    s.receive_text(resp(rid, {"t0": 5, "t1": 6, "t2": 7, "owd": 2}), 1)
    assert s.unmatched_responses == 1 and s.take_completions() == []
    for _ in range(40):
        s.next_id()
    assert s.next_id().endswith("-17")  # base36 counter


def test_response_outcomes() -> None:
    clock = VirtualClock()
    s = active_voice(clock)
    a = s.request("ping", c.PingRequest(5), 0)
    b = s.request("ping", c.PingRequest(5), 0)
    d = s.request("ping", c.PingRequest(5), 0)
    s.receive_text(resp(a, {"t0": 5, "t1": 6, "t2": 7, "owd": 2, "data": [1]}), 1)
    s.receive_text(resp(b, error={"code": 418, "message": "teapot", "any": {"x": 1}}), 1)
    s.receive_text(resp(d, {"t0": 0, "t1": 6, "t2": 7, "owd": 2}), 1)
    ok, err, bad = s.take_completions()
    assert ok.outcome == "ok" and isinstance(ok.result, c.PingResponse)
    assert ok.result.data == [1]
    assert err.outcome == "error" and err.error == ErrorObject(418, "teapot", {"x": 1})
    assert bad.outcome == "error" and bad.error is not None
    assert "$.t0: must be non-zero" in bad.error.message


def test_inbound_error_mapping_voice() -> None:
    clock = VirtualClock()
    s = Session("voice", session_id="v")
    s.connect()
    # Before initialize completed: voice-side operations are 500, ping is answered.
    s.receive_text(req("g", "session.get", {"keys": []}), 1)
    s.receive_text(req("p", "ping", {"t0": 1}), 1)
    assert frames(s) == [
        {
            "version": "1",
            "response": "g",
            "error": {"code": 500, "message": "session not initialized"},
        }
    ]
    assert isinstance(s.next_inbound(), InboundRequest)
    s.respond("p", c.PingResponse(1, 2, 3, 2))
    s.data_to_send()
    s.request("session.initialize", INIT_PARAMS, clock.monotonic())
    s.activate()
    s.data_to_send()
    s.receive_text(req("x", "no.such"), 1)
    s.receive_text(req("t", "session.terminate", {"reason": "completed"}), 1)
    s.receive_text(req("i", "session.initialize", INIT_PARAMS.to_json()), 1)
    s.receive_text(req("h", "call.hangup", {"reason": ""}), 1)
    out = frames(s)
    assert [f["error"]["code"] for f in out] == [501, 501, 501, 400]
    assert out[0]["error"]["message"] == "unknown method: no.such"
    assert out[1]["error"]["message"] == c.TERMINATE_REJECTION[1]
    assert out[2]["error"]["message"] == "unknown method: session.initialize"
    assert out[3]["error"]["message"] == "$.reason: must be at least 1 character(s) long"
    assert s.next_inbound() is None and s.state is State.ACTIVE


def test_exactly_one_response_and_duplicates() -> None:
    s = active_app()
    s.receive_text(req("p", "ping", {"t0": 1}), 7)
    s.receive_text(req("p", "ping", {"t0": 1}), 8)
    (dup,) = frames(s)
    assert dup["error"]["message"] == "duplicate request id 'p'"
    item = s.next_inbound()
    assert isinstance(item, InboundRequest) and item.received_ms == 7
    assert s.unanswered() == {"p": "ping"}
    s.respond("p", c.PingResponse(1, 7, 8, 7))
    with pytest.raises(ValueError):
        s.respond("p", c.PingResponse(1, 7, 8, 7))
    s.receive_text(req("q", "ping", {"t0": 1}), 7)
    s.next_inbound()
    with pytest.raises(TypeError):
        s.respond("q", c.EmptyResponse())
    s.respond("q", error=ErrorObject(500, "boom"))
    assert frames(s)[-1]["error"] == {"code": 500, "message": "boom"}


def test_serial_dispatch_order_and_event_filtering() -> None:
    clock = VirtualClock()
    s = active_voice(clock)
    s.receive_text(ev("audio.speech.started", {"origin": "sender"}), 1)
    s.receive_text(req("c", "audio.buffer.clear", {}), 1)
    s.receive_text(ev("dtmf", {"seq": 0, "pressed_at": 1, "released_at": 2, "digit": "1"}), 1)
    s.receive_text(ev("some.future.event", {}), 1)
    s.receive_text(ev("input.transcript", {}), 1)  # invalid data: dropped and counted
    s.receive_text("{", 1)
    s.receive_text('{"version":"2","id":"a","method":"ping"}', 1)
    order = []
    while (item := s.next_inbound()) is not None:
        order.append(item.name if isinstance(item, InboundEvent) else item.method)
    assert order == ["audio.speech.started", "audio.buffer.clear"]
    assert s.ignored_events == 2  # dtmf comes from the voice, not to it; unknown event
    assert s.dropped_frames == 3


def test_inbound_overflow_fails_the_session() -> None:
    s = Session("application", session_id="a", max_inbound=3)
    s.connect()
    for i in range(4):
        s.receive_text(req(f"p{i}", "ping", {"t0": 1}), 1)
    assert s.state is State.FAILED and s.close_reason == "inbound dispatch queue overflow"
    assert s.data_to_send() == [] and s.next_inbound() is None
    s.receive_text(req("late", "ping", {"t0": 1}), 1)
    assert s.data_to_send() == []


def test_terminal_response_flushes_then_closes() -> None:
    s = active_app()
    s.receive_text(req("t", "session.terminate", {"reason": "hangup"}), 1)
    s.next_inbound()
    s.respond("t")
    assert s.wants_close and s.close_code == 1000
    assert frames(s) == [{"version": "1", "response": "t", "result": {}}]
    with pytest.raises(SessionClosed):
        s.event("input.transcript", c.InputTranscriptEvent("x"))
    with pytest.raises(SessionClosed):
        s.send_audio(bytes(FRAME_BYTES))
    s.receive_text(req("p", "ping", {"t0": 1}), 1)
    assert s.data_to_send() == [] and s.next_inbound() is None
    s.finish()
    assert s.state is State.CLOSED


def test_close_completes_pending_requests() -> None:
    s = active_app()
    hang = s.request("call.hangup", c.CallHangupRequest("bye"), 0)
    get = s.request("session.get", c.SessionGetRequest(()), 0)
    s.receive_text(ev("call.hangup", {"reason": "caller"}), 1)
    s.receive_text(req("t", "session.terminate", {"reason": "hangup"}), 1)
    assert isinstance(s.next_inbound(), InboundEvent)
    s.next_inbound()
    s.receive_text(req("p", "ping", {"t0": 1}), 1)  # queued, discarded by the close
    s.respond("t")
    done = {d.request_id: d for d in s.take_completions()}
    assert done[hang].outcome == "ok" and isinstance(done[hang].result, c.EmptyResponse)
    assert done[get].outcome == "closed"
    assert s.next_inbound() is None
    assert s.unanswered() == {}
    s.respond("p")  # discarded by the close: answering is a no-op


def test_fail_drops_output_and_fails_pending() -> None:
    s = active_app()
    rid = s.request("call.hangup", c.CallHangupRequest("bye"), 0)
    s.fail("transport lost")
    assert s.data_to_send() == []
    (done,) = s.take_completions()
    assert done.request_id == rid and done.outcome == "closed"
    assert s.state is State.FAILED
    with pytest.raises(SessionClosed):
        s.request("ping", c.PingRequest(1), 0)


def test_role_and_initialization_guards() -> None:
    app = Session("application", session_id="a")
    app.connect()
    with pytest.raises(NotInitialized):
        app.request("session.get", c.SessionGetRequest(()), 0)
    with pytest.raises(NotInitialized):
        app.event("input.transcript", c.InputTranscriptEvent("x"))
    with pytest.raises(NotInitialized):
        app.send_audio(bytes(FRAME_BYTES))
    with pytest.raises(ValueError):
        app.request("session.terminate", c.SessionTerminateRequest("x"), 0)
    with pytest.raises(ValueError):
        app.event("dtmf", c.DtmfEvent(0, 1, 2, "1"))
    with pytest.raises(TypeError):
        app.request("ping", c.EmptyResponse(), 0)
    voice = Session("voice", session_id="v")
    voice.connect()
    with pytest.raises(NotInitialized):
        voice.request("ping", c.PingRequest(1), 0)
    with pytest.raises(ValueError):
        voice.request("call.hangup", c.CallHangupRequest("x"), 0)
    voice.request("session.initialize", INIT_PARAMS, 0)
    voice.activate()
    with pytest.raises(TypeError):
        voice.event("dtmf", c.CallHangupEvent())
    with pytest.raises(ValueError):
        voice.send_audio(b"\x00" * 319)


def test_binary_is_recut_with_carry() -> None:
    clock = VirtualClock()
    s = active_voice(clock)
    assert s.receive_binary(b"\x01" * 161) == []
    out = s.receive_binary(b"\x02" * 500)
    assert [len(f) for f in out] == [FRAME_BYTES, FRAME_BYTES]
    assert out[0] == b"\x01" * 161 + b"\x02" * 159
    assert s.receive_binary(b"\x03") == []
    assert s.clear_audio_carry() == 22
    assert s.bytes_read == 662
    s.send_audio(bytes(FRAME_BYTES))
    assert s.data_to_send() == [bytes(FRAME_BYTES)] and s.bytes_written == FRAME_BYTES
    s.fail("x")
    assert s.receive_binary(b"\x00" * 640) == []


def test_error_for_maps_exceptions() -> None:
    assert error_for(RuntimeError("boom")) == ErrorObject(500, "boom")
    assert error_for(RuntimeError()) == ErrorObject(500, "RuntimeError")
    assert error_for(RemoteError(400, "bad", {"x": 1})) == ErrorObject(400, "bad", {"x": 1})


async def test_audio_sender_paces_with_a_bounded_lead() -> None:
    clock = VirtualClock()
    sent: list[tuple[float, bytes]] = []
    sender = AudioSender(lambda f: sent.append((clock.monotonic(), f)), clock, lead_seconds=0.2)
    sender.start()
    sender.write(b"\x01" * (FRAME_BYTES * 50 + 100))  # 1 s and a bit, odd length
    await clock.advance(0)
    assert len(sent) == 10  # the lead: 200 ms at once
    await clock.advance(0.5)
    assert 34 <= len(sent) <= 36  # then real time
    await clock.advance(1.0)
    assert len(sent) == 50 and sender.unsent_bytes == 100
    sender.flush()
    await clock.advance(0.1)
    assert len(sent) == 51 and sent[-1][1] == b"\x01" * 100 + bytes(FRAME_BYTES - 100)
    assert all(len(f) == FRAME_BYTES for _, f in sent)
    # After a pause, no burst beyond the lead; clear drops unsent audio.
    await clock.advance(5.0)
    sender.write(bytes(FRAME_BYTES * 100))
    await clock.advance(0)
    assert len(sent) == 61
    assert sender.clear() == FRAME_BYTES * 90
    await clock.advance(1.0)
    assert len(sent) == 61
    with pytest.raises(BufferError):
        sender.write(bytes(601 * 16000))
    await sender.stop()


async def test_audio_sender_stops_when_the_session_ends() -> None:
    clock = VirtualClock()

    def closed(frame: bytes) -> None:
        raise SessionClosed("over")

    sender = AudioSender(closed, clock)
    sender.start()
    sender.write(bytes(FRAME_BYTES * 3))
    await clock.advance(0.1)
    assert sender.unsent_bytes == 0
    await sender.stop()
