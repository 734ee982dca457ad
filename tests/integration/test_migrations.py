"""Migrations: upgrade from empty, downgrade to nothing and upgrade again, on both databases; the
head revision matches the schema module exactly."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from tests.support import pg
from tillit.adapters.db import migrate
from tillit.adapters.db.engine import Database, make_engine
from tillit.adapters.db.schema import metadata


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        db = Database(make_engine(f"sqlite:///{tmp_path / 'm.sqlite'}"))
        yield db
        db.dispose()
        return
    url = pg.create_database("tillit_mig")
    db = Database(make_engine(url))
    yield db
    db.dispose()
    pg.drop_database(url)


def tables(db: Database) -> set[str]:
    return set(inspect(db.engine).get_table_names()) - {"alembic_version"}


def test_upgrade_downgrade_upgrade(empty_db: Database) -> None:
    assert tables(empty_db) == set()
    migrate.upgrade(empty_db)
    assert migrate.current_revision(empty_db) == migrate.head_revision()
    assert tables(empty_db) == set(metadata.tables)
    migrate.downgrade(empty_db, "base")
    assert tables(empty_db) == set()
    assert migrate.current_revision(empty_db) is None
    migrate.upgrade(empty_db)
    assert tables(empty_db) == set(metadata.tables)


def test_head_matches_schema_module(empty_db: Database) -> None:
    migrate.upgrade(empty_db)
    with empty_db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    assert diff == []


def test_partial_unique_index_exists(empty_db: Database) -> None:
    migrate.upgrade(empty_db)
    indexes = {ix["name"]: ix for ix in inspect(empty_db.engine).get_indexes("payments")}
    assert indexes["uq_payments_one_in_flight"]["unique"]
