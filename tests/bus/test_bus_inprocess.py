"""InProcessBus: delivery, isolation between subscribers, overflow, closing, concurrency."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from callbridge.bus import BusClosedError, Event, InProcessBus, SubscriptionClosed
from callbridge.observability.metrics import BUS_EVENTS_DROPPED, BUS_EVENTS_PUBLISHED


@pytest_asyncio.fixture
async def bus() -> AsyncIterator[InProcessBus]:
    async with InProcessBus() as running:
        yield running


def counter_value(counter: object) -> float:
    return counter._value.get()  # type: ignore[attr-defined, no-any-return]


async def test_prefix_subscriptions_receive_matching_events(bus: InProcessBus) -> None:
    everything = bus.subscribe("")
    workspace = bus.subscribe("ws.a")
    one_call = bus.subscribe("ws.a.call.c1")
    neighbour = bus.subscribe("ws.ab")
    await bus.publish("ws.a.call.c1.call_ringing", "call_ringing", {"n": 1}, workspace_id="a")
    await bus.publish("ws.a.call.c2.call_ringing", "call_ringing", {"n": 2}, workspace_id="a")
    await bus.publish("ws.ab.call.c3.call_ringing", "call_ringing", {"n": 3}, workspace_id="ab")

    async def drain(sub_name: str, sub: object) -> list[int]:
        assert hasattr(sub, "qsize") and hasattr(sub, "get")
        return [(await sub.get(timeout=1)).data["n"] for _ in range(sub.qsize())]

    assert await drain("all", everything) == [1, 2, 3]
    assert await drain("ws", workspace) == [1, 2]
    assert await drain("call", one_call) == [1]
    assert await drain("neighbour", neighbour) == [3]


async def test_published_event_fields(bus: InProcessBus) -> None:
    sub = bus.subscribe("ws")
    before = counter_value(BUS_EVENTS_PUBLISHED)
    sent = await bus.publish("ws.w.call.c.call_created", "call_created", {"a": 1}, workspace_id="w")
    got = await sub.get(timeout=1)
    assert got == sent
    assert (got.type, got.topic, got.workspace_id) == (
        "call_created",
        "ws.w.call.c.call_created",
        "w",
    )
    assert len(got.id) == 36 and got.ts > 1.7e9
    assert counter_value(BUS_EVENTS_PUBLISHED) == before + 1


async def test_subscribers_do_not_share_objects(bus: InProcessBus) -> None:
    first, second = bus.subscribe("t"), bus.subscribe("t")
    data = {"nested": {"list": [1, 2]}}
    returned = await bus.publish("t.x", "updated", data, workspace_id="w")
    a, b = await first.get(timeout=1), await second.get(timeout=1)
    a.data["nested"]["list"].append(3)
    a.data["new"] = True
    assert b.data == {"nested": {"list": [1, 2]}}
    assert returned.data == {"nested": {"list": [1, 2]}}
    data["nested"]["list"].clear()  # the publisher's dict is not aliased either
    assert b.data["nested"]["list"] == [1, 2] and returned.data["nested"]["list"] == [1, 2]
    assert a.data is not b.data


async def test_overflow_drops_newest_and_counts(bus: InProcessBus) -> None:
    slow = bus.subscribe("t", maxsize=3)
    fast = bus.subscribe("t", maxsize=100)
    before = counter_value(BUS_EVENTS_DROPPED)
    for i in range(10):
        await bus.publish("t.x", "tick", {"i": i}, workspace_id="w")  # never blocks or raises
    assert slow.dropped == 7 and fast.dropped == 0
    assert counter_value(BUS_EVENTS_DROPPED) == before + 7
    assert [(await slow.get(timeout=1)).data["i"] for _ in range(3)] == [0, 1, 2]
    assert [(await fast.get(timeout=1)).data["i"] for _ in range(10)] == list(range(10))
    # Room again after draining.
    await bus.publish("t.x", "tick", {"i": 10}, workspace_id="w")
    assert (await slow.get(timeout=1)).data["i"] == 10


async def test_get_timeout(bus: InProcessBus) -> None:
    sub = bus.subscribe("t")
    with pytest.raises(TimeoutError):
        await sub.get(timeout=0.01)


async def test_waiting_get_receives_later_publish(bus: InProcessBus) -> None:
    sub = bus.subscribe("t")
    waiter = asyncio.create_task(sub.get(timeout=5))
    await asyncio.sleep(0)
    await bus.publish("t.y", "later", {}, workspace_id="w")
    assert (await waiter).type == "later"


async def test_close_ends_iteration_and_wakes_waiters(bus: InProcessBus) -> None:
    sub = bus.subscribe("t")
    received: list[Event] = []

    async def consume() -> None:
        async for event in sub:
            received.append(event)

    consumer = asyncio.create_task(consume())
    await bus.publish("t.a", "one", {}, workspace_id="w")
    await asyncio.sleep(0.01)
    sub.close()
    await asyncio.wait_for(consumer, 1)
    assert [e.type for e in received] == ["one"]
    with pytest.raises(SubscriptionClosed):
        await sub.get()
    assert bus.subscription_count() == 0
    await bus.publish("t.a", "two", {}, workspace_id="w")  # nobody left; fine
    sub.close()  # idempotent


async def test_async_with_subscription(bus: InProcessBus) -> None:
    async with bus.subscribe("t") as sub:
        await bus.publish("t.a", "one", {}, workspace_id="w")
        assert (await sub.get(timeout=1)).type == "one"
    assert sub.closed and bus.subscription_count() == 0


async def test_bus_close_ends_all_iterations_and_refuses_use() -> None:
    bus = InProcessBus()
    with pytest.raises(BusClosedError, match="not started"):
        await bus.publish("t", "x", {}, workspace_id="w")
    with pytest.raises(BusClosedError, match="not started"):
        bus.subscribe("t")
    await bus.start()
    subs = [bus.subscribe(p) for p in ("", "t", "t.a")]
    waiters = [asyncio.create_task(anext(aiter(s), None)) for s in subs]
    await asyncio.sleep(0)
    await bus.close()
    assert await asyncio.wait_for(asyncio.gather(*waiters), 1) == [None, None, None]
    assert all(s.closed for s in subs)
    with pytest.raises(BusClosedError, match="closed"):
        await bus.publish("t", "x", {}, workspace_id="w")
    with pytest.raises(BusClosedError, match="closed"):
        bus.subscribe("t")
    with pytest.raises(BusClosedError):
        await bus.start()
    await bus.close()  # idempotent


async def test_invalid_publish_arguments(bus: InProcessBus) -> None:
    with pytest.raises(ValueError):
        await bus.publish("t.*", "x", {}, workspace_id="w")
    with pytest.raises(ValueError):
        await bus.publish("", "x", {}, workspace_id="w")
    with pytest.raises(ValueError):
        await bus.publish("t", "bad type", {}, workspace_id="w")
    with pytest.raises(ValueError, match="JSON"):
        await bus.publish("t", "x", {"o": object()}, workspace_id="w")
    with pytest.raises(ValueError):
        bus.subscribe("t.>")
    with pytest.raises(ValueError):
        bus.subscribe("t", maxsize=0)


async def test_many_concurrent_publishers_and_subscribers(bus: InProcessBus) -> None:
    publishers, per_publisher = 20, 50
    total = publishers * per_publisher
    all_sub = bus.subscribe("", maxsize=total)
    per_ws = {w: bus.subscribe(f"ws.{w}", maxsize=total) for w in range(publishers)}

    async def publisher(w: int) -> None:
        for i in range(per_publisher):
            await bus.publish(f"ws.{w}.call.c.tick", "tick", {"w": w, "i": i}, workspace_id=str(w))
            if i % 7 == 0:
                await asyncio.sleep(0)

    async def consume(sub: object, count: int) -> list[Event]:
        assert hasattr(sub, "get")
        return [await sub.get(timeout=5) for _ in range(count)]

    consumers = [asyncio.create_task(consume(all_sub, total))] + [
        asyncio.create_task(consume(s, per_publisher)) for s in per_ws.values()
    ]
    await asyncio.gather(*(publisher(w) for w in range(publishers)))
    results = await asyncio.gather(*consumers)
    everything = results[0]
    assert len({e.id for e in everything}) == total
    for w, events in enumerate(results[1:]):
        assert [e.data for e in events] == [{"w": w, "i": i} for i in range(per_publisher)]
    assert all_sub.dropped == 0
