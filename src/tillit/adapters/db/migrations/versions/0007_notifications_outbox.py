"""notifications: the outbox, recipients' consent, a customer's contact on an order

Revision ID: 0007
Revises: 0005
Create Date: 2026-12-03 10:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"  # chained by the lead at merge (issues 12, 13, 14, 16, 17)
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outbox_messages",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("merchant_id", sa.String(length=32), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.String(length=8), nullable=False),
        sa.Column("recipient", sa.String(length=320), nullable=False),
        sa.Column("template", sa.String(length=48), nullable=False),
        sa.Column("locale", sa.String(length=8), nullable=False),
        sa.Column("params", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("leased_by", sa.String(length=64), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("channel IN ('email','sms','webhook')", name=op.f("ck_outbox_messages_channel")),
        sa.CheckConstraint("locale IN ('zh-CN','en')", name=op.f("ck_outbox_messages_locale")),
        sa.CheckConstraint(
            "status IN ('pending','sent','dead','suppressed')", name=op.f("ck_outbox_messages_status")
        ),
        sa.CheckConstraint("attempts >= 0", name=op.f("ck_outbox_messages_attempts_nonneg")),
        sa.CheckConstraint(
            "status <> 'sent' OR sent_at IS NOT NULL", name=op.f("ck_outbox_messages_sent_has_time")
        ),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchants.id"], name=op.f("fk_outbox_messages_merchant_id_merchants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox_messages")),
        sa.UniqueConstraint("merchant_id", "event_id", "channel", name="uq_outbox_messages_dedup"),
    )
    op.create_index("ix_outbox_messages_due", "outbox_messages", ["status", "next_attempt_at"], unique=False)
    op.create_table(
        "outbox_consents",
        sa.Column("merchant_id", sa.String(length=32), nullable=False),
        sa.Column("channel", sa.String(length=8), nullable=False),
        sa.Column("recipient", sa.String(length=320), nullable=False),
        sa.Column("opted_in", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("channel IN ('email','sms','webhook')", name=op.f("ck_outbox_consents_channel")),
        sa.CheckConstraint("opted_in IN (0, 1)", name=op.f("ck_outbox_consents_opted_in")),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchants.id"], name=op.f("fk_outbox_consents_merchant_id_merchants")
        ),
        sa.PrimaryKeyConstraint("merchant_id", "channel", "recipient", name="pk_outbox_consents"),
    )
    op.create_table(
        "order_contacts",
        sa.Column("merchant_id", sa.String(length=32), nullable=False),
        sa.Column("order_id", sa.String(length=32), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=True),
        sa.Column("phone", sa.String(length=20), nullable=True),
        sa.Column("locale", sa.String(length=8), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "email IS NOT NULL OR phone IS NOT NULL", name=op.f("ck_order_contacts_has_address")
        ),
        sa.CheckConstraint("locale IN ('zh-CN','en')", name=op.f("ck_order_contacts_locale")),
        sa.ForeignKeyConstraint(
            ["merchant_id", "order_id"], ["orders.merchant_id", "orders.id"], name="fk_order_contacts_order"
        ),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchants.id"], name=op.f("fk_order_contacts_merchant_id_merchants")
        ),
        sa.PrimaryKeyConstraint("merchant_id", "order_id", name="pk_order_contacts"),
    )


def downgrade() -> None:
    op.drop_table("order_contacts")
    op.drop_table("outbox_consents")
    op.drop_index("ix_outbox_messages_due", table_name="outbox_messages")
    op.drop_table("outbox_messages")
