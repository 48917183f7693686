"""Repositories: the only code that turns domain objects into rows and back.

Conventions shared by every repository (platform API spec §1):

* Each method runs in its own short session/transaction; nothing is cached.
* Lists are newest first by ``tm_create`` and hold rows created strictly before the
  ``before`` cursor. ``tm_create`` is unique per workspace and table: an insert whose
  ``tm_create`` is taken is moved 1 µs later until it is free, so a cursor never skips a row.
  Inserts therefore return the stored object, whose ``tm_create`` may differ from the input.
* ``get(workspace_id, id)`` answers ``None`` for another workspace's row, exactly as for a
  missing one (tenant isolation); it does return soft-deleted rows (``tm_delete`` set) so the
  API can decide how to present them. Lists exclude soft-deleted rows.
* Datetimes are timezone-aware UTC in and out; a naive datetime is rejected.
"""

from __future__ import annotations

import builtins
import dataclasses
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from sqlalchemy import Row, Table, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from callbridge.auth.model import AccessKey, Workspace
from callbridge.auth.service import generate_access_key, hash_token, token_prefix
from callbridge.calls.model import Address, Call, CallStatus, Direction, HangupBy, HangupReason
from callbridge.flows.model import Action, Activeflow, ActiveflowStatus
from callbridge.store import tables
from callbridge.store.errors import DuplicateError, NotFoundError, StoreError
from callbridge.store.sqlite import UpdateBatcher

Sessions = async_sessionmaker[AsyncSession]

ONE_MICROSECOND = timedelta(microseconds=1)
#: Width of the window of taken ``tm_create`` values fetched per query while looking for a
#: free one; bursts of identical stamps are resolved in one round trip per 1000 rows.
_BUMP_WINDOW = timedelta(microseconds=1000)
#: Inserts retried after losing a race on ``(workspace_id, tm_create)`` to a concurrent writer.
_MAX_INSERT_ATTEMPTS = 50
#: Largest page any list returns, whatever the caller asks.
MAX_PAGE_SIZE = 1000


def utc_now() -> datetime:
    """Current wall-clock time, aware UTC."""
    return datetime.now(UTC)


def _require_aware(value: datetime | None, what: str) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be a timezone-aware datetime")
    return value.astimezone(UTC)


def _check_page_size(page_size: int) -> int:
    if page_size < 1:
        raise ValueError("page_size must be at least 1")
    return min(page_size, MAX_PAGE_SIZE)


async def _first_free_tm_create(
    session: AsyncSession, table: Table, workspace_id: uuid.UUID, wanted: datetime
) -> datetime:
    """The earliest ``tm_create >= wanted`` not yet used in ``workspace_id`` in ``table``."""
    candidate = wanted
    while True:
        window_end = candidate + _BUMP_WINDOW
        result = await session.execute(
            select(table.c.tm_create)
            .where(
                table.c.workspace_id == workspace_id,
                table.c.tm_create >= candidate,
                table.c.tm_create < window_end,
            )
            .order_by(table.c.tm_create)
        )
        for taken in result.scalars():
            if taken == candidate:
                candidate += ONE_MICROSECOND
            elif taken > candidate:
                return candidate
        if candidate < window_end:
            return candidate
        # The whole window was taken; continue with the next one.


async def _insert_unique_tm_create(
    sessions: Sessions,
    table: Table,
    row: dict[str, Any],
    identity: Sequence[str] = ("id",),
) -> datetime:
    """Insert ``row``, moving its ``tm_create`` (and ``tm_update`` if earlier) to a free slot.

    ``identity`` names columns whose clash is a real duplicate (raised as
    :class:`DuplicateError`) rather than a lost race on ``tm_create`` (retried).
    Returns the stored ``tm_create``.
    """
    wanted = _require_aware(row["tm_create"], "tm_create")
    assert wanted is not None
    # First try the wanted stamp as it is: taken only in a burst of identical stamps, so one
    # statement per insert in the usual case; a clash sends the next attempts through the
    # look-up of the first free stamp.
    probe = False
    for _ in range(_MAX_INSERT_ATTEMPTS):
        try:
            async with sessions() as session, session.begin():
                stored = wanted
                if probe:
                    stored = await _first_free_tm_create(
                        session, table, row["workspace_id"], wanted
                    )
                values = dict(row, tm_create=stored)
                if values["tm_update"] < stored:
                    values["tm_update"] = stored
                await session.execute(insert(table).values(values))
            return stored
        except IntegrityError as exc:
            clash = await _identity_clash(sessions, table, row, identity)
            if clash is not None:
                raise DuplicateError(f"{table.name}: a row with this {clash} exists") from exc
            # The stamp was taken, or another writer committed the same tm_create between
            # our look-up and insert.
            probe = True
    raise StoreError(f"{table.name}: no free tm_create found after {_MAX_INSERT_ATTEMPTS} attempts")


