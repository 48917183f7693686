"""sipp against callbridge's SIP service on 127.0.0.1 (spec ``sip.md`` §14.1).

Every test starts the platform in-process (SQLite in tmp_path, SIP on a free port) and runs
one scenario of ``sipp/`` with ``-m 1`` and a timeout; exit code 0 is sipp's verdict, and the
call records in the store are callbridge's.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from sipp_harness import SIPP, finish, free_port, running

from callbridge.calls.model import Direction, HangupBy, HangupReason
from callbridge.flows.model import Action

pytestmark = pytest.mark.skipif(SIPP is None, reason="sipp (Debian sip-tester) not installed")

SLOW_ANSWER = json.dumps(
    [{"type": "sleep", "option": {"duration": 5000}}, {"type": "answer"}, {"type": "echo"}]
)


@pytest.mark.parametrize(
    ("codec", "name", "transport"),
    [("0", "PCMU", "u1"), ("8", "PCMA", "u1"), ("0", "PCMU", "t1")],
    ids=["pcmu-udp", "pcma-udp", "pcmu-tcp"],
)
async def test_uas_call_answered_by_default_flow(
    tmp_path: Path, codec: str, name: str, transport: str
) -> None:
    async with running(tmp_path) as h:
        # Over TCP the 200's Contact must carry ;transport=tcp (a separate scenario checks it).
        scenario = "uas_call_tcp.xml" if transport == "t1" else "uas_call.xml"
        keys = {"codec": codec, "codecname": name}
        code = await h.run_sipp(scenario, keys=keys, extra=["-t", transport, "-rtp_echo"])
        assert code == 0
        (call,) = await h.wait_calls_ended(1)
        assert call.direction is Direction.INCOMING
        assert call.tm_progressing is not None
        assert (call.hangup_reason, call.hangup_by) == (HangupReason.NORMAL, HangupBy.REMOTE)
        assert call.source.target == "sipp"


async def test_uas_cancel_before_answer(tmp_path: Path) -> None:
    async with running(tmp_path, flow=SLOW_ANSWER) as h:
        assert await h.run_sipp("uas_cancel.xml") == 0
        (call,) = await h.wait_calls_ended(1)
        assert call.tm_progressing is None
        assert (call.hangup_reason, call.hangup_by) == (HangupReason.CANCEL, HangupBy.REMOTE)


async def test_options(tmp_path: Path) -> None:
    async with running(tmp_path) as h:
        assert await h.run_sipp("options.xml") == 0


async def test_invite_without_sdp_gets_offer_in_200(tmp_path: Path) -> None:
    async with running(tmp_path) as h:
        assert await h.run_sipp("uas_nosdp.xml") == 0
        (call,) = await h.wait_calls_ended(1)
        assert call.hangup_reason is HangupReason.NORMAL


async def test_no_common_codec_is_488(tmp_path: Path) -> None:
    async with running(tmp_path) as h:
        assert await h.run_sipp("uas_488.xml") == 0
        await asyncio.sleep(0.2)
        assert await h.calls() == []


async def test_bye_for_unknown_dialog_is_481(tmp_path: Path) -> None:
    async with running(tmp_path) as h:
        assert await h.run_sipp("bye_481.xml") == 0


async def test_untrusted_caller_authenticates_as_extension(tmp_path: Path) -> None:
    async with running(tmp_path, trust="") as h:
        await h.add_extension("1001", "s3cret")
        auth = ["-au", "1001", "-ap", "s3cret"]
        code = await h.run_sipp("uas_digest.xml", keys={"auth_user": "1001"}, extra=auth)
        assert code == 0
        (call,) = await h.wait_calls_ended(1)
        assert call.source.type == "extension" and call.source.target == "1001"


async def _dial(h: object, to: str, actions: list[Action]) -> None:
    from sipp_harness import Harness

    assert isinstance(h, Harness)
    await h.telephony.dial(workspace_id=await h.workspace_id(), to=to, actions=actions)


HANG_UP_AFTER_1S = [Action("sleep", {"duration": 1000}), Action("hangup")]


async def test_uac_call_answered_then_bye(tmp_path: Path) -> None:
    async with running(tmp_path) as h:
        port = free_port()
        await h.add_trunk("sipp", port)
        sipp = await h.sipp("uac_answer.xml", server=True, port=port)
        await asyncio.sleep(0.3)  # sipp binds its port
        await _dial(h, "5551234", HANG_UP_AFTER_1S)
        assert await finish(sipp, tmp_path) == 0
        (call,) = await h.wait_calls_ended(1)
        assert call.direction is Direction.OUTGOING
        assert call.tm_ringing is not None and call.tm_progressing is not None
        assert (call.hangup_reason, call.hangup_by) == (HangupReason.NORMAL, HangupBy.LOCAL)


async def test_uac_digest_challenge_is_acked_and_answered(tmp_path: Path) -> None:
    async with running(tmp_path) as h:
        port = free_port()
        await h.add_trunk("sipp", port, username="trunkuser", password="trunkpw")
        sipp = await h.sipp("uac_auth.xml", server=True, port=port)
        await asyncio.sleep(0.3)
        await _dial(h, "5551234", HANG_UP_AFTER_1S)
        assert await finish(sipp, tmp_path) == 0
        (call,) = await h.wait_calls_ended(1)
        assert call.tm_progressing is not None
        assert call.hangup_reason is HangupReason.NORMAL


async def test_uac_wrong_trunk_password_fails(tmp_path: Path) -> None:
    async with running(tmp_path) as h:
        port = free_port()
        await h.add_trunk("sipp", port, username="trunkuser", password="wrong")
        sipp = await h.sipp("uac_auth.xml", server=True, port=port)
        await asyncio.sleep(0.3)
        await _dial(h, "5551234", HANG_UP_AFTER_1S)
        assert await finish(sipp, tmp_path) == 0  # sipp answered 403 as scripted
        (call,) = await h.wait_calls_ended(1)
        assert call.tm_progressing is None
        assert call.hangup_reason is HangupReason.FAILED


def _register_keys(contacts: str, expires: str) -> dict[str, str]:
    return {"aor": "1001", "contacts": contacts, "expires": expires}


@pytest.mark.parametrize(
    ("password", "contacts", "expires", "scenario", "bindings"),
    [
        ("s3cret", "<sip:1001@127.0.0.1:5999>", "300", "register_ok.xml", 1),
        ("wrong", "<sip:1001@127.0.0.1:5999>", "300", "register_wrong.xml", 0),
        ("s3cret", "<sip:1001@127.0.0.1:5999>", "30", "register_423.xml", 0),
        (
            "s3cret",
            "<sip:1001@127.0.0.1:5998>, <sip:1001@127.0.0.1:5999>;expires=120",
            "600",
            "register_ok.xml",
            2,
        ),
    ],
    ids=["good", "wrong-password", "423", "several-contacts"],
)
async def test_registrar(
    tmp_path: Path, password: str, contacts: str, expires: str, scenario: str, bindings: int
) -> None:
    async with running(tmp_path) as h:
        await h.add_extension("1001", "s3cret")
        keys = _register_keys(contacts, expires)
        code = await h.run_sipp(scenario, keys=keys, extra=["-au", "1001", "-ap", password])
        assert code == 0
        found = h.telephony.location.lookup("1001", h.telephony.clock.monotonic())
        assert len(found) == bindings
        if bindings == 2:
            assert sorted(b.remaining(h.telephony.clock.monotonic()) for b in found) == [120, 600]


@pytest.mark.parametrize(("contacts", "expires"), [("*", "0"), ("<sip:1001@127.0.0.1:5999>", "0")])
async def test_registrar_removes_bindings(tmp_path: Path, contacts: str, expires: str) -> None:
    async with running(tmp_path) as h:
        await h.add_extension("1001", "s3cret")
        auth = ["-au", "1001", "-ap", "s3cret"]
        add = _register_keys("<sip:1001@127.0.0.1:5999>", "300")
        assert await h.run_sipp("register_ok.xml", keys=add, extra=auth) == 0
        assert len(h.telephony.location.lookup("1001", h.telephony.clock.monotonic())) == 1
        remove = _register_keys(contacts, expires)
        assert await h.run_sipp("register_removed.xml", keys=remove, extra=auth) == 0
        assert h.telephony.location.lookup("1001", h.telephony.clock.monotonic()) == []


async def test_register_then_callbridge_calls_the_extension(tmp_path: Path) -> None:
    async with running(tmp_path) as h:
        await h.add_extension("1001", "s3cret")
        phone = free_port()
        keys = _register_keys(f"<sip:1001@127.0.0.1:{phone}>", "300")
        auth = ["-au", "1001", "-ap", "s3cret"]
        assert await h.run_sipp("register_ok.xml", keys=keys, extra=auth) == 0
        sipp = await h.sipp("uac_answer.xml", server=True, port=phone)
        await asyncio.sleep(0.3)
        await _dial(h, "1001", HANG_UP_AFTER_1S)
        assert await finish(sipp, tmp_path) == 0
        (call,) = await h.wait_calls_ended(1)
        assert call.destination.type == "extension"
        assert call.tm_progressing is not None
