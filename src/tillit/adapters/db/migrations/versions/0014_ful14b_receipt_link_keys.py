"""receipt link keys: the key id each terminal signs the QR link on its paper receipts with

The till prints a link it can compute offline (domain/links.py ``till_receipt_path``); the server
derives the terminal's key from the key id and its own key, so no secret is stored. One active key per
terminal (partial unique index); revoking sets ``revoked_at``.

Revision ID: 0014_ful14b
Revises: 0013
Create Date: 2026-12-03 15:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014_ful14b"
down_revision = "0014_bo13b"  # re-chained at merge: after bo13b
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "receipt_link_keys",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("merchant_id", sa.String(32), sa.ForeignKey("merchants.id"), nullable=False),
        sa.Column("terminal_id", sa.String(32), sa.ForeignKey("terminals.id"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
    )
    op.create_index(
        "ux_receipt_link_keys_active",
        "receipt_link_keys",
        ["terminal_id"],
        unique=True,
        sqlite_where=sa.text("revoked_at IS NULL"),
        postgresql_where=sa.text("revoked_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ux_receipt_link_keys_active", table_name="receipt_link_keys")
    op.drop_table("receipt_link_keys")
