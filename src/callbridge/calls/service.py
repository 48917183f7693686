"""The call service: owns live calls, keeps the store and the bus in step with them.

Every change of a call goes through one per-call worker, in order: the model is updated, the
row persisted, then the events published (``call_<status>`` and ``call_updated``). Legs report
from synchronous callbacks; the worker turns those reports into ordered async work, so a leg
never waits on the database.

A live call is a :class:`LiveCall`: the persisted :class:`~callbridge.calls.model.Call`, its
leg, its :class:`~callbridge.legs.graph.MediaGraph` and the task running its activeflow.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from callbridge.bus.base import EventBus, make_topic
from callbridge.calls.model import (
    Address,
    Call,
    CallStatus,
    Direction,
    HangupBy,
    HangupReason,
    check_call_transition,
)
from callbridge.calls.serialize import call_to_dict, format_ts, utc_now_from
from callbridge.flows.model import Action
from callbridge.legs.base import DtmfEvent, Leg, LegEnd, LegState
from callbridge.legs.graph import MediaGraph
from callbridge.media.clock import Clock, TimerHandle
from callbridge.observability.metrics import CALLS_ACTIVE, CALLS_TOTAL, STORE_WRITES_FAILED
from callbridge.store import Store, StoreBusyError

log = structlog.get_logger("callbridge.calls")

#: Default maximum duration of an answered call (platform API spec §6.1).
DEFAULT_MAX_DURATION_SECONDS = 3600.0
#: Waits before retrying a call update the store refused as busy (``StoreBusyError`` means
#: nothing was written, so writing the same row again is safe; decision 025).
UPDATE_RETRY_DELAYS_S: tuple[float, ...] = (0.5, 2.0, 5.0)


def forget_traceback(exc: BaseException) -> None:
    """Drop the tracebacks of ``exc`` and of every exception it was raised from or during.

    For an error already logged and handled: a traceback holds the frames it went through, and
    libraries keep the exception in one of those frames (SQLAlchemy's wrapped driver errors,
    a future's result), a cycle that would keep our frames — the call, its leg and sockets —
    until the cyclic collector runs (decision 024).
    """
    pending: list[BaseException] = [exc]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        current.__traceback__ = None
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)


class CallNotLive(Exception):
    """The operation needs a live call and this one has ended (or is not in this process)."""


@dataclass(eq=False)
class LiveCall:
    """The runtime side of one call in this process."""

    call: Call
    leg: Leg
    graph: MediaGraph
    variables: dict[str, str] = field(default_factory=dict)
    digits: list[str] = field(default_factory=list)
    answered: asyncio.Event = field(default_factory=asyncio.Event)
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    flow_task: asyncio.Task[None] | None = None
    timers: list[TimerHandle] = field(default_factory=list)
    _updates: asyncio.Queue[Callable[[], Awaitable[None]]] = field(default_factory=asyncio.Queue)
    _worker: asyncio.Task[None] | None = None

    @property
    def id(self) -> uuid.UUID:
        return self.call.id

    @property
    def is_live(self) -> bool:
        return not self.ended.is_set()


#: Creates and starts the activeflow of a new call; returns the task running it.
FlowStarter = Callable[
    ["CallService", LiveCall, Sequence[Action], "uuid.UUID | None"],
    Awaitable["asyncio.Task[None]"],
]


class CallService:
    """Creates, tracks and ends calls; the one place that changes a call's status."""

    def __init__(
        self,
        store: Store,
        bus: EventBus,
        clock: Clock,
        *,
        max_lead_seconds: float = 10.0,
        max_duration_seconds: float = DEFAULT_MAX_DURATION_SECONDS,
        flow_starter: FlowStarter | None = None,
    ) -> None:
        self.store = store
        self.bus = bus
        self.clock = clock
        self._max_lead = max_lead_seconds
        self._max_duration = max_duration_seconds
        self._live: dict[uuid.UUID, LiveCall] = {}
        self._closing = False
        if flow_starter is None:
            from callbridge.flows.runner import start_flow

            flow_starter = start_flow
        self._start_flow = flow_starter
        self._dtmf_hooks: list[Callable[[LiveCall, DtmfEvent], None]] = []
        # Per-call worker and flow tasks, kept until done so shutdown can wait for their last
        # writes to the store.
        self._background: set[asyncio.Task[None]] = set()

    # -- queries ------------------------------------------------------------------------------
    def get_live(self, call_id: uuid.UUID) -> LiveCall | None:
        return self._live.get(call_id)

    @property
    def live_calls(self) -> tuple[LiveCall, ...]:
        return tuple(self._live.values())

    def now(self) -> Any:
        return utc_now_from(self.clock.time())

    # -- creation -----------------------------------------------------------------------------
    async def start_call(
        self,
        *,
        workspace_id: uuid.UUID,
        direction: Direction,
        source: Address,
        destination: Address,
        leg: Leg,
        actions: Sequence[Action] = (),
        flow_id: uuid.UUID | None = None,
        variables: Mapping[str, str] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> LiveCall:
        """Persist a new call, attach its leg and start its flow.

        Incoming calls start ``ringing`` (the flow runs at once and usually answers); outgoing
        calls start ``dialing`` and their flow runs once the far end answers.
        """
        if self._closing:
            raise RuntimeError("the call service is shutting down")
        now = self.now()
        status = CallStatus.RINGING if direction is Direction.INCOMING else CallStatus.DIALING
        call = Call(
            id=uuid.uuid4(),
            workspace_id=workspace_id,
            direction=direction,
            source=source,
            destination=destination,
            status=status,
            tm_create=now,
            tm_update=now,
            flow_id=flow_id,
            activeflow_id=uuid.uuid4(),
            tm_ringing=now if status is CallStatus.RINGING else None,
            variables={k: v for k, v in (variables or {}).items() if not k.startswith("voipbin.")},
            metadata=dict(metadata or {}),
        )
        call = await self.store.calls.insert(call)
        graph = MediaGraph(max_lead_seconds=self._max_lead)
        live = LiveCall(call=call, leg=leg, graph=graph)
        live.variables.update(call.variables)
        # These closures hold ``live``, which holds the graph: a reference cycle until
        # ``_finalize`` releases the graph's callbacks (an ended call is freed by reference
        # counting, not left to the cyclic garbage collector; decision 024).
        graph.set_state_callback(lambda state, end: self._on_leg_state(live, state, end))
        graph.add_dtmf_listener(lambda ev: self._on_dtmf(live, ev))
        leg.attach(graph, graph.next_outbound_frame)
        self._live[call.id] = live
        CALLS_ACTIVE.inc()
        live._worker = self._track(asyncio.create_task(self._work(live), name=f"call-{call.id}"))
        await self._publish(live, "call_created", f"call_{status.value}")
        live.flow_task = self._track(await self._start_flow(self, live, actions, flow_id))
        await leg.start()
        log.info("call started", call_id=str(call.id), direction=direction.value)
        return live

    # -- control ------------------------------------------------------------------------------
    async def answer(self, live: LiveCall) -> None:
        """Answer an incoming call (no-op when answered or outgoing)."""
        if not live.is_live:
            raise CallNotLive(str(live.id))
        if live.call.direction is Direction.INCOMING and live.leg.state is LegState.RINGING:
            await live.leg.answer()

    async def hangup(self, live: LiveCall, reason: HangupReason = HangupReason.NORMAL) -> Call:
        """End the call from our side; returns once it is ``hangup``. Idempotent."""
        if live.is_live and live.leg.state is not LegState.ENDED:
            unanswered = live.call.status in (CallStatus.DIALING, CallStatus.RINGING)
            target = (
                CallStatus.CANCELING
                if unanswered and live.call.direction is Direction.OUTGOING
                else CallStatus.TERMINATING
            )
            if (
                unanswered
                and live.call.direction is Direction.OUTGOING
                and reason is HangupReason.NORMAL
            ):
                reason = HangupReason.CANCEL
            self._submit(live, lambda: self._change_status(live, target))
            await live.leg.hangup(reason)
        await live.ended.wait()
        return live.call

    def add_dtmf_hook(self, hook: Callable[[LiveCall, DtmfEvent], None]) -> None:
        """Be told of every key press on every call (used by flows and event faces)."""
        self._dtmf_hooks.append(hook)

    def _track(self, task: asyncio.Task[None]) -> asyncio.Task[None]:
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def shutdown(self, grace_seconds: float) -> None:
        """Hang up every live call, then wait (at most ``grace_seconds`` in all, on the real
        event loop) for the calls to end and for their flows and workers to finish writing.
        Whatever is still running after that is cancelled."""
        self._closing = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_seconds
        calls = list(self._live.values())
        if calls:
            log.info("hanging up live calls for shutdown", count=len(calls))
        work: list[asyncio.Task[Any]] = [asyncio.create_task(self.hangup(c)) for c in calls]
        work.extend(self._background)
        if not work:
            return
        _, pending = await asyncio.wait(work, timeout=max(0.0, deadline - loop.time()))
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # -- leg reports (synchronous) ---------------------------------------------------------
    def _on_leg_state(self, live: LiveCall, state: LegState, end: LegEnd | None) -> None:
        if state is LegState.RINGING and live.call.status is CallStatus.DIALING:
            self._submit(live, lambda: self._change_status(live, CallStatus.RINGING))
        elif state is LegState.ANSWERED:
            live.answered.set()
            self._submit(live, lambda: self._change_status(live, CallStatus.PROGRESSING))
            self._submit(live, lambda: self._arm_max_duration(live))
        elif state is LegState.ENDED:
            assert end is not None
            self._submit(live, lambda: self._finalize(live, end))

    def _on_dtmf(self, live: LiveCall, event: DtmfEvent) -> None:
        live.digits.append(event.digit)
        for hook in self._dtmf_hooks:
            hook(live, event)
        event_id = str(uuid.uuid4())
        data: dict[str, Any] = {
            "id": event_id,
            "customer_id": str(live.call.workspace_id),
            "call_id": str(live.id),
            "digit": event.digit,
            "duration": event.duration_ms,
            "tm_create": format_ts(utc_now_from(event.released_at)),
        }
        self._submit(live, lambda: self._publish_raw(live, "dtmf", event_id, "dtmf_received", data))

    # -- the per-call worker -------------------------------------------------------------------
    def _submit(self, live: LiveCall, job: Callable[[], Awaitable[None]]) -> None:
        live._updates.put_nowait(job)

    async def _work(self, live: LiveCall) -> None:
        # This task has its own context copy: every log line it writes carries the call id.
        structlog.contextvars.bind_contextvars(call_id=str(live.id))
        while True:
            job = await live._updates.get()
            try:
                await job()
            except Exception as exc:  # one failed update must not stop the call's later updates
                log.exception("call update failed", call_id=str(live.id))
                forget_traceback(exc)
            if live.ended.is_set() and live._updates.empty():
                return

    async def _update_call(self, call: Call) -> None:
        """Write ``call``'s row, retrying while the store is busy.

        The in-memory call has already changed when this runs, so re-running the job would
        find nothing to do: the retry is here, on the write. A write still refused after the
        last retry is counted and logged with the state that could not be stored, then raised.
        """
        for delay in (*UPDATE_RETRY_DELAYS_S, None):
            try:
                await self.store.calls.update(call)
                return
            except StoreBusyError:
                if delay is None:
                    STORE_WRITES_FAILED.labels(kind="call").inc()
                    log.error(
                        "call update not stored: store busy",
                        call_id=str(call.id),
                        status=call.status.value,
                        hangup_reason=call.hangup_reason.value,
                    )
                    raise
                log.warning("store busy, retrying call update", call_id=str(call.id), delay=delay)
                await asyncio.sleep(delay)

    async def _change_status(self, live: LiveCall, target: CallStatus) -> None:
        call = live.call
        if call.status is target or call.status is CallStatus.HANGUP:
            return
        check_call_transition(call.status, target)
        now = self.now()
        call.status = target
        call.tm_update = now
        if target is CallStatus.RINGING:
            call.tm_ringing = now
        elif target is CallStatus.PROGRESSING:
            call.tm_progressing = now
        await self._update_call(call)
        await self._publish(live, f"call_{target.value}", "call_updated")

    async def _arm_max_duration(self, live: LiveCall) -> None:
        # A clock timer, not a sleeping task: nothing to schedule, cancel and collect per call.
        if live.is_live:
            deadline = self.clock.monotonic() + self._max_duration
            live.timers.append(self.clock.call_at(deadline, lambda: self._expire(live)))

    def _expire(self, live: LiveCall) -> None:
        if live.is_live:
            log.info("maximum call duration reached", call_id=str(live.id))
            self._track(
                asyncio.create_task(self._hangup_quietly(live, HangupReason.TIMEOUT),
                                    name=f"call-{live.id}-max-duration")
            )  # fmt: skip

    async def _hangup_quietly(self, live: LiveCall, reason: HangupReason) -> None:
        await self.hangup(live, reason)

    async def _finalize(self, live: LiveCall, end: LegEnd) -> None:
        call = live.call
        if call.status is CallStatus.HANGUP:
            return
        reason, by = end.reason, end.by
        if (
            by is HangupBy.REMOTE
            and reason is HangupReason.NORMAL
            and call.status in (CallStatus.DIALING, CallStatus.RINGING)
        ):
            # The caller put the phone down before anyone answered.
            reason = (
                HangupReason.CANCEL
                if call.direction is Direction.INCOMING
                else HangupReason.NOANSWER
            )
        now = self.now()
        call.status = CallStatus.HANGUP
        call.hangup_reason = reason
        call.hangup_by = by
        call.tm_hangup = now
        call.tm_update = now
        await self._update_call(call)
        await self._publish(live, "call_hangup", "call_updated")
        live.graph.close()  # the flow runner sees `ended` and records the activeflow's end
        for timer in live.timers:
            timer.cancel()
        # Break the call's reference cycles (decision 024): each timer's callback holds
        # ``live``, and so do the graph's callbacks and the leg's listener.
        live.timers.clear()
        live.graph.release()
        live.leg.detach()
        self._live.pop(live.id, None)
        CALLS_ACTIVE.dec()
        CALLS_TOTAL.labels(direction=call.direction.value, hangup_reason=reason.value).inc()
        live.ended.set()
        log.info("call ended", call_id=str(call.id), reason=reason.value, by=by.value)

    # -- events -------------------------------------------------------------------------------
    async def _publish(self, live: LiveCall, *event_types: str) -> None:
        """Publish the call object once per event type, serialised once for all of them."""
        data, call_id = call_to_dict(live.call), str(live.id)
        for event_type in event_types:
            await self._publish_raw(live, "call", call_id, event_type, data)

    async def _publish_raw(
        self, live: LiveCall, resource: str, resource_id: str, event_type: str, data: dict[str, Any]
    ) -> None:
        wid = str(live.call.workspace_id)
        await self.bus.publish(
            make_topic(wid, resource, resource_id, event_type), event_type, data, workspace_id=wid
        )
