"""payments.card_kind: the card kind the provider's paid answer named (debit / credit / balance)

Revision ID: 0017_settle21
Revises: 0016_ful14b
Create Date: 2026-12-04 19:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017_settle21"
down_revision = "0017_ful21"  # after the webhook endpoint ids (merged 2026-12-04)
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("payments") as batch:
        batch.add_column(sa.Column("card_kind", sa.String(length=8), nullable=True))
        batch.create_check_constraint(
            op.f("ck_payments_card_kind"), "card_kind IS NULL OR card_kind IN ('balance','debit','credit')"
        )


def downgrade() -> None:
    with op.batch_alter_table("payments") as batch:
        batch.drop_constraint(op.f("ck_payments_card_kind"), type_="check")
        batch.drop_column("card_kind")
