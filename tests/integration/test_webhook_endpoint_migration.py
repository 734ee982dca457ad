"""Migration 0017_ful21 on both databases: an endpoint set before it gets a public id and stays enabled;
the downgrade drops both columns and keeps the endpoint."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from tests.support import pg
from tillit.adapters.db import migrate
from tillit.adapters.db.engine import Database, make_engine

BEFORE = "0016_ful14b"


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        db = Database(make_engine(f"sqlite:///{tmp_path / 'm.sqlite'}"))
        yield db
        db.dispose()
        return
    url = pg.create_database("tillit_mig21")
    db = Database(make_engine(url))
    yield db
    db.dispose()
    pg.drop_database(url)


def test_existing_endpoints_get_an_id_and_stay_enabled(empty_db: Database) -> None:
    migrate.upgrade(empty_db, BEFORE)
    now = datetime(2026, 12, 4, tzinfo=UTC)
    merchants = [uuid.uuid4().hex for _ in range(2)]
    with empty_db.engine.begin() as conn:
        for m in merchants:
            conn.execute(
                text(
                    "INSERT INTO merchants (id, name, currency, status, created_at)"
                    " VALUES (:m, :m, 'CNY', 'active', :t)"
                ),
                {"m": m, "t": now},
            )
            conn.execute(
                text(
                    "INSERT INTO merchant_webhooks (merchant_id, url, secret_sealed, created_at, updated_at)"
                    " VALUES (:m, 'https://x.example/hook', 'v1:sealed', :t, :t)"
                ),
                {"m": m, "t": now},
            )
    migrate.upgrade(empty_db)
    with empty_db.engine.connect() as conn:
        rows = list(conn.execute(text("SELECT merchant_id, id, enabled, url FROM merchant_webhooks")))
    assert {r.merchant_id for r in rows} == set(merchants)
    assert all(len(r.id) == 32 and r.enabled == 1 and r.url == "https://x.example/hook" for r in rows)
    assert len({r.id for r in rows}) == 2
    migrate.downgrade(empty_db, BEFORE)
    columns = {c["name"] for c in inspect(empty_db.engine).get_columns("merchant_webhooks")}
    assert "id" not in columns and "enabled" not in columns
    with empty_db.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM merchant_webhooks")).scalar_one() == 2
