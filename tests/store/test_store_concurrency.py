"""Concurrent writers (decision 025): queued in order on SQLite, none failed, none lost."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import threading
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import text

from callbridge.calls.model import Address, Call, CallStatus, Direction
from callbridge.store import NotFoundError, Store, StoreBusyError
from callbridge.store import store as store_module
from callbridge.store.sqlite import WriteGate

#: Concurrent calls in the overload test; each is one insert and two updates.
CALLS = 300


def _call(workspace_id: uuid.UUID) -> Call:
    now = datetime.now(UTC)
    return Call(
        id=uuid.uuid4(),
        workspace_id=workspace_id,
        direction=Direction.INCOMING,
        source=Address(type="tel", target="+15550001111"),
        destination=Address(type="extension", target_name="alice"),
        status=CallStatus.DIALING,
        tm_create=now,
        tm_update=now,
    )


async def _one_call(store: Store, workspace_id: uuid.UUID) -> Call:
    call = await store.calls.insert(_call(workspace_id))
    for status in (CallStatus.PROGRESSING, CallStatus.HANGUP):
        call = dataclasses.replace(call, status=status, tm_update=datetime.now(UTC))
        await store.calls.update(call)
    return call


@pytest_asyncio.fixture
async def short_busy_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Store]:
    # A 50 ms busy timeout: connections of one process competing for SQLite's write lock by
    # busy-polling (the behaviour before decision 025) fail within this test's burst; writers
    # queued in process never wait on the busy handler at all.
    monkeypatch.setattr(store_module, "SQLITE_BUSY_TIMEOUT_MS", 50)
    opened = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'busy.db'}")
    try:
        yield opened
    finally:
        await opened.close()


async def test_concurrent_writes_on_a_file_database_all_land(short_busy_store: Store) -> None:
    store = short_busy_store
    workspace = await store.workspaces.create("load")
    results = await asyncio.gather(
        *(_one_call(store, workspace.id) for _ in range(CALLS)), return_exceptions=True
    )
    failures = [r for r in results if isinstance(r, BaseException)]
    assert failures == []
    stored = await store.calls.list(workspace.id, page_size=1000)
    assert len(stored) == CALLS
    assert {c.status for c in stored} == {CallStatus.HANGUP}
    assert {c.id for c in stored} == {c.id for c in results if isinstance(c, Call)}


async def test_concurrent_writes_on_both_backends(store: Store) -> None:
    workspace = await store.workspaces.create("load")
    results = await asyncio.gather(*(_one_call(store, workspace.id) for _ in range(60)))
    stored = await store.calls.list(workspace.id, page_size=1000)
    assert {c.id for c in stored} == {c.id for c in results}
    assert {c.status for c in stored} == {CallStatus.HANGUP}


async def test_writers_are_served_in_arrival_order(short_busy_store: Store) -> None:
    store = short_busy_store
    workspace = await store.workspaces.create("order")
    call = await store.calls.insert(_call(workspace.id))
    order: list[int] = []

    async def write(n: int) -> None:
        async with store.session() as session, session.begin():
            order.append(n)
            await session.execute(text("SELECT 1"))

    await asyncio.gather(*(write(n) for n in range(50)))
    assert order == list(range(50))
    assert await store.calls.get(workspace.id, call.id) is not None


async def test_reads_do_not_wait_for_an_open_write(short_busy_store: Store) -> None:
    store = short_busy_store
    workspace = await store.workspaces.create("read")
    async with store.session() as session, session.begin():
        await session.execute(text("UPDATE workspaces SET name = 'x'"))
        # Another connection reads the last committed state meanwhile (WAL, deferred BEGIN).
        async with asyncio.timeout(2):
            assert (await store.workspaces.get(workspace.id)) is not None


async def test_a_write_whose_turn_does_not_come_raises_a_typed_error(
    short_busy_store: Store,
) -> None:
    store = short_busy_store
    assert store.write_gate is not None
    store.write_gate.timeout_s = 0.2
    workspace = await store.workspaces.create("slow")
    first = await store.calls.insert(_call(workspace.id))
    holding = asyncio.Event()
    release = asyncio.Event()

    async def long_writer() -> None:
        async with store.session() as session, session.begin():
            await session.execute(text("UPDATE workspaces SET name = 'held'"))
            holding.set()
            await release.wait()

    holder = asyncio.create_task(long_writer())
    await holding.wait()
    with pytest.raises(StoreBusyError, match=r"not started within 0\.2 s"):
        await store.calls.update(dataclasses.replace(first, status=CallStatus.HANGUP))
    release.set()
    await holder
    assert store.write_gate.timeouts == 1
    # Nothing half-written, and the next write goes through.
    got = await store.calls.get(workspace.id, first.id)
    assert got is not None and got.status is CallStatus.DIALING
    await store.calls.update(dataclasses.replace(first, status=CallStatus.HANGUP))
    got = await store.calls.get(workspace.id, first.id)
    assert got is not None and got.status is CallStatus.HANGUP


async def test_another_process_holding_the_lock_is_a_typed_error(
    short_busy_store: Store, tmp_path: Path
) -> None:
    store = short_busy_store
    workspace = await store.workspaces.create("other")
    call = await store.calls.insert(_call(workspace.id))
    locked = threading.Event()
    done = threading.Event()

    def other_process() -> None:
        conn = sqlite3.connect(tmp_path / "busy.db", isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            locked.set()
            done.wait(5)
            conn.execute("ROLLBACK")
        finally:
            conn.close()

    thread = threading.Thread(target=other_process)
    thread.start()
    try:
        await asyncio.to_thread(locked.wait, 5)
        with pytest.raises(StoreBusyError, match="another process"):
            await store.calls.update(dataclasses.replace(call, status=CallStatus.HANGUP))
    finally:
        done.set()
        await asyncio.to_thread(thread.join)
    # The gate was released: the next write succeeds.
    await store.calls.update(dataclasses.replace(call, status=CallStatus.HANGUP))


async def test_sqlite_connections_use_wal_and_synchronous_normal(
    short_busy_store: Store,
) -> None:
    async with short_busy_store.engine.connect() as conn:
        assert (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar_one() == "wal"
        # 1 = NORMAL (decision 025).
        assert (await conn.exec_driver_sql("PRAGMA synchronous")).scalar_one() == 1


def test_gate_defaults() -> None:
    assert WriteGate().timeout_s == 30.0


async def test_updates_queued_together_share_one_transaction(short_busy_store: Store) -> None:
    store = short_busy_store
    batcher = store.update_batcher
    assert batcher is not None
    workspace = await store.workspaces.create("batch")
    calls = [await store.calls.insert(_call(workspace.id)) for _ in range(20)]
    holding = asyncio.Event()
    release = asyncio.Event()

    async def long_writer() -> None:
        async with store.session() as session, session.begin():
            holding.set()
            await release.wait()

    holder = asyncio.create_task(long_writer())
    await holding.wait()
    before = batcher.transactions
    missing = dataclasses.replace(_call(workspace.id), status=CallStatus.HANGUP)
    updates = [
        asyncio.create_task(store.calls.update(dataclasses.replace(c, status=CallStatus.HANGUP)))
        for c in calls
    ]
    updates.insert(7, asyncio.create_task(store.calls.update(missing)))
    await asyncio.sleep(0.05)
    release.set()
    await holder
    results = await asyncio.gather(*updates, return_exceptions=True)
    # One transaction for all 21; each caller gets its own outcome.
    assert batcher.transactions == before + 1
    assert isinstance(results.pop(7), NotFoundError)
    assert results == [None] * 20
    stored = await store.calls.list(workspace.id)
    assert {c.status for c in stored} == {CallStatus.HANGUP} and len(stored) == 20


async def test_close_writes_the_updates_already_queued(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'close.db'}"
    store = await Store.open(url)
    workspace = await store.workspaces.create("close")
    calls = [await store.calls.insert(_call(workspace.id)) for _ in range(10)]
    updates = [
        asyncio.create_task(store.calls.update(dataclasses.replace(c, status=CallStatus.HANGUP)))
        for c in calls
    ]
    await asyncio.sleep(0)  # queued, not yet written
    await store.close()
    # close() returned only once every queued update was written.
    assert all(u.done() for u in updates)
    assert await asyncio.gather(*updates) == [None] * 10
    reopened = await Store.open(url)
    try:
        stored = await reopened.calls.list(workspace.id)
        assert {c.status for c in stored} == {CallStatus.HANGUP} and len(stored) == 10
    finally:
        await reopened.close()
