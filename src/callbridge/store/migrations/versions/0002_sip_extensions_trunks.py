"""SIP extensions (softphones registering with callbridge) and trunks.

Written by hand and kept portable (no backend-specific SQL); constraint names follow the
naming convention in ``callbridge.store.tables``.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts(name: str, *, nullable: bool) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "extensions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("password", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        _ts("tm_create", nullable=False),
        _ts("tm_update", nullable=False),
        _ts("tm_delete", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_extensions"),
        sa.UniqueConstraint("username", name="uq_extensions_username"),
        sa.UniqueConstraint(
            "workspace_id", "tm_create", name="uq_extensions_workspace_id_tm_create"
        ),
    )
    op.create_table(
        "trunks",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("host", sa.Text(), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("transport", sa.String(8), nullable=False),
        sa.Column("username", sa.Text(), nullable=False),
        sa.Column("password", sa.Text(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        _ts("tm_create", nullable=False),
        _ts("tm_update", nullable=False),
        _ts("tm_delete", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_trunks"),
        sa.UniqueConstraint("name", name="uq_trunks_name"),
        sa.UniqueConstraint("workspace_id", "tm_create", name="uq_trunks_workspace_id_tm_create"),
    )


def downgrade() -> None:
    op.drop_table("trunks")
    op.drop_table("extensions")
