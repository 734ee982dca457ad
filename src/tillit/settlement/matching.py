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
from dataclasses import dataclass, replace
from datetime import date

import duckdb
import pyarrow as pa

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
def fee_sql(amount: str, rate: str, cap: str) -> str:
    return f"least((2 * {amount} * {rate} + 1000000) // 2000000, coalesce({cap}, 9000000000000000000))"


RATE = f"coalesce(c.rate_ppm, {STANDARD_RATE_PPM})"
CONTRACT_JOIN = """LEFT JOIN st_contract c
  ON c.merchant_id = p.merchant_id AND c.provider = p.provider
 AND p.trade_day >= c.eff_from AND (c.eff_to IS NULL OR p.trade_day < c.eff_to)"""

# Per payment, its fee and the provider lines naming it, aggregated first so the join is one to one.
PAY = f"""
CREATE OR REPLACE TEMP TABLE st_pay_fee AS
SELECT p.merchant_id, p.provider, p.id, p.trade_day, p.amount, p.in_window,
       c.rate_ppm IS NOT NULL AS contracted, {RATE} AS rate_ppm,
       coalesce(c.settle_days, 1) AS settle_days, coalesce(c.working_days, FALSE) AS working_days,
       {fee_sql("p.amount", RATE, "c.cap_fen")} AS fee
FROM st_pay p {CONTRACT_JOIN}
"""

# Each refund with the fee it returns (pro rata, at most the payment's fee), computed once.
REFUNDS = f"""
CREATE OR REPLACE TEMP TABLE st_ref_fee AS
  SELECT r.merchant_id, r.provider, r.id, r.trade_day, r.amount,
         least({fee_sql("r.amount", RATE, "NULL")}, {fee_sql("p.amount", RATE, "c.cap_fen")}) AS returned
  FROM st_ref r JOIN st_pay p ON p.merchant_id = r.merchant_id AND p.id = r.payment_id {CONTRACT_JOIN}
"""

DAYS = f"""
WITH exp_pay AS (
  SELECT p.merchant_id, p.provider, p.trade_day, count(*) AS n, sum(p.amount) AS gross,
         sum({fee_sql("p.amount", RATE, "c.cap_fen")}) AS fees,
         bool_and(c.rate_ppm IS NOT NULL) AS contracted, max(coalesce(c.settle_days, 1)) AS settle_days,
         bool_or(coalesce(c.working_days, FALSE)) AS wd
  FROM st_pay p {CONTRACT_JOIN}
  WHERE p.in_window GROUP BY ALL
), recv_pay AS (
  SELECT p.merchant_id, p.provider, p.trade_day, sum(l.amount) AS received, count(*) AS lines,
         count(*) FILTER (WHERE l.kind = 'income') AS n_income, max(l.booked_day) AS last_day
  FROM st_line l JOIN st_pay p ON p.merchant_id = l.merchant_id AND p.id = l.out_trade_no
  WHERE l.source <> 'bank' AND l.kind IN ('income', 'fee') AND p.in_window GROUP BY ALL
), exp_ref AS (
  SELECT merchant_id, provider, trade_day, count(*) AS n, sum(amount) AS refunds, sum(returned) AS returns
  FROM st_ref_fee GROUP BY ALL
), other AS (
  -- refund and returned-fee lines (by the refund they name, else their booked day) and bank lines
  SELECT l.merchant_id, l.provider, l.source, l.amount, l.booked_day,
         CASE WHEN l.source = 'bank' THEN coalesce(l.trade_day, l.booked_day - 1)
              ELSE coalesce(r.trade_day, l.booked_day) END AS trade_day
  FROM st_line l
  LEFT JOIN st_ref_fee r ON l.source <> 'bank' AND r.merchant_id = l.merchant_id AND r.id = l.out_trade_no
  WHERE (l.source <> 'bank' AND l.kind IN ('refund', 'fee_return'))
     OR (l.source = 'bank' AND l.kind = 'income')
), pick AS (
  SELECT merchant_id, provider, bool_or(source <> 'bank') AS provider_truth FROM st_line GROUP BY ALL
), recv_other AS (
  SELECT o.merchant_id, o.provider, o.trade_day, sum(o.amount) AS received, count(*) AS lines,
         max(o.booked_day) AS last_day, bool_or(o.source = 'bank') AS bank,
         count(*) FILTER (WHERE o.source = 'bank') - count(DISTINCT o.amount) FILTER (WHERE o.source = 'bank')
           AS dups
  FROM other o JOIN pick k ON k.merchant_id = o.merchant_id AND k.provider = o.provider
   AND (o.source <> 'bank') = k.provider_truth
  GROUP BY ALL
), keys AS (
  SELECT merchant_id, provider, trade_day FROM exp_pay UNION
  SELECT merchant_id, provider, trade_day FROM exp_ref
)
SELECT k.merchant_id, k.provider, k.trade_day,
       coalesce(e.n, 0), coalesce(e.gross, 0), coalesce(e.fees, 0), coalesce(x.n, 0),
       coalesce(x.refunds, 0), coalesce(x.returns, 0), coalesce(e.settle_days, 1), coalesce(e.wd, FALSE),
       coalesce(e.contracted, FALSE),
       coalesce(w.received, 0) + coalesce(v.received, 0), coalesce(w.lines, 0) + coalesce(v.lines, 0),
       greatest(w.last_day, v.last_day),
       CASE WHEN v.bank THEN 'bank' WHEN w.lines > 0 OR v.lines > 0 THEN 'provider' END,
       greatest(coalesce(w.n_income, 0) - coalesce(e.n, 0), 0) + coalesce(v.dups, 0)
FROM keys k
LEFT JOIN exp_pay e USING (merchant_id, provider, trade_day)
LEFT JOIN recv_pay w USING (merchant_id, provider, trade_day)
LEFT JOIN exp_ref x USING (merchant_id, provider, trade_day)
LEFT JOIN recv_other v USING (merchant_id, provider, trade_day)
"""

