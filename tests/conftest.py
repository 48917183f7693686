"""Shared fixtures: real databases for the store, on both supported backends.

``store_url`` is parametrised over ``sqlite`` (a file in the test's tmp_path) and ``postgres``
(marked ``postgres``). PostgreSQL cases run in a database created for this test session on the
server of ``CALLBRIDGE_TEST_PG_URL`` (default
``postgresql+asyncpg://postgres@127.0.0.1:5432/postgres``, used only as the admin connection)
and dropped at the end. Each PostgreSQL test starts from an empty schema, so migrations run
from scratch every time, exactly as on SQLite.

No reachable PostgreSQL: the postgres cases fail when ``CI`` is set or
``CALLBRIDGE_REQUIRE_PG=1``, and are skipped with the reason otherwise.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import string
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from typing import Any, TypeVar

import asyncpg
import pytest
import pytest_asyncio
from sqlalchemy.engine import URL, make_url

from callbridge.bus.inprocess import InProcessBus
from callbridge.calls.service import CallService
from callbridge.media.clock import VirtualClock
from callbridge.store import Store

T = TypeVar("T")

DEFAULT_PG_ADMIN_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"


def _run_in_thread(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion on a private loop in a helper thread.

    Session-scoped set-up and tear-down of the PostgreSQL database happen outside any test's
    event loop; a separate thread keeps them from touching the main thread's loop state.
    """
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(factory())
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, name="pg-admin")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


def _pg_require() -> bool:
    return bool(os.environ.get("CI")) or os.environ.get("CALLBRIDGE_REQUIRE_PG") == "1"


def _asyncpg_kwargs(url: URL, database: str | None = None) -> dict[str, Any]:
    return {
        "host": url.host or "127.0.0.1",
        "port": url.port or 5432,
        "user": url.username or "postgres",
        "password": url.password,
        "database": database or url.database or "postgres",
        "timeout": 5,
    }


class PgServer:
    """The admin side of the test PostgreSQL server and this session's database."""

    def __init__(self, admin_url: URL, database: str) -> None:
        self.admin_url = admin_url
        self.database = database

    @property
    def url(self) -> str:
        return self.admin_url.set(
            drivername="postgresql+asyncpg", database=self.database
        ).render_as_string(hide_password=False)

    def connect_kwargs(self, database: str | None = None) -> dict[str, Any]:
        return _asyncpg_kwargs(self.admin_url, database)

    async def execute(self, sql: str, *, database: str | None = None) -> None:
        conn = await asyncpg.connect(**self.connect_kwargs(database))
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    def run(self, sql: str, *, database: str | None = None) -> None:
        _run_in_thread(lambda: self.execute(sql, database=database))

    def create_database(self, name: str) -> None:
        self.run(f'CREATE DATABASE "{name}"')

    def drop_database(self, name: str) -> None:
        self.run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def reset_schema(self) -> None:
        """Empty this session's database: every table, including Alembic's version table."""
        self.run(
            "DROP SCHEMA public CASCADE; CREATE SCHEMA public;",
            database=self.database,
        )


def random_database_name() -> str:
    alphabet = string.ascii_lowercase + string.digits
    return "callbridge_test_" + "".join(secrets.choice(alphabet) for _ in range(10))


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """A fresh database on the test PostgreSQL server, dropped at session end."""
    admin_url = make_url(os.environ.get("CALLBRIDGE_TEST_PG_URL", DEFAULT_PG_ADMIN_URL))
    server = PgServer(admin_url, random_database_name())
    where = f"{admin_url.host or '127.0.0.1'}:{admin_url.port or 5432}"
    try:
        server.create_database(server.database)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        reason = (
            f"PostgreSQL at {where} unavailable ({type(exc).__name__}: {exc}); "
            "set CALLBRIDGE_TEST_PG_URL or run scripts/ensure-services.sh"
        )
        if _pg_require():
            pytest.fail(reason + " [required: CI or CALLBRIDGE_REQUIRE_PG=1]", pytrace=False)
        pytest.skip(reason)
    try:
        yield server
    finally:
        server.drop_database(server.database)


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def store_url(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    """The URL of an empty database of each backend (schema not yet created)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'db' / 'callbridge.db'}"
        return
    server: PgServer = request.getfixturevalue("pg_server")
    server.reset_schema()
    try:
        yield server.url
    finally:
        server.reset_schema()


@pytest.fixture
def backend(store_url: str) -> str:
    """``sqlite`` or ``postgresql`` for the current parametrisation."""
    return make_url(store_url).get_backend_name()


@pytest_asyncio.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    """An opened, migrated store per backend, closed after the test."""
    opened = await Store.open(store_url)
    try:
        yield opened
    finally:
        await opened.close()


# -- calls and flows: a call service on a real store, the in-process bus, virtual time --

Drive = Callable[[float], Awaitable[None]]


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
async def bus() -> AsyncIterator[InProcessBus]:
    b = InProcessBus()
    await b.start()
    yield b
    await b.close()


@pytest.fixture
async def service(
    store: Store, bus: InProcessBus, clock: VirtualClock
) -> AsyncIterator[CallService]:
    svc = CallService(store, bus, clock)
    yield svc
    await svc.shutdown(5.0)


@pytest.fixture
def drive(clock: VirtualClock) -> Drive:
    """Advance virtual time in 20 ms steps, giving real I/O (the database) a moment each step."""

    async def run(seconds: float) -> None:
        steps = round(seconds / 0.02)
        for _ in range(steps):
            await clock.advance(0.02)
            await asyncio.sleep(0.001)

    return run


@pytest.fixture
def until(clock: VirtualClock) -> Callable[[Callable[[], bool], float], Awaitable[None]]:
    """Advance virtual time until a condition holds (bounded in virtual and real time)."""

    async def run(predicate: Callable[[], bool], limit: float = 10.0) -> None:
        steps = 0
        while not predicate():
            steps += 1
            if steps * 0.02 > limit:
                raise AssertionError(f"condition not met within {limit} virtual seconds")
            await clock.advance(0.02)
            await asyncio.sleep(0.001)

    return run
