"""The till's durable local journal (SQLite, WAL, synchronous=FULL).

Every sale, payment attempt, refund and shift event is committed here — and so fsynced — before it is
sent to the server or printed. The outbox table is the sync queue: entries are pushed in order
(at-least-once) with the Idempotency-Key stored beside them, so a resend after a crash or a lost answer is
the same request and the server applies it once.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 2
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS products (
    id TEXT PRIMARY KEY, sku TEXT NOT NULL, barcode TEXT, name TEXT NOT NULL,
    price INTEGER NOT NULL CHECK (price >= 0), active INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS ix_products_barcode ON products(barcode);
CREATE INDEX IF NOT EXISTS ix_products_sku ON products(sku);
CREATE TABLE IF NOT EXISTS shifts (
    id TEXT PRIMARY KEY, number INTEGER NOT NULL UNIQUE, opened_at TEXT NOT NULL,
    opening_float INTEGER NOT NULL CHECK (opening_float >= 0), closed_at TEXT, counted_cash INTEGER,
    report TEXT, report_hash TEXT, prev_hash TEXT
);
CREATE TABLE IF NOT EXISTS sales (
    id TEXT PRIMARY KEY, number INTEGER NOT NULL UNIQUE,
    status TEXT NOT NULL CHECK (status IN ('open', 'completed', 'cancelled')),
    shift_id TEXT REFERENCES shifts(id), created_at TEXT NOT NULL, completed_at TEXT,
    frozen INTEGER NOT NULL DEFAULT 0, total INTEGER NOT NULL DEFAULT 0 CHECK (total >= 0),
    cancel_reason TEXT, server_number INTEGER
);
CREATE INDEX IF NOT EXISTS ix_sales_status ON sales(status, number);
CREATE TABLE IF NOT EXISTS sale_lines (
    sale_id TEXT NOT NULL REFERENCES sales(id), line_no INTEGER NOT NULL, product_id TEXT NOT NULL,
    sku TEXT NOT NULL, name TEXT NOT NULL, unit_price INTEGER NOT NULL CHECK (unit_price >= 0),
    quantity INTEGER NOT NULL CHECK (quantity BETWEEN 1 AND 9999),
    discount INTEGER NOT NULL DEFAULT 0 CHECK (discount >= 0 AND discount <= unit_price * quantity),
    PRIMARY KEY (sale_id, line_no)
);
CREATE TABLE IF NOT EXISTS tenders (
    id TEXT PRIMARY KEY, sale_id TEXT NOT NULL REFERENCES sales(id), method TEXT NOT NULL,
    amount INTEGER NOT NULL CHECK (amount > 0), tendered INTEGER, change_due INTEGER,
    status TEXT NOT NULL, code_masked TEXT, failure_code TEXT, message TEXT,
    refunded INTEGER NOT NULL DEFAULT 0, created_at TEXT NOT NULL, updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_tenders_sale ON tenders(sale_id);
CREATE INDEX IF NOT EXISTS ix_tenders_status ON tenders(status);
CREATE TABLE IF NOT EXISTS refunds (
    id TEXT PRIMARY KEY, sale_id TEXT NOT NULL REFERENCES sales(id), tender_id TEXT NOT NULL REFERENCES tenders(id),
    amount INTEGER NOT NULL CHECK (amount > 0), reason TEXT, status TEXT NOT NULL, created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, op TEXT NOT NULL, key TEXT NOT NULL UNIQUE, sale_id TEXT,
    entity_id TEXT, order_id TEXT, body TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'done', 'rejected')),
    attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, response TEXT, created_at TEXT NOT NULL, done_at TEXT
);
CREATE INDEX IF NOT EXISTS ix_outbox_state ON outbox(state, seq);
CREATE TABLE IF NOT EXISTS sale_adjustments (
    sale_id TEXT NOT NULL REFERENCES sales(id), kind TEXT NOT NULL CHECK (kind IN ('order_discount', 'rounding')),
    amount INTEGER NOT NULL CHECK (amount > 0), PRIMARY KEY (sale_id, kind)
);
CREATE TABLE IF NOT EXISTS approvals (
    id INTEGER PRIMARY KEY AUTOINCREMENT, sale_id TEXT NOT NULL REFERENCES sales(id),
    kind TEXT NOT NULL CHECK (kind IN ('line_discount', 'price_change', 'order_discount')), line_no INTEGER,
    amount INTEGER NOT NULL CHECK (amount >= 0), approved_by TEXT NOT NULL, reason TEXT NOT NULL, at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS pin_attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, ok INTEGER NOT NULL CHECK (ok IN (0, 1)),
    manager TEXT, locked_until TEXT
);
CREATE TABLE IF NOT EXISTS returned_lines (
    refund_id TEXT NOT NULL REFERENCES refunds(id), sale_id TEXT NOT NULL REFERENCES sales(id),
    line_no INTEGER NOT NULL, quantity INTEGER NOT NULL CHECK (quantity > 0), PRIMARY KEY (refund_id, line_no)
);
"""

