"""Shared fixtures: a Container per backend (SQLite file, PostgreSQL database), an app and a client."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.support import pg
from tests.support.world import Tenant, make_admin_key, make_tenant
from tillit.adapters.db import migrate
from tillit.api.app import create_app
from tillit.bootstrap import Container, build
from tillit.config import Settings

BACKENDS = ["sqlite", "postgresql"]
_counter = itertools.count()


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    url = pg.create_database()
    yield url
    pg.drop_database(url)


@pytest.fixture(scope="session")
def sqlite_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sqlite-home")


def _container(backend: str, request: pytest.FixtureRequest, sqlite_home: Path) -> Container:
    if backend == "postgresql":
        url = request.getfixturevalue("pg_url")
        settings = Settings(home=sqlite_home, database_url=url)
    else:
        settings = Settings(home=sqlite_home, database_url=f"sqlite:///{sqlite_home / 'tillit.sqlite'}")
    c = build(settings)
    migrate.upgrade(c.db)
    return c


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "postgresql":
        request.node.add_marker(pytest.mark.pg)
    return str(request.param)


@pytest.fixture
def container(backend: str, request: pytest.FixtureRequest, sqlite_home: Path) -> Iterator[Container]:
    """A migrated database shared by the run for this backend; tests isolate by making new merchants."""
    c = _container(backend, request, sqlite_home)
    yield c
    c.db.dispose()


@pytest.fixture
def client(container: Container) -> Iterator[TestClient]:
    with TestClient(create_app(container), raise_server_exceptions=False) as tc:
        yield tc


@pytest.fixture
def tenant(container: Container) -> Tenant:
    return make_tenant(container, f"Shop {next(_counter)}")


@pytest.fixture
def other_tenant(container: Container) -> Tenant:
    return make_tenant(container, f"Rival {next(_counter)}")


@pytest.fixture
def admin_key(container: Container) -> str:
    return make_admin_key(container)
