"""Alembic environment of the callbridge store.

Normally run in-process by :meth:`callbridge.store.Store.open`, which hands over an open
synchronous connection (from ``AsyncConnection.run_sync``) in
``config.attributes["connection"]``; no ``alembic.ini`` and no logging configuration are
involved. Offline mode (``alembic upgrade --sql``) renders the SQL for the URL in
``sqlalchemy.url`` instead.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from callbridge.store.tables import metadata

config = context.config


def run_offline() -> None:
    """Emit the migration SQL as text (no database connection)."""
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online(connection: Connection) -> None:
    """Apply the migrations on the connection the caller opened."""
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things in place; batch mode recreates tables instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    conn = config.attributes.get("connection")
    if conn is None:
        raise RuntimeError(
            "callbridge migrations run through Store.open(url, migrate=True); "
            "no connection was provided to the Alembic environment"
        )
    run_online(conn)
