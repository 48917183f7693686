"""ActiveflowRepository on both backends."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from callbridge.flows.model import ACTION_ID_FINISH, Action, Activeflow, ActiveflowStatus
from callbridge.store import NotFoundError, Store

T0 = datetime(2026, 3, 1, 8, 0, 0, 1, tzinfo=UTC)


def make_flow(workspace_id: uuid.UUID, tm_create: datetime = T0) -> Activeflow:
    answer = Action(type="answer")
    talk = Action(type="talk", option={"text": "hello ${voipbin.call.id}", "language": "en-US"})
    sleep = Action(type="sleep", option={"duration": 10000}, next_id=ACTION_ID_FINISH)
    return Activeflow(
        id=uuid.uuid4(),
        workspace_id=workspace_id,
        reference_type="call",
        reference_id=uuid.uuid4(),
        actions=[answer, talk, sleep],
        tm_create=tm_create,
        tm_update=tm_create,
    )


async def test_round_trip_defaults(store: Store) -> None:
    flow = make_flow(uuid.uuid4())
    stored = await store.activeflows.insert(flow)
    assert stored == flow
    got = await store.activeflows.get(flow.workspace_id, flow.id)
    assert got == flow
    assert got is not None
    assert got.current_action is None and got.flow_id is None and got.forward_action_id is None
    assert got.status is ActiveflowStatus.RUNNING
    assert got.actions[2].next_id == ACTION_ID_FINISH and got.actions[0].next_id is None


async def test_update_persists_every_mutable_field(store: Store) -> None:
    flow = await store.activeflows.insert(make_flow(uuid.uuid4()))
    changed = dataclasses.replace(
        flow,
        status=ActiveflowStatus.ENDED,
        flow_id=uuid.uuid4(),
        current_action=flow.actions[1],
        forward_action_id=flow.actions[2].id,
        executed_actions=[
            {"id": str(flow.actions[0].id), "type": "answer", "tm_execute": "2026-03-01T08:00:01Z"}
        ],
        actions=[*flow.actions, Action(type="hangup")],
        tm_update=T0 + timedelta(seconds=5),
        tm_delete=T0 + timedelta(seconds=6),
        reference_type="call",
    )
    await store.activeflows.update(changed)
    assert await store.activeflows.get(flow.workspace_id, flow.id) == changed
    # Back to "no current action": stored as NULL, read as None.
    changed.current_action = None
    await store.activeflows.update(changed)
    got = await store.activeflows.get(flow.workspace_id, flow.id)
    assert got is not None and got.current_action is None


async def test_update_unknown_raises(store: Store) -> None:
    with pytest.raises(NotFoundError):
        await store.activeflows.update(make_flow(uuid.uuid4()))


async def test_collision_bump_list_and_isolation(store: Store) -> None:
    workspace_id = uuid.uuid4()
    flows = [await store.activeflows.insert(make_flow(workspace_id)) for _ in range(4)]
    assert [f.tm_create for f in flows] == [T0 + timedelta(microseconds=i) for i in range(4)]
    flows[1].tm_delete = T0 + timedelta(hours=1)
    await store.activeflows.update(flows[1])

    page1 = await store.activeflows.list(workspace_id, page_size=2)
    assert [f.id for f in page1] == [flows[3].id, flows[2].id]
    page2 = await store.activeflows.list(workspace_id, page_size=2, before=page1[-1].tm_create)
    assert [f.id for f in page2] == [flows[0].id]

    other = uuid.uuid4()
    assert await store.activeflows.get(other, flows[0].id) is None
    assert await store.activeflows.list(other) == []
    assert await store.activeflows.get_any(flows[0].id) == flows[0]
