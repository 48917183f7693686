"""SIP trunk registration options (callbridge.telephony.trunk_registration).

``register``: keep a binding at the trunk (REGISTER with the trunk's credentials);
``register_expires``: the expiry asked for in each REGISTER. Existing trunks do not register.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Server defaults fill the rows that exist; plain ADD COLUMN works on SQLite and PostgreSQL.
    op.add_column(
        "trunks",
        sa.Column("register", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.add_column(
        "trunks",
        sa.Column("register_expires", sa.Integer(), nullable=False, server_default="3600"),
    )


def downgrade() -> None:
    with op.batch_alter_table("trunks") as batch:
        batch.drop_column("register_expires")
        batch.drop_column("register")
