"""callbridge as voice, end to end through the ``rtvbp_bridge`` flow action, against the SDK's
application role and scripted handlers, over real loopback sockets and the real clock
(RTVBP spec §4, §5.2, §6)."""

from __future__ import annotations

import asyncio
import ssl
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from rtvbp_harness import (
    ScriptedApp,
    act,
    answer_initialize,
    make_self_signed,
    recv_json,
    start_call,
    wait_for,
)

from callbridge.bus.inprocess import InProcessBus
from callbridge.calls.model import HangupBy, HangupReason
from callbridge.calls.service import CallService, LiveCall
from callbridge.flows.model import ActionError
from callbridge.legs.file_leg import FileLeg, ScheduledDigit
from callbridge.media.clock import SystemClock
from callbridge.media.constants import FRAME_BYTES, SAMPLE_RATE
from callbridge.rtvbp import catalog as c
from callbridge.rtvbp.action import parse_options
from callbridge.rtvbp.examples.echo import EchoHandler
from callbridge.rtvbp.sdk import HandlerServer, JwtValidator, RemoteError, RtvbpHandler
from callbridge.rtvbp.tokens import StaticToken
from callbridge.rtvbp.voice import RESULT_VARIABLE, register_signing_key, variables_json


def speechlike(seconds: float, seed: int = 1) -> bytes:
    """Syllable-like bursts: varying pitch, amplitude envelope and a little noise."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    pitch = 140 + 60 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.cumsum(np.pi * pitch / SAMPLE_RATE)
    voice = np.sin(phase) + 0.5 * np.sin(2 * phase) + 0.25 * np.sin(3 * phase)
    envelope = np.clip(np.sin(2 * np.pi * 3 * t), 0, None)
    pcm = 6000 * voice * envelope + rng.normal(0, 200, n)
    return np.clip(pcm, -32768, 32767).astype("<i2").tobytes()


async def executed(service: CallService, live: LiveCall) -> list[str]:
    assert live.call.activeflow_id is not None
    row = await service.store.activeflows.get(live.call.workspace_id, live.call.activeflow_id)
    assert row is not None
    return [a["type"] for a in row.executed_actions]


def result(live: LiveCall) -> str | None:
    return live.variables.get(RESULT_VARIABLE)


class RecordingEcho(EchoHandler):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []
        self.terminated: str | None = None

    async def on_dtmf(self, event: c.DtmfEvent) -> None:
        self.seen.append(f"dtmf:{event.seq}:{event.digit}")
        await super().on_dtmf(event)

    async def on_hangup(self, event: c.CallHangupEvent) -> None:
        self.seen.append(f"hangup:{event.reason}")

    async def on_terminate(self, reason: str) -> None:
        self.terminated = reason


@pytest.fixture
async def echo_server() -> AsyncIterator[HandlerServer]:
    async with HandlerServer({"/echo": RecordingEcho}, authenticate=StaticToken("s3cret")) as srv:
        yield srv


async def test_echo_through_the_bridge(rt_service: CallService, echo_server: HandlerServer) -> None:
    spoken = speechlike(2.0)
    leg = FileLeg(
        "echo",
        SystemClock(),
        play=spoken,
        hangup_after=2.6,
        dtmf=[ScheduledDigit(0.5, "4", 80), ScheduledDigit(1.0, "2", 80)],
    )
    url = f"{echo_server.url}/echo"
    live = await start_call(
        rt_service, leg, [act("rtvbp_bridge", url=url, token="s3cret", metadata={"k": 1})]
    )
    await asyncio.wait_for(live.ended.wait(), 6)
    await wait_for(lambda: bool(echo_server.sessions), 6)
    handler = echo_server.handlers[0]
    assert isinstance(handler, RecordingEcho)
    assert handler.init is not None and handler.init.metadata == {"k": 1}
    assert handler.init.call.id == str(live.id) and handler.init.call.from_ == "+12025550100"
    assert handler.seen == ["dtmf:0:4", "dtmf:1:2", "hangup:caller"]
    assert handler.terminated == "hangup"
    assert echo_server.sessions[0].state.value == "closed"
    await wait_for(lambda: result(live) is not None, 6)
    assert result(live) == "hungup"
    # The caller heard its own voice, delayed only by the bridge. Frames it spoke before
    # the bridge was up (while dialing the handler) are not bridged: it hears silence
    # there, then its own audio, which arrives in whole 20 ms frames.
    heard = np.frombuffer(bytes(leg.recorded), dtype="<i2").astype(np.int64)
    sent = np.frombuffer(spoken, dtype="<i2").astype(np.int64)
    first = 0
    while not heard[first * 160 : (first + 1) * 160].any():
        first += 1
    first_frame = heard[first * 160 : (first + 1) * 160]
    skip = next(
        k for k in range(len(sent) // 160) if np.array_equal(sent[k * 160 :][:160], first_frame)
    )
    assert skip <= 10, f"the bridge came up after {skip} frames"
    assert 0 <= first - skip <= 5, f"bridge delay {(first - skip) * 20} ms"
    # A stall of the machine (CI shares 2 cores) has two audible effects, both real-time
    # behaviour: the playout queue runs dry for a tick (the caller hears padding, the rest a
    # frame later), and after a long stall the caller's own clock skips frames it never sends
    # (the burst rule). What the caller hears must otherwise be its own audio, unaltered and
    # in order, with only a few such gaps and skips (the signal carries noise, so it never
    # holds 16 zero samples in a row).
    tail, gaps = drop_zero_runs(heard[first * 160 :], min_run=16)
    assert gaps <= 3, f"{gaps} playout gaps"
    matched, skipped = match_frames(tail, sent[skip * 160 :], max_skip=MAX_BURST_SKIP)
    # Only the caller's own clock may have skipped: the bridge loses nothing.
    caller_skipped = leg._pacer.skipped
    assert skipped <= caller_skipped, f"{skipped} frames lost, the caller skipped {caller_skipped}"
    assert matched + skipped >= len(sent) // 160 - skip - 10  # all but what the hangup cut off


#: Frames one stall may make a pacer skip (legs.pacer: a burst of 3 runs, older ones skip).
MAX_BURST_SKIP = 8


def match_frames(heard: np.ndarray, sent: np.ndarray, *, max_skip: int) -> tuple[int, int]:
    """Match ``heard`` frame by frame to ``sent`` in order, each exactly equal to a sent frame
    at most ``max_skip`` frames after the previous match; the partial last frame is ignored.
    Returns (frames matched, sent frames skipped); fails on a frame that matches none."""
    sent_frames = [sent[i : i + 160] for i in range(0, len(sent) - 159, 160)]
    position = matched = skipped = 0
    for start in range(0, len(heard) - 159, 160):
        frame = heard[start : start + 160]
        for k in range(position, min(position + max_skip + 1, len(sent_frames))):
            if np.array_equal(frame, sent_frames[k]):
                skipped += k - position
                position = k + 1
                matched += 1
                break
        else:
            raise AssertionError(f"heard frame {start // 160} is not the next sent audio")
    return matched, skipped


def drop_zero_runs(samples: np.ndarray, *, min_run: int) -> tuple[np.ndarray, int]:
    """``samples`` without its runs of at least ``min_run`` zeros, and how many there were."""
    zero = np.concatenate(([False], samples == 0, [False]))
    edges = np.flatnonzero(np.diff(zero.astype(np.int8)))
    starts, ends = edges[0::2], edges[1::2]
    keep = np.ones(len(samples), dtype=bool)
    gaps = 0
    for start, end in zip(starts, ends, strict=True):
        if end - start >= min_run:
            keep[start:end] = False
            gaps += 1
    return samples[keep], gaps


class BargeHandler(RtvbpHandler):
    def __init__(self) -> None:
        super().__init__()
        self.cleared: int | None = None

    async def on_start(self, init: c.SessionInitializeRequest) -> None:
        self.send_audio(b"\x10\x10" * (3 * SAMPLE_RATE))  # 3 s, all sent at once (lead 5 s)
        await asyncio.sleep(0.5)
        self.cleared = await self.clear()
        await asyncio.sleep(0.3)
        await self.hangup("done")


async def test_barge_in_clear_returns_unplayed_bytes(rt_service: CallService) -> None:
    async with HandlerServer(BargeHandler, lead_seconds=5.0) as server:
        leg = FileLeg("barge", SystemClock())
        live = await start_call(rt_service, leg, [act("rtvbp_bridge", url=server.url), act("beep")])
        await asyncio.wait_for(live.ended.wait(), 6)
        handler = server.handlers[0]
        assert isinstance(handler, BargeHandler) and handler.cleared is not None
    frames = [bytes(leg.recorded[i : i + FRAME_BYTES]) for i in range(0, len(leg.recorded), 320)]
    agent = [i for i, f in enumerate(frames) if f == b"\x10\x10" * 160]
    total = 3 * SAMPLE_RATE * 2
    assert 0 < handler.cleared < total and handler.cleared % FRAME_BYTES == 0
    assert len(agent) * FRAME_BYTES + handler.cleared == total
    assert agent == list(range(agent[0], agent[0] + len(agent)))  # contiguous, then nothing
    assert all(f == bytes(FRAME_BYTES) for f in frames[agent[-1] + 1 :])
    assert (live.call.hangup_reason, live.call.hangup_by) == (HangupReason.NORMAL, HangupBy.LOCAL)
    assert result(live) == "hungup"  # and the beep after the bridge never ran


class VariablesAndMove(RtvbpHandler):
    target = ""

    async def on_start(self, init: c.SessionInitializeRequest) -> None:
        await self.set({"customer": "Ada", "attempt": 2, "tags": ["a", "b"]})
        self.got = await self.get("customer", "attempt", "tags", "missing")
        self.everything = await self.get()
        try:
            await self.set({"voipbin.rtvbp.result": "x"})
        except RemoteError as exc:
            self.refused = exc.code
        try:
            await self.start_recording(["x"])
        except RemoteError as exc:
            self.recording = (exc.code, exc.message)
        self.next_id = await self.move(self.target, reason="handoff")


async def test_set_get_recording_and_move(rt_service: CallService) -> None:
    target = act("sleep", duration=50)
    target_id = str(target.id)

    class Handler(VariablesAndMove):
        pass

    Handler.target = target_id
    async with HandlerServer(Handler) as server:
        leg = FileLeg("move", SystemClock())
        flow = [act("rtvbp_bridge", url=server.url), act("beep"), target, act("hangup")]
        live = await start_call(rt_service, leg, flow)
        live.variables["preset"] = "p"
        await asyncio.wait_for(live.ended.wait(), 6)
        handler = server.handlers[0]
    assert isinstance(handler, Handler)
    assert handler.got == {"attempt": 2, "customer": "Ada", "tags": ["a", "b"]}
    assert handler.everything["preset"] == "p" and handler.everything["attempt"] == 2
    assert handler.refused == 400
    assert handler.recording[0] == 501
    assert handler.next_id == target_id
    assert live.variables["attempt"] == "2" and live.variables["tags"] == '["a","b"]'
    assert variables_json(live)["attempt"] == 2
    assert result(live) == "moved"
    assert await executed(rt_service, live) == ["rtvbp_bridge", "sleep", "hangup"]


async def test_move_without_target_continues_with_next(rt_service: CallService) -> None:
    class Mover(RtvbpHandler):
        async def on_start(self, init: c.SessionInitializeRequest) -> None:
            self.next_id = await self.move()

    nxt = act("sleep", duration=20)
    async with HandlerServer(Mover) as server:
        live = await start_call(
            rt_service, FileLeg("m", SystemClock()), [act("rtvbp_bridge", url=server.url), nxt]
        )
        await asyncio.wait_for(live.ended.wait(), 6)
        assert server.handlers[0].next_id == str(nxt.id)  # type: ignore[attr-defined]


async def failing_call(
    service: CallService, option: dict[str, Any], then: str = "sleep"
) -> LiveCall:
    leg = FileLeg("fail", SystemClock())
    flow = [act("rtvbp_bridge", **option), act(then, duration=30)]
    live = await start_call(service, leg, flow)
    await asyncio.wait_for(live.ended.wait(), 8)
    return live


async def test_unreachable_handler_continues_the_flow(rt_service: CallService) -> None:
    bus = rt_service.bus
    assert isinstance(bus, InProcessBus)
    sub = bus.subscribe("ws")
    live = await failing_call(rt_service, {"url": "ws://127.0.0.1:9/x", "on_failure": "continue"})
    assert result(live) == "failed"
    assert await executed(rt_service, live) == ["rtvbp_bridge", "sleep"]
    types = []
    while True:
        try:
            types.append((await sub.get(timeout=0.1)).type)
        except TimeoutError:
            break
    assert "rtvbp_failed" in types


async def test_wrong_token_is_401_and_hangs_up(
    rt_service: CallService, echo_server: HandlerServer
) -> None:
    option = {"url": f"{echo_server.url}/echo", "token": "wrong", "on_failure": "hangup"}
    live = await failing_call(rt_service, option)
    assert result(live) == "failed" and not echo_server.handlers
    assert await executed(rt_service, live) == ["rtvbp_bridge"]


async def test_handler_that_never_answers_times_out(rt_service: CallService) -> None:
    silent = ScriptedApp()
    async with silent.running():
        option = {"url": silent.url, "request_timeout_ms": 300}
        live = await failing_call(rt_service, option)
    assert result(live) == "failed"


async def test_dropped_socket_and_wrong_codec_fail(rt_service: CallService) -> None:
    app = ScriptedApp()
    async with app.running():
        leg = FileLeg("drop", SystemClock())
        live = await start_call(rt_service, leg, [act("rtvbp_bridge", url=app.url)])
        ws = await app.accept()
        await answer_initialize(ws)
        assert (await recv_json(ws))["event"] == "session.updated"
        ws.transport.abort()  # the handler's host vanishes mid-call
        await asyncio.wait_for(live.ended.wait(), 6)
        assert result(live) == "failed"

        leg2 = FileLeg("codec", SystemClock())
        live2 = await start_call(rt_service, leg2, [act("rtvbp_bridge", url=app.url)])
        ws2 = await app.accept()
        bad = {
            "id": "PCMU/8000/1",
            "name": "PCMU",
            "sample_rate": 8000,
            "bit_depth": 8,
            "channels": 1,
        }
        await answer_initialize(ws2, {"audio_codec": bad})
        await asyncio.wait_for(live2.ended.wait(), 6)
        assert result(live2) == "failed"


def rsa_pair() -> tuple[bytes, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public


class QuickHangup(RtvbpHandler):
    async def on_start(self, init: c.SessionInitializeRequest) -> None:
        await self.hangup("done")


async def test_minted_jwt_tls_and_headerless(rt_service: CallService, tmp_path: Path) -> None:
    private, public = rsa_pair()
    key_id = f"test-{uuid.uuid4().hex[:6]}"
    register_signing_key(key_id, private)
    cert, key = make_self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    validator = JwtValidator({key_id: public}, ["acc-1"])
    async with HandlerServer(QuickHangup, authenticate=validator, ssl_context=context) as server:
        assert server.url.startswith("wss://")
        good = {"key_id": key_id, "account_id": "acc-1"}
        option = {"url": server.url, "jwt": good, "ca_file": str(cert), "subprotocol": ""}
        live = await failing_call(rt_service, option)
        assert result(live) == "hungup"
        assert server.handlers[0].profile == "rtvbp.v1"
        # Wrong audience → 401; untrusted certificate → TLS failure.
        option["jwt"] = {"key_id": key_id, "account_id": "acc-2"}
        assert result(await failing_call(rt_service, option)) == "failed"
        assert validator.last_error == "InvalidAudienceError"
        untrusted = {"url": server.url, "jwt": good}
        assert result(await failing_call(rt_service, untrusted)) == "failed"
        assert len(server.handlers) == 1
    unknown_key = {"url": "ws://127.0.0.1:9", "jwt": {"key_id": "nope", "account_id": "a"}}
    assert result(await failing_call(rt_service, unknown_key)) == "failed"


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ({}, "option 'url'"),
        ({"url": "http://x"}, "option 'url'"),
        ({"url": "ws://x", "token": 5}, "option 'token'"),
        ({"url": "ws://x", "jwt": "k"}, "option 'jwt' must"),
        ({"url": "ws://x", "jwt": {"key_id": "k"}}, "'key_id' and 'account_id'"),
        ({"url": "ws://x", "jwt": {"key_id": "k", "account_id": "a", "lifetime": 0}}, "lifetime"),
        ({"url": "ws://x", "token": "t", "jwt": {"key_id": "k", "account_id": "a"}}, "exclusive"),
        ({"url": "ws://x", "headers": {"a": 1}}, "option 'headers'"),
        ({"url": "ws://x", "application_id": ""}, "option 'application_id'"),
        ({"url": "ws://x", "metadata": []}, "option 'metadata'"),
        ({"url": "ws://x", "subprotocol": "x"}, "option 'subprotocol'"),
        ({"url": "ws://x", "ping_interval_ms": -1}, "option 'ping_interval_ms'"),
        ({"url": "ws://x", "on_failure": "retry"}, "option 'on_failure'"),
        ({"url": "ws://x", "request_timeout_ms": 0}, "option 'request_timeout_ms'"),
        ({"url": "ws://x", "ca_file": 1}, "option 'ca_file'"),
    ],
)
def test_action_options_are_validated(option: dict[str, Any], message: str) -> None:
    with pytest.raises(ActionError, match=message):
        parse_options(option)


def test_action_options_defaults() -> None:
    opts = parse_options({"url": "wss://h/x", "headers": {"X-Tenant": "t"}})
    assert (opts.subprotocol, opts.on_failure, opts.ping_interval_ms) == ("rtvbp.v1", "continue", 0)
    assert opts.headers == {"X-Tenant": "t"} and opts.request_timeout == 5.0


async def test_custom_headers_and_audio_info(rt_service: CallService) -> None:
    app = ScriptedApp()
    async with app.running():
        option = {"url": app.url, "headers": {"X-Tenant": "t1"}, "token": "tok"}
        leg = FileLeg("hdr", SystemClock(), play=b"\x01\x00" * 8000)
        live = await start_call(rt_service, leg, [act("rtvbp_bridge", **option)])
        ws = await app.accept()
        assert app.headers[0]["X-Tenant"] == "t1"
        assert app.headers[0]["Authorization"] == "Bearer tok"
        assert app.headers[0]["Sec-WebSocket-Protocol"] == "rtvbp.v1"
        await answer_initialize(ws)
        assert (await recv_json(ws))["event"] == "session.updated"
        bridge_live = live
        await ws.send(b"\x00" * 3200)
        await ws.send('{"version":"1","id":"h","method":"call.hangup","params":{"reason":"x"}}')
        assert (await recv_json(ws))["response"] == "h"
        await asyncio.wait_for(bridge_live.ended.wait(), 5)
