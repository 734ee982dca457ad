"""The rows analytics and channel health read, fetched with SQLAlchemy (one merchant, one time range)
and handed to DuckDB column-wise as Arrow tables, the way reconciliation hands it local payments.

Contract: every fetch is scoped by ``merchant_id`` and by ``[start, end)`` on ``created_at``; timestamps
arrive as naive UTC (DuckDB ``TIMESTAMP``); no payment code, key or secret column is ever selected.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import duckdb
import pyarrow as pa
from sqlalchemy import Connection, Integer, Select, and_, cast, func, select

from tillit.adapters.db.schema import events, order_lines, orders, payments, terminals

#: The widest range one analytics or health question may cover (a limit, stated in the API).
MAX_RANGE_DAYS = 400

# One in-memory DuckDB per process: opening one costs ~0.1 s, a cursor (its own connection to the same
# in-memory database, with its own registered views) almost nothing. Every question takes a cursor.
_DUCKDB = duckdb.connect()
_DUCKDB_LOCK = threading.Lock()


def duck() -> duckdb.DuckDBPyConnection:
    """A fresh DuckDB cursor for one question (close it after); safe from any thread."""
    with _DUCKDB_LOCK:
        return _DUCKDB.cursor()


@dataclass(frozen=True, slots=True)
class Range:
    merchant_id: str
    start: datetime
    end: datetime


def _naive(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


def arrow_table(conn: Connection, query: Select[Any], types: dict[str, pa.DataType]) -> pa.Table:
    result = conn.execute(query)
    names = list(result.keys())
    columns: list[list[Any]] = [[] for _ in names]
    for row in result:
        for i, value in enumerate(row):
            columns[i].append(_naive(value))
    return pa.table(
        {n: pa.array(col, type=types.get(n, pa.string())) for n, col in zip(names, columns, strict=True)}
    )


TS = pa.timestamp("us")
INT = pa.int64()


def load(con: duckdb.DuckDBPyConnection, conn: Connection, rng: Range) -> None:
    """Register ``o`` (orders), ``p`` (payments), ``l`` (paid order lines), ``u`` (payments that went
    through ``unknown``) and ``t`` (terminal names) in ``con`` for ``rng``."""
    in_range = and_(
        orders.c.merchant_id == rng.merchant_id,
        orders.c.created_at >= rng.start,
        orders.c.created_at < rng.end,
    )
    o = arrow_table(
        conn,
        select(
            orders.c.id,
            orders.c.terminal_id,
            orders.c.status,
            orders.c.total,
            orders.c.paid_amount,
            orders.c.refunded_amount,
            orders.c.cancel_reason,
            orders.c.created_at.label("ts"),
        ).where(in_range),
        {"total": INT, "paid_amount": INT, "refunded_amount": INT, "ts": TS},
    )
    pay_range = and_(
        payments.c.merchant_id == rng.merchant_id,
        payments.c.created_at >= rng.start,
        payments.c.created_at < rng.end,
    )
    p = arrow_table(
        conn,
        select(
            payments.c.id,
            payments.c.order_id,
            payments.c.terminal_id,
            payments.c.method,
            payments.c.provider,
            payments.c.amount,
            payments.c.status,
            payments.c.failure_code,
            payments.c.pay_latency_ms,
            payments.c.created_at.label("ts"),
            payments.c.resolved_at,
            payments.c.refunded_amount,
        ).where(pay_range),
        {"amount": INT, "pay_latency_ms": INT, "ts": TS, "resolved_at": TS, "refunded_amount": INT},
    )
    lines = arrow_table(
        conn,
        select(
            order_lines.c.order_id,
            order_lines.c.sku,
            order_lines.c.name,
            order_lines.c.quantity,
            order_lines.c.amount,
        )
        .join(
            orders,
            and_(orders.c.merchant_id == order_lines.c.merchant_id, orders.c.id == order_lines.c.order_id),
        )
        .where(in_range, orders.c.status.in_(("paid", "refunded"))),
        {"quantity": INT, "amount": INT},
    )
    u = arrow_table(
        conn,
        select(events.c.entity_id.label("payment_id"))
        .where(
            events.c.merchant_id == rng.merchant_id,
            events.c.entity == "payment",
            events.c.to_status == "unknown",
            events.c.at >= rng.start,
        )
        .distinct(),
        {},
    )
    t = arrow_table(
        conn, select(terminals.c.id, terminals.c.name).where(terminals.c.merchant_id == rng.merchant_id), {}
    )
    for name, table in (("o", o), ("p", p), ("l", lines), ("u", u), ("t", t)):
        con.register(name, table)


def local_hour(conn: Connection, column: Any, offset_minutes: int) -> Any:
    """The hour (0-23) of a stored UTC timestamp at ``offset_minutes`` from UTC, as SQL for this database."""
    offset = int(offset_minutes)
    if conn.dialect.name == "postgresql":
        shifted = func.timezone("UTC", column) + func.make_interval(0, 0, 0, 0, 0, offset)
        return cast(func.extract("hour", shifted), Integer)
    return cast(func.strftime("%H", column, f"{offset:+d} minutes"), Integer)


def load_failures(con: duckdb.DuckDBPyConnection, conn: Connection, rng: Range, offset_minutes: int) -> None:
    """Register what the heat map needs only, already counted by the database (so the rows handed over
    are few whatever the number of orders): ``pf`` (failed or reversed provider attempts by failure
    code, terminal and local hour), ``oc`` (cancelled orders by reason, terminal and local hour) and
    ``t`` (terminal names)."""
    p_hour = local_hour(conn, payments.c.created_at, offset_minutes).label("hour")
    pf = arrow_table(
        conn,
        select(payments.c.failure_code, payments.c.terminal_id, p_hour, func.count().label("n"))
        .where(
            payments.c.merchant_id == rng.merchant_id,
            payments.c.created_at >= rng.start,
            payments.c.created_at < rng.end,
            payments.c.status.in_(("failed", "reversed")),
            payments.c.method != "cash",
        )
        .group_by(payments.c.failure_code, payments.c.terminal_id, p_hour),
        {"hour": INT, "n": INT},
    )
    o_hour = local_hour(conn, orders.c.created_at, offset_minutes).label("hour")
    oc = arrow_table(
        conn,
        select(orders.c.cancel_reason, orders.c.terminal_id, o_hour, func.count().label("n"))
        .where(
            orders.c.merchant_id == rng.merchant_id,
            orders.c.created_at >= rng.start,
            orders.c.created_at < rng.end,
            orders.c.status == "cancelled",
        )
        .group_by(orders.c.cancel_reason, orders.c.terminal_id, o_hour),
        {"hour": INT, "n": INT},
    )
    t = arrow_table(
        conn, select(terminals.c.id, terminals.c.name).where(terminals.c.merchant_id == rng.merchant_id), {}
    )
    for name, table in (("pf", pf), ("oc", oc), ("t", t)):
        con.register(name, table)
