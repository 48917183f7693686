"""SQLite's single writer, served in order inside this process (decision 025).

SQLite lets one connection write at a time. Left to itself, every pooled connection that wants
to write sits in SQLite's busy handler, sleeping and re-trying until the lock is free or the
busy timeout passes: the waiters are served in no order, and under a burst the unlucky ones
fail with ``database is locked`` although the database was making progress all along.

Here the writers of this process queue on a :class:`WriteGate` instead — an
:class:`asyncio.Lock`, which serves its waiters first come, first served — so at most one
connection of this process asks SQLite for the write lock at a time and ``busy_timeout`` only
ever waits for *other* processes. A write transaction is one opened explicitly with
``session.begin()``: it queues on the gate, then starts with ``BEGIN IMMEDIATE`` (the write
lock up front). A session used without ``begin()`` reads: it starts with a plain (deferred)
``BEGIN`` and, in WAL mode, neither waits for nor blocks the writer.

A write that cannot start within :data:`WRITE_QUEUE_TIMEOUT_S`, or that SQLite refuses with
``database is locked``/``busy`` (another process held the lock past the busy timeout), raises
:class:`~callbridge.store.errors.StoreBusyError`: nothing was written and the caller knows it.
"""

from __future__ import annotations

import asyncio
import time
from types import TracebackType
from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, AsyncSessionTransaction

from callbridge.store.errors import StoreBusyError

#: How long a write transaction may wait for its turn among this process's writers.
WRITE_QUEUE_TIMEOUT_S = 30.0

#: Execution option marking a connection whose transaction writes (``BEGIN IMMEDIATE``).
WRITE_OPTION = "callbridge_write"


def on_begin(conn: Connection) -> None:
    """The engine's ``begin`` hook: how a transaction starts on SQLite.

    A write transaction takes the write lock up front: a deferred transaction that reads and
    then writes fails at once with ``database is locked`` when another connection wrote in
    between (a stale read snapshot cannot be upgraded, and the busy handler is not consulted).
    """
    if conn.get_execution_options().get(WRITE_OPTION):
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        conn.exec_driver_sql("BEGIN")


def is_busy_error(exc: BaseException) -> bool:
    """True for SQLite's "database is locked" / "database is busy" errors."""
    if not isinstance(exc, OperationalError):
        return False
    text = str(exc.orig if exc.orig is not None else exc).lower()
    return "database is locked" in text or "database is busy" in text


class WriteGate:
    """First come, first served turn-taking of one process's SQLite writers."""

    def __init__(self, timeout_s: float = WRITE_QUEUE_TIMEOUT_S) -> None:
        self.timeout_s = timeout_s
        self._lock = asyncio.Lock()
        self._waiting = 0
        #: Writes refused because their turn did not come within ``timeout_s``.
        self.timeouts = 0

    @property
    def waiting(self) -> int:
        """Writers queued behind the current one."""
        return self._waiting

    async def acquire(self) -> None:
        """Wait for this writer's turn; :class:`StoreBusyError` after ``timeout_s``."""
        started = time.monotonic()
        self._waiting += 1
        try:
            async with asyncio.timeout(self.timeout_s):
                await self._lock.acquire()
        except TimeoutError:
            self.timeouts += 1
            raise StoreBusyError(
                f"SQLite write not started within {self.timeout_s:g} s: "
                f"{self._waiting - 1} other writes queued ahead "
                f"(waited {time.monotonic() - started:.1f} s); nothing was written"
            ) from None
        finally:
            self._waiting -= 1

    def release(self) -> None:
        self._lock.release()


