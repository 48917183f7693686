"""Opening the store: URLs, migrations, connection errors, SQLite settings."""

from __future__ import annotations

import asyncio
import socket
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import insert, inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from callbridge.store import Store, StoreError, tables
from callbridge.store.store import head_revision, normalise_url
from callbridge.store.tables import metadata

EXPECTED_TABLES = {"workspaces", "access_keys", "calls", "activeflows", "alembic_version"}


def _table_names(conn: Connection) -> set[str]:
    return set(inspect(conn).get_table_names())


def _schema_diff(conn: Connection) -> list[object]:
    return list(compare_metadata(MigrationContext.configure(conn), metadata))


async def test_migrations_apply_on_fresh_database(store_url: str) -> None:
    store = await Store.open(store_url)
    try:
        async with store.engine.connect() as conn:
            assert await conn.run_sync(_table_names) >= EXPECTED_TABLES
        assert await store.schema_revision() == head_revision() == "0005"
        assert await store.ping() is True
    finally:
        await store.close()


async def test_migrations_match_table_definitions(store: Store) -> None:
    # The hand-written migration and tables.py must describe the same schema.
    async with store.engine.connect() as conn:
        assert await conn.run_sync(_schema_diff) == []


async def test_reopen_is_idempotent_and_keeps_data(store_url: str) -> None:
    first = await Store.open(store_url)
    try:
        workspace = await first.workspaces.create("kept")
    finally:
        await first.close()
    second = await Store.open(store_url)
    try:
        assert await second.schema_revision() == "0005"
        assert await second.workspaces.get(workspace.id) == workspace
        async with second.session() as session:
            versions = (
                await session.execute(text("SELECT version_num FROM alembic_version"))
            ).all()
        assert [v[0] for v in versions] == ["0005"]
    finally:
        await second.close()


async def test_open_without_migrate_leaves_schema_alone(store_url: str) -> None:
    store = await Store.open(store_url, migrate=False)
    try:
        assert await store.schema_revision() is None
        async with store.engine.connect() as conn:
            assert "calls" not in await conn.run_sync(_table_names)
    finally:
        await store.close()


async def test_close_is_idempotent_and_ping_false_after(store: Store) -> None:
    await store.close()
    await store.close()
    assert await store.ping() is False


async def test_session_gives_raw_access(store: Store) -> None:
    async with store.session() as session:
        assert (await session.execute(text("SELECT 1"))).scalar_one() == 1