# Columns added after a journal was first created (issue 17): added in place when missing, so a till
# upgraded in the shop keeps its journal.
ADDED_COLUMNS = {
    "products": [
        ("category", "TEXT"),
        ("tile_colour", "TEXT"),
        ("favourite", "INTEGER NOT NULL DEFAULT 0"),
        ("sort_order", "INTEGER NOT NULL DEFAULT 0"),
        ("image_url", "TEXT"),
        ("image_file", "TEXT"),
    ],
    "sales": [("held_at", "TEXT"), ("hold_note", "TEXT"), ("receipt_url", "TEXT")],
    "sale_lines": [("set_price", "INTEGER")],
}

# Operations that the server accepts in a /v1/sync batch; the others go one at a time.
BATCHABLE = frozenset({"order", "payment", "refund", "cancel"})


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


@dataclass(frozen=True)
class OutboxEntry:
    seq: int
    op: str
    key: str
    sale_id: str | None
    entity_id: str | None
    order_id: str | None
    body: dict[str, Any]
    attempts: int
    raw: str = ""  # the body as the journal holds it (JSON): sent as it is, never encoded again


class Journal:
    """One SQLite file; one writer at a time (a lock), readers in WAL beside it."""

    def __init__(self, path: Path, synchronous: str = "FULL") -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self.synchronous = synchronous
        self._conn.execute(f"PRAGMA synchronous={synchronous}")
        self._conn.execute("PRAGMA foreign_keys=ON")
        # What is deleted or overwritten (a payment code once answered, old manager PIN hashes) is zeroed
        # in the file, not left in free space.
        self._conn.execute("PRAGMA secure_delete=ON")
        with self.tx() as conn:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            for table, columns in ADDED_COLUMNS.items():
                have = {r["name"] for r in conn.execute(f"PRAGMA table_info({table})")}
                for name, decl in columns:
                    if name not in have:
                        conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {decl}")
            conn.execute(
                "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )

    @contextmanager
    def tx(self, *, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """A write transaction: committed (and fsynced) when the block ends, rolled back on error.

        ``durable=False`` is for the lines of a cart not yet paid, and only them: the commit is not
        fsynced (``synchronous=NORMAL``), so it survives a crash of the till process but a power cut may
        take the last few lines back off the screen. The first tender commits with an fsync of the WAL,
        which makes every earlier commit durable too: nothing that was paid, or sent, is ever at risk."""
        with self._lock:
            if not durable:
                self._conn.execute("PRAGMA synchronous=NORMAL")
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    yield self._conn
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
            finally:
                if not durable:
                    self._conn.execute(f"PRAGMA synchronous={self.synchronous}")

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def one(self, sql: str, params: tuple[Any, ...] = ()) -> sqlite3.Row | None:
        rows = self.query(sql, params)
        return rows[0] if rows else None

    def meta(self, key: str, default: str | None = None) -> str | None:
        row = self.one("SELECT value FROM meta WHERE key = ?", (key,))
        return str(row["value"]) if row else default

    def set_meta(self, conn: sqlite3.Connection, key: str, value: str) -> None:
        conn.execute(
            "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = ?",
            (key, value, value),
        )

    def checkpoint(self) -> None:
        """Copy the WAL into the database file and empty it (after scrubbing something from the journal)."""
        with self._lock:
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    # --- outbox -----------------------------------------------------------------------------------

    def enqueue(
        self,
        conn: sqlite3.Connection,
        *,
        op: str,
        key: str,
        body: dict[str, Any],
        sale_id: str | None = None,
        entity_id: str | None = None,
        order_id: str | None = None,
    ) -> int:
        cur = conn.execute(
            "INSERT INTO outbox(op, key, sale_id, entity_id, order_id, body, state, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, 'pending', ?)",
            (op, key, sale_id, entity_id, order_id, json.dumps(body, separators=(",", ":")), now_iso()),
        )
        return int(cur.lastrowid or 0)

    def pending(self, limit: int = 200) -> list[OutboxEntry]:
        rows = self.query("SELECT * FROM outbox WHERE state = 'pending' ORDER BY seq LIMIT ?", (limit,))
        return [
            OutboxEntry(
                r["seq"],
                r["op"],
                r["key"],
                r["sale_id"],
                r["entity_id"],
                r["order_id"],
                json.loads(r["body"]),
                r["attempts"],
                r["body"],
            )
            for r in rows
        ]

    def pending_count(self) -> int:
        row = self.one("SELECT COUNT(*) AS n FROM outbox WHERE state = 'pending'")
        return int(row["n"]) if row else 0

    def unsynced_sales(self) -> int:
        row = self.one(
            "SELECT COUNT(DISTINCT sale_id) AS n FROM outbox WHERE state = 'pending' AND sale_id IS NOT NULL"
        )
        return int(row["n"]) if row else 0
