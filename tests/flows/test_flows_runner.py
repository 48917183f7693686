"""The activeflow runner: order, next_id jumps, reserved ids, skipped later-scope actions."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

from callbridge.calls.model import Address, Direction
from callbridge.calls.service import CallService
from callbridge.flows.model import ACTION_ID_FINISH, Action, ActiveflowStatus
from callbridge.legs.file_leg import FileLeg
from callbridge.store import Store

Until = Callable[[Callable[[], bool], float], Awaitable[None]]


async def run_flow(
    store: Store, service: CallService, until: Until, actions: list[Action]
) -> list[str]:
    wid = (await store.workspaces.create("flow-test")).id
    live = await service.start_call(
        workspace_id=wid,
        direction=Direction.INCOMING,
        source=Address(type="tel", target="+15550002222"),
        destination=Address(type="tel", target="+15550003333"),
        leg=FileLeg(f"flow-{uuid.uuid4()}", service.clock),
        actions=actions,
    )
    await until(lambda: not live.is_live, 10.0)
    assert live.flow_task is not None
    # The flow task still writes the ended activeflow: real I/O, give it time on a busy machine.
    await until(lambda: live.flow_task.done(), 10.0)  # type: ignore[union-attr]
    assert live.call.activeflow_id is not None
    flow = await store.activeflows.get(wid, live.call.activeflow_id)
    assert flow is not None and flow.status is ActiveflowStatus.ENDED
    return [a["type"] + ":" + a["id"][-4:] for a in flow.executed_actions]


async def test_next_id_jumps_over_actions(store: Store, service: CallService, until: Until) -> None:
    end = Action("hangup", id=uuid.UUID(int=0xDDDD))
    first = Action("answer", id=uuid.UUID(int=0xAAAA), next_id=end.id)
    skipped = Action("beep", id=uuid.UUID(int=0xBBBB))
    executed = await run_flow(store, service, until, [first, skipped, end])
    assert executed == ["answer:aaaa", "hangup:dddd"]


async def test_finish_id_ends_the_flow(store: Store, service: CallService, until: Until) -> None:
    first = Action("answer", id=uuid.UUID(int=0xAAAA), next_id=ACTION_ID_FINISH)
    executed = await run_flow(
        store, service, until, [first, Action("beep", id=uuid.UUID(int=0xBB))]
    )
    assert executed == ["answer:aaaa"]


async def test_unimplemented_and_later_scope_actions_are_skipped(
    store: Store, service: CallService, until: Until
) -> None:
    actions = [
        Action("answer", id=uuid.UUID(int=1)),
        Action("amd", id=uuid.UUID(int=2)),
        Action("stop", id=uuid.UUID(int=3)),
        Action("beep", id=uuid.UUID(int=4)),
    ]
    executed = await run_flow(store, service, until, actions)
    assert executed == ["answer:0001", "amd:0002", "stop:0003"]


async def test_unknown_jump_target_continues(
    store: Store, service: CallService, until: Until
) -> None:
    actions = [
        Action("answer", id=uuid.UUID(int=1), next_id=uuid.UUID(int=0x999)),
        Action("stop", id=uuid.UUID(int=2)),
    ]
    executed = await run_flow(store, service, until, actions)
    assert executed == ["answer:0001", "stop:0002"]
