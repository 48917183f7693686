"""The per-call media graph: bounded fan-out, producer marks and clear, mixing."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from callbridge.legs.graph import MediaGraph
from callbridge.media.constants import FRAME_BYTES, SILENCE_FRAME
from callbridge.media.playout import PlayoutOverflow
from callbridge.observability.metrics import MEDIA_FRAMES_DROPPED


def frame(value: int) -> bytes:
    return np.full(FRAME_BYTES // 2, value, dtype="<i2").tobytes()


async def test_fan_out_reaches_every_consumer_in_order() -> None:
    graph = MediaGraph()
    consumers = [graph.add_consumer(f"c{i}", maxsize=100) for i in range(3)]
    frames = [frame(i) for i in range(10)]
    for f in frames:
        graph.on_leg_audio(f)
    for c in consumers:
        got = [await c.get() for _ in range(10)]
        assert got == frames
        assert c.dropped == 0


async def test_slow_consumer_drops_oldest_and_never_blocks_others() -> None:
    graph = MediaGraph()
    before = MEDIA_FRAMES_DROPPED.labels(consumer="slow-test")._value.get()
    slow = graph.add_consumer("slow", kind="slow-test", maxsize=5)
    fast = graph.add_consumer("fast", maxsize=1000)
    received: list[bytes] = []

    async def drain() -> None:
        async for f in fast:
            received.append(f)

    task = asyncio.create_task(drain())
    for i in range(200):
        graph.on_leg_audio(frame(i))
        await asyncio.sleep(0)
    fast.close()
    await task
    assert len(received) == 200  # the fast consumer saw everything
    assert slow.dropped == 195
    assert slow.queued == 5
    # drop-oldest: the slow consumer keeps the freshest frames
    assert [await slow.get() for _ in range(5)] == [frame(i) for i in range(195, 200)]
    assert MEDIA_FRAMES_DROPPED.labels(consumer="slow-test")._value.get() - before == 195


async def test_closed_consumer_ends_iteration_after_draining() -> None:
    graph = MediaGraph()
    c = graph.add_consumer("c")
    graph.on_leg_audio(frame(1))
    graph.close()
    assert await c.get() == frame(1)
    assert await c.get() is None
    graph.on_leg_audio(frame(2))  # after close: ignored, no error
    assert c.closed


async def test_wrong_frame_size_is_refused() -> None:
    graph = MediaGraph()
    with pytest.raises(ValueError, match="320"):
        graph.on_leg_audio(b"\x00" * 100)


async def test_no_producer_gives_silence() -> None:
    graph = MediaGraph()
    assert graph.next_outbound_frame() == SILENCE_FRAME


async def test_producer_mark_fires_only_after_its_audio_is_played() -> None:
    graph = MediaGraph()
    prod = graph.producer("p")
    prod.enqueue(frame(100) * 3)
    mark = prod.mark()
    assert graph.next_outbound_frame() == frame(100)
    assert graph.next_outbound_frame() == frame(100)
    await asyncio.sleep(0)
    assert not mark.done()
    assert graph.next_outbound_frame() == frame(100)
    await asyncio.sleep(0)
    assert mark.result() == "played"


async def test_clear_drops_only_that_producer_and_reports_marks_cleared() -> None:
    graph = MediaGraph()
    a = graph.producer("a")
    b = graph.producer("b")
    a.enqueue(frame(10) * 50)
    mark_a = a.mark()
    b.enqueue(frame(20) * 50)
    graph.next_outbound_frame()
    assert a.clear() == 49 * FRAME_BYTES
    assert mark_a.result() == "cleared"
    assert graph.next_outbound_frame() == frame(20)  # b still plays
    assert b.queued_bytes == 48 * FRAME_BYTES


async def test_two_producers_mix_with_saturation() -> None:
    graph = MediaGraph()
    graph.producer("a").enqueue(frame(30000))
    graph.producer("b").enqueue(frame(10000))
    out = np.frombuffer(graph.next_outbound_frame(), dtype="<i2")
    assert (out == 32767).all()
    graph.producer("a").enqueue(frame(-30000))
    graph.producer("b").enqueue(frame(-10000))
    out = np.frombuffer(graph.next_outbound_frame(), dtype="<i2")
    assert (out == -32768).all()
    graph.producer("a").enqueue(frame(1000))
    out = np.frombuffer(graph.next_outbound_frame(), dtype="<i2")
    assert (out == 1000).all()  # b is empty: only a is heard


async def test_lead_limit_is_an_explicit_error() -> None:
    graph = MediaGraph(max_lead_seconds=1.0)
    prod = graph.producer("p")
    prod.enqueue(frame(1) * 50)  # exactly 1 s
    with pytest.raises(PlayoutOverflow):
        prod.enqueue(frame(1))
    assert prod.queued_bytes == 50 * FRAME_BYTES


async def test_closed_producer_refuses_audio_and_detaches() -> None:
    graph = MediaGraph()
    prod = graph.producer("p")
    prod.enqueue(frame(5) * 2)
    mark = prod.mark()
    assert prod.close() == 2 * FRAME_BYTES
    assert mark.result() == "cleared"
    assert graph.producers == ()
    with pytest.raises(RuntimeError):
        prod.enqueue(frame(1))
    assert prod.close() == 0


async def test_dtmf_listeners_and_removal() -> None:
    from callbridge.legs.base import DtmfEvent

    graph = MediaGraph()
    seen: list[str] = []
    remove = graph.add_dtmf_listener(lambda ev: seen.append(ev.digit))
    graph.on_leg_dtmf(DtmfEvent("5", 1.0, 1.1))
    remove()
    graph.on_leg_dtmf(DtmfEvent("6", 2.0, 2.1))
    assert seen == ["5"]
