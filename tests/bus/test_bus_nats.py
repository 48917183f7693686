"""NatsBus against the real NATS server on 127.0.0.1:4222 (started by ``make test``).

The same delivery contract as the in-process bus, plus what only a network bus can show: two
processes' buses (two connections) see each other's events, namespaces isolate installations,
and a subscription registered with ``async with`` misses nothing published after it.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from callbridge.bus import BusClosedError, Event, SubscriptionClosed
from callbridge.bus.base import BusError
from callbridge.bus.nats import NatsBus, subjects_for

NATS_URL = os.environ.get("CALLBRIDGE_TEST_NATS", "nats://127.0.0.1:4222")


@pytest_asyncio.fixture
async def namespace() -> str:
    # A fresh namespace per test: tests never see each other's events on the shared server.
    return f"t{uuid.uuid4().hex[:12]}"


@pytest_asyncio.fixture
async def bus(namespace: str) -> AsyncIterator[NatsBus]:
    async with NatsBus(NATS_URL, namespace=namespace) as running:
        yield running


async def drain(sub: object, n: int) -> list[int]:
    assert hasattr(sub, "get")
    return [(await sub.get(timeout=2)).data["n"] for _ in range(n)]


def test_subjects_match_topic_prefixes() -> None:
    assert subjects_for("cb", "") == ("cb.>",)
    assert subjects_for("cb", "ws.a") == ("cb.ws.a", "cb.ws.a.>")


async def test_prefix_subscriptions_receive_matching_events(bus: NatsBus) -> None:
    async with (
        bus.subscribe("") as everything,
        bus.subscribe("ws.a") as workspace,
        bus.subscribe("ws.a.call.c1") as one_call,
        bus.subscribe("ws.ab") as neighbour,
    ):
        await bus.publish("ws.a.call.c1.call_ringing", "call_ringing", {"n": 1}, workspace_id="a")
        await bus.publish("ws.a.call.c2.call_ringing", "call_ringing", {"n": 2}, workspace_id="a")
        await bus.publish("ws.ab.call.c3.call_ringing", "call_ringing", {"n": 3}, workspace_id="ab")
        assert await drain(everything, 3) == [1, 2, 3]
        assert await drain(workspace, 2) == [1, 2]
        assert await drain(one_call, 1) == [1]
        assert await drain(neighbour, 1) == [3]
        # Nothing else arrives: the prefix match is on token boundaries.
        await asyncio.sleep(0.1)
        assert (workspace.qsize(), one_call.qsize(), neighbour.qsize()) == (0, 0, 0)


async def test_event_round_trips_with_its_fields(bus: NatsBus) -> None:
    async with bus.subscribe("ws") as sub:
        sent = await bus.publish("ws.w.call.c.call_created", "call_created", {"a": [1, "é"]},
                                 workspace_id="w")  # fmt: skip
        got = await sub.get(timeout=2)
    assert got == sent
    assert isinstance(got, Event) and got.data == {"a": [1, "é"]}


async def test_two_processes_share_events(bus: NatsBus, namespace: str) -> None:
    """Another OS process (another callbridge node) publishes; this one receives."""
    async with bus.subscribe("ws.node2") as sub:
        code = (
            "import asyncio\n"
            "from callbridge.bus.nats import NatsBus\n"
            "async def main():\n"
            f"    async with NatsBus({NATS_URL!r}, namespace={namespace!r}) as b:\n"
            "        for n in range(5):\n"
            "            await b.publish(f'ws.node2.call.c{n}.call_hangup', 'call_hangup',\n"
            "                            {'n': n}, workspace_id='node2')\n"
            "asyncio.run(main())\n"
        )
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", code)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
        assert await drain(sub, 5) == [0, 1, 2, 3, 4]


async def test_namespaces_isolate_installations(bus: NatsBus) -> None:
    other = NatsBus(NATS_URL, namespace=f"other{uuid.uuid4().hex[:8]}")
    async with other, bus.subscribe("") as mine, other.subscribe("") as theirs:
        await other.publish("ws.x.call.c.call_ringing", "call_ringing", {"n": 9}, workspace_id="x")
        assert await drain(theirs, 1) == [9]
        await asyncio.sleep(0.1)
        assert mine.qsize() == 0


async def test_overflow_drops_newest_and_publisher_never_waits(bus: NatsBus) -> None:
    async with bus.subscribe("ws", maxsize=3) as slow:
        for n in range(10):
            await bus.publish(f"ws.w.call.c.e{n}", "e", {"n": n}, workspace_id="w")
        await asyncio.sleep(0.3)
        assert slow.dropped == 7
        assert await drain(slow, 3) == [0, 1, 2]


async def test_closed_subscription_stops_receiving(bus: NatsBus) -> None:
    sub = bus.subscribe("ws")
    await sub.ready()
    waiter = asyncio.create_task(sub.get(timeout=5))
    await asyncio.sleep(0)
    sub.close()
    with pytest.raises(SubscriptionClosed):
        await waiter
    assert bus.subscription_count() == 0
    # A subscription closed before its registration finished is fine too.
    quick = bus.subscribe("ws.q")
    quick.close()
    await quick.ready()


async def test_bus_close_ends_iterations_and_refuses_use(namespace: str) -> None:
    bus = NatsBus(NATS_URL, namespace=namespace)
    with pytest.raises(BusClosedError):
        bus.subscribe("ws")
    await bus.start()
    sub = bus.subscribe("ws")
    await sub.ready()
    received: list[Event] = []

    async def consume() -> None:
        async for event in sub:
            received.append(event)

    task = asyncio.create_task(consume())
    await asyncio.sleep(0)
    await bus.close()
    await asyncio.wait_for(task, 2)
    assert received == []
    with pytest.raises(BusClosedError):
        await bus.publish("ws.a", "x", {}, workspace_id="a")
    with pytest.raises(BusClosedError):
        await bus.start()


async def test_invalid_publish_arguments(bus: NatsBus) -> None:
    with pytest.raises(ValueError, match="topic"):
        await bus.publish("ws.>", "x", {}, workspace_id="a")  # no NATS wildcards
    with pytest.raises(ValueError, match="event type"):
        await bus.publish("ws.a", "a b", {}, workspace_id="a")
    with pytest.raises(ValueError, match="JSON"):
        await bus.publish("ws.a", "x", {"x": object()}, workspace_id="a")
    with pytest.raises(ValueError, match="bytes"):
        await bus.publish("ws.a", "x", {"x": "y" * 600_000}, workspace_id="a")


async def test_unreachable_server_is_a_clear_error() -> None:
    bus = NatsBus("nats://127.0.0.1:1", connect_timeout=0.5)
    with pytest.raises(BusError, match="cannot connect to the NATS bus"):
        await bus.start()
    await bus.close()


async def test_a_callbridge_process_publishes_its_call_events_on_nats(
    bus: NatsBus, namespace: str, tmp_path: Path
) -> None:
    """A whole callbridge process configured with ``bus`` = NATS: another node sees its call."""
    env = {
        **os.environ,
        "CALLBRIDGE_BUS": NATS_URL,
        "CALLBRIDGE_BUS_NAMESPACE": namespace,
        "CALLBRIDGE_SIP_PORT": "0",
    }
    actions = '[{"type":"answer"},{"type":"hangup"}]'
    async with bus.subscribe("ws") as sub:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "callbridge", "call-file", "--actions", actions,
            "--data-dir", str(tmp_path), env=env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()
        types = []
        while sub.qsize() or "call_hangup" not in types:
            types.append((await sub.get(timeout=5)).type)
    assert types[0] == "call_created" and "call_hangup" in types


def test_a_bus_that_is_not_nats_is_refused() -> None:
    env = {**os.environ, "CALLBRIDGE_BUS": "redis://x"}
    bad = subprocess.run(
        [sys.executable, "-m", "callbridge", "config", "show"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "NATS URL" in bad.stderr
