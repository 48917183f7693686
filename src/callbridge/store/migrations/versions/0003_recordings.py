"""Call recordings (callbridge.recordings).

Written by hand and kept portable (no backend-specific SQL); constraint names follow the
naming convention in ``callbridge.store.tables``.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts(name: str, *, nullable: bool) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "recordings",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("reference_type", sa.String(32), nullable=False),
        sa.Column("reference_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("format", sa.String(8), nullable=False),
        sa.Column("filename", sa.Text(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("end_reason", sa.String(16), nullable=False),
        sa.Column("activeflow_id", sa.Uuid(), nullable=True),
        sa.Column("on_end_flow_id", sa.Uuid(), nullable=True),
        _ts("tm_start", nullable=True),
        _ts("tm_end", nullable=True),
        _ts("tm_create", nullable=False),
        _ts("tm_update", nullable=False),
        _ts("tm_delete", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_recordings"),
        sa.UniqueConstraint(
            "workspace_id", "tm_create", name="uq_recordings_workspace_id_tm_create"
        ),
    )
    op.create_index("ix_recordings_reference", "recordings", ["reference_type", "reference_id"])


def downgrade() -> None:
    op.drop_index("ix_recordings_reference", table_name="recordings")
    op.drop_table("recordings")
