"""Database engines: embedded SQLite (default) or PostgreSQL, with durable settings.

SQLite: WAL, ``synchronous=FULL`` unless configured, foreign keys on, and every transaction opened
with ``BEGIN IMMEDIATE`` so that two writers never deadlock on a lock upgrade. The writers of one
process first queue on an in-process lock, held from before ``BEGIN IMMEDIATE`` until after the commit
or rollback; writers in other processes (the CLI, a second server) still queue on ``busy_timeout``.
The lock stands in for SQLite's busy handler, which sleeps and polls with back-off of up to 100 ms a
try, so that an unlucky writer waited hundreds of milliseconds. PostgreSQL: psycopg 3, READ COMMITTED,
row locks taken explicitly (``SELECT ... FOR UPDATE``) in a fixed order: idempotency key, order,
payments, refunds.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

SQLITE_BUSY_TIMEOUT_MS = 15_000
SQLITE_SYNCHRONOUS = {"OFF", "NORMAL", "FULL", "EXTRA"}

# One write lock per SQLite database file in this process, shared by every engine opened on it.
_SQLITE_WRITE_LOCKS: dict[str, threading.RLock] = {}
_SQLITE_WRITE_LOCKS_GUARD = threading.Lock()
_ADVISORY_LOCK = text("SELECT pg_try_advisory_xact_lock(:k)")
# Many keys in one round trip (a till's sync batch): the keys whose lock another transaction holds.
_ADVISORY_LOCKS = text(
    "SELECT k FROM unnest(CAST(:ks AS bigint[])) AS t(k) WHERE NOT pg_try_advisory_xact_lock(k)"
)
# Set while Database.read() opens its transaction: SQLite then begins with a plain BEGIN.
_read_only = threading.local()


def _sqlite_write_lock(engine: Engine) -> threading.RLock:
    key = str(engine.url.database or "")
    with _SQLITE_WRITE_LOCKS_GUARD:
        return _SQLITE_WRITE_LOCKS.setdefault(key, threading.RLock())


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

        def _do_begin(dbapi_conn: Any) -> None:
            # Readers take no write lock (WAL lets them run beside the writer); writers queue up front.
            # A dialect hook rather than a "begin" event: any connection event listener makes
            # SQLAlchemy dispatch events around every statement, which costs ~25% of a small one.
            cur = dbapi_conn.cursor()
            cur.execute("BEGIN" if getattr(_read_only, "on", False) else "BEGIN IMMEDIATE")
            cur.close()

        engine.dialect.do_begin = _do_begin  # type: ignore[method-assign,assignment]

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
    _write_lock: threading.RLock | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.engine.dialect.name == "sqlite":
            self._write_lock = _sqlite_write_lock(self.engine)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One atomic unit of work: commit on success, roll back on any exception.

        On SQLite the process's write lock is held from before ``BEGIN IMMEDIATE`` until after the
        commit or rollback. It is reentrant, so a transaction opened inside another on the same thread
        still meets SQLite's own lock and ``busy_timeout``, as without it. A writer that cannot get it
        within ``busy_timeout`` fails as SQLite would: ``database is locked``.
        """
        lock = self._write_lock
        if lock is None:
            with self.engine.begin() as conn:
                yield conn
            return
        if not lock.acquire(timeout=SQLITE_BUSY_TIMEOUT_MS / 1000):
            raise OperationalError("BEGIN IMMEDIATE", {}, sqlite3.OperationalError("database is locked"))
        try:
            with self.engine.begin() as conn:
                yield conn
        finally:
            lock.release()

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only unit of work: a consistent snapshot that blocks no writer."""
        with self.engine.connect() as conn:
            _read_only.on = True
            try:
                tx = conn.begin()
            finally:
                _read_only.on = False
            with tx:
                yield conn

    def try_advisory_lock(self, conn: Connection, key: str) -> bool:
        """Take a transaction-scoped lock named ``key`` without waiting; False if another holds it.

        On SQLite every write transaction already holds the database lock (BEGIN IMMEDIATE), so two
        transactions can never work on the same key at once: the lock is always granted.
        """
        if not self.is_postgres:
            return True
        return bool(conn.execute(_ADVISORY_LOCK, {"k": _lock_number(key)}).scalar())

    def try_advisory_locks(self, conn: Connection, keys: Iterable[str]) -> set[str]:
        """``try_advisory_lock`` for many keys in one statement; returns the keys another transaction
        holds (empty when every lock was granted). The locks are the same as ``try_advisory_lock``'s, so
        taking one again later in this transaction is granted at once."""
        if not self.is_postgres:
            return set()
        numbers = {_lock_number(k): k for k in keys}
        if not numbers:
            return set()
        refused = conn.execute(_ADVISORY_LOCKS, {"ks": sorted(numbers)}).scalars()
        return {numbers[n] for n in refused}

    def dispose(self) -> None:
        self.engine.dispose()


def _lock_number(key: str) -> int:
    """The advisory lock number of a named lock: the first 8 bytes of its SHA-256, signed."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)
