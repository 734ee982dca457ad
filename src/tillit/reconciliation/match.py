"""Matching a parsed bill against local payments and refunds, in DuckDB (no Python loop over rows).

Inputs, all DuckDB tables on one connection:

* the bill's canonical rows (``formats.CANONICAL``);
* ``lp`` — local payments: ``id`` (our out_trade_no), ``provider_ref``, ``amount``, ``status``,
  ``ts`` (created, naive UTC), ``order_id``;
* ``lr`` — local refunds: ``id`` (our out_refund_no), ``payment_id``, ``amount``, ``status``, ``ts``,
  ``provider_ref``;
* ``er`` — refunds the engine sent for payments without an order (``out_refund_no``,
  ``out_trade_no``), so that they are recognised when they show up in a bill.

Payment rows are joined to ``lp`` on out_trade_no, refund rows to ``lr`` on the refund id; what is
left on either side is then joined on the provider's ids. One full outer join carries the work; every
other step runs on the (small) set of rows that did not match perfectly. The result is the table
``disc`` (``DISC_COLUMNS``): one row per discrepancy, plus rows of class ``matched`` for pairs that
needed a closer look and turned out fine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import duckdb

CLASSES = (
    "missing_at_provider",
    "missing_locally",
    "amount_mismatch",
    "status_mismatch",
    "fee_mismatch",
    "duplicate",
    "timing",
)
PAID = ("captured", "refunded")
IN_FLIGHT = ("pending", "unknown")
#: Payment-row states that mean the provider kept the money (WeChat 交易状态 SUCCESS; Alipay's trade
#: states where a file carries one). Any other state (REVOKED, CLOSED, PAYERROR, NOTPAY, …) is compared
#: with the local status.
PROVIDER_PAID = ("SUCCESS", "TRADE_SUCCESS", "TRADE_FINISHED")
#: What each bill type can contain: (payment rows, refund rows, reversal rows). A bill is only compared
#: with what it can contain: a WeChat SUCCESS bill lists no reversals or refunds, a REFUND bill no
#: payment rows. Every other type (ALL, Alipay's trade bill, a mapped CSV) lists all three.
BILL_CONTENTS = {"SUCCESS": (True, False, False), "REFUND": (False, True, True)}

LOCAL_PAYMENTS = (
    "id VARCHAR, provider_ref VARCHAR, amount BIGINT, status VARCHAR, ts TIMESTAMP, order_id VARCHAR"
)
LOCAL_REFUNDS = (
    "id VARCHAR, payment_id VARCHAR, amount BIGINT, status VARCHAR, ts TIMESTAMP, provider_ref VARCHAR"
)
ENGINE_REFUNDS = "out_refund_no VARCHAR, out_trade_no VARCHAR"

DISC_COLUMNS = (
    "class",
    "reason",
    "line",
    "kind",
    "out_trade_no",
    "out_refund_no",
    "trade_no",
    "refund_no",
    "payment_id",
    "refund_id",
    "order_id",
    "local_amount",
    "provider_amount",
    "local_status",
    "provider_status",
    "provider_fee",
    "expected_fee",
    "local_ts",
    "provider_ts",
    "matched_by",
)


@dataclass(frozen=True)
class Window:
    """The bill's day as UTC instants [start, end), and how far around it local times may stray
    (clock differences, payments confirmed just after midnight)."""

    start: datetime
    end: datetime
    margin: timedelta = timedelta(minutes=10)


@dataclass(frozen=True)
class FeeRule:
    """The merchant's contracted rate (parts per million) and the bill's fee precision in 0.00001
    yuan (WeChat prints five decimals: 1; Alipay prints fen: 1000). ``rate_ppm`` None skips the check."""

    rate_ppm: int | None
    unit: int = 1


@dataclass
class MatchResult:
    lines: int
    matched: int
    counts: dict[str, int] = field(default_factory=dict)
    amounts: dict[str, int] = field(default_factory=dict)
    provider_total: int = 0

    @property
    def discrepancies(self) -> int:
        return sum(self.counts.values())


def create_local_tables(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(f"CREATE OR REPLACE TEMP TABLE lp ({LOCAL_PAYMENTS})")
    con.execute(f"CREATE OR REPLACE TEMP TABLE lr ({LOCAL_REFUNDS})")
    con.execute(f"CREATE OR REPLACE TEMP TABLE er ({ENGINE_REFUNDS})")


def _ts(value: datetime) -> str:
    if value.tzinfo is not None:
        from datetime import UTC

        value = value.astimezone(UTC).replace(tzinfo=None)
    return f"TIMESTAMP '{value.isoformat(sep=' ')}'"


def classify(
    con: duckdb.DuckDBPyConnection,
    bill: str,
    window: Window,
    fee: FeeRule,
    *,
    lines: int,
    dups: str | None = None,
    bill_type: str = "ALL",
) -> MatchResult:
    """Fill table ``disc`` and return the counts. ``lines`` is the bill's row count; ``dups`` a table of
    the bill's lines that repeat a key (``ParsedBill.dups``), found here when not given; ``bill_type``
    (``ParsedBill.bill_type``) says what the bill can contain (``BILL_CONTENTS``): local payments are
    compared only with a bill that lists payments, a local reversal only with one that lists reversals."""
    has_payments, has_refunds, has_reversals = BILL_CONTENTS.get(bill_type, (True, True, True))
    provider_paid = "(" + ", ".join(f"'{s}'" for s in PROVIDER_PAID) + ")"
    unpaid_row = f"(upper(coalesce(status, 'SUCCESS')) NOT IN {provider_paid})"
    start, end = _ts(window.start), _ts(window.end)
    late = _ts(window.end - window.margin)
    in_core = f"(l.ts >= {start} AND l.ts < {end})"
    if fee.rate_ppm is not None:
        fee_bad = (
            f"(b.fee IS NOT NULL AND 2 * abs(b.fee * 1000 - b.amount * {fee.rate_ppm}) > {fee.unit * 1000})"
            f" OR (b.rate_ppm IS NOT NULL AND b.rate_ppm <> {fee.rate_ppm})"
        )
        expected_fee = f"round(b.amount * {fee.rate_ppm} / 1000)::BIGINT"
    else:
        fee_bad = "FALSE"
        expected_fee = "NULL::BIGINT"
    paid = "('captured', 'refunded')"

    # 1. Payment rows against local payments: the one big join. It carries only the compared values
    #    and two integers (bill line, local rowid); the few imperfect pairs get their details after.
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE cand_keys AS
        SELECT b.line, l.lrow
        FROM (SELECT line, out_trade_no, amount, ({fee_bad.replace("b.", "")}) OR {unpaid_row} AS bad
              FROM {bill} WHERE kind = 'payment') b
        FULL JOIN (SELECT rowid AS lrow, id, amount,
                          (status NOT IN {paid} OR NOT {in_core.replace("l.", "")}) AS bad
                   FROM lp WHERE {has_payments}) l ON b.out_trade_no = l.id
        WHERE b.line IS NULL OR l.id IS NULL OR b.amount <> l.amount OR b.bad OR l.bad"""
    )
    # Perfect pairs whose payment the provider has since reversed (revoke rows are few).
    has_revokes = _scalar(con, f"SELECT count(*) FROM {bill} WHERE kind = 'revoke'") > 0
    if has_revokes:
        con.execute(
            f"""INSERT INTO cand_keys
            SELECT b.line, l.rowid
            FROM (SELECT * FROM {bill} WHERE kind = 'payment'
                  AND out_trade_no IN (SELECT out_trade_no FROM {bill} WHERE kind = 'revoke')) b
            JOIN lp l ON b.out_trade_no = l.id
            WHERE b.line NOT IN (SELECT line FROM cand_keys WHERE line IS NOT NULL)"""
        )
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE cand_pay AS
        WITH kb AS (SELECT b.* FROM {bill} b SEMI JOIN cand_keys k ON b.line = k.line),
             kl AS (SELECT l.rowid AS lrow, l.* FROM lp l SEMI JOIN cand_keys k ON l.rowid = k.lrow)
        SELECT b.line, b.out_trade_no, b.trade_no, b.amount AS p_amount, b.fee AS p_fee,
               b.ts AS p_ts, b.status AS p_status, {expected_fee} AS e_fee, ({fee_bad}) AS fee_bad,
               l.id AS l_id, l.provider_ref AS l_ref, l.amount AS l_amount, l.status AS l_status,
               l.ts AS l_ts, l.order_id AS l_order
        FROM cand_keys k LEFT JOIN kb b ON b.line = k.line LEFT JOIN kl l ON l.lrow = k.lrow"""
    )
    # 2. Duplicates: lines repeating a key of the bill (found when it was parsed, or here).
    if dups is None:
        dups = "dup_lines"
        find_duplicates(con, bill, dups)
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE dup_pay AS
        SELECT b.line, b.out_trade_no, b.trade_no, b.amount, b.ts, b.status
        FROM {bill} b SEMI JOIN {dups} d ON b.line = d.line WHERE b.kind = 'payment'"""
    )
    con.execute("DELETE FROM cand_pay WHERE line IN (SELECT line FROM dup_pay)")

    # 3. What is left on both sides, matched on the provider's transaction id.
    con.execute(
        """CREATE OR REPLACE TEMP TABLE by_ref AS
        SELECT b.line, l.l_id, l.l_ref, l.l_amount, l.l_status, l.l_ts, l.l_order
        FROM (SELECT * FROM cand_pay WHERE l_id IS NULL AND trade_no IS NOT NULL AND trade_no <> '') b
        JOIN (SELECT * FROM cand_pay WHERE line IS NULL AND l_ref IS NOT NULL) l ON b.trade_no = l.l_ref"""
    )
    con.execute(
        """DELETE FROM cand_pay WHERE line IS NULL AND l_id IN (SELECT l_id FROM by_ref);
        UPDATE cand_pay c SET l_id = r.l_id, l_ref = r.l_ref, l_amount = r.l_amount, l_status = r.l_status,
               l_ts = r.l_ts, l_order = r.l_order
        FROM by_ref r WHERE c.line = r.line"""
    )

    # 4. Reversals (revoke rows) and refunds the engine sent itself.
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE rv AS SELECT out_trade_no, min(line) AS line, min(ts) AS ts "
        f"FROM {bill} WHERE kind = 'revoke' GROUP BY 1"
    )
    in_core_c = f"(l_ts >= {start} AND l_ts < {end})"
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE disc AS
        WITH pay AS (
          SELECT c.*, c.line IS NOT NULL AND c.l_id IS NOT NULL AS pair,
                 EXISTS (SELECT 1 FROM rv WHERE rv.out_trade_no = coalesce(c.out_trade_no,
                   c.l_id)) AS revoked,
                 EXISTS (SELECT 1 FROM er WHERE er.out_trade_no = coalesce(c.out_trade_no,
                   c.l_id)) AS engine_refund,
                 c.l_id IN (SELECT l_id FROM by_ref) AS via_ref,
                 c.line IS NOT NULL AND {unpaid_row.replace("status", "c.p_status")} AS unpaid
          FROM cand_pay c
        )
        SELECT CASE
            WHEN pair AND unpaid AND l_status IN {paid} THEN 'status_mismatch'
            WHEN pair AND unpaid AND l_status IN {IN_FLIGHT!r} THEN 'status_mismatch'
            WHEN unpaid THEN 'matched'
            WHEN pair AND l_status IN {paid} AND revoked THEN 'status_mismatch'
            WHEN pair AND l_status IN {paid} AND p_amount <> l_amount THEN 'amount_mismatch'
            WHEN pair AND l_status IN {paid} AND fee_bad THEN 'fee_mismatch'
            WHEN pair AND l_status IN {paid} AND NOT {in_core_c} THEN 'timing'
            WHEN pair AND l_status IN {paid} THEN 'matched'
            WHEN pair AND l_status IN ('failed', 'reversing',
              'reversed') AND (revoked OR engine_refund) THEN 'matched'
            WHEN pair AND l_status = 'reversed' AND NOT {has_reversals} THEN 'matched'
            WHEN pair THEN 'status_mismatch'
            WHEN line IS NOT NULL THEN 'missing_locally'
            WHEN l_status IN {paid} AND {in_core_c} AND l_ts >= {late} THEN 'timing'
            WHEN l_status IN {paid} AND {in_core_c} AND revoked THEN 'matched'
            WHEN l_status IN {paid} AND {in_core_c} THEN 'missing_at_provider'
            ELSE NULL END AS class,
          CASE
            WHEN pair AND unpaid AND l_status IN {paid} AND upper(p_status) = 'REVOKED'
              THEN 'reversed_at_provider'
            WHEN pair AND unpaid AND l_status IN {paid} THEN 'not_paid_at_provider'
            WHEN pair AND unpaid AND l_status IN {IN_FLIGHT!r} THEN 'in_flight_unpaid'
            WHEN unpaid THEN 'matched'
            WHEN pair AND l_status IN {paid} AND revoked THEN 'reversed_at_provider'
            WHEN pair AND l_status IN {paid} AND p_amount <> l_amount THEN 'amount_differs'
            WHEN pair AND l_status IN {paid} AND fee_bad THEN 'fee_differs'
            WHEN pair AND l_status IN {paid} AND NOT {in_core_c} THEN 'billed_other_day'
            WHEN pair AND l_status IN {IN_FLIGHT!r} THEN 'in_flight_paid'
            WHEN pair AND l_status = 'failed' THEN 'failed_paid'
            WHEN pair AND l_status = 'reversing' THEN 'reversing_paid'
            WHEN pair AND l_status = 'reversed' THEN 'reversed_paid'
            WHEN pair THEN 'matched'
            WHEN line IS NOT NULL AND revoked THEN 'unknown_payment_reversed'
            WHEN line IS NOT NULL THEN 'unknown_payment'
            WHEN l_ts >= {late} THEN 'expected_next_bill'
            ELSE 'not_in_bill' END AS reason,
          line, 'payment' AS kind, coalesce(out_trade_no, l_id) AS out_trade_no,
            NULL::VARCHAR AS out_refund_no,
          coalesce(trade_no, l_ref) AS trade_no, NULL::VARCHAR AS refund_no, l_id AS payment_id,
          NULL::VARCHAR AS refund_id, l_order AS order_id, l_amount AS local_amount,
            p_amount AS provider_amount,
          l_status AS local_status, p_status AS provider_status, p_fee AS provider_fee,
          CASE WHEN line IS NOT NULL THEN e_fee END AS expected_fee, l_ts AS local_ts, p_ts AS provider_ts,
          CASE WHEN via_ref THEN 'provider_ref' WHEN pair THEN 'out_trade_no' END AS matched_by
        FROM pay"""
    )
    con.execute("DELETE FROM disc WHERE class IS NULL")
    if has_revokes:
        # An unknown payment and its reversal: the pair nets to zero (nothing to refund); the reversal
        # row is reported beside it with the negative amount. A reversal of a payment neither in the
        # bill nor known here is reported on its own.
        con.execute(
            f"""INSERT INTO disc (class, reason, line, kind, out_trade_no, trade_no, provider_amount,
                                  provider_status, provider_ts)
            SELECT 'missing_locally',
                   CASE WHEN d.out_trade_no IS NOT NULL THEN 'reversal_of_unknown_payment'
                        ELSE 'unknown_reversal' END,
                   b.line, 'revoke', b.out_trade_no, b.trade_no, -b.amount, b.status, b.ts
            FROM {bill} b
            LEFT JOIN (SELECT DISTINCT out_trade_no FROM disc
                       WHERE reason = 'unknown_payment_reversed') d ON d.out_trade_no = b.out_trade_no
            WHERE b.kind = 'revoke' AND (d.out_trade_no IS NOT NULL OR (
                  b.out_trade_no NOT IN (SELECT id FROM lp)
              AND b.out_trade_no NOT IN (SELECT out_trade_no FROM {bill} WHERE kind = 'payment')
              AND b.out_trade_no NOT IN (SELECT out_trade_no FROM er WHERE out_trade_no IS NOT NULL)))"""
        )
    con.execute(
        """INSERT INTO disc (class, reason, line, kind, out_trade_no, trade_no, provider_amount,
                             provider_status,
                             provider_ts)
        SELECT 'duplicate', 'repeated_out_trade_no', line, 'payment', out_trade_no, trade_no, amount,
          status, ts
        FROM dup_pay"""
    )
    # Reversals of payments billed on an earlier day: paid here, reversed at the provider.
    if has_revokes:
        con.execute(
            f"""INSERT INTO disc (class, reason, line, kind, out_trade_no, payment_id, order_id, local_amount,
                                  provider_amount, local_status, provider_status, local_ts, provider_ts,
                                  matched_by)
            SELECT 'status_mismatch', 'reversed_at_provider', rv.line, 'revoke', rv.out_trade_no, l.id,
                   l.order_id, l.amount, l.amount, l.status, 'REVOKED', l.ts, rv.ts, 'out_trade_no'
            FROM rv JOIN lp l ON l.id = rv.out_trade_no
            WHERE l.status IN {paid}
              AND rv.out_trade_no NOT IN (SELECT out_trade_no FROM {bill} WHERE kind = 'payment')"""
        )

    # 5. Refund rows against local refunds (then the provider's refund id, then the engine's own).
    in_core_r = f"(l.ts >= {start} AND l.ts < {end})"
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE cand_ref AS
        SELECT b.line, b.out_trade_no, b.trade_no, b.out_refund_no, b.refund_no, b.amount AS p_amount,
               b.ts AS p_ts, b.status AS p_status, b.fee AS p_fee,
               l.id AS l_id, l.payment_id AS l_pay, l.amount AS l_amount, l.status AS l_status, l.ts AS l_ts,
               l.provider_ref AS l_ref
        FROM (SELECT * FROM {bill} WHERE kind = 'refund') b
        FULL JOIN (SELECT * FROM lr WHERE {has_refunds}) l ON b.out_refund_no = l.id
        WHERE b.line IS NULL OR l.id IS NULL OR l.status <> 'succeeded' OR b.amount <> l.amount
           OR NOT {in_core_r}"""
    )
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE dup_ref AS
        SELECT b.line, b.out_trade_no, b.out_refund_no, b.trade_no, b.refund_no, b.amount, b.ts, b.status
        FROM {bill} b SEMI JOIN {dups} d ON b.line = d.line WHERE b.kind = 'refund';
        DELETE FROM cand_ref WHERE line IN (SELECT line FROM dup_ref);
        CREATE OR REPLACE TEMP TABLE ref_by_ref AS
        SELECT b.line, l.l_id, l.l_pay, l.l_amount, l.l_status, l.l_ts, l.l_ref
        FROM (SELECT * FROM cand_ref WHERE l_id IS NULL AND refund_no IS NOT NULL AND refund_no <> '') b
        JOIN (SELECT * FROM cand_ref WHERE line IS NULL AND l_ref IS NOT NULL) l ON b.refund_no = l.l_ref;
        DELETE FROM cand_ref WHERE line IS NULL AND l_id IN (SELECT l_id FROM ref_by_ref);
        UPDATE cand_ref c SET l_id = r.l_id, l_pay = r.l_pay, l_amount = r.l_amount, l_status = r.l_status,
               l_ts = r.l_ts, l_ref = r.l_ref
        FROM ref_by_ref r WHERE c.line = r.line"""
    )
    con.execute(
        f"""INSERT INTO disc
        SELECT * FROM (
          SELECT CASE
              WHEN pair AND l_status = 'failed' THEN 'status_mismatch'
              WHEN pair AND p_amount <> l_amount THEN 'amount_mismatch'
              WHEN pair AND l_status = 'succeeded' AND NOT {in_core_c} THEN 'timing'
              WHEN pair THEN 'matched'
              WHEN line IS NOT NULL AND out_refund_no IN (SELECT out_refund_no FROM er) THEN 'matched'
              WHEN line IS NOT NULL THEN 'missing_locally'
              WHEN l_status = 'succeeded' AND {in_core_c} AND l_ts >= {late} THEN 'timing'
              WHEN l_status = 'succeeded' AND {in_core_c} THEN 'missing_at_provider'
              ELSE NULL END AS class,
            CASE
              WHEN pair AND l_status = 'failed' THEN 'refund_failed_here'
              WHEN pair AND p_amount <> l_amount THEN 'amount_differs'
              WHEN pair AND l_status = 'succeeded' AND NOT {in_core_c} THEN 'billed_other_day'
              WHEN pair THEN 'matched'
              WHEN line IS NOT NULL THEN 'unknown_refund'
              WHEN l_ts >= {late} THEN 'expected_next_bill'
              ELSE 'refund_not_in_bill' END AS reason,
            line, 'refund', coalesce(out_trade_no, l_pay), coalesce(out_refund_no, l_id), trade_no,
              coalesce(refund_no, l_ref),
            l_pay, l_id, NULL, l_amount, p_amount, l_status, p_status, p_fee, NULL, l_ts, p_ts,
            CASE WHEN l_id IN (SELECT l_id FROM ref_by_ref) THEN 'provider_ref' WHEN pair THEN
              'out_refund_no' END
          FROM (SELECT *, line IS NOT NULL AND l_id IS NOT NULL AS pair FROM cand_ref))
        WHERE class IS NOT NULL"""
    )
    con.execute(
        """INSERT INTO disc (class, reason, line, kind, out_trade_no, out_refund_no, trade_no, refund_no,
                             provider_amount, provider_status, provider_ts)
        SELECT 'duplicate', 'repeated_out_refund_no', line, 'refund', out_trade_no, out_refund_no, trade_no,
               refund_no, amount, status, ts FROM dup_ref"""
    )
    return summarise(con, bill, lines)


def find_duplicates(con: duckdb.DuckDBPyConnection, bill: str, into: str) -> int:
    """Lines that repeat an earlier line's key (out_trade_no of a payment row, out_refund_no of a refund
    row): ``into`` (line INTEGER). Returns how many."""
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE {into} AS
        WITH keyed AS (SELECT line, kind,
                              CASE kind WHEN 'refund' THEN out_refund_no ELSE out_trade_no END AS k
                       FROM {bill} WHERE kind IN ('payment', 'refund')),
             twice AS (SELECT kind, k FROM keyed GROUP BY kind, k HAVING count(*) > 1)
        SELECT line FROM (
          SELECT line, row_number() OVER (PARTITION BY kind, k ORDER BY line) AS n
          FROM keyed SEMI JOIN twice USING (kind, k))
        WHERE n > 1"""
    )
    return _scalar(con, f"SELECT count(*) FROM {into}")


