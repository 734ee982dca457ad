"""till station: product tiles (category, colour, image, favourite, sort), store till settings, manager PINs

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 10:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _fk(table: str, column: str, referred: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint([column], [f"{referred}.id"], name=op.f(f"fk_{table}_{column}_{referred}"))


def upgrade() -> None:
    op.create_table(
        "product_tiles",
        sa.Column("merchant_id", sa.String(length=32), nullable=False),
        sa.Column("product_id", sa.String(length=32), nullable=False),
        sa.Column("category", sa.String(length=60), nullable=True),
        sa.Column("tile_colour", sa.String(length=7), nullable=True),
        sa.Column("favourite", sa.Integer(), server_default="0", nullable=False),
        sa.Column("sort_order", sa.Integer(), server_default="0", nullable=False),
        sa.Column("image_type", sa.String(length=16), nullable=True),
        sa.Column("image_data", sa.LargeBinary(), nullable=True),
        sa.Column("image_sha256", sa.String(length=64), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("favourite IN (0, 1)", name=op.f("ck_product_tiles_favourite")),
        sa.CheckConstraint(
            "sort_order BETWEEN -1000000 AND 1000000", name=op.f("ck_product_tiles_sort_order")
        ),
        sa.CheckConstraint(
            "tile_colour IS NULL OR length(tile_colour) = 7", name=op.f("ck_product_tiles_tile_colour")
        ),
        sa.CheckConstraint(
            "(image_data IS NULL AND image_type IS NULL AND image_sha256 IS NULL)"
            " OR (image_data IS NOT NULL AND image_type IS NOT NULL AND image_sha256 IS NOT NULL)",
            name=op.f("ck_product_tiles_image"),
        ),
        _fk("product_tiles", "merchant_id", "merchants"),
        _fk("product_tiles", "product_id", "products"),
        sa.PrimaryKeyConstraint("merchant_id", "product_id", name="pk_product_tiles"),
    )
    op.create_index("ix_product_tiles_product", "product_tiles", ["product_id"], unique=False)
    op.create_table(
        "store_till_settings",
        sa.Column("merchant_id", sa.String(length=32), nullable=False),
        sa.Column("store_id", sa.String(length=32), nullable=False),
        sa.Column("discount_limit_pct", sa.Integer(), nullable=False),
        sa.Column("rounding", sa.String(length=8), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "discount_limit_pct BETWEEN 0 AND 100", name=op.f("ck_store_till_settings_discount_limit_pct")
        ),
        sa.CheckConstraint(
            "rounding IN ('none', 'jiao', 'yuan')", name=op.f("ck_store_till_settings_rounding")
        ),
        _fk("store_till_settings", "merchant_id", "merchants"),
        _fk("store_till_settings", "store_id", "stores"),
        sa.PrimaryKeyConstraint("merchant_id", "store_id", name="pk_store_till_settings"),
    )
    op.create_table(
        "store_manager_pins",
        sa.Column("merchant_id", sa.String(length=32), nullable=False),
        sa.Column("store_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=60), nullable=False),
        sa.Column("pin_hash", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        _fk("store_manager_pins", "merchant_id", "merchants"),
        _fk("store_manager_pins", "store_id", "stores"),
        sa.PrimaryKeyConstraint("merchant_id", "store_id", "name", name="pk_store_manager_pins"),
    )


def downgrade() -> None:
    op.drop_table("store_manager_pins")
    op.drop_table("store_till_settings")
    op.drop_index("ix_product_tiles_product", table_name="product_tiles")
    op.drop_table("product_tiles")
