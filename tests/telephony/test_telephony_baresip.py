"""baresip 1.0.0 (a real softphone) against callbridge, driven over ctrl_tcp (spec ``sip.md``
§14.3): digest registration, calls in and out over UDP and TCP, audio both ways (tone
frequencies measured on both sides), RFC 4733 DTMF both ways, hold/resume both ways, hang-up
from each side.
"""

from __future__ import annotations

import asyncio
import statistics
from pathlib import Path

import pytest
from baresip_harness import BARESIP, baresip
from media_tools import dominant_frequency, rms
from sipp_harness import Harness, free_port, running, until

from callbridge.calls.model import Direction, HangupBy, HangupReason
from callbridge.calls.service import LiveCall
from callbridge.flows.model import Action
from callbridge.rtp.leg import RtpLeg
from callbridge.rtp.session import MediaDirection

pytestmark = pytest.mark.skipif(BARESIP is None, reason="baresip (Debian) not installed")

WINDOW = 1600  # 100 ms of PCM16 at 8 kHz


def windows(pcm: bytes, start_s: float = 0.0, end_s: float | None = None) -> list[float]:
    """Dominant frequency of each 100 ms window with signal in it."""
    begin = int(start_s * 8000) * 2
    end = len(pcm) if end_s is None else int(end_s * 8000) * 2
    out = []
    for offset in range(begin, end - WINDOW + 1, WINDOW):
        chunk = pcm[offset : offset + WINDOW]
        if rms(chunk) > 300:
            out.append(dominant_frequency(chunk))
    return out


def near(values: list[float], target: float, tolerance: float = 15.0) -> int:
    return sum(1 for v in values if abs(v - target) <= tolerance)


class Ear:
    """Collects what callbridge receives from the peer on the (first) live call."""

    def __init__(self, h: Harness) -> None:
        self.h = h
        self.frames: list[bytes] = []
        self.digits: list[str] = []
        self.live: LiveCall | None = None
        h.platform.calls.add_dtmf_hook(lambda _live, event: self.digits.append(event.digit))
        self._task = asyncio.create_task(self._listen())

    async def _listen(self) -> None:
        await until(lambda: self.h.platform.calls.live_calls, limit=10)
        self.live = self.h.platform.calls.live_calls[0]
        async for frame in self.live.graph.add_consumer("test-ear"):
            self.frames.append(frame)

    @property
    def leg(self) -> RtpLeg:
        assert self.live is not None and isinstance(self.live.leg, RtpLeg)
        return self.live.leg

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


def record_requests(h: Harness) -> list[tuple[str, str]]:
    """(method, transport) of every request callbridge's SIP transport receives."""
    seen: list[tuple[str, str]] = []
    transport = h.telephony.stack.transport
    inner = transport.receiver

    def spy(data: bytes, source: tuple[str, int], kind: str) -> None:
        method = data.split(b" ", 1)[0].decode(errors="replace")
        if method != "SIP/2.0":
            seen.append((method, kind))
        inner(data, source, kind)

    transport.receiver = spy
    return seen


