"""Database engines: embedded SQLite (default) or PostgreSQL, with durable settings.

SQLite: WAL, ``synchronous=FULL`` unless configured, foreign keys on, and every transaction opened
with ``BEGIN IMMEDIATE`` so that two writers never deadlock on a lock upgrade; they queue on
``busy_timeout`` instead. PostgreSQL: psycopg 3, READ COMMITTED, row locks taken explicitly
(``SELECT ... FOR UPDATE``) in a fixed order: idempotency key, order, payments, refunds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url

SQLITE_BUSY_TIMEOUT_MS = 15_000
SQLITE_SYNCHRONOUS = {"OFF", "NORMAL", "FULL", "EXTRA"}


def normalise_url(url: str) -> str:
    """Use the psycopg 3 driver for plain ``postgresql://`` URLs."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def sqlite_url(path: str) -> str:
    return f"sqlite:///{path}"


def make_engine(url: str, *, sqlite_synchronous: str = "FULL", pool_size: int = 10) -> Engine:
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        sync = sqlite_synchronous.upper()
        if sync not in SQLITE_SYNCHRONOUS:
            raise ValueError(f"TILLIT_SQLITE_SYNCHRONOUS must be one of {sorted(SQLITE_SYNCHRONOUS)}")
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_timeout=30,
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            # Take transaction control away from pysqlite so BEGIN IMMEDIATE is ours to issue.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA synchronous={sync}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            # Readers take no write lock (WAL lets them run beside the writer); writers queue up front.
            readonly = conn.get_execution_options().get("tillit_readonly", False)
            conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")

        return engine
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=30,
        pool_pre_ping=True,
        connect_args={"connect_timeout": 10},
    )


@dataclass
class Database:
    """An engine plus the few operations whose SQL differs between SQLite and PostgreSQL."""

    engine: Engine

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One atomic unit of work: commit on success, roll back on any exception."""
        with self.engine.begin() as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only unit of work: a consistent snapshot that blocks no writer."""
        with self.engine.connect().execution_options(tillit_readonly=True) as conn, conn.begin():
            yield conn

    def try_advisory_lock(self, conn: Connection, key: str) -> bool:
        """Take a transaction-scoped lock named ``key`` without waiting; False if another holds it.

        On SQLite every write transaction already holds the database lock (BEGIN IMMEDIATE), so two
        transactions can never work on the same key at once: the lock is always granted.
        """
        if not self.is_postgres:
            return True
        digest = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)
        return bool(conn.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": digest}).scalar())

    def dispose(self) -> None:
        self.engine.dispose()
