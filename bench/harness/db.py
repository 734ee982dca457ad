"""A fresh database per benchmark: a temp TILLIT_HOME (SQLite) or its own PostgreSQL database, both
removed after."""

from __future__ import annotations

import contextlib
import re
import secrets
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from bench.harness.proc import base_env, now_utc
from bench.harness.report import console

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


@dataclass
class Target:
    """One database to benchmark: how to reach it and what to clean up."""

    kind: str  # sqlite | postgres
    workdir: Path
    env: dict[str, str]
    pg_admin_url: str | None = None
    databases: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return "SQLite" if self.kind == "sqlite" else "PostgreSQL"

    def new_pg_database(self, suffix: str = "") -> str:
        """Create one more PostgreSQL database, dropped with this target; its URL."""
        assert self.pg_admin_url is not None
        name = f"tillit_bench_{secrets.token_hex(4)}{suffix}"
        pg_create(self.pg_admin_url, name)
        self.databases.append(name)
        return pg_url_for(self.pg_admin_url, name)


def pg_url_for(admin_url: str, dbname: str) -> str:
    parts = urlsplit(admin_url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + dbname, parts.query, parts.fragment))


def pg_create(admin_url: str, name: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def pg_drop(admin_url: str, name: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@contextlib.contextmanager
def target(kind: str, sync: str, pg_admin_url: str) -> Iterator[Target]:
    """A temp directory (TILLIT_HOME under it) and, for postgres, a fresh database; all removed after."""
    workdir = Path(tempfile.mkdtemp(prefix=f"tillit-bench-{kind}-"))
    t = Target(kind=kind, workdir=workdir, env=base_env(workdir / "var", sync))
    try:
        if kind == "postgres":
            t.pg_admin_url = pg_admin_url
            t.env["TILLIT_DATABASE_URL"] = t.new_pg_database()
        yield t
    finally:
        for name in t.databases:
            try:
                pg_drop(pg_admin_url, name)
            except Exception as exc:
                console.print(f"[red]could not drop database {name}: {exc}[/red]")
        shutil.rmtree(workdir, ignore_errors=True)


# --------------------------------------------------------------------------------------------------
# Plain SQL at the server's durability (for database ceilings)


def pg_sql(statement: str) -> str:
    """A ``:name`` statement in psycopg's ``%(name)s`` style."""
    return re.sub(r":(\w+)", r"%(\1)s", statement)


def sqlite_now() -> str:
    # How SQLAlchemy stores DateTime in SQLite.
    return now_utc().strftime("%Y-%m-%d %H:%M:%S.%f")


def sqlite_connect(path: str, sync: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=15.0, isolation_level=None, check_same_thread=False)
    # The server's pragmas (adapters/db/engine.py).
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={sync}")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=15000")
    return conn


class PlainSql:
    """One connection without SQLAlchemy, ``:name`` parameters on both databases, explicit transactions
    begun as the server begins them (SQLite: BEGIN IMMEDIATE, so writers queue up front)."""

    def __init__(self, kind: str, dsn: str, sync: str, pg_synchronous_commit: str = "on") -> None:
        """``sync``: SQLite's ``synchronous`` pragma; ``pg_synchronous_commit``: PostgreSQL's setting for
        this session (``off`` is PostgreSQL's analogue of SQLite's NORMAL: a commit does not wait for the
        WAL flush, and a crash may lose the last few, never corrupt)."""
        self.kind = kind
        if kind == "sqlite":
            self.conn: Any = sqlite_connect(dsn, sync)
            self.now: Callable[[], Any] = sqlite_now
            self._begin = "BEGIN IMMEDIATE"
            self._sql: Callable[[str], str] = lambda s: s
            self._error: type[Exception] = sqlite3.Error
        else:
            import psycopg

            self.conn = psycopg.connect(dsn, autocommit=True, connect_timeout=10)
            if pg_synchronous_commit not in ("on", "off", "local", "remote_write", "remote_apply"):
                raise ValueError(f"synchronous_commit {pg_synchronous_commit!r}")
            self.conn.execute(f"SET synchronous_commit = {pg_synchronous_commit}")
            self.now = now_utc
            self._begin = "BEGIN"
            self._sql = pg_sql
            self._error = psycopg.Error

    def execute(self, sql: str, params: Any) -> None:
        self.conn.execute(self._sql(sql), params)

    def executemany(self, sql: str, rows: Any) -> None:
        if self.kind == "sqlite":
            self.conn.executemany(sql, rows)
        else:
            with self.conn.cursor() as cur:
                cur.executemany(self._sql(sql), rows)

    def scalar(self, sql: str, params: Any) -> Any:
        row = self.conn.execute(self._sql(sql), params).fetchone()
        assert row is not None
        return row[0]

    def begin(self) -> None:
        self.conn.execute(self._begin)

    def commit(self) -> None:
        self.conn.execute("COMMIT")

    def rollback(self) -> None:
        with contextlib.suppress(self._error):
            self.conn.execute("ROLLBACK")

    def close(self) -> None:
        self.conn.close()
