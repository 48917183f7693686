"""Table definitions of the store (SQLAlchemy Core), portable between SQLite and PostgreSQL.

Rules that keep both backends identical:

* ids are :class:`sqlalchemy.Uuid` (native ``uuid`` on PostgreSQL, ``CHAR(32)`` on SQLite);
* structured fields are :class:`sqlalchemy.JSON` (``json`` on PostgreSQL, text on SQLite);
* every timestamp is a :class:`UTCDateTime`: timezone-aware UTC in Python, microsecond
  precision in the database, compared and ordered correctly on both backends;
* column names are the domain field names (:class:`callbridge.calls.model.Call`,
  :class:`callbridge.flows.model.Activeflow`), so the mapping code stays obvious.

The schema itself is created by the Alembic migrations in ``migrations/versions``; this module
is the Python view of it and the reference the migrations are checked against in the tests.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    Uuid,
    false,
)

#: Deterministic constraint names, so migrations can refer to them on every backend.
NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(column_0_N_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime with microseconds, identical on SQLite and PostgreSQL.

    Binding a naive datetime is a programming error and raises :class:`ValueError` (a naive
    value is ambiguous; the domain model promises aware UTC everywhere). Aware values in any
    zone are converted to UTC. PostgreSQL stores ``timestamptz``; SQLite stores SQLAlchemy's
    fixed-width ``YYYY-MM-DD HH:MM:SS.ffffff`` text, whose lexical order is the chronological
    order, so ``ORDER BY`` and range comparisons behave the same on both. Reads always return
    aware UTC datetimes.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("naive datetime given to the store; use timezone-aware UTC")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            # SQLite has no zone storage; the text form is UTC by convention of this type.
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):  # pragma: no cover - drivers return datetimes
            raise TypeError(f"database returned {type(value).__name__} for a timestamp")
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def scoped_table(name: str, *items: Any) -> Table:
    """A workspace-scoped table: ``id``, ``workspace_id``, ``items``, then ``tm_create`` /
    ``tm_update`` / ``tm_delete`` and the ``(workspace_id, tm_create)`` uniqueness that list
    cursors rely on (see ``repos.py``). Every resource the API lists follows this shape.
    """
    return Table(
        name,
        metadata,
        Column("id", Uuid(), primary_key=True),
        Column("workspace_id", Uuid(), nullable=False),
        *items,
        Column("tm_create", UTCDateTime(), nullable=False),
        Column("tm_update", UTCDateTime(), nullable=False),
        Column("tm_delete", UTCDateTime(), nullable=True),
        UniqueConstraint("workspace_id", "tm_create"),
    )


workspaces = Table(
    "workspaces",
    metadata,
    Column("id", Uuid(), primary_key=True),
    Column("name", Text(), nullable=False),
    Column("tm_create", UTCDateTime(), nullable=False),
    Column("tm_update", UTCDateTime(), nullable=False),
    Column("tm_delete", UTCDateTime(), nullable=True),
)

access_keys = Table(
    "access_keys",
    metadata,
    Column("id", Uuid(), primary_key=True),
    Column("workspace_id", Uuid(), ForeignKey("workspaces.id"), nullable=False),
    Column("name", Text(), nullable=False),
    Column("detail", Text(), nullable=False),
    # SHA-256 hex of the token; the plaintext is never stored.
    Column("token_hash", String(64), nullable=False),
    Column("token_prefix", String(16), nullable=False),
    Column("tm_expire", UTCDateTime(), nullable=True),
    Column("tm_create", UTCDateTime(), nullable=False),
    Column("tm_update", UTCDateTime(), nullable=False),
    Column("tm_delete", UTCDateTime(), nullable=True),
    UniqueConstraint("token_hash"),
    # Unique per workspace so list cursors (tm_create) never skip a key.
    UniqueConstraint("workspace_id", "tm_create"),
)

calls = scoped_table(
    "calls",
    Column("direction", String(16), nullable=False),
    Column("source", JSON(), nullable=False),
    Column("destination", JSON(), nullable=False),
    Column("status", String(16), nullable=False),
    Column("hangup_reason", String(16), nullable=False),
    Column("hangup_by", String(16), nullable=False),
    Column("flow_id", Uuid(), nullable=True),
    Column("activeflow_id", Uuid(), nullable=True),
    Column("action", JSON(), nullable=False),
    Column("variables", JSON(), nullable=False),
    Column("metadata", JSON(), nullable=False),
    Column("tm_ringing", UTCDateTime(), nullable=True),
    Column("tm_progressing", UTCDateTime(), nullable=True),
    Column("tm_hangup", UTCDateTime(), nullable=True),
    # The unique constraint doubles as the (workspace_id, tm_create) index used by lists.
)

activeflows = scoped_table(
    "activeflows",
    Column("reference_type", String(32), nullable=False),
    Column("reference_id", Uuid(), nullable=False),
    Column("status", String(16), nullable=False),
    Column("flow_id", Uuid(), nullable=True),
    Column("actions", JSON(), nullable=False),
    # none_as_null: "no current action" is SQL NULL, not the JSON literal null.
    Column("current_action", JSON(none_as_null=True), nullable=True),
    Column("forward_action_id", Uuid(), nullable=True),
    Column("executed_actions", JSON(), nullable=False),
    Index("ix_activeflows_reference", "reference_type", "reference_id"),
)

# -- telephony (migration 0002): SIP extensions and trunks -------------------------------------

extensions = scoped_table(
    "extensions",
    # The SIP user name; callbridge serves one SIP domain, so it is unique across workspaces.
    Column("username", String(64), nullable=False),
    # Digest needs the password (or a realm-bound hash); kept like a PBX's "secret".
    Column("password", Text(), nullable=False),
    Column("name", Text(), nullable=False),
    Column("detail", Text(), nullable=False),
    UniqueConstraint("username"),
)

trunks = scoped_table(
    "trunks",
    Column("name", String(64), nullable=False),
    Column("host", Text(), nullable=False),
    Column("port", Integer(), nullable=False),
    Column("transport", String(8), nullable=False),
    Column("username", Text(), nullable=False),
    Column("password", Text(), nullable=False),
    Column("detail", Text(), nullable=False),
    # Migration 0005: keep a registration at the trunk, and the expiry asked for.
    Column("register", Boolean(), nullable=False, server_default=false()),
    Column("register_expires", Integer(), nullable=False, server_default="3600"),
    UniqueConstraint("name"),
)

# -- recordings (migration 0003): call recordings (callbridge.recordings) ----------------------

recordings = scoped_table(
    "recordings",
    Column("reference_type", String(32), nullable=False),
    Column("reference_id", Uuid(), nullable=False),
    Column("status", String(16), nullable=False),
    Column("format", String(8), nullable=False),
    # Path of the file relative to the data directory: recordings/<workspace_id>/<id>.wav
    Column("filename", Text(), nullable=False),
    Column("tags", JSON(), nullable=False),
    Column("duration_ms", Integer(), nullable=False),
    Column("end_reason", String(16), nullable=False),
    Column("activeflow_id", Uuid(), nullable=True),
    Column("on_end_flow_id", Uuid(), nullable=True),
    Column("tm_start", UTCDateTime(), nullable=True),
    Column("tm_end", UTCDateTime(), nullable=True),
    Index("ix_recordings_reference", "reference_type", "reference_id"),
)

# -- h2b (migration 0004): Stream H2B sessions for accounting (callbridge.h2b) -----------------

h2b_sessions = Table(
    "h2b_sessions",
    metadata,
    Column("id", Uuid(), primary_key=True),
    Column("workspace_id", Uuid(), nullable=False),
    Column("channel_id", String(96), nullable=False),
    Column("custom_id", String(128), nullable=False),
    Column("session_id", String(128), nullable=False),
    Column("audio_codec", String(8), nullable=False),
    Column("recognitions", Integer(), nullable=False),
    Column("recognized_ms", Integer(), nullable=False),
    Column("tm_open", UTCDateTime(), nullable=False),
    Column("tm_close", UTCDateTime(), nullable=False),
    Index("ix_h2b_sessions_workspace_id_tm_open", "workspace_id", "tm_open"),
)
# -- end h2b -----------------------------------------------------------------------------------