async def _identity_clash(
    sessions: Sessions, table: Table, row: Mapping[str, Any], identity: Sequence[str]
) -> str | None:
    async with sessions() as session:
        for column in identity:
            found = await session.execute(
                select(func.count()).select_from(table).where(table.c[column] == row[column])
            )
            if found.scalar_one():
                return column
    return None


# --------------------------------------------------------------------------------------------
# Workspaces


def _workspace_from_row(row: Row[Any]) -> Workspace:
    m = row._mapping
    return Workspace(id=m["id"], name=m["name"], tm_create=m["tm_create"])


class WorkspaceRepository:
    """Workspaces (tenants). Soft-deleted workspaces are invisible to every method."""

    def __init__(self, sessions: Sessions, *, now: Callable[[], datetime] = utc_now) -> None:
        self._sessions = sessions
        self._now = now

    async def create(self, name: str) -> Workspace:
        """Create a workspace named ``name`` and return it."""
        now = self._now()
        workspace = Workspace(id=uuid.uuid4(), name=name, tm_create=now)
        async with self._sessions() as session, session.begin():
            await session.execute(
                insert(tables.workspaces).values(
                    id=workspace.id, name=name, tm_create=now, tm_update=now, tm_delete=None
                )
            )
        return workspace

    async def get(self, workspace_id: uuid.UUID) -> Workspace | None:
        """The workspace, or ``None`` when unknown or deleted."""
        t = tables.workspaces
        async with self._sessions() as session:
            result = await session.execute(
                select(t).where(t.c.id == workspace_id, t.c.tm_delete.is_(None))
            )
            row = result.first()
        return _workspace_from_row(row) if row is not None else None

    async def first(self) -> Workspace | None:
        """The oldest live workspace (the one bootstrap created), or ``None``."""
        t = tables.workspaces
        async with self._sessions() as session:
            result = await session.execute(
                select(t).where(t.c.tm_delete.is_(None)).order_by(t.c.tm_create, t.c.id).limit(1)
            )
            row = result.first()
        return _workspace_from_row(row) if row is not None else None

    async def count(self) -> int:
        """Number of live workspaces."""
        t = tables.workspaces
        async with self._sessions() as session:
            result = await session.execute(
                select(func.count()).select_from(t).where(t.c.tm_delete.is_(None))
            )
            return int(result.scalar_one())


# --------------------------------------------------------------------------------------------
# Access keys


def _access_key_from_row(row: Row[Any]) -> AccessKey:
    m = row._mapping
    # token_hash is deliberately not carried over: the domain object never holds it.
    return AccessKey(
        id=m["id"],
        workspace_id=m["workspace_id"],
        name=m["name"],
        detail=m["detail"],
        token_prefix=m["token_prefix"],
        tm_expire=m["tm_expire"],
        tm_create=m["tm_create"],
        tm_update=m["tm_update"],
        tm_delete=m["tm_delete"],
    )


_ACCESS_KEY_COLUMNS = [c for c in tables.access_keys.c if c.name != "token_hash"]


