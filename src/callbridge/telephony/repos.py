"""Repositories of extensions and trunks (workspace-scoped, migration 0002)."""

from __future__ import annotations

import builtins
import dataclasses
from typing import Any

from sqlalchemy import Row, delete, select

from callbridge.store import tables
from callbridge.store.repos import ScopedRepository, _insert_unique_tm_create, _require_aware
from callbridge.telephony.model import Extension, Trunk


class ExtensionRepository(ScopedRepository[Extension]):
    """Extensions; ``username`` is unique across workspaces (one SIP domain)."""

    _table = tables.extensions
    _noun = "extension"

    def _values(self, item: Extension) -> dict[str, Any]:
        return {
            "username": item.username,
            "password": item.password,
            "name": item.name,
            "detail": item.detail,
            "tm_update": _require_aware(item.tm_update, "tm_update"),
            "tm_delete": _require_aware(item.tm_delete, "tm_delete"),
        }

    def _from_row(self, row: Row[Any]) -> Extension:
        m = row._mapping
        return Extension(
            id=m["id"],
            workspace_id=m["workspace_id"],
            username=m["username"],
            password=m["password"],
            name=m["name"],
            detail=m["detail"],
            tm_create=m["tm_create"],
            tm_update=m["tm_update"],
            tm_delete=m["tm_delete"],
        )

    async def insert(self, item: Extension) -> Extension:
        """Store a new extension; an existing user name raises ``DuplicateError``."""
        row = self._values(item)
        row.update(id=item.id, workspace_id=item.workspace_id, tm_create=item.tm_create)
        stored = await _insert_unique_tm_create(
            self._sessions, self._table, row, identity=("id", "username")
        )
        return dataclasses.replace(item, tm_create=stored, tm_update=max(item.tm_update, stored))

    async def find(self, username: str) -> Extension | None:
        t = self._table
        stmt = select(t).where(t.c.username == username, t.c.tm_delete.is_(None))
        async with self._sessions() as session:
            row = (await session.execute(stmt)).first()
        return self._from_row(row) if row is not None else None

    async def all_active(self) -> builtins.list[Extension]:
        """Every extension of every workspace (the SIP service's directory)."""
        t = self._table
        async with self._sessions() as session:
            rows = (await session.execute(select(t).where(t.c.tm_delete.is_(None)))).all()
        return [self._from_row(r) for r in rows]

    async def remove(self, username: str) -> bool:
        t = self._table
        async with self._sessions() as session, session.begin():
            result = await session.execute(
                delete(t).where(t.c.username == username).returning(t.c.id)
            )
            return result.first() is not None


class TrunkRepository(ScopedRepository[Trunk]):
    """Trunks; ``name`` is unique across workspaces."""

    _table = tables.trunks
    _noun = "trunk"

    def _values(self, item: Trunk) -> dict[str, Any]:
        return {
            "name": item.name,
            "host": item.host,
            "port": item.port,
            "transport": item.transport,
            "username": item.username,
            "password": item.password,
            "detail": item.detail,
            "register": item.register,
            "register_expires": item.register_expires,
            "tm_update": _require_aware(item.tm_update, "tm_update"),
            "tm_delete": _require_aware(item.tm_delete, "tm_delete"),
        }

    def _from_row(self, row: Row[Any]) -> Trunk:
        m = row._mapping
        return Trunk(
            id=m["id"],
            workspace_id=m["workspace_id"],
            name=m["name"],
            host=m["host"],
            port=m["port"],
            transport=m["transport"],
            username=m["username"],
            password=m["password"],
            detail=m["detail"],
            tm_create=m["tm_create"],
            tm_update=m["tm_update"],
            tm_delete=m["tm_delete"],
            register=bool(m["register"]),
            register_expires=m["register_expires"],
        )

    async def insert(self, item: Trunk) -> Trunk:
        row = self._values(item)
        row.update(id=item.id, workspace_id=item.workspace_id, tm_create=item.tm_create)
        stored = await _insert_unique_tm_create(
            self._sessions, self._table, row, identity=("id", "name")
        )
        return dataclasses.replace(item, tm_create=stored, tm_update=max(item.tm_update, stored))

    async def all_active(self) -> builtins.list[Trunk]:
        t = self._table
        async with self._sessions() as session:
            rows = (await session.execute(select(t).where(t.c.tm_delete.is_(None)))).all()
        return [self._from_row(r) for r in rows]

    async def find(self, name: str) -> Trunk | None:
        t = self._table
        stmt = select(t).where(t.c.name == name, t.c.tm_delete.is_(None))
        async with self._sessions() as session:
            row = (await session.execute(stmt)).first()
        return self._from_row(row) if row is not None else None

    async def remove(self, name: str) -> bool:
        t = self._table
        async with self._sessions() as session, session.begin():
            result = await session.execute(delete(t).where(t.c.name == name).returning(t.c.id))
            return result.first() is not None


__all__ = ["ExtensionRepository", "TrunkRepository"]
