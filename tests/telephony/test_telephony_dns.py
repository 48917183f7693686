"""SIP destinations given by host name (RFC 3263 §4, simplified): resolved in the shell.

``localhost`` is the name that resolves on every test machine (to 127.0.0.1 in the family of
our IPv4 SIP socket); names under ``.invalid`` (RFC 2606) never resolve. sipp is the far end.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sipp_harness import SIPP, Harness, finish, free_port, running

from callbridge.calls.model import Address, HangupBy, HangupReason
from callbridge.flows.model import Action
from callbridge.media.clock import SystemClock
from callbridge.sip.resolver import ResolveError, SipResolver, is_ip_literal
from callbridge.telephony.model import Trunk

pytestmark = pytest.mark.skipif(SIPP is None, reason="sipp (Debian sip-tester) not installed")

HANG_UP_AFTER_1S = [Action("sleep", {"duration": 1000}), Action("hangup")]


async def reap(*processes: asyncio.subprocess.Process) -> None:
    for process in processes:
        if process.returncode is None:
            process.kill()
            await process.communicate()


async def test_resolver_literals_names_and_failures() -> None:
    resolver = SipResolver(SystemClock())
    assert is_ip_literal("127.0.0.1") and is_ip_literal("[::1]") and not is_ip_literal("a.b")
    assert await resolver.resolve("192.0.2.7", 5070) == ("192.0.2.7", 5070)
    assert await resolver.resolve("localhost", 5060) == ("127.0.0.1", 5060)
    assert await resolver.resolve("LocalHost", 5080, "TCP") == ("127.0.0.1", 5080)
    with pytest.raises(ResolveError):
        await resolver.resolve("nowhere.invalid", 5060)
    with pytest.raises(ResolveError):  # the failure is remembered, not asked again at once
        await resolver.resolve("nowhere.invalid", 5060)


async def answered_call(h: Harness, port: int, **dial: object) -> None:
    sipp = await h.sipp("uac_answer.xml", server=True, port=port)
    try:
        await asyncio.sleep(0.3)  # sipp binds its port
        workspace = await h.workspace_id()
        await h.telephony.dial(workspace_id=workspace, actions=HANG_UP_AFTER_1S, **dial)  # type: ignore[arg-type]
        assert await finish(sipp, h.tmp) == 0
    finally:
        await reap(sipp)
    (call,) = await h.wait_calls_ended(1)
    assert call.tm_progressing is not None
    assert (call.hangup_reason, call.hangup_by) == (HangupReason.NORMAL, HangupBy.LOCAL)


async def test_trunk_given_by_host_name(tmp_path: Path) -> None:
    async with running(tmp_path, trust="10.99.0.0/16") as h:  # loopback trusted as the trunk only
        port = free_port()
        assert not h.telephony.directory.trusted("127.0.0.1")
        now = datetime.now(UTC)
        trunk = Trunk(uuid.uuid4(), await h.workspace_id(), "named", "localhost", port, "udp",
                      now, now)  # fmt: skip
        await h.platform.store.trunks.insert(trunk)
        await h.telephony.refresh()
        # Its addresses are trusted like the trunk itself (inbound calls from it).
        assert h.telephony.directory.trusted("127.0.0.1")
        transport = h.telephony.stack.transport
        looked_up: list[tuple[str, int]] = []
        resolve_and_send = transport._resolve_and_send

        async def spy(destination: tuple[str, int]) -> None:
            looked_up.append(destination)
            await resolve_and_send(destination)

        transport._resolve_and_send = spy  # type: ignore[method-assign]
        await answered_call(h, port, to="5551234")
        # The datagrams to the name went through the resolver (sendto would block the loop).
        assert ("localhost", port) in looked_up


async def test_sip_destination_with_host_name(tmp_path: Path) -> None:
    async with running(tmp_path) as h:
        port = free_port()
        destination = Address("sip", f"5551234@localhost:{port}")
        await answered_call(h, port, destination=destination)


async def test_sip_destination_that_does_not_resolve_fails(tmp_path: Path) -> None:
    async with running(tmp_path) as h:
        workspace = await h.workspace_id()
        destination = Address("sip", "5551234@nowhere.invalid")
        await h.telephony.dial(
            workspace_id=workspace, actions=HANG_UP_AFTER_1S, destination=destination
        )
        (call,) = await h.wait_calls_ended(1, limit=10.0)
        assert call.tm_progressing is None
        assert call.hangup_reason is HangupReason.FAILED


async def test_redirect_to_a_host_name_is_followed(tmp_path: Path) -> None:
    async with running(tmp_path) as h:
        trunk, moved = free_port(), free_port()
        await h.add_trunk("sipp", trunk)
        keys = {"redirect_user": "5559876", "redirect_host": "localhost",
                "redirect_port": str(moved)}  # fmt: skip
        redirecting = await h.sipp("uac_redirect.xml", server=True, port=trunk, keys=keys)
        try:
            await answered_call(h, moved, to="5551234")
            assert await finish(redirecting, h.tmp) == 0
        finally:
            await reap(redirecting)