class AccessKeyRepository:
    """Access keys, stored as SHA-256 hashes; the plaintext leaves only through :meth:`create`."""

    def __init__(self, sessions: Sessions, *, now: Callable[[], datetime] = utc_now) -> None:
        self._sessions = sessions
        self._now = now

    async def create(
        self,
        workspace_id: uuid.UUID,
        *,
        name: str = "",
        detail: str = "",
        token: str | None = None,
        expire_seconds: int | None = None,
    ) -> tuple[AccessKey, str]:
        """Create a key in ``workspace_id``; return it and its plaintext token (shown once).

        ``token`` imports a known token (bootstrap presets); by default a fresh random one is
        generated. ``expire_seconds`` (> 0) sets ``tm_expire`` that far from now; ``None``
        means the key never expires. A token that already exists (even deleted) raises
        :class:`DuplicateError`; an unknown workspace raises :class:`StoreError`.
        """
        if expire_seconds is not None and expire_seconds <= 0:
            raise ValueError("expire_seconds must be positive (or None for no expiry)")
        plaintext = token if token is not None else generate_access_key()
        if not plaintext:
            raise ValueError("an access key token cannot be empty")
        now = self._now()
        tm_expire = now + timedelta(seconds=expire_seconds) if expire_seconds else None
        row: dict[str, Any] = {
            "id": uuid.uuid4(),
            "workspace_id": workspace_id,
            "name": name,
            "detail": detail,
            "token_hash": hash_token(plaintext),
            "token_prefix": token_prefix(plaintext),
            "tm_expire": tm_expire,
            "tm_create": now,
            "tm_update": now,
            "tm_delete": None,
        }
        async with self._sessions() as session:
            known = await session.execute(
                select(func.count())
                .select_from(tables.workspaces)
                .where(tables.workspaces.c.id == workspace_id)
            )
            if not known.scalar_one():
                raise StoreError(f"access key for unknown workspace {workspace_id}")
        stored = await _insert_unique_tm_create(
            self._sessions, tables.access_keys, row, identity=("id", "token_hash")
        )
        key = AccessKey(
            id=row["id"],
            workspace_id=workspace_id,
            name=name,
            detail=detail,
            token_prefix=row["token_prefix"],
            tm_expire=tm_expire,
            tm_create=stored,
            tm_update=max(now, stored),
        )
        return key, plaintext

    async def find_by_token(
        self, token: str, *, include_inactive: bool = False
    ) -> AccessKey | None:
        """The key whose token is ``token``; ``None`` if unknown, expired or deleted.

        A key of a deleted workspace is not found either. The look-up is by the token's
        SHA-256 through a unique index, so the plaintext is never compared or stored.
        ``include_inactive=True`` also returns expired/deleted keys (to tell "known" from
        "unknown" — bootstrap uses it).
        """
        k, w = tables.access_keys, tables.workspaces
        stmt = select(*_ACCESS_KEY_COLUMNS).where(k.c.token_hash == hash_token(token))
        if not include_inactive:
            stmt = (
                stmt.join(w, w.c.id == k.c.workspace_id)
                .where(k.c.tm_delete.is_(None), w.c.tm_delete.is_(None))
                .where((k.c.tm_expire.is_(None)) | (k.c.tm_expire > self._now()))
            )
        async with self._sessions() as session:
            row = (await session.execute(stmt)).first()
        return _access_key_from_row(row) if row is not None else None

    async def list(
        self,
        workspace_id: uuid.UUID,
        *,
        page_size: int = 100,
        before: datetime | None = None,
    ) -> builtins.list[AccessKey]:
        """Live (not deleted) keys of the workspace, newest first, created before ``before``."""
        k = tables.access_keys
        stmt = select(*_ACCESS_KEY_COLUMNS).where(
            k.c.workspace_id == workspace_id, k.c.tm_delete.is_(None)
        )
        cursor = _require_aware(before, "before")
        if cursor is not None:
            stmt = stmt.where(k.c.tm_create < cursor)
        stmt = stmt.order_by(k.c.tm_create.desc()).limit(_check_page_size(page_size))
        async with self._sessions() as session:
            rows = (await session.execute(stmt)).all()
        return [_access_key_from_row(r) for r in rows]

    async def get(self, workspace_id: uuid.UUID, key_id: uuid.UUID) -> AccessKey | None:
        """The key (also when deleted), or ``None`` if unknown or in another workspace."""
        k = tables.access_keys
        async with self._sessions() as session:
            row = (
                await session.execute(
                    select(*_ACCESS_KEY_COLUMNS).where(
                        k.c.id == key_id, k.c.workspace_id == workspace_id
                    )
                )
            ).first()
        return _access_key_from_row(row) if row is not None else None

    async def update(
        self,
        workspace_id: uuid.UUID,
        key_id: uuid.UUID,
        *,
        name: str | None = None,
        detail: str | None = None,
    ) -> AccessKey | None:
        """Change the name and/or detail of a live key; ``None`` if not found or deleted."""
        k = tables.access_keys
        values: dict[str, Any] = {"tm_update": self._now()}
        if name is not None:
            values["name"] = name
        if detail is not None:
            values["detail"] = detail
        async with self._sessions() as session, session.begin():
            result = await session.execute(
                update(k)
                .where(
                    k.c.id == key_id,
                    k.c.workspace_id == workspace_id,
                    k.c.tm_delete.is_(None),
                )
                .values(values)
                .returning(*_ACCESS_KEY_COLUMNS)
            )
            row = result.first()
        return _access_key_from_row(row) if row is not None else None

    async def delete(self, workspace_id: uuid.UUID, key_id: uuid.UUID) -> AccessKey | None:
        """Soft-delete the key and return it; a deleted key is returned unchanged.

        ``None`` when the key is unknown or belongs to another workspace. A deleted key no
        longer authenticates.
        """
        k = tables.access_keys
        now = self._now()
        async with self._sessions() as session, session.begin():
            await session.execute(
                update(k)
                .where(
                    k.c.id == key_id,
                    k.c.workspace_id == workspace_id,
                    k.c.tm_delete.is_(None),
                )
                .values(tm_delete=now, tm_update=now)
            )
        return await self.get(workspace_id, key_id)


