"""Initial schema: workspaces, access keys, calls, activeflows.

Written by hand and kept portable (no backend-specific SQL). Timestamps are
``DateTime(timezone=True)`` — ``timestamptz`` on PostgreSQL, fixed-width text on SQLite; the
application type ``UTCDateTime`` normalises both to aware UTC. Constraint names follow the
naming convention in ``callbridge.store.tables``.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts(name: str, *, nullable: bool) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "workspaces",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        _ts("tm_create", nullable=False),
        _ts("tm_update", nullable=False),
        _ts("tm_delete", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_workspaces"),
    )
    op.create_table(
        "access_keys",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("token_prefix", sa.String(16), nullable=False),
        _ts("tm_expire", nullable=True),
        _ts("tm_create", nullable=False),
        _ts("tm_update", nullable=False),
        _ts("tm_delete", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_access_keys"),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspaces.id"], name="fk_access_keys_workspace_id_workspaces"
        ),
        sa.UniqueConstraint("token_hash", name="uq_access_keys_token_hash"),
        sa.UniqueConstraint(
            "workspace_id", "tm_create", name="uq_access_keys_workspace_id_tm_create"
        ),
    )
    op.create_table(
        "calls",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("direction", sa.String(16), nullable=False),
        sa.Column("source", sa.JSON(), nullable=False),
        sa.Column("destination", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("hangup_reason", sa.String(16), nullable=False),
        sa.Column("hangup_by", sa.String(16), nullable=False),
        sa.Column("flow_id", sa.Uuid(), nullable=True),
        sa.Column("activeflow_id", sa.Uuid(), nullable=True),
        sa.Column("action", sa.JSON(), nullable=False),
        sa.Column("variables", sa.JSON(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        _ts("tm_create", nullable=False),
        _ts("tm_update", nullable=False),
        _ts("tm_ringing", nullable=True),
        _ts("tm_progressing", nullable=True),
        _ts("tm_hangup", nullable=True),
        _ts("tm_delete", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_calls"),
        sa.UniqueConstraint("workspace_id", "tm_create", name="uq_calls_workspace_id_tm_create"),
    )
    op.create_table(
        "activeflows",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("reference_type", sa.String(32), nullable=False),
        sa.Column("reference_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("flow_id", sa.Uuid(), nullable=True),
        sa.Column("actions", sa.JSON(), nullable=False),
        sa.Column("current_action", sa.JSON(), nullable=True),
        sa.Column("forward_action_id", sa.Uuid(), nullable=True),
        sa.Column("executed_actions", sa.JSON(), nullable=False),
        _ts("tm_create", nullable=False),
        _ts("tm_update", nullable=False),
        _ts("tm_delete", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_activeflows"),
        sa.UniqueConstraint(
            "workspace_id", "tm_create", name="uq_activeflows_workspace_id_tm_create"
        ),
    )
    op.create_index("ix_activeflows_reference", "activeflows", ["reference_type", "reference_id"])


def downgrade() -> None:
    op.drop_index("ix_activeflows_reference", table_name="activeflows")
    op.drop_table("activeflows")
    op.drop_table("calls")
    op.drop_table("access_keys")
    op.drop_table("workspaces")
