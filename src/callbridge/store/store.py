"""The store: one async SQLAlchemy engine, its migrations and the repositories.

Supported URLs (anything else is refused with a :class:`StoreError` naming these):

* ``sqlite+aiosqlite:///relative/path.db``, ``sqlite+aiosqlite:////absolute/path.db``,
  ``sqlite+aiosqlite:///:memory:`` — the default backend; ``sqlite://`` is accepted as a
  shorthand. The file's parent directory is created. Every connection runs with WAL journaling,
  ``synchronous=NORMAL``, foreign keys on and a busy timeout (for other processes); this
  process's writers take turns in order (:mod:`callbridge.store.sqlite`), and a write that
  cannot start in time raises :class:`StoreBusyError`.
* ``postgresql+asyncpg://user[:password]@host[:port]/database`` — ``postgresql://`` and
  ``postgres://`` are accepted as shorthands.

:meth:`Store.open` connects once up front so a wrong URL or an unreachable server fails at
start with a one-line message (``cannot connect to PostgreSQL at host:port: …``) instead of a
traceback on the first request, then applies the Alembic migrations (``migrate=True``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.util.exc import CommandError
from sqlalchemy import event, text
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import StaticPool

from callbridge.store import sqlite
from callbridge.store.errors import StoreError
from callbridge.store.repos import (
    AccessKeyRepository,
    ActiveflowRepository,
    CallRepository,
    WorkspaceRepository,
    utc_now,
)

SUPPORTED_URLS = (
    "sqlite+aiosqlite:///<path> (or sqlite:///<path>), "
    "postgresql+asyncpg://<user>[:<password>]@<host>[:<port>]/<database> "
    "(or postgresql:// / postgres://)"
)

_SQLITE_DRIVERS = {"sqlite", "sqlite+aiosqlite"}
_POSTGRES_DRIVERS = {"postgresql", "postgres", "postgresql+asyncpg"}

#: How long a SQLite connection waits for another writer's lock before giving up.
SQLITE_BUSY_TIMEOUT_MS = 5000

#: ``PRAGMA synchronous`` of every SQLite connection (decision 025: NORMAL, no fsync per
#: commit in WAL mode).
SQLITE_SYNCHRONOUS = "NORMAL"

#: First and longest pause between attempts to open a SQLite file that another connection
#: is switching to WAL.
_SQLITE_OPEN_RETRY_FIRST_S = 0.01
_SQLITE_OPEN_RETRY_MAX_S = 0.2

#: Seconds :meth:`Store.ping` waits for the database before answering False.
PING_TIMEOUT_S = 5.0

#: Key of the PostgreSQL advisory lock that serialises concurrent migrations (several
#: processes starting at once against one database). Arbitrary but fixed: "cbmigr" in ASCII.
_MIGRATION_LOCK_KEY = 0x63626D696772

_MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def normalise_url(url: str) -> URL:
    """Parse ``url`` and pin the async driver; :class:`StoreError` for anything unsupported.

    The error message never repeats the URL (it may hold a password), only its scheme.
    """
    if not isinstance(url, str) or not url.strip():
        raise StoreError(f"empty database URL; supported: {SUPPORTED_URLS}")
    try:
        parsed = make_url(url.strip())
    except ArgumentError as exc:
        raise StoreError(f"could not parse the database URL; supported: {SUPPORTED_URLS}") from exc
    driver = parsed.drivername.lower()
    if driver in _SQLITE_DRIVERS:
        return parsed.set(drivername="sqlite+aiosqlite")
    if driver in _POSTGRES_DRIVERS:
        if not parsed.database:
            raise StoreError(
                f"PostgreSQL URL {parsed.render_as_string(hide_password=True)} names no "
                "database (…/<database>)"
            )
        return parsed.set(drivername="postgresql+asyncpg")
    raise StoreError(f"unsupported database URL scheme {driver!r}; supported: {SUPPORTED_URLS}")


def _is_memory_sqlite(url: URL) -> bool:
    return url.database in (None, "", ":memory:")


def _describe_target(url: URL) -> str:
    """A human label of where the database is: ``PostgreSQL at host:port`` or a file path."""
    if url.get_backend_name() == "postgresql":
        return f"PostgreSQL at {url.host or 'localhost'}:{url.port or 5432}"
    if _is_memory_sqlite(url):
        return "in-memory SQLite"
    return f"SQLite file {url.database}"


def _driver_reason(exc: BaseException) -> str:
    """One line explaining a connection failure, without SQL or driver boilerplate."""
    inner: BaseException = exc
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        inner = exc.orig
    text_ = str(inner).strip().splitlines()[0] if str(inner).strip() else ""
    return f"{type(inner).__name__}: {text_}" if text_ else type(inner).__name__


def _ensure_parent_directory(path: str) -> None:
    Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Runs for every new pooled connection: these settings are per connection in SQLite.
    # The driver's own implicit BEGIN is switched off so that sqlite.on_begin decides how
    # transactions start.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        # busy_timeout first: the journal_mode statement itself can meet a lock held by
        # another connection, and must wait for it rather than fail at once.
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        # The journal mode is stored in the file: once one connection switched it to WAL,
        # later ones only read it. Switching needs an exclusive lock, and SQLite can refuse
        # it at once ("database is locked") without consulting the busy handler when
        # several connections open a new file together; Store.open retries that case.
        cursor.execute("PRAGMA journal_mode")
        row = cursor.fetchone()
        if row is None or str(row[0]).lower() != "wal":
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        # WAL + NORMAL: a commit appends to the WAL without an fsync; the WAL is synced at
        # checkpoints. Committed data survives a crash of the process; a power loss or OS
        # crash may lose the last commits, never corrupt the database (decision 025).
        cursor.execute(f"PRAGMA synchronous={SQLITE_SYNCHRONOUS}")
    finally:
        cursor.close()


def _create_engine(url: URL, connect_timeout: float) -> AsyncEngine:
    if url.get_backend_name() == "sqlite":
        if _is_memory_sqlite(url):
            # One shared connection, otherwise every pooled connection would see its own
            # empty in-memory database.
            engine = create_async_engine(url, poolclass=StaticPool)
        else:
            engine = create_async_engine(url)
        event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
        event.listen(engine.sync_engine, "begin", sqlite.on_begin)
        return engine
    return create_async_engine(
        url,
        pool_pre_ping=True,
        connect_args={"timeout": connect_timeout},
    )


def _alembic_config(connection: Connection | None = None) -> Config:
    """Alembic configuration built in code: no ``alembic.ini`` is needed at runtime."""
    cfg = Config()
    # configparser interpolation: a literal "%" in the install path must be doubled.
    cfg.set_main_option("script_location", str(_MIGRATIONS_DIR).replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def _upgrade_to_head(connection: Connection) -> None:
    command.upgrade(_alembic_config(connection), "head")


def _current_revision(connection: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str | None:
    """The newest migration revision shipped with this code."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


