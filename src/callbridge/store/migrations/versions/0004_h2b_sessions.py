"""Stream H2B sessions for accounting (callbridge.h2b).

Written by hand and kept portable (no backend-specific SQL); constraint names follow the
naming convention in ``callbridge.store.tables``.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "h2b_sessions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("channel_id", sa.String(96), nullable=False),
        sa.Column("custom_id", sa.String(128), nullable=False),
        sa.Column("session_id", sa.String(128), nullable=False),
        sa.Column("audio_codec", sa.String(8), nullable=False),
        sa.Column("recognitions", sa.Integer(), nullable=False),
        sa.Column("recognized_ms", sa.Integer(), nullable=False),
        sa.Column("tm_open", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tm_close", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_h2b_sessions"),
    )
    op.create_index(
        "ix_h2b_sessions_workspace_id_tm_open", "h2b_sessions", ["workspace_id", "tm_open"]
    )


def downgrade() -> None:
    op.drop_index("ix_h2b_sessions_workspace_id_tm_open", table_name="h2b_sessions")
    op.drop_table("h2b_sessions")