async def test_sqlite_creates_parent_directory_and_enables_wal(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "c.db"
    store = await Store.open(f"sqlite:///{path}")
    try:
        assert path.exists()
        async with store.session() as session:
            mode = (await session.execute(text("PRAGMA journal_mode"))).scalar_one()
            fks = (await session.execute(text("PRAGMA foreign_keys"))).scalar_one()
            busy = (await session.execute(text("PRAGMA busy_timeout"))).scalar_one()
        assert (mode, fks) == ("wal", 1)
        assert busy > 0
        assert store.url_masked == f"sqlite+aiosqlite:///{path}"
    finally:
        await store.close()


async def test_sqlite_in_memory_works() -> None:
    store = await Store.open("sqlite+aiosqlite:///:memory:")
    try:
        workspace = await store.workspaces.create("mem")
        assert await store.workspaces.first() == workspace
    finally:
        await store.close()


async def test_foreign_keys_are_enforced(store: Store) -> None:
    # Access keys reference workspaces; SQLite only checks that with PRAGMA foreign_keys=ON.
    now = datetime.now(UTC)
    row = {
        "id": uuid.uuid4(),
        "workspace_id": uuid.uuid4(),
        "name": "",
        "detail": "",
        "token_hash": "0" * 64,
        "token_prefix": "vb_00000000",
        "tm_expire": None,
        "tm_create": now,
        "tm_update": now,
        "tm_delete": None,
    }
    async with store.session() as session:
        with pytest.raises(IntegrityError):
            await session.execute(insert(tables.access_keys).values(row))
            await session.commit()
    with pytest.raises(StoreError, match="unknown workspace"):
        await store.access_keys.create(uuid.uuid4())


@pytest.mark.parametrize(
    "url",
    ["mysql://x", "mysql+aiomysql://u:secret@h/db", "oracle://scott:tiger@h/db", "http://x"],
)
async def test_unsupported_scheme_names_supported_ones(url: str) -> None:
    with pytest.raises(StoreError) as info:
        await Store.open(url)
    message = str(info.value)
    assert "unsupported database URL scheme" in message
    assert "sqlite+aiosqlite" in message and "postgresql+asyncpg" in message
    assert "secret" not in message and "tiger" not in message


@pytest.mark.parametrize("url", ["", "   ", "not a url at all", "://nope"])
async def test_unparseable_url(url: str) -> None:
    with pytest.raises(StoreError, match="supported"):
        await Store.open(url)


def test_url_shorthands_are_normalised() -> None:
    assert normalise_url("sqlite:///x.db").drivername == "sqlite+aiosqlite"
    assert normalise_url("postgres://u@h/db").drivername == "postgresql+asyncpg"
    assert normalise_url("postgresql://u@h/db").drivername == "postgresql+asyncpg"
    with pytest.raises(StoreError, match="names no database"):
        normalise_url("postgresql://u:pw@h")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_unreachable_postgres_is_a_clear_error() -> None:
    port = _free_port()  # nothing listens there once the probe socket is closed
    with pytest.raises(StoreError) as info:
        await Store.open(f"postgresql://u:hunter2@127.0.0.1:{port}/db", connect_timeout=3)
    message = str(info.value)
    assert f"PostgreSQL at 127.0.0.1:{port}" in message
    assert "hunter2" not in message


@pytest.mark.postgres
async def test_missing_postgres_database_is_a_clear_error(pg_server: Any) -> None:
    url = pg_server.url.rsplit("/", 1)[0] + "/callbridge_test_does_not_exist"
    with pytest.raises(StoreError, match=r"cannot connect to PostgreSQL at .*does not exist"):
        await Store.open(url)


@pytest.mark.postgres
async def test_url_masked_hides_password(pg_server: Any) -> None:
    # trust auth accepts any password, so the URL works and we can look at the masked form.
    pg_server.reset_schema()
    url = pg_server.url.replace("postgres@", "postgres:s3cr3t-pw@", 1)
    store = await Store.open(url)
    try:
        assert "s3cr3t-pw" not in store.url_masked
        assert "***" in store.url_masked
        assert "s3cr3t-pw" not in repr(store)
    finally:
        await store.close()
        pg_server.reset_schema()


async def test_concurrent_opens_migrate_once(store_url: str) -> None:
    stores = await asyncio.gather(*(Store.open(store_url) for _ in range(4)))
    try:
        for store in stores:
            assert await store.schema_revision() == "0005"
        async with stores[0].session() as session:
            versions = (
                await session.execute(text("SELECT version_num FROM alembic_version"))
            ).all()
        assert [v[0] for v in versions] == ["0005"]
    finally:
        for store in stores:
            await store.close()


async def test_concurrent_first_opens_of_new_sqlite_files_all_succeed(tmp_path: Path) -> None:
    # Several connections switching a brand-new file to WAL at once: SQLite can answer
    # "database is locked" without waiting on the busy handler; Store.open must retry, not
    # fail (seen in CI, about 1 open in 250 before the retry).
    for round_ in range(25):
        url = f"sqlite+aiosqlite:///{tmp_path / f'r{round_}.db'}"
        stores = await asyncio.gather(*(Store.open(url) for _ in range(8)))
        for store in stores:
            await store.close()


async def test_failed_sqlite_migration_leaves_no_partial_schema(tmp_path: Path) -> None:
    # A table in the way makes the migration fail half-way; the IMMEDIATE transaction must
    # roll back everything it created, so a later attempt starts clean.
    url = f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"
    raw = await Store.open(url, migrate=False)
    try:
        async with raw.session() as session, session.begin():
            await session.execute(text("CREATE TABLE calls (x INTEGER)"))
    finally:
        await raw.close()
    with pytest.raises(StoreError, match="cannot migrate"):
        await Store.open(url)
    check = await Store.open(url, migrate=False)
    try:
        async with check.engine.connect() as conn:
            assert await conn.run_sync(_table_names) == {"calls"}
    finally:
        await check.close()
