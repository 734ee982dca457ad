"""PostgreSQL test databases: each one created for this run and dropped afterwards."""

from __future__ import annotations

import os
import uuid

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tillit.adapters.db.engine import normalise_url


def pg_admin_url() -> str | None:
    return os.environ.get("TILLIT_TEST_PG_URL")


def require_or_skip(reason: str) -> None:
    if os.environ.get("TILLIT_REQUIRE_PG") == "1":
        pytest.fail(f"PostgreSQL tests are required (TILLIT_REQUIRE_PG=1) but {reason}")
    pytest.skip(f"PostgreSQL tests skipped: {reason}")


def create_database(prefix: str = "tillit_t") -> str:
    """Create a uniquely named database next to TILLIT_TEST_PG_URL's and return its URL."""
    admin = pg_admin_url()
    if not admin:
        require_or_skip("TILLIT_TEST_PG_URL is not set")
    assert admin is not None
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    engine = create_engine(normalise_url(admin), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        require_or_skip(f"cannot create a database at {make_url(admin).host}: {exc}")
    finally:
        engine.dispose()
    return make_url(normalise_url(admin)).set(database=name).render_as_string(hide_password=False)


def drop_database(url: str) -> None:
    admin = pg_admin_url()
    assert admin is not None
    name = make_url(url).database
    engine = create_engine(normalise_url(admin), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()
