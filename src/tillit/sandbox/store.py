"""Durable sandbox state in SQLite (WAL). The schema carries the invariants, not just the code:
balances never go negative, a trade is refunded at most its amount, one ledger debit per trade and
one ledger credit per refund, one trade per (provider, merchant, out_trade_no)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS wallets (
    id INTEGER PRIMARY KEY,
    provider TEXT NOT NULL CHECK (provider IN ('wechat', 'alipay')),
    name TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 64),
    balance_fen INTEGER NOT NULL CHECK (balance_fen >= 0),
    password TEXT NOT NULL,
    always_password INTEGER NOT NULL DEFAULT 0 CHECK (always_password IN (0, 1)),
    buyer_id TEXT NOT NULL UNIQUE,
    logon_id TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    -- how the customer pays: WeChat bank_type (CMB_DEBIT, CFT ...), Alipay fund_channel[:fund_type]
    funding TEXT NOT NULL DEFAULT '',
    UNIQUE (provider, name)
);
CREATE TABLE IF NOT EXISTS codes (
    code TEXT PRIMARY KEY,
    wallet_id INTEGER NOT NULL REFERENCES wallets(id),
    issued_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL CHECK (expires_ms > issued_ms),
    used_ms INTEGER,
    trade_id INTEGER REFERENCES trades(id)
);
CREATE INDEX IF NOT EXISTS codes_wallet ON codes(wallet_id, issued_ms);
CREATE TABLE IF NOT EXISTS trades (
    id INTEGER PRIMARY KEY,
    provider TEXT NOT NULL CHECK (provider IN ('wechat', 'alipay')),
    merchant TEXT NOT NULL,
    out_trade_no TEXT NOT NULL,
    trade_no TEXT NOT NULL UNIQUE,
    wallet_id INTEGER REFERENCES wallets(id),
    amount_fen INTEGER NOT NULL CHECK (amount_fen >= 0),
    refunded_fen INTEGER NOT NULL DEFAULT 0
        CHECK (refunded_fen >= 0 AND refunded_fen <= amount_fen),
    status TEXT NOT NULL CHECK (status IN ('PENDING', 'PAID', 'FAILED', 'CLOSED', 'REVOKED')),
    fail_code TEXT,
    reverse_action TEXT CHECK (reverse_action IN ('close', 'refund')),
    tombstone INTEGER NOT NULL DEFAULT 0 CHECK (tombstone IN (0, 1)),
    params TEXT NOT NULL,
    extra TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    paid_ms INTEGER,
    closed_ms INTEGER,
    CHECK (status != 'PAID' OR paid_ms IS NOT NULL),
    UNIQUE (provider, merchant, out_trade_no)
);
CREATE INDEX IF NOT EXISTS trades_pending ON trades(status) WHERE status = 'PENDING';
CREATE INDEX IF NOT EXISTS trades_paid ON trades(provider, merchant, paid_ms);
CREATE TABLE IF NOT EXISTS refunds (
    id INTEGER PRIMARY KEY,
    trade_id INTEGER NOT NULL REFERENCES trades(id),
    out_refund_no TEXT NOT NULL,
    refund_no TEXT NOT NULL UNIQUE,
    amount_fen INTEGER NOT NULL CHECK (amount_fen > 0),
    kind TEXT NOT NULL CHECK (kind IN ('refund', 'reverse')),
    status TEXT NOT NULL CHECK (status IN ('PROCESSING', 'SUCCESS')),
    created_ms INTEGER NOT NULL,
    due_ms INTEGER NOT NULL,
    success_ms INTEGER,
    CHECK (status != 'SUCCESS' OR success_ms IS NOT NULL),
    UNIQUE (trade_id, out_refund_no)
);
CREATE TABLE IF NOT EXISTS ledger (
    id INTEGER PRIMARY KEY,
    wallet_id INTEGER NOT NULL REFERENCES wallets(id),
    trade_id INTEGER NOT NULL REFERENCES trades(id),
    refund_id INTEGER REFERENCES refunds(id),
    kind TEXT NOT NULL CHECK (kind IN ('debit', 'refund')),
    amount_fen INTEGER NOT NULL CHECK (amount_fen > 0),
    at_ms INTEGER NOT NULL,
    CHECK ((kind = 'debit') = (refund_id IS NULL))
);
CREATE UNIQUE INDEX IF NOT EXISTS ledger_one_debit ON ledger(trade_id) WHERE kind = 'debit';
CREATE UNIQUE INDEX IF NOT EXISTS ledger_one_credit ON ledger(refund_id) WHERE kind = 'refund';
CREATE TABLE IF NOT EXISTS notifications (
    id INTEGER PRIMARY KEY,
    trade_id INTEGER NOT NULL REFERENCES trades(id),
    url TEXT NOT NULL,
    params TEXT NOT NULL,
    notify_id TEXT NOT NULL UNIQUE,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_ms INTEGER,
    acked_ms INTEGER,
    created_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS notifications_due ON notifications(next_ms) WHERE next_ms IS NOT NULL;
CREATE TABLE IF NOT EXISTS bill_tokens (
    token TEXT PRIMARY KEY,
    app_id TEXT NOT NULL,
    bill_date TEXT NOT NULL,
    expires_ms INTEGER NOT NULL
);
"""


class Store:
    """One SQLite connection shared by the app, serialised by a lock.

    The sandbox is a single-process emulator: one writer under a lock is both simplest and
    correct, and ``BEGIN IMMEDIATE`` makes each operation atomic on disk.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.lock = threading.RLock()
        self.conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA foreign_keys=ON")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.executescript(SCHEMA)
        columns = {r["name"] for r in self.conn.execute("PRAGMA table_info(wallets)")}
        if "funding" not in columns:  # a state file from before wallets had a funding source
            self.conn.execute("ALTER TABLE wallets ADD COLUMN funding TEXT NOT NULL DEFAULT ''")

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """An immediate transaction under the store lock; rolled back on any exception."""
        with self.lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

    def get_meta(self, key: str) -> str | None:
        """A value from the ``meta`` table."""
        with self.lock:
            row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row["value"])

    def close(self) -> None:
        """Close the connection (the WAL is checkpointed by SQLite)."""
        with self.lock:
            self.conn.close()


def set_meta(conn: sqlite3.Connection, key: str, value: str) -> None:
    """Upsert a ``meta`` value inside an open transaction."""
    conn.execute(
        "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


def next_seq(conn: sqlite3.Connection) -> int:
    """A durable, strictly increasing sequence number (embedded in every generated id)."""
    row = conn.execute("SELECT value FROM meta WHERE key = 'seq'").fetchone()
    value = 1 if row is None else int(row["value"]) + 1
    set_meta(conn, "seq", str(value))
    return value