class _WriteTransaction(AsyncSessionTransaction):
    """``session.begin()`` of a :class:`GatedSession`: waits for the gate, then writes."""

    session: GatedSession

    async def __aenter__(self) -> AsyncSessionTransaction:
        gate = self.session.write_gate
        await gate.acquire()
        try:
            entered = await super().__aenter__()
            # Check the connection out now, marked as a writer, so that its BEGIN is
            # BEGIN IMMEDIATE whatever the first statement is.
            await self.session.connection(execution_options={WRITE_OPTION: True})
        except BaseException as exc:
            if self.is_active:
                await super().__aexit__(type(exc), exc, exc.__traceback__)
            gate.release()
            if is_busy_error(exc):
                raise _busy(exc) from exc
            raise
        return entered

    async def __aexit__(
        self,
        type_: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            await super().__aexit__(type_, value, traceback)
        except OperationalError as exc:
            if is_busy_error(exc):
                raise _busy(exc) from exc
            raise
        finally:
            self.session.write_gate.release()
        if value is not None and is_busy_error(value):
            raise _busy(value) from value


def _busy(exc: BaseException) -> StoreBusyError:
    return StoreBusyError(
        "SQLite write refused: another process held the database's write lock past the busy "
        "timeout; nothing was written"
    )


class GatedSession(AsyncSession):
    """An :class:`AsyncSession` whose explicit transactions queue on a :class:`WriteGate`."""

    def __init__(self, *args: Any, write_gate: WriteGate, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.write_gate = write_gate

    def begin(self) -> AsyncSessionTransaction:
        return _WriteTransaction(self)


class _Update:
    __slots__ = ("future", "statement")

    def __init__(self, statement: Any, future: asyncio.Future[bool]) -> None:
        self.statement = statement
        self.future = future


class UpdateBatcher:
    """Group commit of row updates on SQLite: updates queued meanwhile share one transaction.

    While one batch waits for the write gate or runs, later updates queue; the next batch
    takes them all (up to :data:`MAX_BATCH`) in one ``BEGIN IMMEDIATE … COMMIT``, each as its
    own ``UPDATE … RETURNING id``, in arrival order. Each caller still learns its own outcome:
    found, not found, or the error. A batch that fails is re-run one update per transaction,
    so one bad statement cannot fail the others; an update whose caller was cancelled before
    its batch started is not written.
    """

    #: Most updates one transaction carries.
    MAX_BATCH = 64

    def __init__(self, sessions: Any) -> None:
        self._sessions = sessions
        self._queue: list[_Update] = []
        self._drainer: asyncio.Task[None] | None = None
        #: Transactions run and updates carried (for measurement and tests).
        self.transactions = 0
        self.updates = 0

    async def update(self, statement: Any) -> bool:
        """Run ``statement`` (an ``UPDATE … RETURNING``); True when it matched a row."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queue.append(_Update(statement, future))
        if self._drainer is None:
            self._drainer = asyncio.create_task(self._drain(), name="store-update-batcher")
        return await future

    async def wait_idle(self) -> None:
        """Return once every update queued so far has been run (for an orderly close)."""
        while self._drainer is not None:
            await asyncio.wait({self._drainer})

    async def _drain(self) -> None:
        batch: list[_Update] = []
        try:
            while self._queue:
                batch = [u for u in self._queue[: self.MAX_BATCH] if not u.future.done()]
                del self._queue[: self.MAX_BATCH]
                if not batch:
                    continue
                try:
                    await self._run(batch)
                except StoreBusyError as exc:
                    # The gate or the database refused: every update of the batch would too.
                    _fail(batch, exc)
                except Exception as exc:
                    if len(batch) == 1:
                        _fail(batch, exc)
                        continue
                    for one in batch:
                        try:
                            await self._run([one])
                        except Exception as one_exc:
                            _fail([one], one_exc)
        except BaseException:
            # Cancelled (loop shutdown): nobody may wait for ever on an update not done.
            for u in batch + self._queue:
                if not u.future.done():
                    u.future.cancel()
            self._queue.clear()
            raise
        finally:
            self._drainer = None

    async def _run(self, batch: list[_Update]) -> None:
        found: list[bool] = []
        async with self._sessions() as session, session.begin():
            for u in batch:
                result = await session.execute(u.statement)
                found.append(result.first() is not None)
        self.transactions += 1
        self.updates += len(batch)
        for u, hit in zip(batch, found, strict=True):
            if not u.future.done():
                u.future.set_result(hit)


def _fail(batch: list[_Update], exc: BaseException) -> None:
    for u in batch:
        if not u.future.done():
            u.future.set_exception(exc)