def _scalar(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    row = con.execute(sql).fetchone()
    return int(row[0]) if row is not None and row[0] is not None else 0


def summarise(con: duckdb.DuckDBPyConnection, bill: str, lines: int) -> MatchResult:
    counts: dict[str, int] = {c: 0 for c in CLASSES}
    amounts: dict[str, int] = {c: 0 for c in CLASSES}
    for cls, n, amount in con.execute(
        "SELECT class, count(*), coalesce(sum(coalesce(provider_amount, local_amount)), 0) FROM disc "
        "WHERE class <> 'matched' GROUP BY 1"
    ).fetchall():
        counts[str(cls)] = int(n)
        amounts[str(cls)] = int(amount)
    flagged = con.execute(
        "SELECT count(DISTINCT line) FROM disc WHERE class <> 'matched' AND line IS NOT NULL"
    ).fetchone()
    total = con.execute(f"SELECT coalesce(sum(amount), 0) FROM {bill}").fetchone()
    return MatchResult(
        lines=lines,
        matched=lines - int(flagged[0] if flagged else 0),
        counts=counts,
        amounts=amounts,
        provider_total=int(total[0] if total else 0),
    )


def rows(con: duckdb.DuckDBPyConnection, limit: int | None = None) -> list[dict[str, Any]]:
    """The discrepancies (not the ``matched`` rows) as dicts, bill lines first."""
    query = (
        "SELECT " + ", ".join(DISC_COLUMNS) + " FROM disc WHERE class <> 'matched' "
        "ORDER BY line NULLS LAST, out_trade_no, out_refund_no"
    )
    if limit is not None:
        query += f" LIMIT {int(limit)}"
    cursor = con.execute(query)
    return [dict(zip(DISC_COLUMNS, r, strict=True)) for r in cursor.fetchall()]
