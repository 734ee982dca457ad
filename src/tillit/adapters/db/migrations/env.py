"""Alembic environment, driven programmatically by tillit.adapters.db.migrate (no alembic.ini)."""

from __future__ import annotations

from alembic import context

from tillit.adapters.db.schema import metadata

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - always called through tillit.adapters.db.migrate
    raise RuntimeError("run migrations with `tillit migrate`")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
