"""Matching expected settlement to what arrived, in DuckDB (columnar: no Python object per payment).

Input tables (``create_tables`` makes them; ``service.load`` fills them from the database, the bench
fills them directly):

* ``st_pay``  — captured provider payments: merchant, provider, id, China trade day, amount, and
  ``in_window`` (false for an older payment loaded only because a refund in the window names it);
* ``st_ref``  — succeeded refunds: id, payment id, China day, amount;
* ``st_contract`` — the ``any`` fee contracts: rate, cap, cycle, period. A merchant-day without one
  is computed at the standard 0.6 %, T+1 (operations.md §3.1) and says so in ``contracted``;
* ``st_line`` — statement lines: source, line key, kind, signed amount, ``out_trade_no``, booked day,
  and (bank lines) the trade day the memo names.

Attribution: an income or fee line belongs to the trade day of the payment it names; a refund or
returned-fee line to the day of the refund it names, else to its booked day (Alipay names the original
order); a bank line to the trade day in its memo, else to its value day minus one. Per merchant and
provider the provider's own statements are the truth when any were imported, else the bank's lines.

``match`` aggregates per merchant-day in SQL and classifies each day with ``domain/settlement.py``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date

import duckdb

from tillit.domain.settlement import Expected, Outcome, Received, classify, due_day

STANDARD_RATE_PPM = 6000
EVIDENCE_PER_DAY = 20

TABLES = """
CREATE OR REPLACE TEMP TABLE st_pay (merchant_id VARCHAR, provider VARCHAR, id VARCHAR, trade_day DATE,
  amount BIGINT, in_window BOOLEAN);
CREATE OR REPLACE TEMP TABLE st_ref (merchant_id VARCHAR, provider VARCHAR, id VARCHAR, payment_id VARCHAR,
  trade_day DATE, amount BIGINT);
CREATE OR REPLACE TEMP TABLE st_contract (merchant_id VARCHAR, provider VARCHAR, rate_ppm INTEGER,
  cap_fen BIGINT, settle_days INTEGER, working_days BOOLEAN, eff_from DATE, eff_to DATE);
CREATE OR REPLACE TEMP TABLE st_line (merchant_id VARCHAR, provider VARCHAR, source VARCHAR,
  line_key VARCHAR, kind VARCHAR, amount BIGINT, out_trade_no VARCHAR, booked_day DATE, trade_day DATE);
"""

# Half-up fee per transaction, in integers: (2 * amount * rate + 1e6) // 2e6, capped (domain/fees.py).
PAY = f"""
CREATE OR REPLACE TEMP TABLE st_pay_fee AS
SELECT p.merchant_id, p.provider, p.id, p.trade_day, p.amount, p.in_window,
       c.rate_ppm IS NOT NULL AS contracted,
       coalesce(c.rate_ppm, {STANDARD_RATE_PPM}) AS rate_ppm,
       coalesce(c.settle_days, 1) AS settle_days, coalesce(c.working_days, FALSE) AS working_days,
       least((2 * p.amount * coalesce(c.rate_ppm, {STANDARD_RATE_PPM}) + 1000000) // 2000000,
             coalesce(c.cap_fen, 9000000000000000000)) AS fee
FROM st_pay p LEFT JOIN st_contract c
  ON c.merchant_id = p.merchant_id AND c.provider = p.provider
 AND p.trade_day >= c.eff_from AND (c.eff_to IS NULL OR p.trade_day < c.eff_to)
