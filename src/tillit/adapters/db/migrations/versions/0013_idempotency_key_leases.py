"""idempotency key leases: who holds an in-flight key and until when

A multi-phase request (a provider call) holds its key as ``in_flight``. Before, a key whose process died
stayed held for a fixed 90 s, and a till resending with the same key was answered 409 all that time.
Now the holder (the process's boot id) renews a short lease while the request runs; once the lease has
passed, the key is taken over at once (answered from the resource's state, never re-sent).

Revision ID: 0013
Revises: 0005
Create Date: 2026-12-03 10:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"  # chained by the lead at merge (issues 12, 13, 14, 16, 17)
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("idempotency_keys") as batch:
        batch.add_column(sa.Column("holder", sa.String(64), nullable=True))
        batch.add_column(sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("idempotency_keys") as batch:
        batch.drop_column("lease_until")
        batch.drop_column("holder")
