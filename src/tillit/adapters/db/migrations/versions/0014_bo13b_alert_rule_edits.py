"""alert rules are edited, not only switched: the language of their notices, and an audit of every change

``alert_rules.locale`` is the language (zh-CN or en) a rule's mails and webhook texts are written in.
``alert_rule_changes`` keeps one row per changed field: who, when, the old and the new value.
``till_sync_reports`` keeps what each till last said of its journal on sync: the entries still queued.

Revision ID: 0014_bo13b
Revises: 0013
Create Date: 2026-12-03 15:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014_bo13b"
down_revision = "0013"  # re-chained by the integrator at merge
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("alert_rules") as batch:
        batch.add_column(sa.Column("locale", sa.String(length=8), server_default="zh-CN", nullable=False))
        batch.create_check_constraint(op.f("ck_alert_rules_locale"), "locale IN ('zh-CN','en')")
    op.create_table(
        "alert_rule_changes",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("merchant_id", sa.String(length=32), nullable=False),
        sa.Column("rule_id", sa.String(length=32), nullable=False),
        sa.Column("field", sa.String(length=32), nullable=False),
        sa.Column("old_value", sa.String(length=200), nullable=True),
        sa.Column("new_value", sa.String(length=200), nullable=True),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["merchant_id", "rule_id"],
            ["alert_rules.merchant_id", "alert_rules.id"],
            name="fk_alert_rule_changes_rule",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_rule_changes")),
    )
    op.create_index(
        "ix_alert_rule_changes_rule", "alert_rule_changes", ["merchant_id", "rule_id", "id"], unique=False
    )
    op.create_table(
        "till_sync_reports",
        sa.Column("merchant_id", sa.String(length=32), nullable=False),
        sa.Column("terminal_id", sa.String(length=32), nullable=False),
        sa.Column("queued", sa.Integer(), nullable=False),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("queued >= 0", name=op.f("ck_till_sync_reports_queued_nonneg")),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchants.id"], name=op.f("fk_till_sync_reports_merchant_id_merchants")
        ),
        sa.ForeignKeyConstraint(
            ["terminal_id"], ["terminals.id"], name=op.f("fk_till_sync_reports_terminal_id_terminals")
        ),
        sa.PrimaryKeyConstraint("merchant_id", "terminal_id", name=op.f("pk_till_sync_reports")),
    )


def downgrade() -> None:
    op.drop_table("till_sync_reports")
    op.drop_index("ix_alert_rule_changes_rule", table_name="alert_rule_changes")
    op.drop_table("alert_rule_changes")
    with op.batch_alter_table("alert_rules") as batch:
        batch.drop_constraint(op.f("ck_alert_rules_locale"), type_="check")
        batch.drop_column("locale")