"""

DAYS = """
WITH exp_pay AS (
  SELECT merchant_id, provider, trade_day, count(*) AS n, sum(amount) AS gross, sum(fee) AS fees,
         bool_and(contracted) AS contracted, max(settle_days) AS settle_days, bool_or(working_days) AS wd
  FROM st_pay_fee WHERE in_window GROUP BY ALL
), exp_ref AS (
  SELECT r.merchant_id, r.provider, r.trade_day, count(*) AS n, sum(r.amount) AS refunds,
         sum(least((2 * r.amount * p.rate_ppm + 1000000) // 2000000, p.fee)) AS returns
  FROM st_ref r JOIN st_pay_fee p ON p.merchant_id = r.merchant_id AND p.id = r.payment_id
  GROUP BY ALL
), pick AS (
  SELECT merchant_id, provider, bool_or(source <> 'bank') AS provider_truth FROM st_line GROUP BY ALL
), att AS (
  SELECT l.merchant_id, l.provider, l.source, l.line_key, l.kind, l.amount, l.booked_day,
         CASE WHEN l.source = 'bank' THEN coalesce(l.trade_day, l.booked_day - 1)
              WHEN l.kind IN ('income', 'fee') THEN p.trade_day
              ELSE coalesce(r.trade_day, l.booked_day) END AS day,
         CASE WHEN l.kind = 'income' AND l.source <> 'bank' THEN p.id END AS pay_id
  FROM st_line l
  JOIN pick k ON k.merchant_id = l.merchant_id AND k.provider = l.provider
   AND (l.source <> 'bank') = k.provider_truth
  LEFT JOIN st_pay p ON l.kind IN ('income', 'fee') AND l.source <> 'bank'
   AND p.merchant_id = l.merchant_id AND p.id = l.out_trade_no
  LEFT JOIN st_ref r ON l.kind IN ('refund', 'fee_return') AND l.source <> 'bank'
   AND r.merchant_id = l.merchant_id AND r.id = l.out_trade_no
  WHERE l.kind IN ('income', 'refund', 'fee', 'fee_return')
), recv AS (
  SELECT merchant_id, provider, day AS trade_day, sum(amount) AS received, count(*) AS lines,
         max(booked_day) AS last_day, any_value(source) AS source
  FROM att WHERE day IS NOT NULL GROUP BY ALL
), dup_pay AS (
  SELECT merchant_id, provider, day AS trade_day, count(*) AS dups FROM (
    SELECT merchant_id, provider, day, pay_id FROM att WHERE pay_id IS NOT NULL
    GROUP BY ALL HAVING count(DISTINCT line_key) > 1) GROUP BY ALL
), dup_bank AS (
  SELECT merchant_id, provider, day AS trade_day, count(*) AS dups FROM (
    SELECT merchant_id, provider, day, amount FROM att WHERE source = 'bank' AND amount > 0
    GROUP BY ALL HAVING count(*) > 1) GROUP BY ALL
), keys AS (
  SELECT merchant_id, provider, trade_day FROM exp_pay UNION
  SELECT merchant_id, provider, trade_day FROM exp_ref
)
SELECT k.merchant_id, k.provider, k.trade_day,
       coalesce(e.n, 0), coalesce(e.gross, 0), coalesce(e.fees, 0), coalesce(x.n, 0),
       coalesce(x.refunds, 0), coalesce(x.returns, 0), coalesce(e.settle_days, 1), coalesce(e.wd, FALSE),
       coalesce(e.contracted, FALSE), coalesce(v.received, 0), coalesce(v.lines, 0), v.last_day, v.source,
       coalesce(dp.dups, 0) + coalesce(db.dups, 0)
FROM keys k
LEFT JOIN exp_pay e USING (merchant_id, provider, trade_day)
LEFT JOIN exp_ref x USING (merchant_id, provider, trade_day)
LEFT JOIN recv v USING (merchant_id, provider, trade_day)
LEFT JOIN dup_pay dp USING (merchant_id, provider, trade_day)
LEFT JOIN dup_bank db USING (merchant_id, provider, trade_day)
"""

# For the days that are not settled: which trades have no income line, and which have two.
EVIDENCE = f"""
WITH credited AS (
  SELECT merchant_id, out_trade_no, count(DISTINCT line_key) AS n FROM st_line
  WHERE kind = 'income' AND source <> 'bank' GROUP BY ALL
), open_days AS (SELECT * FROM st_open)
SELECT p.merchant_id, p.provider, p.trade_day, p.id, p.amount, p.fee, coalesce(c.n, 0) AS n
FROM st_pay_fee p JOIN open_days o USING (merchant_id, provider, trade_day)
LEFT JOIN credited c ON c.merchant_id = p.merchant_id AND c.out_trade_no = p.id
WHERE p.in_window AND coalesce(c.n, 0) <> 1
QUALIFY row_number() OVER (PARTITION BY p.merchant_id, p.provider, p.trade_day ORDER BY p.id)
  <= {EVIDENCE_PER_DAY}
"""


@dataclass(frozen=True, slots=True)
class DayResult:
    merchant_id: str
    provider: str
    expected: Expected
    received: Received
    outcome: Outcome
    contracted: bool
    source: str | None
    evidence: dict[str, list[dict[str, object]]]

    def evidence_json(self) -> str:
        return json.dumps(self.evidence | {"contracted": self.contracted}, ensure_ascii=False, default=str)


def create_tables(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(TABLES)


def match(
    con: duckdb.DuckDBPyConnection, today: date, grace_days: int, *, evidence: bool = True
) -> list[DayResult]:
    """Every merchant-day of ``st_pay``/``st_ref`` classified on ``today``."""
    con.execute(PAY)
    rows = con.execute(DAYS).fetchall()
    results: list[DayResult] = []
    for (
        m,
        prov,
        day,
        n,
        gross,
        fees,
        rn,
        refunds,
        returns,
        sd,
        wd,
        contracted,
        recv,
        lines,
        last,
        src,
        dups,
    ) in rows:
        expected = Expected(
            trade_day=day,
            due=due_day(day, int(sd), working_days=bool(wd)),
            gross=int(gross),
            refunds=int(refunds),
            fees=int(fees),
            fee_returns=int(returns),
            payments=int(n),
            refund_count=int(rn),
        )
        received = Received(int(recv), int(lines), last, int(dups))
        results.append(
            DayResult(
                m,
                prov,
                expected,
                received,
                classify(expected, received, today, grace_days),
                bool(contracted),
                src,
                {},
            )
        )
    if evidence:
        _attach_evidence(con, results)
    return results


def _attach_evidence(con: duckdb.DuckDBPyConnection, results: list[DayResult]) -> None:
    open_days = [
        (r.merchant_id, r.provider, r.expected.trade_day)
        for r in results
        if r.outcome.status not in ("settled", "pending")
    ]
    if not open_days:
        return
    con.execute(
        "CREATE OR REPLACE TEMP TABLE st_open (merchant_id VARCHAR, provider VARCHAR, trade_day DATE)"
    )
    con.executemany("INSERT INTO st_open VALUES (?, ?, ?)", open_days)
    by_day: dict[tuple[str, str, date], dict[str, list[dict[str, object]]]] = {}
    for m, prov, day, pay_id, amount, fee, n in con.execute(EVIDENCE).fetchall():
        entry = by_day.setdefault((m, prov, day), {"uncredited": [], "credited_twice": []})
        item: dict[str, object] = {"payment_id": pay_id, "amount": int(amount), "expected_fee": int(fee)}
        entry["uncredited" if n == 0 else "credited_twice"].append(item | ({"lines": int(n)} if n else {}))
    for r in results:
        found = by_day.get((r.merchant_id, r.provider, r.expected.trade_day))
        if found:
            r.evidence.update(found)