# --------------------------------------------------------------------------------------------
# Calls


def _call_values(call: Call) -> dict[str, Any]:
    """Every mutable column of a call (everything but id, workspace_id and tm_create)."""
    return {
        "direction": Direction(call.direction).value,
        "source": call.source.to_dict(),
        "destination": call.destination.to_dict(),
        "status": CallStatus(call.status).value,
        "hangup_reason": HangupReason(call.hangup_reason).value,
        "hangup_by": HangupBy(call.hangup_by).value,
        "flow_id": call.flow_id,
        "activeflow_id": call.activeflow_id,
        "action": call.action,
        "variables": call.variables,
        "metadata": call.metadata,
        "tm_update": _require_aware(call.tm_update, "tm_update"),
        "tm_ringing": _require_aware(call.tm_ringing, "tm_ringing"),
        "tm_progressing": _require_aware(call.tm_progressing, "tm_progressing"),
        "tm_hangup": _require_aware(call.tm_hangup, "tm_hangup"),
        "tm_delete": _require_aware(call.tm_delete, "tm_delete"),
    }


def _call_from_row(row: Row[Any]) -> Call:
    m = row._mapping
    return Call(
        id=m["id"],
        workspace_id=m["workspace_id"],
        direction=Direction(m["direction"]),
        source=Address.from_dict(m["source"]),
        destination=Address.from_dict(m["destination"]),
        status=CallStatus(m["status"]),
        tm_create=m["tm_create"],
        tm_update=m["tm_update"],
        hangup_reason=HangupReason(m["hangup_reason"]),
        hangup_by=HangupBy(m["hangup_by"]),
        flow_id=m["flow_id"],
        activeflow_id=m["activeflow_id"],
        action=dict(m["action"] or {}),
        variables={str(k): str(v) for k, v in (m["variables"] or {}).items()},
        metadata=dict(m["metadata"] or {}),
        tm_ringing=m["tm_ringing"],
        tm_progressing=m["tm_progressing"],
        tm_hangup=m["tm_hangup"],
        tm_delete=m["tm_delete"],
    )


class _Scoped(Protocol):
    """What a workspace-scoped domain object has in common."""

    id: uuid.UUID
    workspace_id: uuid.UUID
    tm_create: datetime
    tm_update: datetime


T = TypeVar("T", bound=_Scoped)


