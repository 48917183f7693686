"""Workspace and access key repositories on both backends."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from callbridge.auth.model import AccessKey
from callbridge.auth.service import hash_token
from callbridge.store import DuplicateError, Store, tables


class FakeNow:
    """A settable wall clock (a real value object, not a mock of the store)."""

    def __init__(self, start: datetime) -> None:
        self.value = start

    def __call__(self) -> datetime:
        return self.value


async def test_workspaces_create_get_first_count(store: Store) -> None:
    assert await store.workspaces.count() == 0
    assert await store.workspaces.first() is None
    first = await store.workspaces.create("default")
    second = await store.workspaces.create("other")
    assert await store.workspaces.count() == 2
    assert await store.workspaces.first() == first
    assert await store.workspaces.get(second.id) == second
    assert await store.workspaces.get(uuid.uuid4()) is None
    assert first.tm_create.tzinfo is not None


async def test_create_returns_plaintext_once_and_stores_only_the_hash(store: Store) -> None:
    workspace = await store.workspaces.create("w")
    key, token = await store.access_keys.create(workspace.id, name="ci", detail="for CI")
    assert token.startswith("vb_") and len(token) == 35
    assert key.token_prefix == token[:11]
    assert (key.name, key.detail, key.workspace_id) == ("ci", "for CI", workspace.id)
    assert key.tm_expire is None and key.tm_delete is None
    assert token not in repr(key)
    assert not hasattr(key, "token") and not hasattr(key, "token_hash")

    async with store.session() as session:
        rows = (await session.execute(select(tables.access_keys))).mappings().all()
    assert len(rows) == 1
    row = rows[0]
    assert row["token_hash"] == hash_token(token)
    assert len(row["token_hash"]) == 64
    assert token not in [str(v) for v in row.values()]


async def test_find_by_token(store: Store) -> None:
    workspace = await store.workspaces.create("w")
    key, token = await store.access_keys.create(workspace.id)
    assert await store.access_keys.find_by_token(token) == key
    assert await store.access_keys.find_by_token(token + "x") is None
    assert await store.access_keys.find_by_token(token[:-1]) is None
    assert await store.access_keys.find_by_token("") is None


async def test_preset_token_and_duplicates(store: Store) -> None:
    workspace = await store.workspaces.create("w")
    preset = "vb_" + "A" * 30
    key, token = await store.access_keys.create(workspace.id, token=preset)
    assert token == preset and key.token_prefix == "vb_AAAAAAAA"
    with pytest.raises(DuplicateError, match="token_hash"):
        await store.access_keys.create(workspace.id, token=preset)


async def test_expiry(store_url: str) -> None:
    clock = FakeNow(datetime(2026, 1, 1, tzinfo=UTC))
    store = await Store.open(store_url, now=clock)
    try:
        workspace = await store.workspaces.create("w")
        key, token = await store.access_keys.create(workspace.id, expire_seconds=86400)
        assert key.tm_expire == clock.value + timedelta(days=1)
        assert await store.access_keys.find_by_token(token) == key
        clock.value += timedelta(days=1) - timedelta(microseconds=1)
        assert await store.access_keys.find_by_token(token) == key
        clock.value += timedelta(microseconds=1)
        assert await store.access_keys.find_by_token(token) is None
        assert await store.access_keys.find_by_token(token, include_inactive=True) == key
        with pytest.raises(ValueError):
            await store.access_keys.create(workspace.id, expire_seconds=0)
    finally:
        await store.close()


async def test_delete_is_soft_and_stops_authentication(store: Store) -> None:
    workspace = await store.workspaces.create("w")
    key, token = await store.access_keys.create(workspace.id)
    other = await store.workspaces.create("other")
    assert await store.access_keys.delete(other.id, key.id) is None  # not theirs
    deleted = await store.access_keys.delete(workspace.id, key.id)
    assert deleted is not None and deleted.tm_delete is not None
    assert await store.access_keys.find_by_token(token) is None
    assert await store.access_keys.list(workspace.id) == []
    again = await store.access_keys.delete(workspace.id, key.id)
    assert again == deleted  # idempotent, unchanged
    assert await store.access_keys.get(workspace.id, key.id) == deleted
    async with store.session() as session:
        count = len((await session.execute(select(tables.access_keys.c.id))).all())
    assert count == 1


async def test_list_get_update_and_isolation(store: Store) -> None:
    workspace = await store.workspaces.create("w")
    other = await store.workspaces.create("other")
    keys: list[AccessKey] = []
    for i in range(3):
        key, _ = await store.access_keys.create(workspace.id, name=f"k{i}")
        keys.append(key)
    foreign, _ = await store.access_keys.create(other.id)
    listed = await store.access_keys.list(workspace.id)
    assert [k.id for k in listed] == [k.id for k in reversed(keys)]
    assert len({k.tm_create for k in listed}) == 3
    page = await store.access_keys.list(workspace.id, page_size=2, before=listed[0].tm_create)
    assert [k.id for k in page] == [keys[1].id, keys[0].id]
    assert await store.access_keys.get(workspace.id, foreign.id) is None
    assert await store.access_keys.get(other.id, foreign.id) == foreign

    updated = await store.access_keys.update(workspace.id, keys[0].id, detail="new")
    assert updated is not None and (updated.name, updated.detail) == ("k0", "new")
    assert await store.access_keys.update(other.id, keys[0].id, name="x") is None


async def test_key_of_deleted_workspace_does_not_authenticate(store: Store) -> None:
    workspace = await store.workspaces.create("w")
    _, token = await store.access_keys.create(workspace.id)
    async with store.session() as session, session.begin():
        await session.execute(
            tables.workspaces.update()
            .where(tables.workspaces.c.id == workspace.id)
            .values(tm_delete=datetime.now(UTC))
        )
    assert await store.access_keys.find_by_token(token) is None
    assert await store.workspaces.get(workspace.id) is None
    assert await store.workspaces.count() == 0
