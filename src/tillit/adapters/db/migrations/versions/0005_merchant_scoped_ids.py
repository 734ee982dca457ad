"""merchant-scoped ids: orders, payments, refunds and shifts keyed by (merchant_id, id)

Client-chosen ids were globally unique, so posting another merchant's id answered 409 id_conflict and
told the caller that id exists elsewhere. Now the key is (merchant_id, id) and every reference to these
rows includes merchant_id (order_lines gains the column), so no row can point across merchants.

On SQLite every step recreates a table (batch mode) while foreign keys stay enforced, so the order
matters: references are dropped leaf first (a table is never dropped while rows point at it), keys
changed, then the composite references added root first. Downgrading fails if two merchants now
share an id, which is the point of the change.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 07:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# (table, column, referred table): each single-column reference that becomes (merchant_id, column).
REFS = [
    ("jobs", "payment_id", "payments"),
    ("jobs", "refund_id", "refunds"),
    ("ledger_postings", "order_id", "orders"),
    ("ledger_postings", "payment_id", "payments"),
    ("ledger_postings", "refund_id", "refunds"),
    ("events", "order_id", "orders"),
    ("order_lines", "order_id", "orders"),
    ("refunds", "order_id", "orders"),
    ("refunds", "payment_id", "payments"),
    ("payments", "order_id", "orders"),
]
LEAF_FIRST = ["jobs", "ledger_postings", "events", "order_lines", "refunds", "payments", "orders", "shifts"]
OLD_PK = {
    "order_lines": ["order_id", "line_no"],
    "refunds": ["id"],
    "payments": ["id"],
    "orders": ["id"],
    "shifts": ["id"],
}
NEW_PK = {
    "order_lines": ["merchant_id", "order_id", "line_no"],
    "refunds": ["merchant_id", "id"],
    "payments": ["merchant_id", "id"],
    "orders": ["merchant_id", "id"],
    "shifts": ["merchant_id", "id"],
}
IN_FLIGHT = sa.text("status IN ('pending','unknown','reversing')")
ONE_PENDING = sa.text("state = 'pending' AND payment_id IS NOT NULL AND refund_id IS NULL")


def _old_fk(table: str, column: str, referred: str) -> str:
    return f"fk_{table}_{column}_{referred}"


def _new_fk(table: str, referred: str) -> str:
    return f"fk_{table}_{referred.rstrip('s')}"


def _indexes(scoped: bool) -> None:
    lead = ["merchant_id"] if scoped else []
    op.create_index(
        "uq_payments_one_in_flight",
        "payments",
        [*lead, "order_id"],
        unique=True,
        sqlite_where=IN_FLIGHT,
        postgresql_where=IN_FLIGHT,
    )
    op.create_index(
        "uq_jobs_one_pending_per_payment",
        "jobs",
        ["kind", *lead, "payment_id"],
        unique=True,
        sqlite_where=ONE_PENDING,
        postgresql_where=ONE_PENDING,
    )


def _drop_indexes() -> None:
    op.drop_index("uq_payments_one_in_flight", table_name="payments", sqlite_where=IN_FLIGHT)
    op.drop_index("uq_jobs_one_pending_per_payment", table_name="jobs", sqlite_where=ONE_PENDING)


def _rekey(
    drop: dict[tuple[str, str, str], str], pks: dict[str, list[str]], extra: dict[str, str] | None = None
) -> None:
    """Leaf first: drop the named references of each table and give it the key in ``pks``."""
    for table in LEAF_FIRST:
        names = [name for (t, _c, _r), name in drop.items() if t == table]
        if not names and table not in pks:
            continue
        with op.batch_alter_table(table, recreate="auto") as batch:
            for name in names:
                batch.drop_constraint(name, type_="foreignkey")
            if table in pks:
                batch.drop_constraint(f"pk_{table}", type_="primary")
                batch.create_primary_key(f"pk_{table}", pks[table])
            if extra and table in extra:
                batch.alter_column(extra[table], existing_type=sa.String(32), nullable=False)


def upgrade() -> None:
    _drop_indexes()
    op.add_column("order_lines", sa.Column("merchant_id", sa.String(length=32), nullable=True))
    op.execute(
        "UPDATE order_lines SET merchant_id = "
        "(SELECT orders.merchant_id FROM orders WHERE orders.id = order_lines.order_id)"
    )
    _rekey({ref: _old_fk(*ref) for ref in REFS}, NEW_PK, {"order_lines": "merchant_id"})
    for table in reversed(LEAF_FIRST):
        refs = [(c, r) for t, c, r in REFS if t == table]
        if not refs:
            continue
        with op.batch_alter_table(table, recreate="auto") as batch:
            for column, referred in refs:
                batch.create_foreign_key(
                    _new_fk(table, referred), referred, ["merchant_id", column], ["merchant_id", "id"]
                )
    _indexes(scoped=True)


def downgrade() -> None:
    _drop_indexes()
    _rekey({ref: _new_fk(ref[0], ref[2]) for ref in REFS}, OLD_PK)
    for table in reversed(LEAF_FIRST):
        refs = [(c, r) for t, c, r in REFS if t == table]
        if not refs:
            continue
        with op.batch_alter_table(table, recreate="auto") as batch:
            for column, referred in refs:
                batch.create_foreign_key(_old_fk(table, column, referred), referred, [column], ["id"])
    with op.batch_alter_table("order_lines", recreate="auto") as batch:
        batch.drop_column("merchant_id")
    _indexes(scoped=False)
