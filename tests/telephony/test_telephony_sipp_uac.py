"""More sipp scenarios (spec ``sip.md`` §14.1): 407 from a trunk, 3xx redirect, 405/501 over
the wire, and a forked call whose branches all fail.

Like the other sipp tests: the platform runs in-process, sipp runs one scenario with ``-m 1``;
exit code 0 is sipp's verdict (every ACK and header checked in the XML), the store is
callbridge's.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from pathlib import Path

import pytest
from sipp_harness import SIPP, Harness, finish, free_port, running

from callbridge.calls.model import HangupBy, HangupReason
from callbridge.flows.model import Action

pytestmark = pytest.mark.skipif(SIPP is None, reason="sipp (Debian sip-tester) not installed")


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def _sipp_log(tmp: Path, scenario: str) -> str:
    (log,) = tmp.glob(f"{scenario}_*_logs.log")
    return log.read_text()


HANG_UP_AFTER_1S = [Action("sleep", {"duration": 1000}), Action("hangup")]


async def dial(h: Harness, to: str, actions: list[Action]) -> None:
    await h.telephony.dial(workspace_id=await h.workspace_id(), to=to, actions=actions)


async def reap(*processes: asyncio.subprocess.Process) -> None:
    for process in processes:
        if process.returncode is None:
            process.kill()
            await process.communicate()


async def test_uac_407_from_trunk_answered_with_proxy_authorization(tmp_path: Path) -> None:
    async with running(tmp_path) as h:
        port = free_port()
        await h.add_trunk("proxy", port, username="trunkuser", password="trunkpw")
        sipp = await h.sipp("uac_proxy_auth.xml", server=True, port=port, extra=["-trace_logs"])
        try:
            await asyncio.sleep(0.3)
            await dial(h, "5551234", HANG_UP_AFTER_1S)
            assert await finish(sipp, tmp_path) == 0
        finally:
            await reap(sipp)
        # sipp's verifyauth reads only Authorization: check the Proxy-Authorization here,
        # with RFC 2617 §3.2.2 computed independently of callbridge's digest code.
        text = await asyncio.to_thread(_sipp_log, tmp_path, "uac_proxy_auth")
        header = re.search(r"PROXY-AUTHORIZATION (.*)", text)
        assert header is not None, text
        params = dict(re.findall(r'(\w+)="?([^",]*)"?', header.group(1)))
        assert params["realm"] == "proxy.test" and params["nonce"] == "cbpnonce1"
        assert params["qop"] == "auth" and params["nc"] == "00000001"
        ha1 = md5("trunkuser:proxy.test:trunkpw")
        ha2 = md5(f"INVITE:{params['uri']}")
        expected = md5(f"{ha1}:cbpnonce1:00000001:{params['cnonce']}:auth:{ha2}")
        assert params["response"] == expected
        (call,) = await h.wait_calls_ended(1)
        assert call.tm_progressing is not None
        assert (call.hangup_reason, call.hangup_by) == (HangupReason.NORMAL, HangupBy.LOCAL)


async def test_uac_3xx_redirect_is_acked_and_followed(tmp_path: Path) -> None:
    async with running(tmp_path) as h:
        trunk, moved = free_port(), free_port()
        await h.add_trunk("sipp", trunk)
        keys = {"redirect_user": "5559876", "redirect_host": "127.0.0.1",
                "redirect_port": str(moved)}  # fmt: skip
        redirecting = await h.sipp("uac_redirect.xml", server=True, port=trunk, keys=keys)
        answering = await h.sipp("uac_answer.xml", server=True, port=moved)
        try:
            await asyncio.sleep(0.3)
            await dial(h, "5551234", HANG_UP_AFTER_1S)
            assert await finish(redirecting, tmp_path) == 0
            assert await finish(answering, tmp_path) == 0
        finally:
            await reap(redirecting, answering)
        (call,) = await h.wait_calls_ended(1)
        assert call.tm_progressing is not None
        assert (call.hangup_reason, call.hangup_by) == (HangupReason.NORMAL, HangupBy.LOCAL)


async def test_uac_3xx_to_a_host_name_that_does_not_resolve_fails(tmp_path: Path) -> None:
    async with running(tmp_path) as h:
        trunk = free_port()
        await h.add_trunk("sipp", trunk)
        # The Contact is followed (RFC 3263 §4), its name has no address (RFC 2606 .invalid):
        # a transport failure of the new INVITE ends the call as failed.
        keys = {"redirect_user": "5559876", "redirect_host": "moved.invalid",
                "redirect_port": "5060"}  # fmt: skip
        redirecting = await h.sipp("uac_redirect.xml", server=True, port=trunk, keys=keys)
        try:
            await asyncio.sleep(0.3)
            await dial(h, "5551234", HANG_UP_AFTER_1S)
            assert await finish(redirecting, tmp_path) == 0
        finally:
            await reap(redirecting)
        (call,) = await h.wait_calls_ended(1)
        assert call.tm_progressing is None
        assert (call.hangup_reason, call.hangup_by) == (HangupReason.FAILED, HangupBy.REMOTE)


async def test_unsupported_methods_get_405_and_501_with_allow(tmp_path: Path) -> None:
    async with running(tmp_path) as h:
        assert await h.run_sipp("methods_405_501.xml") == 0
        assert await h.calls() == []


@pytest.mark.parametrize(
    ("scenarios", "expected"),
    [
        (("uac_486.xml", "uac_480_after_180.xml"), HangupReason.BUSY),
        (("uac_503.xml", "uac_480_after_180.xml"), HangupReason.NOANSWER),
        (("uac_503.xml", "uac_503.xml"), HangupReason.FAILED),
    ],
    ids=["486+480-busy", "503+480-noanswer", "503+503-failed"],
)
async def test_fork_where_every_branch_fails_ends_once_with_the_most_telling_reason(
    tmp_path: Path, scenarios: tuple[str, str], expected: HangupReason
) -> None:
    async with running(tmp_path) as h:
        await h.add_extension("1001", "s3cret")
        ports = free_port(), free_port()
        contacts = ", ".join(f"<sip:1001@127.0.0.1:{p}>" for p in ports)
        keys = {"aor": "1001", "contacts": contacts, "expires": "300"}
        auth = ["-au", "1001", "-ap", "s3cret"]
        assert await h.run_sipp("register_ok.xml", keys=keys, extra=auth) == 0
        branches = [
            await h.sipp(scenario, server=True, port=port)
            for scenario, port in zip(scenarios, ports, strict=True)
        ]
        try:
            await asyncio.sleep(0.3)
            await dial(h, "1001", HANG_UP_AFTER_1S)
            for branch in branches:  # each final was ACKed (checked by the scenario)
                assert await finish(branch, tmp_path) == 0
        finally:
            await reap(*branches)
        (call,) = await h.wait_calls_ended(1)
        assert call.tm_progressing is None
        assert (call.hangup_reason, call.hangup_by) == (expected, HangupBy.REMOTE)
        assert (call.tm_ringing is not None) == (expected is not HangupReason.FAILED)
