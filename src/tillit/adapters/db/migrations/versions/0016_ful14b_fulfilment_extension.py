"""fulfilment extension: when the buyer extended the auto-confirm period (once, +3 days)

Revision ID: 0016_ful14b
Revises: 0015_ful14b
Create Date: 2026-12-03 15:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016_ful14b"
down_revision = "0015_ful14b"  # chained by the integrator at merge
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("fulfilments") as batch:
        batch.add_column(sa.Column("extended_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("fulfilments") as batch:
        batch.drop_column("extended_at")