# For the days that are not settled: which trades have no income line, and which have two.
EVIDENCE = f"""
WITH open_pay AS (
  SELECT p.merchant_id, p.id FROM st_pay p JOIN st_open o USING (merchant_id, provider, trade_day)
  WHERE p.in_window
), credited AS (
  SELECT l.merchant_id, l.out_trade_no, count(*) AS n FROM st_line l
  JOIN open_pay p ON p.merchant_id = l.merchant_id AND p.id = l.out_trade_no
  WHERE l.kind = 'income' AND l.source <> 'bank' GROUP BY ALL
)
SELECT p.merchant_id, p.provider, p.trade_day, p.id, p.amount, {fee_sql("p.amount", RATE, "c.cap_fen")},
       coalesce(cr.n, 0) AS n
FROM st_pay p JOIN st_open o USING (merchant_id, provider, trade_day) {CONTRACT_JOIN}
LEFT JOIN credited cr ON cr.merchant_id = p.merchant_id AND cr.out_trade_no = p.id
WHERE p.in_window AND coalesce(cr.n, 0) <> 1
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
    """Every merchant-day of ``st_pay``/``st_ref`` classified on ``today``.

    The day query flags a duplicate only when a day has more income lines than payments; the exact
    per-trade count comes from the evidence query, run for every day that is not settled or pending
    (a duplicate changes the total, so such a day is never settled unless a missing credit of exactly
    the same amount hides it: docs/settlement.md)."""
    con.execute(REFUNDS)
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
        results = _attach_evidence(con, results, today, grace_days)
    return results


def _attach_evidence(
    con: duckdb.DuckDBPyConnection, results: list[DayResult], today: date, grace_days: int
) -> list[DayResult]:
    open_days = [
        (r.merchant_id, r.provider, r.expected.trade_day)
        for r in results
        if r.outcome.status not in ("settled", "pending")
    ]
    if not open_days:
        return results
    con.execute(
        "CREATE OR REPLACE TEMP TABLE st_open (merchant_id VARCHAR, provider VARCHAR, trade_day DATE)"
    )
    _insert_open(con, open_days)
    by_day: dict[tuple[str, str, date], dict[str, list[dict[str, object]]]] = {}
    for m, prov, day, pay_id, amount, fee, n in con.execute(EVIDENCE).fetchall():
        entry = by_day.setdefault((m, prov, day), {"uncredited": [], "credited_twice": []})
        item: dict[str, object] = {"payment_id": pay_id, "amount": int(amount), "expected_fee": int(fee)}
        entry["uncredited" if n == 0 else "credited_twice"].append(item | ({"lines": int(n)} if n else {}))
    out: list[DayResult] = []
    for r in results:
        found = by_day.get((r.merchant_id, r.provider, r.expected.trade_day))
        if not found:
            out.append(r)
            continue
        twice = len(found["credited_twice"])
        received = replace(r.received, duplicated_trades=max(r.received.duplicated_trades, twice))
        outcome = classify(r.expected, received, today, grace_days)
        out.append(replace(r, received=received, outcome=outcome, evidence=found))
    return out


def _insert_open(con: duckdb.DuckDBPyConnection, days: list[tuple[str, str, date]]) -> None:
    table = pa.table(
        {
            "merchant_id": pa.array([d[0] for d in days], pa.string()),
            "provider": pa.array([d[1] for d in days], pa.string()),
            "trade_day": pa.array([d[2] for d in days], pa.date32()),
        }
    )
    con.register("st_open_in", table)
    try:
        con.execute("INSERT INTO st_open SELECT * FROM st_open_in")
    finally:
        con.unregister("st_open_in")
