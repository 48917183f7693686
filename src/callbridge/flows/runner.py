"""The activeflow runner: executes a list of actions against one call, in order.

Order is the array order unless an action's ``next_id`` or an action's result names another
action id. Reaching the end of the list, a ``hangup`` or a ``stop`` ends the flow; a call whose
flow ends is hung up (reason ``normal``, by ``local``) — platform API spec §6.1. When the call
ends first (the caller hangs up) the runner is cancelled and records the flow as ended.

Every step is persisted (``current_action``, ``executed_actions``) and published
(``activeflow_updated``), so the API can show where a call's flow is.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING

import structlog

from callbridge.bus.base import make_topic
from callbridge.calls.model import CallStatus, Direction
from callbridge.calls.serialize import activeflow_to_dict, format_ts
from callbridge.flows.actions import ACTIONS, ActionContext, ActionResult, validate_actions
from callbridge.flows.model import (
    ACTION_ID_FINISH,
    ACTION_ID_NEXT,
    Action,
    Activeflow,
    ActiveflowStatus,
)
from callbridge.observability.metrics import FLOW_ACTIONS

if TYPE_CHECKING:
    from callbridge.calls.service import CallService, LiveCall

log = structlog.get_logger("callbridge.flows")

#: Upper bound of executed steps per flow, so a ``goto`` loop cannot spin forever.
MAX_STEPS = 10_000


class ActiveflowRunner:
    """Runs one activeflow for one live call."""

    def __init__(self, service: CallService, live: LiveCall, flow: Activeflow) -> None:
        self.service = service
        self.live = live
        self.flow = flow
        self._index = {a.id: i for i, a in enumerate(flow.actions)}

    async def run(self) -> None:
        """Run until the actions are done or the call ends, whichever comes first.

        The runner watches the call itself rather than being cancelled by the call service, so
        its bookkeeping (activeflow ``ended``, hangup of a call whose flow ran out) always runs.
        """
        structlog.contextvars.bind_contextvars(call_id=str(self.live.id))
        work = asyncio.create_task(self._work(), name=f"flow-work-{self.live.id}")
        ended = asyncio.create_task(self.live.ended.wait(), name=f"flow-watch-{self.live.id}")
        try:
            await asyncio.wait({work, ended}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ended.cancel()
            if not work.done():
                work.cancel()
            await asyncio.gather(work, ended, return_exceptions=True)
            await asyncio.shield(self._end())

    async def _work(self) -> None:
        await self._publish("activeflow_created")
        if self.live.call.direction is Direction.OUTGOING:
            await self._wait_answered()
        if self.live.is_live:
            await self._execute()

    async def _wait_answered(self) -> None:
        answered = asyncio.create_task(self.live.answered.wait())
        ended = asyncio.create_task(self.live.ended.wait())
        try:
            await asyncio.wait({answered, ended}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            answered.cancel()
            ended.cancel()

    async def _execute(self) -> None:
        ctx = ActionContext(service=self.service, live=self.live, flow=self.flow)
        i = 0
        steps = 0
        actions = self.flow.actions
        while 0 <= i < len(actions) and self.live.is_live:
            steps += 1
            if steps > MAX_STEPS:
                log.warning("flow step limit reached", call_id=str(self.live.id))
                break
            action = actions[i]
            await self._enter(action)
            handler = ACTIONS.get(action.type)
            if handler is None:
                log.warning(
                    "action not available yet, skipped",
                    action=action.type,
                    call_id=str(self.live.id),
                )
                FLOW_ACTIONS.labels(type="unsupported", outcome="skipped").inc()
                result = ActionResult()
            else:
                try:
                    result = await handler(ctx, action)
                except asyncio.CancelledError:
                    FLOW_ACTIONS.labels(type=action.type, outcome="interrupted").inc()
                    raise
                except Exception:
                    FLOW_ACTIONS.labels(type=action.type, outcome="error").inc()
                    log.exception("action failed", action=action.type, call_id=str(self.live.id))
                    result = ActionResult()
                else:
                    FLOW_ACTIONS.labels(type=action.type, outcome="ok").inc()
            if result.end_flow:
                return
            target = result.jump_to or action.next_id
            if target is None or target == ACTION_ID_NEXT:
                i += 1
            elif target == ACTION_ID_FINISH:
                return
            elif target in self._index:
                i = self._index[target]
            else:
                log.warning(
                    "jump to unknown action id; continuing with the next action",
                    target=str(target),
                    call_id=str(self.live.id),
                )
                i += 1

    async def _enter(self, action: Action) -> None:
        now = self.service.now()
        self.flow.current_action = action
        self.flow.executed_actions.append({**action.to_dict(), "tm_execute": format_ts(now)})
        self.flow.tm_update = now
        self.live.call.action = action.to_dict()
        await self.service.store.activeflows.update(self.flow)
        await self._publish("activeflow_updated")

    async def _end(self) -> None:
        self.flow.status = ActiveflowStatus.ENDED
        self.flow.tm_update = self.service.now()
        try:
            await self.service.store.activeflows.update(self.flow)
            await self._publish("activeflow_updated")
        except Exception:
            log.exception("could not record the end of a flow", call_id=str(self.live.id))
        if self.live.is_live and self.live.call.status is not CallStatus.HANGUP:
            # A flow that runs out of actions hangs up its call (platform API spec §6.1).
            await self.service.hangup(self.live)

    async def _publish(self, event_type: str) -> None:
        wid = str(self.flow.workspace_id)
        await self.service.bus.publish(
            make_topic(wid, "activeflow", str(self.flow.id), event_type),
            event_type,
            activeflow_to_dict(self.flow),
            workspace_id=wid,
        )


async def start_flow(
    service: CallService,
    live: LiveCall,
    actions: Sequence[Action],
    flow_id: uuid.UUID | None,
) -> asyncio.Task[None]:
    """Persist the activeflow of ``live`` and run it in a task (the call service's default)."""
    validate_actions(actions)
    now = service.now()
    flow = Activeflow(
        id=live.call.activeflow_id or uuid.uuid4(),
        workspace_id=live.call.workspace_id,
        reference_type="call",
        reference_id=live.id,
        actions=list(actions),
        tm_create=now,
        tm_update=now,
        flow_id=flow_id,
    )
    flow = await service.store.activeflows.insert(flow)
    runner = ActiveflowRunner(service, live, flow)
    return asyncio.create_task(runner.run(), name=f"flow-{live.id}")
