"""backoffice sessions: the back-office pages' sign-in sessions (token hash, key, CSRF token, expiry), and
the (merchant_id, created_at) indexes on payments and refunds that the Today page reads a day through

Revision ID: 0009
Revises: 0005
Create Date: 2026-12-03 10:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "backoffice_sessions",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("merchant_id", sa.String(length=32), nullable=True),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "expires_at > created_at", name=op.f("ck_backoffice_sessions_expiry_after_creation")
        ),
        sa.ForeignKeyConstraint(
            ["key_id"], ["api_keys.id"], name=op.f("fk_backoffice_sessions_key_id_api_keys")
        ),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchants.id"], name=op.f("fk_backoffice_sessions_merchant_id_merchants")
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_backoffice_sessions")),
    )
    op.create_index("ix_backoffice_sessions_expires", "backoffice_sessions", ["expires_at"], unique=False)
    # The Today page reads one day of a merchant's payments and refunds.
    op.create_index("ix_payments_merchant_created", "payments", ["merchant_id", "created_at"], unique=False)
    op.create_index("ix_refunds_merchant_created", "refunds", ["merchant_id", "created_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_refunds_merchant_created", table_name="refunds")
    op.drop_index("ix_payments_merchant_created", table_name="payments")
    op.drop_index("ix_backoffice_sessions_expires", table_name="backoffice_sessions")
    op.drop_table("backoffice_sessions")