class ScopedRepository(Generic[T]):
    """Rows that belong to one workspace, listed newest first (calls, activeflows, …).

    A subclass names its table and ``_noun`` and converts with :meth:`_values` (every mutable
    column) and :meth:`_from_row`. ``get`` answers ``None`` for another workspace's row.
    """

    _table: ClassVar[Table]
    _noun: ClassVar[str]

    def __init__(self, sessions: Sessions, *, batcher: UpdateBatcher | None = None) -> None:
        self._sessions = sessions
        self._batcher = batcher

    def _values(self, item: T) -> dict[str, Any]:
        raise NotImplementedError

    def _from_row(self, row: Row[Any]) -> T:
        raise NotImplementedError

    async def insert(self, item: T) -> T:
        """Store a new row and return the stored copy.

        The copy's ``tm_create`` is moved later by 1 µs steps while another row of the
        workspace has it (and ``tm_update`` is raised to it if it was earlier); the argument
        is not modified. An existing id raises :class:`DuplicateError`.
        """
        row = self._values(item)
        row.update(id=item.id, workspace_id=item.workspace_id, tm_create=item.tm_create)
        stored = await _insert_unique_tm_create(self._sessions, self._table, row)
        return dataclasses.replace(  # type: ignore[type-var]
            item, tm_create=stored, tm_update=max(row["tm_update"], stored)
        )

    async def update(self, item: T) -> None:
        """Persist every mutable field (all but id, workspace_id, tm_create).

        :class:`NotFoundError` when no such row exists in ``item.workspace_id``. On SQLite,
        updates that queue meanwhile share one transaction (group commit, decision 025).
        """
        t = self._table
        statement = (
            update(t)
            .where(t.c.id == item.id, t.c.workspace_id == item.workspace_id)
            .values(self._values(item))
            .returning(t.c.id)
        )
        if self._batcher is not None:
            found = await self._batcher.update(statement)
        else:
            async with self._sessions() as session, session.begin():
                found = (await session.execute(statement)).first() is not None
        if not found:
            raise NotFoundError(f"{self._noun} {item.id} not found in its workspace")

    async def get(self, workspace_id: uuid.UUID, item_id: uuid.UUID) -> T | None:
        """The row (also when soft-deleted); ``None`` if unknown or in another workspace."""
        t = self._table
        stmt = select(t).where(t.c.id == item_id, t.c.workspace_id == workspace_id)
        async with self._sessions() as session:
            row = (await session.execute(stmt)).first()
        return self._from_row(row) if row is not None else None

    async def get_any(self, item_id: uuid.UUID) -> T | None:
        """The row whatever its workspace — internal use only (SIP, flow runner)."""
        t = self._table
        async with self._sessions() as session:
            row = (await session.execute(select(t).where(t.c.id == item_id))).first()
        return self._from_row(row) if row is not None else None

    async def list(
        self,
        workspace_id: uuid.UUID,
        *,
        page_size: int = 100,
        before: datetime | None = None,
    ) -> builtins.list[T]:
        """Non-deleted rows of the workspace, newest first, created strictly before ``before``.

        The next page's cursor is the last item's ``tm_create``.
        """
        t = self._table
        stmt = select(t).where(t.c.workspace_id == workspace_id, t.c.tm_delete.is_(None))
        cursor = _require_aware(before, "before")
        if cursor is not None:
            stmt = stmt.where(t.c.tm_create < cursor)
        stmt = stmt.order_by(t.c.tm_create.desc()).limit(_check_page_size(page_size))
        async with self._sessions() as session:
            rows = (await session.execute(stmt)).all()
        return [self._from_row(r) for r in rows]


class CallRepository(ScopedRepository[Call]):
    """Calls (platform API spec §6.2)."""

    _table = tables.calls
    _noun = "call"

    def _values(self, item: Call) -> dict[str, Any]:
        return _call_values(item)

    def _from_row(self, row: Row[Any]) -> Call:
        return _call_from_row(row)


# --------------------------------------------------------------------------------------------
# Activeflows


def _activeflow_values(flow: Activeflow) -> dict[str, Any]:
    """Every mutable column of an activeflow (all but id, workspace_id and tm_create)."""
    return {
        "reference_type": flow.reference_type,
        "reference_id": flow.reference_id,
        "status": ActiveflowStatus(flow.status).value,
        "flow_id": flow.flow_id,
        "actions": [a.to_dict() for a in flow.actions],
        "current_action": flow.current_action.to_dict() if flow.current_action else None,
        "forward_action_id": flow.forward_action_id,
        "executed_actions": list(flow.executed_actions),
        "tm_update": _require_aware(flow.tm_update, "tm_update"),
        "tm_delete": _require_aware(flow.tm_delete, "tm_delete"),
    }


def _activeflow_from_row(row: Row[Any]) -> Activeflow:
    m = row._mapping
    current = m["current_action"]
    return Activeflow(
        id=m["id"],
        workspace_id=m["workspace_id"],
        reference_type=m["reference_type"],
        reference_id=m["reference_id"],
        actions=[Action.from_dict(a) for a in m["actions"] or []],
        tm_create=m["tm_create"],
        tm_update=m["tm_update"],
        status=ActiveflowStatus(m["status"]),
        flow_id=m["flow_id"],
        current_action=Action.from_dict(current) if current else None,
        forward_action_id=m["forward_action_id"],
        executed_actions=list(m["executed_actions"] or []),
        tm_delete=m["tm_delete"],
    )


class ActiveflowRepository(ScopedRepository[Activeflow]):
    """Activeflows (platform API spec §7); same conventions as :class:`CallRepository`."""

    _table = tables.activeflows
    _noun = "activeflow"

    def _values(self, item: Activeflow) -> dict[str, Any]:
        return _activeflow_values(item)

    def _from_row(self, row: Row[Any]) -> Activeflow:
        return _activeflow_from_row(row)
