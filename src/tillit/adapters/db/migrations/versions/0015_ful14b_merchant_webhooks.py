"""merchant webhooks: each merchant's own endpoint URL and its signing secret (sealed at rest)

Revision ID: 0015_ful14b
Revises: 0014_ful14b
Create Date: 2026-12-03 15:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015_ful14b"
down_revision = "0014_ful14b"  # chained by the integrator at merge
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "merchant_webhooks",
        sa.Column("merchant_id", sa.String(32), sa.ForeignKey("merchants.id"), primary_key=True),
        sa.Column("url", sa.String(320), nullable=False),
        sa.Column("secret_sealed", sa.String(600), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("merchant_webhooks")
