"""sipp with RTP media, DTMF, CANCEL races, re-INVITEs and UAC outcomes (spec ``sip.md`` §14.1).

Like ``test_telephony_sipp.py``: the platform runs in-process, sipp runs one scenario of
``sipp/`` with ``-m 1``; exit code 0 is sipp's verdict, the store and the bus are callbridge's.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from media_tools import dominant_frequency, rtp_tone_with_dtmf, write_pcap
from sipp_harness import SCENARIOS, SIPP, Harness, finish, free_port, running, until

from callbridge.calls.model import HangupBy, HangupReason
from callbridge.calls.service import LiveCall
from callbridge.flows.model import Action
from callbridge.rtp.leg import RtpLeg
from callbridge.rtp.session import MediaDirection

pytestmark = pytest.mark.skipif(SIPP is None, reason="sipp (Debian sip-tester) not installed")

ECHO_ONLY = json.dumps([{"type": "answer"}, {"type": "echo"}])


async def dial(h: Harness, to: str, actions: list[Action]) -> None:
    await h.telephony.dial(workspace_id=await h.workspace_id(), to=to, actions=actions)


async def wait_answered(h: Harness, limit: float = 5.0) -> LiveCall:
    async with asyncio.timeout(limit):
        while True:
            calls = h.platform.calls.live_calls
            if calls and calls[0].answered.is_set():
                return calls[0]
            await asyncio.sleep(0.02)


async def reap(process: asyncio.subprocess.Process) -> None:
    """Kill sipp if a failed assertion left it running (no process outlives a test)."""
    if process.returncode is None:
        process.kill()
        await process.communicate()


async def test_pcap_audio_and_rfc4733_dtmf_reach_the_call(tmp_path: Path) -> None:
    write_pcap(tmp_path / "callbridge_media.pcap", rtp_tone_with_dtmf(440.0, "19#"))
    async with running(tmp_path, flow=ECHO_ONLY) as h:
        workspace = await h.workspace_id()
        heard: list[bytes] = []
        events = h.platform.bus.subscribe(f"ws.{workspace}.dtmf")

        async def listen() -> None:
            await until(lambda: h.platform.calls.live_calls, limit=10)
            consumer = h.platform.calls.live_calls[0].graph.add_consumer("test-listen")
            async for frame in consumer:
                heard.append(frame)

        listener = asyncio.create_task(listen())
        try:
            assert await h.run_sipp("uas_pcap_dtmf.xml") == 0
            (call,) = await h.wait_calls_ended(1)
        finally:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)
        digits = []
        while events.qsize():
            event = await events.get(timeout=1)
            assert event.type == "dtmf_received"
            assert event.data["call_id"] == str(call.id)
            digits.append(event.data["digit"])
        events.close()
        assert "".join(digits) == "19#"
        assert call.hangup_reason is HangupReason.NORMAL
        pcm = b"".join(heard)
        assert len(pcm) >= 320 * 50  # ≥ 1 s of the caller's audio reached the call
        assert abs(dominant_frequency(pcm[: 320 * 25]) - 440.0) < 10


async def test_cancel_crossing_the_200_gets_200_and_the_call_continues(tmp_path: Path) -> None:
    async with running(tmp_path) as h:
        assert await h.run_sipp("uas_cancel_after_200.xml") == 0
        (call,) = await h.wait_calls_ended(1)
        assert call.tm_progressing is not None
        # Ended by sipp's BYE after the CANCEL, not by the CANCEL.
        assert call.hangup_reason is HangupReason.NORMAL
        assert call.hangup_by is HangupBy.REMOTE


async def test_reinvite_hold_and_unhold_from_sipp(tmp_path: Path) -> None:
    async with running(tmp_path, flow=ECHO_ONLY) as h:
        seen: list[bool] = []

        async def watch() -> None:
            await until(lambda: h.platform.calls.live_calls, limit=10)
            leg = h.platform.calls.live_calls[0].leg
            assert isinstance(leg, RtpLeg)
            while True:
                if leg.state.value == "answered" and (not seen or seen[-1] != leg.session.sending):
                    seen.append(leg.session.sending)
                await asyncio.sleep(0.02)

        watcher = asyncio.create_task(watch())
        try:
            assert await h.run_sipp("uas_hold.xml", extra=["-rtp_echo"]) == 0
            (call,) = await h.wait_calls_ended(1)
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
        assert call.hangup_reason is HangupReason.NORMAL
        # Sending, stopped while held (we answered recvonly), sending again after the resume.
        assert seen[:3] == [True, False, True]


@pytest.mark.parametrize(
    ("scenario", "expected"),
    [
        ("uac_486.xml", HangupReason.BUSY),
        ("uac_503.xml", HangupReason.FAILED),
        ("uac_480_after_180.xml", HangupReason.NOANSWER),
    ],
    ids=["486-busy", "503-failed", "480-after-180-noanswer"],
)
async def test_uac_rejections_are_acked_and_mapped(
    tmp_path: Path, scenario: str, expected: HangupReason
) -> None:
    async with running(tmp_path) as h:
        port = free_port()
        await h.add_trunk("sipp", port)
        sipp = await h.sipp(scenario, server=True, port=port)
        await asyncio.sleep(0.3)
        await dial(h, "5551234", [Action("hangup")])
        assert await finish(sipp, tmp_path) == 0
        (call,) = await h.wait_calls_ended(1)
        assert call.tm_progressing is None
        assert (call.tm_ringing is not None) == (scenario == "uac_480_after_180.xml")
        assert call.hangup_reason is expected
        assert call.hangup_by is HangupBy.REMOTE


async def test_register_with_an_expired_nonce_gets_stale_true(tmp_path: Path) -> None:
    async with running(tmp_path) as h:
        await h.add_extension("1001", "s3cret")
        h.telephony.ua.digest.nonce_lifetime = 1.0  # sipp waits 1.5 s before answering
        auth = ["-au", "1001", "-ap", "s3cret"]
        assert await h.run_sipp("register_stale.xml", keys={"aor": "1001"}, extra=auth) == 0
        assert len(h.telephony.location.lookup("1001", h.telephony.clock.monotonic())) == 1


@pytest.mark.parametrize("transport", ["u1", "t1"], ids=["udp", "tcp"])
async def test_large_invite(tmp_path: Path, transport: str) -> None:
    size = len((SCENARIOS / "uas_large_invite.xml").read_text().split("]]>")[0])
    assert size > 2000
    async with running(tmp_path) as h:
        keys = {"codec": "0", "codecname": "PCMU"}
        code = await h.run_sipp("uas_large_invite.xml", keys=keys, extra=["-t", transport])
        assert code == 0
        (call,) = await h.wait_calls_ended(1)
        assert call.hangup_reason is HangupReason.NORMAL


async def test_reinvite_glare_491_then_retry(tmp_path: Path) -> None:
    async with running(tmp_path) as h:
        port = free_port()
        await h.add_trunk("sipp", port)
        sipp = await h.sipp("uac_glare.xml", server=True, port=port)
        try:
            await asyncio.sleep(0.3)
            actions = [Action("sleep", {"duration": 7000}), Action("hangup")]
            await dial(h, "5551234", actions)
            live = await wait_answered(h)
            leg = live.leg
            assert isinstance(leg, RtpLeg)
            loop = asyncio.get_running_loop()
            started = loop.time()
            h.telephony.hold(leg, True)
            # Our sendonly offer is applied once the retried re-INVITE was answered (recvonly).
            while leg.session.direction is not MediaDirection.SENDONLY:
                assert loop.time() - started < 6
                await asyncio.sleep(0.02)
            # The Call-ID owner's back-off is 2.1-4 s (plus sipp's own round trips).
            assert 2.0 <= loop.time() - started <= 5.0
            assert await finish(sipp, tmp_path) == 0
        finally:
            await reap(sipp)
        (call,) = await h.wait_calls_ended(1)
        assert call.hangup_reason is HangupReason.NORMAL


async def test_fork_rings_every_contact_first_answer_wins_others_cancelled(
    tmp_path: Path,
) -> None:
    async with running(tmp_path) as h:
        await h.add_extension("1001", "s3cret")
        ringer, answerer = free_port(), free_port()
        contacts = f"<sip:1001@127.0.0.1:{ringer}>, <sip:1001@127.0.0.1:{answerer}>"
        keys = {"aor": "1001", "contacts": contacts, "expires": "300"}
        auth = ["-au", "1001", "-ap", "s3cret"]
        assert await h.run_sipp("register_ok.xml", keys=keys, extra=auth) == 0
        ringing = await h.sipp("uac_ring_cancelled.xml", server=True, port=ringer)
        answering = await h.sipp("uac_answer.xml", server=True, port=answerer)
        try:
            await asyncio.sleep(0.3)
            await dial(h, "1001", [Action("sleep", {"duration": 1000}), Action("hangup")])
            live = await wait_answered(h)
            signalling = h.telephony._legs  # the fork is kept on the call's SIP leg
            assert any(len(s.branches) == 2 for _, s in signalling.values())
            assert await finish(answering, tmp_path) == 0
            assert await finish(ringing, tmp_path) == 0
        finally:
            await reap(ringing)
            await reap(answering)
        (call,) = await h.wait_calls_ended(1)
        assert call.id == live.id and call.tm_progressing is not None
        assert (call.hangup_reason, call.hangup_by) == (HangupReason.NORMAL, HangupBy.LOCAL)