class Store:
    """Owner of the database engine and the repositories built on it.

    Use :meth:`open` (not the constructor) and :meth:`close` at shutdown. Repositories open a
    short session per operation, so a ``Store`` is safe to share between concurrent tasks of one
    event loop.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        url_masked: str,
        *,
        now: Callable[[], datetime] = utc_now,
    ) -> None:
        self.engine: AsyncEngine = engine
        #: The URL with the password replaced by ``***``: the only form that may be logged.
        self.url_masked: str = url_masked
        #: On SQLite, this process's writers take turns here (decision 025); ``None`` on
        #: PostgreSQL, whose row locks let writers run side by side.
        self.write_gate: sqlite.WriteGate | None = None
        if engine.dialect.name == "sqlite":
            self.write_gate = sqlite.WriteGate()
            self._sessions: async_sessionmaker[AsyncSession] = async_sessionmaker(
                engine,
                class_=sqlite.GatedSession,
                expire_on_commit=False,
                write_gate=self.write_gate,
            )
        else:
            self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._closed = False
        self.workspaces = WorkspaceRepository(self._sessions, now=now)
        self.access_keys = AccessKeyRepository(self._sessions, now=now)
        #: Group commit of call and activeflow updates on SQLite (decision 025).
        self.update_batcher: sqlite.UpdateBatcher | None = (
            sqlite.UpdateBatcher(self._sessions) if self.write_gate is not None else None
        )
        self.calls = CallRepository(self._sessions, batcher=self.update_batcher)
        self.activeflows = ActiveflowRepository(self._sessions, batcher=self.update_batcher)
        # Telephony (migration 0002); imported here to keep the store package free of cycles.
        from callbridge.telephony.repos import ExtensionRepository, TrunkRepository

        self.extensions = ExtensionRepository(self._sessions)
        self.trunks = TrunkRepository(self._sessions)
        # --- recordings (migration 0003) ---
        from callbridge.recordings.repos import RecordingRepository

        self.recordings = RecordingRepository(self._sessions)
        # --- end recordings ---

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        migrate: bool = True,
        connect_timeout: float = 10.0,
        now: Callable[[], datetime] | None = None,
    ) -> Store:
        """Connect to ``url``, optionally migrate to the newest schema, return the store.

        Raises :class:`StoreError` with a one-line reason for an unsupported or malformed
        URL, an unreachable server, a missing database, refused credentials or a failed
        migration. ``now`` overrides the wall clock used for ``tm_*`` stamps the store sets
        itself (workspaces, access keys) — for tests.
        """
        sa_url = normalise_url(url)
        masked = sa_url.render_as_string(hide_password=True)
        target = _describe_target(sa_url)
        if sa_url.get_backend_name() == "sqlite" and not _is_memory_sqlite(sa_url):
            assert sa_url.database is not None
            try:
                await asyncio.to_thread(_ensure_parent_directory, sa_url.database)
            except OSError as exc:
                raise StoreError(f"cannot create the directory of {target}: {exc}") from exc
        engine = _create_engine(sa_url, connect_timeout)
        try:
            await cls._check_connection(engine, target, connect_timeout)
            if migrate:
                await cls._migrate(engine, target)
        except BaseException:
            await engine.dispose()
            raise
        return cls(engine, masked, now=now or utc_now)

    @staticmethod
    async def _check_connection(engine: AsyncEngine, target: str, limit_s: float) -> None:
        try:
            # The driver has its own connect timeout; this outer bound also covers SQLite
            # waiting on a lock and anything else that could hang the start.
            async with asyncio.timeout(limit_s + 1.0):
                await Store._connect_once(engine)
        except TimeoutError as exc:
            raise StoreError(f"cannot connect to {target}: timed out after {limit_s:g} s") from exc
        except (OSError, SQLAlchemyError) as exc:
            raise StoreError(f"cannot connect to {target}: {_driver_reason(exc)}") from exc
        except Exception as exc:
            # Driver-specific exceptions (e.g. asyncpg's "database does not exist") that the
            # dialect did not wrap: still one clear line, the traceback stays in __cause__.
            raise StoreError(f"cannot connect to {target}: {_driver_reason(exc)}") from exc

    @staticmethod
    async def _connect_once(engine: AsyncEngine) -> None:
        """Open one connection and run ``SELECT 1``.

        On SQLite, a first connection that meets another process's (or this process's)
        switch of a new file to WAL gets "database is locked" at once; it is tried again
        with a growing pause until the caller's time limit cancels it.
        """
        pause = _SQLITE_OPEN_RETRY_FIRST_S
        while True:
            try:
                async with engine.connect() as conn:
                    await conn.execute(text("SELECT 1"))
                return
            except SQLAlchemyError as exc:
                if engine.dialect.name != "sqlite" or not sqlite.is_busy_error(exc):
                    raise
            await asyncio.sleep(pause)
            pause = min(pause * 2, _SQLITE_OPEN_RETRY_MAX_S)

    @staticmethod
    async def _migrate(engine: AsyncEngine, target: str) -> None:
        try:
            # On SQLite the write option makes the engine's "begin" hook open this transaction
            # with BEGIN IMMEDIATE.
            writer = engine.execution_options(**{sqlite.WRITE_OPTION: True})
            async with writer.begin() as conn:
                # Concurrent starters (several processes, one database) must migrate one by
                # one, each re-reading the version table under the lock.
                if conn.dialect.name == "postgresql":
                    # Held until this transaction ends.
                    await conn.execute(
                        text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY}
                    )
                # On SQLite the engine's "begin" hook opened this transaction with BEGIN
                # IMMEDIATE: the write lock is held up front (other starters wait for the busy
                # timeout) and, SQLite DDL being transactional, the migration is atomic.
                # Alembic is synchronous; run_sync hands it the async connection's sync facade,
                # which works the same for aiosqlite and asyncpg.
                await conn.run_sync(_upgrade_to_head)
        except CommandError as exc:
            raise StoreError(
                f"cannot migrate {target}: {exc} (is the database from a newer callbridge?)"
            ) from exc
        except (OSError, SQLAlchemyError) as exc:
            raise StoreError(f"cannot migrate {target}: {_driver_reason(exc)}") from exc

    async def schema_revision(self) -> str | None:
        """The Alembic revision the database is at (``None`` before the first migration)."""
        async with self.engine.connect() as conn:
            return await conn.run_sync(_current_revision)

    async def close(self) -> None:
        """Close every pooled connection. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self.update_batcher is not None:
            # Updates already queued are written, not dropped with the connections.
            await self.update_batcher.wait_idle()
        await self.engine.dispose()

    async def ping(self) -> bool:
        """True when the database answers a trivial query within :data:`PING_TIMEOUT_S`."""
        if self._closed:
            return False
        try:
            async with asyncio.timeout(PING_TIMEOUT_S), self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except (TimeoutError, OSError, SQLAlchemyError):
            return False
        return True

    def session(self) -> AsyncSession:
        """A new :class:`AsyncSession`; use it as ``async with store.session() as s: …``.

        For ad-hoc queries outside the repositories. Sessions are not shared between tasks.
        """
        return self._sessions()

    def __repr__(self) -> str:
        return f"Store({self.url_masked!r})"