def phone_ports() -> dict[str, int]:
    return {"sip_port": free_port(), "ctrl_port": free_port(), "rtp_low": 34000}


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_baresip_calls_the_default_flow(tmp_path: Path, transport: str) -> None:
    async with running(tmp_path) as h:
        account = "<sip:alice@127.0.0.1>;regint=0"
        requests = record_requests(h)
        async with baresip(tmp_path / "baresip", account, **phone_ports()) as phone:
            ear = Ear(h)
            try:
                uri = f"sip:100@127.0.0.1:{h.port}"
                if transport == "tcp":
                    uri += ";transport=tcp"
                assert (await phone.command("dial", uri))["ok"]
                await phone.wait_event("CALL_ESTABLISHED")
                await asyncio.sleep(1.2)  # beep, then the echo of baresip's 440 Hz
                for digit in "47#":
                    await phone.command("sndcode", digit)
                    await asyncio.sleep(0.25)
                await asyncio.sleep(0.8)
                assert (await phone.command("hangup"))["ok"]
                await phone.wait_event("CALL_CLOSED")
                (call,) = await h.wait_calls_ended(1)
            finally:
                await ear.close()
        sent, received = phone.dumps()
    assert call.direction is Direction.INCOMING and call.source.target == "alice"
    assert (call.hangup_reason, call.hangup_by) == (HangupReason.NORMAL, HangupBy.REMOTE)
    assert ear.digits == ["4", "7", "#"]
    # The initial INVITE and the in-dialog ACK and BYE all used the dialog's transport.
    assert [m for m, _ in requests] == ["INVITE", "ACK", "BYE"]
    assert {t for _, t in requests} == {transport.upper()}
    # What baresip sent and callbridge received: baresip's 440 Hz source.
    assert near(windows(sent), 440.0) >= 15
    heard = windows(b"".join(ear.frames))
    assert near(heard, 440.0) >= 0.8 * len(heard) and len(heard) >= 15
    # What baresip received: callbridge's 1 kHz beep first, then its own tone echoed.
    back = windows(received)
    assert near(back[:15], 1000.0) >= 2, back[:15]
    assert near(back, 440.0) >= 10 and statistics.median(back[5:]) == pytest.approx(440, abs=15)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_baresip_registers_and_is_called_with_audio_and_dtmf(
    tmp_path: Path, transport: str
) -> None:
    async with running(tmp_path) as h:
        await h.add_extension("1001", "s3cret")
        suffix = ";transport=tcp" if transport == "tcp" else ""
        account = (
            f"<sip:1001@127.0.0.1:{h.port}{suffix}>;auth_pass=s3cret;regint=60;answermode=auto"
        )
        async with baresip(tmp_path / "baresip", account, **phone_ports()) as phone:
            # baresip registers at start-up, usually before our control connection: the
            # registrar's bindings are the evidence (401 challenge, then digest → 200).
            location, clock = h.telephony.location, h.telephony.clock
            await until(lambda: bool(location.lookup("1001", clock.monotonic())))
            (binding,) = location.lookup("1001", clock.monotonic())
            assert binding.transport == transport.upper()
            ear = Ear(h)
            try:
                actions = [
                    Action("beep"),
                    Action("digits_send", {"digits": "258", "duration": 120, "interval": 150}),
                    Action("echo", {"duration": 1500}),
                    Action("hangup"),
                ]
                workspace = await h.workspace_id()
                await h.telephony.dial(workspace_id=workspace, to="1001", actions=actions)
                await phone.wait_event("CALL_ESTABLISHED")
                await phone.wait_event("CALL_CLOSED")
                (call,) = await h.wait_calls_ended(1)
            finally:
                await ear.close()
        _, received = phone.dumps()
    assert call.direction is Direction.OUTGOING and call.destination.target == "1001"
    assert (call.hangup_reason, call.hangup_by) == (HangupReason.NORMAL, HangupBy.LOCAL)
    dtmf = [e.get("param") for e in phone.seen if e.get("type") == "CALL_DTMF_START"]
    assert dtmf == ["2", "5", "8"], phone.seen
    heard = windows(b"".join(ear.frames))
    assert near(heard, 440.0) >= 0.8 * len(heard) and len(heard) >= 10
    back = windows(received)
    assert near(back[:10], 1000.0) >= 1, back[:10]
    assert near(back, 440.0) >= 8


async def test_hold_and_resume_both_ways(tmp_path: Path) -> None:
    async with running(tmp_path) as h:
        account = "<sip:alice@127.0.0.1>;regint=0"
        async with baresip(tmp_path / "baresip", account, **phone_ports()) as phone:
            ear = Ear(h)
            try:
                assert (await phone.command("dial", f"sip:100@127.0.0.1:{h.port}"))["ok"]
                await phone.wait_event("CALL_ESTABLISHED")
                await until(lambda: ear.live is not None and ear.leg.session.sending)
                leg = ear.leg
                # baresip holds: its sendonly offer is answered recvonly, so we stop sending.
                assert (await phone.command("hold"))["ok"]
                await until(lambda: leg.session.direction is MediaDirection.RECVONLY)
                assert not leg.session.sending
                assert (await phone.command("resume"))["ok"]
                await until(lambda: leg.session.direction is MediaDirection.SENDRECV)
                # callbridge holds: baresip answers our sendonly offer with recvonly.
                h.telephony.hold(leg, True)
                await until(lambda: leg.session.direction is MediaDirection.SENDONLY)
                h.telephony.hold(leg, False)
                await until(lambda: leg.session.direction is MediaDirection.SENDRECV)
                assert leg.session.sending
                # And callbridge hangs up.
                assert ear.live is not None
                await h.platform.calls.hangup(ear.live)
                await phone.wait_event("CALL_CLOSED")
                (call,) = await h.wait_calls_ended(1)
            finally:
                await ear.close()
    assert (call.hangup_reason, call.hangup_by) == (HangupReason.NORMAL, HangupBy.LOCAL)
