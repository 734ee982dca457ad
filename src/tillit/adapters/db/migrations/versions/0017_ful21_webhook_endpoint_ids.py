"""merchant webhooks: a public id per endpoint (the back office addresses it by id) and an enabled flag

Revision ID: 0017_ful21
Revises: 0016_ful14b
Create Date: 2026-12-04 19:15:00
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from alembic import op

revision = "0017_ful21"
down_revision = "0016_ful14b"  # chained by the integrator at merge
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("merchant_webhooks") as batch:
        batch.add_column(sa.Column("id", sa.String(32), nullable=True))
        batch.add_column(sa.Column("enabled", sa.Integer(), nullable=False, server_default="1"))
    conn = op.get_bind()
    table = sa.table("merchant_webhooks", sa.column("merchant_id"), sa.column("id"))
    for (merchant_id,) in list(conn.execute(sa.select(table.c.merchant_id))):
        conn.execute(sa.update(table).where(table.c.merchant_id == merchant_id).values(id=uuid.uuid4().hex))
    with op.batch_alter_table("merchant_webhooks") as batch:
        batch.alter_column("id", existing_type=sa.String(32), nullable=False)
        batch.create_unique_constraint(op.f("uq_merchant_webhooks_id"), ["id"])
        batch.create_check_constraint(op.f("ck_merchant_webhooks_enabled"), "enabled IN (0, 1)")


def downgrade() -> None:
    with op.batch_alter_table("merchant_webhooks") as batch:
        batch.drop_constraint(op.f("ck_merchant_webhooks_enabled"), type_="check")
        batch.drop_constraint(op.f("uq_merchant_webhooks_id"), type_="unique")
        batch.drop_column("enabled")
        batch.drop_column("id")
