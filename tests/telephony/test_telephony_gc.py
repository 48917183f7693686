"""Ended calls are freed by reference counting: no cyclic garbage per call (decision 024).

Real calls through the real stack (UDP transport, RTP legs, call service, flows, SQLite store)
with sipp as the peer: inbound calls the peer hangs up (sipp echoes our RTP back) and outbound
calls through a trunk that our flow hangs up. Once every call, dialog and transaction is gone,
``gc.DEBUG_SAVEALL`` + ``gc.collect()`` lists what only the cyclic collector could free.

Before decision 024 each call left one reference cycle (live call ↔ media graph callbacks,
RTP leg ↔ pacer/endpoints/signalling, a cancelled timer task's traceback) holding about 135
objects. The bound below allows a few objects in all (one-off caches of a first use that the
warm-up missed), far below one leaked call's cycle (25 objects in the smallest one seen), so a
per-call cycle anywhere on these paths fails the test.
"""

from __future__ import annotations

import asyncio
import collections
import gc
from pathlib import Path

import pytest
from sipp_harness import SIPP, Harness, finish, free_port, running

from callbridge.flows.model import Action
from callbridge.sip.transaction_fsm import TimerConfig

pytestmark = pytest.mark.skipif(SIPP is None, reason="sipp (Debian sip-tester) not installed")

INBOUND_CALLS = 8
OUTBOUND_CALLS = 4
#: Cyclic-garbage objects allowed for all measured calls together (see the module docstring).
GARBAGE_BOUND = 12
HANG_UP_SOON = [Action("sleep", {"duration": 300}), Action("hangup")]


def shorten_transaction_timers(h: Harness) -> None:
    """T1 = 50 ms: transactions end 3.2 s (64·T1) after their call instead of 32 s."""
    ua = h.telephony.ua
    ua.layer.config = TimerConfig(t1=0.05, timer_d=0.5)
    ua.timers = ua.layer.config


async def inbound(h: Harness, calls: int) -> None:
    keys = {"codec": "0", "codecname": "PCMU"}
    extra = ["-rtp_echo", "-m", str(calls), "-l", str(calls), "-r", "10"]
    assert await h.run_sipp("uas_call.xml", keys=keys, extra=extra) == 0


async def outbound(h: Harness, port: int, calls: int) -> None:
    sipp = await h.sipp("uac_answer.xml", server=True, port=port, extra=["-m", str(calls)])
    try:
        await asyncio.sleep(0.3)  # sipp binds its port
        workspace = await h.workspace_id()
        for _ in range(calls):
            await h.telephony.dial(workspace_id=workspace, to="5551234", actions=HANG_UP_SOON)
            await asyncio.sleep(0.1)
        assert await finish(sipp, h.tmp) == 0
    finally:
        if sipp.returncode is None:
            sipp.kill()
            await sipp.communicate()


async def settled(h: Harness, calls: int) -> None:
    """Every call ended and every call, dialog and transaction forgotten."""
    await h.wait_calls_ended(calls)
    ua, service = h.telephony.ua, h.telephony
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15.0
    while ua.calls or ua.layer.servers or ua.layer.clients or service.busy:
        assert loop.time() < deadline, "calls or transactions did not finish"
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.3)  # last store writes and event publications


def describe(garbage: list[object]) -> str:
    counts = collections.Counter(type(o).__qualname__ for o in garbage)
    return ", ".join(f"{name} ×{n}" for name, n in counts.most_common(25))


async def test_ended_calls_leave_no_cyclic_garbage(tmp_path: Path) -> None:
    async with running(tmp_path) as h:
        shorten_transaction_timers(h)
        trunk_port = free_port()
        await h.add_trunk("sipp", trunk_port)
        # Warm-up: first uses (imports, caches, the media ticker) are not per-call garbage.
        await inbound(h, 1)
        await outbound(h, trunk_port, 1)
        await settled(h, 2)
        gc.collect()
        # Everything alive now stays alive until the end: what earlier tests left behind (an
        # old engine released late, …) cannot turn into garbage inside the measured window,
        # so what the collector finds there was created by these calls.
        before = gc.get_objects()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            await inbound(h, INBOUND_CALLS)
            await outbound(h, trunk_port, OUTBOUND_CALLS)
            await settled(h, 2 + INBOUND_CALLS + OUTBOUND_CALLS)
            gc.collect()
            garbage = list(gc.garbage)
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            del before
        summary = describe(garbage)
        count = len(garbage)
        del garbage
        assert count <= GARBAGE_BOUND, f"{count} cyclic-garbage objects: {summary}"
