"""The call service end to end with file legs, a real store (SQLite and PostgreSQL), the
in-process bus and virtual time."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

import numpy as np
import pytest

import callbridge.calls.service as service_module
from callbridge.bus.base import Event
from callbridge.bus.inprocess import InProcessBus
from callbridge.calls.model import Address, Call, CallStatus, Direction, HangupBy, HangupReason
from callbridge.calls.service import CallService, LiveCall
from callbridge.flows.model import Action, ActiveflowStatus
from callbridge.legs.base import LegState
from callbridge.legs.file_leg import FileLeg, ScheduledDigit
from callbridge.media.clock import VirtualClock
from callbridge.media.constants import SAMPLE_RATE
from callbridge.observability.metrics import STORE_WRITES_FAILED
from callbridge.store import Store, StoreBusyError

Until = Callable[[Callable[[], bool], float], Awaitable[None]]


def acts(*items: tuple[str, dict[str, object]] | str) -> list[Action]:
    out = []
    for item in items:
        if isinstance(item, str):
            out.append(Action(type=item))
        else:
            out.append(Action(type=item[0], option=dict(item[1])))
    return out


async def workspace(store: Store) -> uuid.UUID:
    return (await store.workspaces.create("calls-test")).id


async def start(
    service: CallService, wid: uuid.UUID, leg: FileLeg, actions: list[Action]
) -> LiveCall:
    return await service.start_call(
        workspace_id=wid,
        direction=Direction.OUTGOING if leg.outgoing else Direction.INCOMING,
        source=Address(type="tel", target="+15550001111"),
        destination=Address(type="extension", target_name="100"),
        leg=leg,
        actions=actions,
    )


async def collect(sub: object, n_max: int = 1000) -> list[Event]:
    out: list[Event] = []
    for _ in range(n_max):
        try:
            ev = await sub.get(timeout=0.05)  # type: ignore[attr-defined]
        except TimeoutError:
            break
        out.append(ev)
    return out


def dominant_hz(pcm: bytes) -> float:
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    spectrum = np.abs(np.fft.rfft(x))
    return float(np.argmax(spectrum) * SAMPLE_RATE / len(x))


async def test_incoming_call_beep_sleep_hangup(
    store: Store, bus: InProcessBus, service: CallService, until: Until
) -> None:
    wid = await workspace(store)
    sub = bus.subscribe(f"ws.{wid}.call")
    leg = FileLeg("in-1", service.clock)
    live = await start(
        service,
        wid,
        leg,
        acts("answer", "beep", ("sleep", {"duration": 300}), ("hangup", {"reason": "normal"})),
    )
    await until(lambda: not live.is_live, 10.0)

    events = await collect(sub)
    types = [e.type for e in events]
    assert types[:2] == ["call_created", "call_ringing"]
    statuses = [e.type for e in events if e.type != "call_updated"]
    assert statuses == [
        "call_created",
        "call_ringing",
        "call_progressing",
        "call_terminating",
        "call_hangup",
    ]
    final = events[-1].data
    assert final["status"] == "hangup"
    assert final["hangup_reason"] == "normal" and final["hangup_by"] == "local"
    assert "tm_progressing" in final and "tm_hangup" in final

    stored = await store.calls.get(wid, live.id)
    assert stored is not None
    assert stored.status is CallStatus.HANGUP
    assert stored.hangup_reason is HangupReason.NORMAL and stored.hangup_by is HangupBy.LOCAL
    assert stored.tm_progressing is not None and stored.tm_hangup is not None
    assert stored.tm_hangup >= stored.tm_progressing

    flow = await store.activeflows.get(wid, stored.activeflow_id)
    assert flow is not None and flow.status is ActiveflowStatus.ENDED
    assert [a["type"] for a in flow.executed_actions] == ["answer", "beep", "sleep", "hangup"]

    # The caller heard a 1 kHz beep of 250 ms.
    rec = np.frombuffer(bytes(leg.recorded), dtype="<i2")
    loud = np.flatnonzero(np.abs(rec) > 1000)
    assert loud.size > 0
    span = (loud[-1] - loud[0] + 1) / SAMPLE_RATE
    assert 0.24 <= span <= 0.26
    assert abs(dominant_hz(rec[loud[0] : loud[-1] + 1].tobytes()) - 1000) < 10


async def test_echo_returns_the_callers_audio(
    store: Store, service: CallService, until: Until
) -> None:
    from callbridge.media.tones import tone

    wid = await workspace(store)
    voice = tone(440, 400) + bytes(8000) + tone(700, 300)
    leg = FileLeg("echo-1", service.clock, play=voice)
    live = await start(service, wid, leg, acts(("echo", {"duration": 2000})))
    await until(lambda: not live.is_live, 10.0)
    heard = np.frombuffer(bytes(leg.recorded), dtype="<i2").astype(np.float64)
    sent = np.frombuffer(voice, dtype="<i2").astype(np.float64)
    corr = np.correlate(heard[: len(sent) + 1600], sent, mode="valid")
    lag = int(np.argmax(corr))
    assert lag <= 3 * 160, f"echo delayed by {lag / 8} ms"
    np.testing.assert_allclose(heard[lag : lag + len(sent)], sent, atol=1)
    stored = await store.calls.get(wid, live.id)
    assert stored is not None and stored.hangup_by is HangupBy.LOCAL


async def test_caller_hangs_up_during_sleep(
    store: Store, service: CallService, until: Until
) -> None:
    wid = await workspace(store)
    leg = FileLeg("in-2", service.clock, hangup_after=1.0)
    live = await start(service, wid, leg, acts("answer", ("sleep", {"duration": 60000})))
    await until(lambda: not live.is_live, 5.0)
    assert live.flow_task is not None
    await until(lambda: live.flow_task.done(), 10.0)  # type: ignore[union-attr]
    stored = await store.calls.get(wid, live.id)
    assert stored is not None
    assert (stored.hangup_reason, stored.hangup_by) == (HangupReason.NORMAL, HangupBy.REMOTE)
    await until(lambda: True, 0.1)
    flow = await store.activeflows.get(wid, stored.activeflow_id)
    assert flow is not None and flow.status is ActiveflowStatus.ENDED


async def test_flow_that_runs_out_of_actions_hangs_up(
    store: Store, service: CallService, until: Until
) -> None:
    wid = await workspace(store)
    leg = FileLeg("in-3", service.clock)
    live = await start(service, wid, leg, acts("answer"))
    await until(lambda: not live.is_live, 2.0)
    assert live.call.hangup_reason is HangupReason.NORMAL
    assert live.call.hangup_by is HangupBy.LOCAL
    assert live.call.tm_progressing is not None


async def test_caller_abandons_while_ringing(
    store: Store, service: CallService, until: Until
) -> None:
    wid = await workspace(store)
    leg = FileLeg("in-4", service.clock, abandon_after=0.5)
    live = await start(service, wid, leg, acts(("sleep", {"duration": 5000}), "answer"))
    await until(lambda: not live.is_live, 2.0)
    assert live.call.tm_progressing is None
    assert (live.call.hangup_reason, live.call.hangup_by) == (HangupReason.CANCEL, HangupBy.REMOTE)


async def test_outgoing_call_runs_its_flow_after_answer(
    store: Store, bus: InProcessBus, service: CallService, clock: VirtualClock, until: Until
) -> None:
    wid = await workspace(store)
    sub = bus.subscribe(f"ws.{wid}.call")
    leg = FileLeg("out-1", clock, outgoing=True, answer_after=1.0)
    live = await start(service, wid, leg, acts("beep", "hangup"))
    t0 = clock.monotonic()
    await until(lambda: not live.is_live, 5.0)
    statuses = [e.type for e in await collect(sub) if e.type != "call_updated"]
    assert statuses == [
        "call_created",
        "call_dialing",
        "call_ringing",
        "call_progressing",
        "call_terminating",
        "call_hangup",
    ]
    assert live.call.direction is Direction.OUTGOING
    assert clock.monotonic() - t0 >= 1.25  # 1 s of ringing, then the 250 ms beep
    assert np.abs(np.frombuffer(bytes(leg.recorded), dtype="<i2")).max() > 1000


async def test_cancel_outgoing_before_answer(
    store: Store, service: CallService, until: Until
) -> None:
    wid = await workspace(store)
    leg = FileLeg("out-2", service.clock, outgoing=True, answer_after=None)
    live = await start(service, wid, leg, acts("hangup"))
    await until(lambda: live.call.status is CallStatus.DIALING and leg.state is LegState.DIALING, 1)
    call = await service.hangup(live)
    assert call.status is CallStatus.HANGUP
    assert (call.hangup_reason, call.hangup_by) == (HangupReason.CANCEL, HangupBy.LOCAL)
    flow = await store.activeflows.get(wid, call.activeflow_id)  # type: ignore[arg-type]
    assert flow is not None and flow.executed_actions == []  # never answered: flow never ran


async def test_maximum_duration_hangs_up_with_timeout(
    store: Store, bus: InProcessBus, clock: VirtualClock
) -> None:
    import asyncio

    svc = CallService(store, bus, clock, max_duration_seconds=2.0)
    wid = await workspace(store)
    leg = FileLeg("in-5", clock)
    live = await start(svc, wid, leg, acts("answer", ("sleep", {"duration": 600000})))

    async def real_wait(predicate: Callable[[], bool]) -> None:
        # Database writes take real time; virtual time stands still meanwhile.
        for _ in range(1000):
            if predicate():
                return
            await asyncio.sleep(0.005)
        raise AssertionError("condition not met in real time")

    await real_wait(lambda: bool(live.timers))  # answered, and the duration timer is armed
    t0 = clock.monotonic()
    await clock.advance(1.98)
    await asyncio.sleep(0.05)
    assert live.is_live, "hung up before the maximum duration"
    await clock.advance(0.04)
    await real_wait(lambda: not live.is_live)
    assert live.call.hangup_reason is HangupReason.TIMEOUT
    assert live.call.hangup_by is HangupBy.LOCAL
    assert 2.0 <= clock.monotonic() - t0 <= 2.03
    await svc.shutdown(1.0)


async def test_dtmf_is_published_and_kept_on_the_call(
    store: Store, bus: InProcessBus, service: CallService, until: Until
) -> None:
    wid = await workspace(store)
    sub = bus.subscribe(f"ws.{wid}.dtmf")
    leg = FileLeg(
        "in-6",
        service.clock,
        dtmf=[ScheduledDigit(0.5, "1", 100), ScheduledDigit(0.8, "#", 120)],
    )
    live = await start(service, wid, leg, acts("answer", ("sleep", {"duration": 1500})))
    await until(lambda: not live.is_live, 5.0)
    events = await collect(sub)
    assert [e.type for e in events] == ["dtmf_received", "dtmf_received"]
    assert [e.data["digit"] for e in events] == ["1", "#"]
    assert [e.data["duration"] for e in events] == [100, 120]
    assert all(e.data["call_id"] == str(live.id) for e in events)
    assert live.digits == ["1", "#"]


async def test_shutdown_hangs_up_live_calls(
    store: Store, bus: InProcessBus, clock: VirtualClock, until: Until
) -> None:
    svc = CallService(store, bus, clock)
    wid = await workspace(store)
    lives = [
        await start(
            svc, wid, FileLeg(f"sd-{i}", clock), acts("answer", ("sleep", {"duration": 60000}))
        )
        for i in range(3)
    ]
    await until(lambda: all(lv.call.status is CallStatus.PROGRESSING for lv in lives), 2.0)
    await svc.shutdown(5.0)
    assert all(not lv.is_live for lv in lives)
    for lv in lives:
        stored = await store.calls.get(wid, lv.id)
        assert stored is not None and stored.status is CallStatus.HANGUP
    with pytest.raises(RuntimeError, match="shutting down"):
        await start(svc, wid, FileLeg("late", clock), acts("answer"))


async def test_failed_update_is_logged_and_its_tracebacks_dropped(
    store: Store, service: CallService, until: Until
) -> None:
    """A store error is logged, later updates still run, and the error (wrapped like a
    driver error, with the cycle such wrappers make) keeps no traceback (decision 024)."""
    wid = await workspace(store)
    raised: list[BaseException] = []
    update = store.calls.update
    failures = iter([True])

    async def flaky_update(call: object) -> None:
        if next(failures, False):
            try:
                raise OSError("database is locked")
            except OSError as driver_error:
                wrapped = RuntimeError("update failed")
                wrapped.__cause__ = driver_error
                holder = wrapped  # a frame local holding the exception: a cycle via its tb
                raised.append(holder)
                raise holder from driver_error
        await update(call)  # type: ignore[arg-type]

    store.calls.update = flaky_update  # type: ignore[method-assign]
    leg = FileLeg("in-fail", service.clock)
    live = await start(service, wid, leg, acts("answer", ("hangup", {"reason": "normal"})))
    await until(lambda: not live.is_live, 10.0)
    (error,) = raised
    assert error.__traceback__ is None
    assert error.__cause__ is not None and error.__cause__.__traceback__ is None
    stored = await store.calls.get(wid, live.id)
    assert stored is not None and stored.status is CallStatus.HANGUP  # later updates ran


async def test_busy_store_update_is_retried_not_lost(
    store: Store, service: CallService, until: Until, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A call update the store refuses as busy (nothing written) is written again, so the
    final hangup row is not lost; a store that stays busy is counted (decision 025)."""
    monkeypatch.setattr(service_module, "UPDATE_RETRY_DELAYS_S", (0.01, 0.01))
    wid = await workspace(store)
    update = store.calls.update
    refused: list[str] = []

    async def busy_on_hangup(call: Call) -> None:
        if call.status is CallStatus.HANGUP and len(refused) < 2:
            refused.append(call.status.value)
            raise StoreBusyError("writer queue full")
        await update(call)

    store.calls.update = busy_on_hangup  # type: ignore[method-assign]
    leg = FileLeg("in-busy", service.clock)
    live = await start(service, wid, leg, acts("answer", ("hangup", {"reason": "normal"})))
    await until(lambda: not live.is_live, 10.0)
    await until(lambda: live._updates.empty() and len(refused) == 2, 10.0)

    async def stored_hangup() -> bool:
        stored = await store.calls.get(wid, live.id)
        return stored is not None and stored.status is CallStatus.HANGUP

    for _ in range(200):
        if await stored_hangup():
            break
        await asyncio.sleep(0.01)
    assert refused == ["hangup", "hangup"]
    assert await stored_hangup()


async def test_store_busy_past_every_retry_is_counted(
    store: Store, service: CallService, until: Until, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service_module, "UPDATE_RETRY_DELAYS_S", (0.01,))
    before = STORE_WRITES_FAILED.labels(kind="call")._value.get()
    wid = await workspace(store)
    attempts: list[int] = []

    async def always_busy(call: Call) -> None:
        attempts.append(1)
        raise StoreBusyError("writer queue full")

    store.calls.update = always_busy  # type: ignore[method-assign]
    leg = FileLeg("in-busy2", service.clock)
    await start(service, wid, leg, acts("answer", ("hangup", {"reason": "normal"})))
    for _ in range(500):  # real time: the retries sleep on the event loop, not the clock
        if STORE_WRITES_FAILED.labels(kind="call")._value.get() >= before + 2:
            break
        await asyncio.sleep(0.01)
    # answer and hangup: each tried twice (one retry), then counted
    assert STORE_WRITES_FAILED.labels(kind="call")._value.get() >= before + 2
    assert len(attempts) >= 4
