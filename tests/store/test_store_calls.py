"""CallRepository on both backends: round trips, tm_create uniqueness, lists, isolation."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import insert, select

from callbridge.calls.model import (
    Address,
    Call,
    CallStatus,
    Direction,
    HangupBy,
    HangupReason,
)
from callbridge.store import DuplicateError, NotFoundError, Store, tables
from callbridge.store.repos import _call_values

T0 = datetime(2026, 2, 21, 10, 5, 2, 233415, tzinfo=UTC)
US = timedelta(microseconds=1)


def make_call(workspace_id: uuid.UUID, tm_create: datetime = T0, **changes: object) -> Call:
    call = Call(
        id=uuid.uuid4(),
        workspace_id=workspace_id,
        direction=Direction.OUTGOING,
        source=Address(type="tel", target="+15550001111"),
        destination=Address(type="extension", target_name="alice"),
        status=CallStatus.DIALING,
        tm_create=tm_create,
        tm_update=tm_create,
    )
    return dataclasses.replace(call, **changes)  # type: ignore[arg-type]


def full_call(workspace_id: uuid.UUID) -> Call:
    """A call with every field set to a non-default value."""
    plus_two = timezone(timedelta(hours=2))
    return Call(
        id=uuid.uuid4(),
        workspace_id=workspace_id,
        direction=Direction.INCOMING,
        source=Address(
            type="sip", target="bob@example.org", target_name="bob", name="Bob", detail="dé"
        ),
        destination=Address(type="tel", target="+4930123456", name="Office", detail="x"),
        status=CallStatus.HANGUP,
        tm_create=T0,
        tm_update=T0 + timedelta(seconds=30, microseconds=1),
        hangup_reason=HangupReason.NOANSWER,
        hangup_by=HangupBy.REMOTE,
        flow_id=uuid.uuid4(),
        activeflow_id=uuid.uuid4(),
        action={"id": str(uuid.uuid4()), "type": "talk", "option": {"text": "hi ☎", "n": [1, 2]}},
        variables={"voipbin.call.id": "abc", "empty": "", "unicode": "ü€"},
        metadata={"nested": {"list": [1, "a", None, True], "f": 1.5}},
        # A non-UTC zone on input must come back as the same instant in UTC.
        tm_ringing=(T0 + timedelta(seconds=1, microseconds=999999)).astimezone(plus_two),
        tm_progressing=T0 + timedelta(seconds=2, microseconds=1),
        tm_hangup=T0 + timedelta(seconds=30),
        tm_delete=None,
    )


async def test_round_trip_of_every_field(store: Store) -> None:
    workspace = await store.workspaces.create("w")
    call = full_call(workspace.id)
    stored = await store.calls.insert(call)
    assert stored == call
    got = await store.calls.get(workspace.id, call.id)
    assert got == call
    assert got is not None
    for name in ("tm_create", "tm_update", "tm_ringing", "tm_progressing", "tm_hangup"):
        value = getattr(got, name)
        assert value.tzinfo is not None and value.utcoffset() == timedelta(0), name
    assert got.tm_ringing == T0 + timedelta(seconds=1, microseconds=999999)
    assert got.tm_ringing.microsecond == 233414
    assert isinstance(got.direction, Direction) and isinstance(got.status, CallStatus)
    assert isinstance(got.hangup_reason, HangupReason) and isinstance(got.hangup_by, HangupBy)
    assert got.tm_delete is None


async def test_round_trip_of_defaults(store: Store) -> None:
    workspace_id = uuid.uuid4()
    call = make_call(workspace_id)
    await store.calls.insert(call)
    got = await store.calls.get(workspace_id, call.id)
    assert got == call
    assert got is not None
    assert (got.tm_ringing, got.tm_progressing, got.tm_hangup, got.tm_delete) == (None,) * 4
    assert (got.flow_id, got.activeflow_id) == (None, None)
    assert got.hangup_reason is HangupReason.NONE and got.hangup_by is HangupBy.NONE
    assert (got.action, got.variables, got.metadata) == ({}, {}, {})


async def test_update_persists_every_mutable_field(store: Store) -> None:
    workspace_id = uuid.uuid4()
    call = await store.calls.insert(make_call(workspace_id))
    target = full_call(workspace_id)
    changed = dataclasses.replace(
        target, id=call.id, tm_create=call.tm_create, tm_delete=T0 + timedelta(hours=1)
    )
    await store.calls.update(changed)
    assert await store.calls.get(workspace_id, call.id) == changed


async def test_update_cannot_change_identity_or_tm_create(store: Store) -> None:
    workspace_id = uuid.uuid4()
    call = await store.calls.insert(make_call(workspace_id))
    moved = dataclasses.replace(call, tm_create=T0 + timedelta(days=1), status=CallStatus.RINGING)
    await store.calls.update(moved)
    got = await store.calls.get(workspace_id, call.id)
    assert got is not None
    assert got.tm_create == call.tm_create and got.status is CallStatus.RINGING


async def test_update_of_unknown_or_foreign_call_raises(store: Store) -> None:
    call = make_call(uuid.uuid4())
    with pytest.raises(NotFoundError):
        await store.calls.update(call)
    await store.calls.insert(call)
    with pytest.raises(NotFoundError):
        await store.calls.update(dataclasses.replace(call, workspace_id=uuid.uuid4()))


async def test_naive_datetimes_are_rejected(store: Store) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        await store.calls.insert(make_call(uuid.uuid4(), tm_create=datetime(2026, 1, 1)))
    with pytest.raises(ValueError, match="timezone-aware"):
        await store.calls.list(uuid.uuid4(), before=datetime(2026, 1, 1))


async def test_duplicate_id_raises(store: Store) -> None:
    call = make_call(uuid.uuid4())
    await store.calls.insert(call)
    with pytest.raises(DuplicateError):
        await store.calls.insert(dataclasses.replace(call, tm_create=T0 + timedelta(seconds=1)))


async def test_tm_create_collision_is_bumped_by_one_microsecond(store: Store) -> None:
    workspace_id = uuid.uuid4()
    first = await store.calls.insert(make_call(workspace_id))
    original = make_call(workspace_id)
    second = await store.calls.insert(original)
    third = await store.calls.insert(make_call(workspace_id))
    assert first.tm_create == T0
    assert second.tm_create == T0 + US
    assert third.tm_create == T0 + 2 * US
    # The argument is not modified; tm_update follows a bumped tm_create.
    assert original.tm_create == T0
    assert second.tm_update == second.tm_create
    stored = await store.calls.get(workspace_id, second.id)
    assert stored == second
    # Another workspace may use the same instant.
    other = await store.calls.insert(make_call(uuid.uuid4()))
    assert other.tm_create == T0


async def test_bump_skips_over_a_run_of_taken_stamps(store: Store) -> None:
    workspace_id = uuid.uuid4()
    # Occupy T0 … T0+1499µs except T0+700µs: the run is longer than one look-up window.
    rows = []
    for i in range(1500):
        if i != 700:
            call = make_call(workspace_id, tm_create=T0 + i * US)
            rows.append(
                _call_values(call)
                | {"id": call.id, "workspace_id": workspace_id, "tm_create": call.tm_create}
            )
    async with store.session() as session, session.begin():
        await session.execute(insert(tables.calls), rows)
    gap = await store.calls.insert(make_call(workspace_id))
    assert gap.tm_create == T0 + 700 * US
    after = await store.calls.insert(make_call(workspace_id))
    assert after.tm_create == T0 + 1500 * US


async def test_concurrent_inserts_with_same_tm_create_all_succeed(store: Store) -> None:
    workspace_id = uuid.uuid4()
    stored = await asyncio.gather(*(store.calls.insert(make_call(workspace_id)) for _ in range(25)))
    stamps = sorted(c.tm_create for c in stored)
    assert stamps == [T0 + i * US for i in range(25)]
    listed = await store.calls.list(workspace_id)
    assert len(listed) == 25


async def test_list_newest_first_with_cursor_pagination(store: Store) -> None:
    workspace_id = uuid.uuid4()
    inserted = []
    for i in range(7):
        inserted.append(
            await store.calls.insert(make_call(workspace_id, tm_create=T0 + timedelta(seconds=i)))
        )
    # Collisions too: they must not be skipped by the cursor.
    for _ in range(3):
        inserted.append(await store.calls.insert(make_call(workspace_id)))
    expected = sorted(inserted, key=lambda c: c.tm_create, reverse=True)

    pages: list[list[Call]] = []
    cursor: datetime | None = None
    while True:
        page = await store.calls.list(workspace_id, page_size=3, before=cursor)
        if not page:
            break
        pages.append(page)
        cursor = page[-1].tm_create
    assert [len(p) for p in pages] == [3, 3, 3, 1]
    assert [c.id for p in pages for c in p] == [c.id for c in expected]


async def test_list_cursor_is_strictly_before(store: Store) -> None:
    workspace_id = uuid.uuid4()
    a = await store.calls.insert(make_call(workspace_id, tm_create=T0))
    b = await store.calls.insert(make_call(workspace_id, tm_create=T0 + US))
    assert [c.id for c in await store.calls.list(workspace_id, before=b.tm_create)] == [a.id]
    assert await store.calls.list(workspace_id, before=a.tm_create) == []
    # A cursor in another zone denotes the same instant.
    cursor = b.tm_create.astimezone(timezone(timedelta(hours=-5)))
    assert [c.id for c in await store.calls.list(workspace_id, before=cursor)] == [a.id]


async def test_list_excludes_soft_deleted_but_get_returns_them(store: Store) -> None:
    workspace_id = uuid.uuid4()
    kept = await store.calls.insert(make_call(workspace_id))
    gone = await store.calls.insert(make_call(workspace_id))
    gone.tm_delete = T0 + timedelta(minutes=1)
    await store.calls.update(gone)
    assert [c.id for c in await store.calls.list(workspace_id)] == [kept.id]
    got = await store.calls.get(workspace_id, gone.id)
    assert got is not None and got.tm_delete == gone.tm_delete


async def test_list_page_size_bounds(store: Store) -> None:
    workspace_id = uuid.uuid4()
    for _ in range(3):
        await store.calls.insert(make_call(workspace_id))
    assert len(await store.calls.list(workspace_id, page_size=1)) == 1
    with pytest.raises(ValueError):
        await store.calls.list(workspace_id, page_size=0)


async def test_workspace_isolation(store: Store) -> None:
    mine, theirs = uuid.uuid4(), uuid.uuid4()
    call = await store.calls.insert(make_call(theirs))
    assert await store.calls.get(mine, call.id) is None
    assert await store.calls.get(theirs, call.id) == call
    assert await store.calls.list(mine) == []
    assert await store.calls.get_any(call.id) == call
    assert await store.calls.get_any(uuid.uuid4()) is None


async def test_json_columns_are_stored_as_json(store: Store) -> None:
    # Guards against accidentally storing Python reprs: read the raw column back.
    workspace_id = uuid.uuid4()
    call = await store.calls.insert(full_call(workspace_id))
    async with store.session() as session:
        row = (
            await session.execute(
                select(tables.calls.c.source, tables.calls.c["metadata"]).where(
                    tables.calls.c.id == call.id
                )
            )
        ).one()
    assert row[0] == call.source.to_dict()
    assert row[1] == call.metadata
