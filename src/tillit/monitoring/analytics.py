"""Sales and cancellation analytics for one merchant over a time range: in plain SQL on PostgreSQL, in
DuckDB over the fetched rows on SQLite (``compute`` chooses by the connection's dialect; ``engine=``
forces one, and tests/integration/test_analytics_engines.py checks both give the same tables).

Every table is a typed shape (a frozen dataclass per row, a ``Table`` with its column names) so the API,
the CLI, the CSV export and the SVG charts read the same thing. Hours and days are the merchant's local
time, given as a fixed offset from UTC (``utc_offset_minutes``; China: +480).

Reasons in the heat map: a failed or reversed provider attempt counts under the cashier message its
provider code maps to (``domain/messages.FAILURE_REASONS``: PAYERROR -> customer_cancelled, NOTENOUGH
-> insufficient_balance, ...); a cancelled order counts under its cancel reason (``order:<reason>``).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import astuple, dataclass, fields
from typing import Any

import duckdb
from sqlalchemy import Connection, bindparam, text

from tillit.adapters.db.schema import UtcDateTime
from tillit.domain.csvsafe import safe_cell
from tillit.domain.messages import FAILURE_REASONS, MESSAGES
from tillit.monitoring.frames import Range, duck, load, load_failures

TABLES = ("by_hour", "by_day", "by_method", "by_product", "failures", "summary")
MAX_OFFSET_MINUTES = 14 * 60


@dataclass(frozen=True, slots=True)
class SalesBucket:
    bucket: str  # hour "00".."23", day "YYYY-MM-DD", method or product sku
    label: str
    orders: int
    sales: int  # paid amount, minor units
    refunds: int


@dataclass(frozen=True, slots=True)
class FailureCell:
    reason: str
    message_en: str
    message_zh: str
    terminal_id: str
    terminal: str
    hour: int
    count: int


@dataclass(frozen=True, slots=True)
class Summary:
    orders: int
    paid_orders: int
    cancelled_orders: int
    sales: int
    refunds: int
    refund_rate_permille: int  # refunded amount / paid amount
    provider_attempts: int
    failed_attempts: int
    avg_time_to_pay_ms: int | None  # order created -> its capturing payment resolved
    unknown_attempts: int
    unknown_rate_permille: int
    avg_time_to_settle_ms: int | None  # unknown attempt created -> its outcome settled


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]


@dataclass(frozen=True, slots=True)
class Analytics:
    by_hour: tuple[SalesBucket, ...]
    by_day: tuple[SalesBucket, ...]
    by_method: tuple[SalesBucket, ...]
    by_product: tuple[SalesBucket, ...]
    failures: tuple[FailureCell, ...]
    summary: Summary

    def table(self, name: str) -> Table:
        """One of TABLES as columns and rows (for CSV and the CLI)."""
        if name == "summary":
            cols = tuple(f.name for f in fields(Summary))
            return Table(name, cols, (astuple(self.summary),))
        items: Sequence[Any] = getattr(self, name)
        shape = FailureCell if name == "failures" else SalesBucket
        return Table(name, tuple(f.name for f in fields(shape)), tuple(astuple(i) for i in items))


def _reason_sql() -> str:
    cases = " ".join(f"WHEN '{code}' THEN '{reason}'" for code, reason in FAILURE_REASONS.items())
    return f"CASE coalesce(p.failure_code, '') {cases} ELSE 'declined' END"


def _local(column: str, offset: int) -> str:
    return f"({column} + INTERVAL ({int(offset)}) MINUTE)"  # parenthesised: west of UTC is negative


def heatmap_sql(offset: int) -> str:
    """The query behind the heat map (bench/monitoring.py times it raw against the whole build)."""
    return f"""
        SELECT reason, terminal_id, hour, count(*)::BIGINT AS n FROM (
            SELECT {_reason_sql()} AS reason, coalesce(p.terminal_id, '') AS terminal_id,
                   hour({_local("p.ts", offset)})::INT AS hour
            FROM p WHERE p.method <> 'cash' AND p.status IN ('failed', 'reversed')
            UNION ALL
            SELECT 'order:' || o.cancel_reason, coalesce(o.terminal_id, ''),
                   hour({_local("o.ts", offset)})::INT
            FROM o WHERE o.status = 'cancelled'
        ) GROUP BY ALL ORDER BY reason, terminal_id, hour"""


#: The heat map from the counts the database made (frames.load_failures): reasons mapped, re-grouped.
COUNTED_SQL = f"""
    SELECT reason, terminal_id, hour, sum(n)::BIGINT AS n FROM (
        SELECT {_reason_sql()} AS reason, coalesce(p.terminal_id, '') AS terminal_id, p.hour, p.n FROM pf AS p
        UNION ALL
        SELECT 'order:' || cancel_reason, coalesce(terminal_id, ''), hour, n FROM oc
    ) GROUP BY ALL ORDER BY reason, terminal_id, hour"""


def _cells(con: duckdb.DuckDBPyConnection, sql: str) -> tuple[FailureCell, ...]:
    names = dict(con.execute("SELECT id, name FROM t").fetchall())
    return _failure_cells(con.execute(sql).fetchall(), names)


def _failure_cells(rows: Sequence[Any], names: dict[Any, Any]) -> tuple[FailureCell, ...]:
    failures = []
    for reason, terminal_id, hr, n in rows:
        key = str(reason).removeprefix("order:")
        msg = MESSAGES.get(key)
        failures.append(
            FailureCell(
                str(reason),
                msg.en if msg else key.replace("_", " "),
                msg.zh if msg else key,
                str(terminal_id),
                str(names.get(terminal_id, terminal_id or "—")),
                int(hr),
                int(n),
            )
        )
    return tuple(failures)


def heat_map_cells(
    conn: Connection, rng: Range, *, utc_offset_minutes: int = 480, engine: str | None = None
) -> tuple[FailureCell, ...]:
    """Only the heat map, as one SQL query on the database (PostgreSQL or SQLite): it filters the failed
    attempts and cancelled orders, maps the provider codes to cashier reasons and counts them by reason,
    terminal and local hour. ``engine="duckdb"``: the database counts by code and DuckDB maps and groups
    again. The same cells as ``compute(...).failures`` (tests/integration/test_analytics_engines.py)."""
    if engine is None and conn.dialect.name == "postgresql":
        return _pg_failures(conn, _pg_params(rng, utc_offset_minutes))
    if engine is None and conn.dialect.name == "sqlite":
        return _sqlite_failures(conn, rng, int(utc_offset_minutes))
    con = duck()
    try:
        load_failures(con, conn, rng, int(utc_offset_minutes))
        return _cells(con, COUNTED_SQL)
    finally:
        con.close()


def _sqlite_failures(conn: Connection, rng: Range, offset: int) -> tuple[FailureCell, ...]:
    """The heat map in one SQLite statement (text ordered in byte order, as DuckDB and ``COLLATE "C"``)."""

    def hour(col: str) -> str:
        return f"CAST(strftime('%H', {col}, '{offset:+d} minutes') AS INTEGER)"

    query = text(
        f"""SELECT reason, terminal_id, hour, count(*) FROM (
                SELECT {_reason_sql()} AS reason, coalesce(p.terminal_id, '') AS terminal_id,
                       {hour("p.created_at")} AS hour
                FROM payments p WHERE p.merchant_id = :m AND p.created_at >= :start AND p.created_at < :end
                  AND p.method <> 'cash' AND p.status IN ('failed', 'reversed')
                UNION ALL
                SELECT 'order:' || cancel_reason, coalesce(terminal_id, ''), {hour("created_at")}
                FROM orders WHERE merchant_id = :m AND created_at >= :start AND created_at < :end
                  AND status = 'cancelled'
            ) AS f GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"""
    ).bindparams(bindparam("start", type_=UtcDateTime()), bindparam("end", type_=UtcDateTime()))
    rows = conn.execute(query, {"m": rng.merchant_id, "start": rng.start, "end": rng.end}).all()
    names: dict[Any, Any] = {
        tid: name
        for tid, name in conn.execute(
            text("SELECT id, name FROM terminals WHERE merchant_id = :m"), {"m": rng.merchant_id}
        )
    }
    return _failure_cells(rows, names)


def _sales(con: duckdb.DuckDBPyConnection, key: str, label: str, order_by: str) -> tuple[SalesBucket, ...]:
    rows = con.execute(
        f"""SELECT {key} AS bucket, {label} AS label, count(*)::BIGINT, sum(paid_amount)::BIGINT,
                   sum(refunded_amount)::BIGINT
            FROM o WHERE status IN ('paid', 'refunded') GROUP BY ALL ORDER BY {order_by}"""
    ).fetchall()
    return tuple(SalesBucket(str(b), str(lab), int(n), int(s or 0), int(r or 0)) for b, lab, n, s, r in rows)


def compute(
    conn: Connection, rng: Range, *, utc_offset_minutes: int = 480, engine: str | None = None
) -> Analytics:
    """All analytics tables for ``rng`` (one merchant): plain SQL on PostgreSQL, DuckDB otherwise
    (``engine="duckdb"`` or ``"postgresql"`` forces one; the second needs a PostgreSQL connection)."""
    chosen = engine or ("postgresql" if conn.dialect.name == "postgresql" else "duckdb")
    if chosen == "postgresql":
        return compute_pg(conn, rng, utc_offset_minutes=utc_offset_minutes)
    if chosen != "duckdb":
        raise ValueError(f"unknown analytics engine {engine!r}")
    offset = int(utc_offset_minutes)
    con = duck()
    try:
        load(con, conn, rng)
        hour = f"lpad(hour({_local('ts', offset)})::VARCHAR, 2, '0')"
        day = f"strftime({_local('ts', offset)}, '%Y-%m-%d')"
        by_hour = _sales(con, hour, hour, "bucket")
        by_day = _sales(con, day, day, "bucket")
        by_method = tuple(
            SalesBucket(str(m), str(m), int(n), int(s or 0), int(r or 0))
            for m, n, s, r in con.execute(
                """SELECT method, count(DISTINCT order_id)::BIGINT, sum(amount)::BIGINT,
                          sum(refunded_amount)::BIGINT
                   FROM p WHERE status IN ('captured', 'refunded') GROUP BY ALL ORDER BY 3 DESC, 1"""
            ).fetchall()
        )
        by_product = tuple(
            SalesBucket(str(sku), str(name), int(n), int(s or 0), 0)
            for sku, name, n, s in con.execute(
                """SELECT sku, min(name), sum(quantity)::BIGINT, sum(amount)::BIGINT
                   FROM l GROUP BY sku ORDER BY 4 DESC, 1 LIMIT 200"""
            ).fetchall()
        )
        failures = _cells(con, heatmap_sql(offset))
        summary = _summary(con)
    finally:
        con.close()
    return Analytics(by_hour, by_day, by_method, by_product, failures, summary)


def _summary(con: duckdb.DuckDBPyConnection) -> Summary:
    orders_n, paid_n, cancelled_n, sales, refunds = con.execute(
        """SELECT count(*)::BIGINT, count(*) FILTER (status IN ('paid', 'refunded'))::BIGINT,
                  count(*) FILTER (status = 'cancelled')::BIGINT, coalesce(sum(paid_amount), 0)::BIGINT,
                  coalesce(sum(refunded_amount), 0)::BIGINT FROM o"""
    ).fetchone() or (0, 0, 0, 0, 0)
    attempts, failed, unknown, settle = con.execute(
        """SELECT count(*)::BIGINT, count(*) FILTER (status IN ('failed', 'reversed'))::BIGINT,
                  count(u.payment_id)::BIGINT,
                  avg(epoch_ms(resolved_at) - epoch_ms(ts)) FILTER (u.payment_id IS NOT NULL
                                                                    AND resolved_at IS NOT NULL)
           FROM p LEFT JOIN u ON u.payment_id = p.id WHERE method <> 'cash'"""
    ).fetchone() or (0, 0, 0, None)
    (to_pay,) = con.execute(
        """SELECT avg(epoch_ms(p.resolved_at) - epoch_ms(o.ts)) FROM o
           JOIN p ON p.order_id = o.id AND p.status IN ('captured', 'refunded') AND p.resolved_at IS NOT NULL
           WHERE o.status IN ('paid', 'refunded')"""
    ).fetchone() or (None,)
    return Summary(
        orders=int(orders_n),
        paid_orders=int(paid_n),
        cancelled_orders=int(cancelled_n),
        sales=int(sales),
        refunds=int(refunds),
        refund_rate_permille=_permille(int(refunds), int(sales)),
        provider_attempts=int(attempts),
        failed_attempts=int(failed),
        avg_time_to_pay_ms=None if to_pay is None else round(to_pay),
        unknown_attempts=int(unknown),
        unknown_rate_permille=_permille(int(unknown), int(attempts)),
        avg_time_to_settle_ms=None if settle is None else round(settle),
    )


# --- PostgreSQL: the same tables in plain SQL, computed where the rows are -----------------------------
# Text is ordered COLLATE "C" (byte order, as DuckDB orders); times are UTC shifted by the offset; the
# millisecond differences truncate each timestamp to whole milliseconds first, as DuckDB's epoch_ms does.

_PG_LOCAL = "(timezone('UTC', {col}) + make_interval(mins => :off))"
_PG_ORDERS = "FROM orders WHERE merchant_id = :m AND created_at >= :start AND created_at < :end"
_PG_PAYMENTS = "payments p WHERE p.merchant_id = :m AND p.created_at >= :start AND p.created_at < :end"
_PG_MS = "floor(extract(epoch FROM {col}) * 1000)"


def _pg_params(rng: Range, offset: int) -> dict[str, Any]:
    return {"m": rng.merchant_id, "start": rng.start, "end": rng.end, "off": int(offset)}


def _pg_sales(conn: Connection, key: str, params: dict[str, Any]) -> tuple[SalesBucket, ...]:
    rows = conn.execute(
        text(
            f"""SELECT ({key}) COLLATE "C" AS bucket, count(*), sum(paid_amount), sum(refunded_amount)
                {_PG_ORDERS} AND status IN ('paid', 'refunded') GROUP BY 1 ORDER BY 1"""
        ),
        params,
    ).all()
    return tuple(SalesBucket(str(b), str(b), int(n), int(s or 0), int(r or 0)) for b, n, s, r in rows)


def _pg_failures(conn: Connection, params: dict[str, Any]) -> tuple[FailureCell, ...]:
    reason = _reason_sql()  # CASE coalesce(p.failure_code, '') ... over the provider's codes
    rows = conn.execute(
        text(
            f"""SELECT reason COLLATE "C", terminal_id COLLATE "C", hour, count(*) FROM (
                    SELECT {reason} AS reason, coalesce(p.terminal_id, '') AS terminal_id,
                           extract(hour FROM {_PG_LOCAL.format(col="p.created_at")})::int AS hour
                    FROM {_PG_PAYMENTS} AND p.method <> 'cash' AND p.status IN ('failed', 'reversed')
                    UNION ALL
                    SELECT 'order:' || cancel_reason, coalesce(terminal_id, ''),
                           extract(hour FROM {_PG_LOCAL.format(col="created_at")})::int
                    {_PG_ORDERS} AND status = 'cancelled'
                ) AS f GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"""
        ),
        params,
    ).all()
    names: dict[Any, Any] = {
        tid: name
        for tid, name in conn.execute(
            text("SELECT id, name FROM terminals WHERE merchant_id = :m"), {"m": params["m"]}
        )
    }
    return _failure_cells(rows, names)


def compute_pg(conn: Connection, rng: Range, *, utc_offset_minutes: int = 480) -> Analytics:
    """``compute`` on PostgreSQL: every table one SQL query over the merchant's rows in the range."""
    params = _pg_params(rng, utc_offset_minutes)
    local = _PG_LOCAL.format(col="created_at")
    by_hour = _pg_sales(conn, f"lpad(extract(hour FROM {local})::int::text, 2, '0')", params)
    by_day = _pg_sales(conn, f"to_char({local}, 'YYYY-MM-DD')", params)
    by_method = tuple(
        SalesBucket(str(m), str(m), int(n), int(s or 0), int(r or 0))
        for m, n, s, r in conn.execute(
            text(
                f"""SELECT p.method COLLATE "C", count(DISTINCT p.order_id), sum(p.amount),
                           sum(p.refunded_amount)
                    FROM {_PG_PAYMENTS} AND p.status IN ('captured', 'refunded')
                    GROUP BY 1 ORDER BY 3 DESC, 1"""
            ),
            params,
        ).all()
    )
    by_product = tuple(
        SalesBucket(str(sku), str(name), int(n), int(s or 0), 0)
        for sku, name, n, s in conn.execute(
            text(
                """SELECT l.sku COLLATE "C", min(l.name COLLATE "C"), sum(l.quantity), sum(l.amount)
                   FROM order_lines l JOIN orders o ON o.merchant_id = l.merchant_id AND o.id = l.order_id
                   WHERE o.merchant_id = :m AND o.created_at >= :start AND o.created_at < :end
                     AND o.status IN ('paid', 'refunded')
                   GROUP BY 1 ORDER BY 4 DESC, 1 LIMIT 200"""
            ),
            params,
        ).all()
    )
    failures = _pg_failures(conn, params)
    orders_n, paid_n, cancelled_n, sales, refunds = conn.execute(
        text(
            f"""SELECT count(*), count(*) FILTER (WHERE status IN ('paid', 'refunded')),
                       count(*) FILTER (WHERE status = 'cancelled'), coalesce(sum(paid_amount), 0),
                       coalesce(sum(refunded_amount), 0) {_PG_ORDERS}"""
        ),
        params,
    ).one()
    settle_ms = f"{_PG_MS.format(col='p.resolved_at')} - {_PG_MS.format(col='p.created_at')}"
    attempts, failed, unknown, settle = conn.execute(
        text(
            f"""SELECT count(*), count(*) FILTER (WHERE p.status IN ('failed', 'reversed')),
                       count(u.payment_id),
                       avg({settle_ms}) FILTER (WHERE u.payment_id IS NOT NULL AND p.resolved_at IS NOT NULL)
                FROM payments p LEFT JOIN (
                    SELECT DISTINCT entity_id AS payment_id FROM events
                    WHERE merchant_id = :m AND entity = 'payment' AND to_status = 'unknown' AND at >= :start
                ) AS u ON u.payment_id = p.id
                WHERE p.merchant_id = :m AND p.created_at >= :start AND p.created_at < :end
                  AND p.method <> 'cash'"""
        ),
        params,
    ).one()
    pay_ms = f"{_PG_MS.format(col='p.resolved_at')} - {_PG_MS.format(col='o.created_at')}"
    (to_pay,) = conn.execute(
        text(
            f"""SELECT avg({pay_ms}) FROM orders o
                JOIN payments p ON p.merchant_id = o.merchant_id AND p.order_id = o.id
                 AND p.status IN ('captured', 'refunded') AND p.resolved_at IS NOT NULL
                 AND p.created_at >= :start AND p.created_at < :end
                WHERE o.merchant_id = :m AND o.created_at >= :start AND o.created_at < :end
                  AND o.status IN ('paid', 'refunded')"""
        ),
        params,
    ).one()
    summary = Summary(
        orders=int(orders_n),
        paid_orders=int(paid_n),
        cancelled_orders=int(cancelled_n),
        sales=int(sales),
        refunds=int(refunds),
        refund_rate_permille=_permille(int(refunds), int(sales)),
        provider_attempts=int(attempts),
        failed_attempts=int(failed),
        avg_time_to_pay_ms=None if to_pay is None else round(float(to_pay)),
        unknown_attempts=int(unknown),
        unknown_rate_permille=_permille(int(unknown), int(attempts)),
        avg_time_to_settle_ms=None if settle is None else round(float(settle)),
    )
    return Analytics(by_hour, by_day, by_method, by_product, failures, summary)


def _permille(part: int, whole: int) -> int:
    return 0 if whole <= 0 else (part * 1000 + whole // 2) // whole


def to_csv(table: Table) -> str:
    """The table as CSV, every cell through domain/csvsafe (no formula reaches a spreadsheet)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(table.columns)
    for row in table.rows:
        writer.writerow([safe_cell(v) for v in row])
    return out.getvalue()
