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

from tillit.domain.settlement import NEXT_ACTION, Expected, Outcome, Received, classify, due_day

STANDARD_RATE_PPM = 6000
EVIDENCE_PER_DAY = 20
SETTLED = Outcome("settled", 0, 0, *NEXT_ACTION["settled"])

TABLES = """
CREATE OR REPLACE TEMP TABLE st_pay (merchant_id VARCHAR, provider VARCHAR, id VARCHAR, trade_day DATE,
  amount BIGINT, in_window BOOLEAN);
CREATE OR REPLACE TEMP TABLE st_ref (merchant_id VARCHAR, provider VARCHAR, id VARCHAR, payment_id VARCHAR,
  trade_day DATE, amount BIGINT);
CREATE OR REPLACE TEMP TABLE st_contract (merchant_id VARCHAR, provider VARCHAR, rate_ppm INTEGER,
  cap_fen BIGINT, settle_days INTEGER, working_days BOOLEAN, eff_from DATE, eff_to DATE);
CREATE OR REPLACE TEMP TABLE st_line (merchant_id VARCHAR, provider VARCHAR, source VARCHAR,
  line_key VARCHAR, kind VARCHAR, amount BIGINT, out_trade_no VARCHAR, booked_day DATE, trade_day DATE);
CREATE OR REPLACE TEMP TABLE st_pay_kind (merchant_id VARCHAR, id VARCHAR, card_kind VARCHAR);
CREATE OR REPLACE TEMP TABLE st_kind_contract (merchant_id VARCHAR, provider VARCHAR, card_kind VARCHAR,
  rate_ppm INTEGER, cap_fen BIGINT, settle_days INTEGER, working_days BOOLEAN, eff_from DATE, eff_to DATE);
"""


# Half-up fee per transaction, in integers: (2 * amount * rate + 1e6) // 2e6, capped (domain/fees.py).
def fee_sql(amount: str, rate: str, cap: str) -> str:
    return f"least((2 * {amount} * {rate} + 1000000) // 2000000, coalesce({cap}, 9000000000000000000))"


RATE = f"coalesce(c.rate_ppm, {STANDARD_RATE_PPM})"
CONTRACT_JOIN = """LEFT JOIN st_contract c
  ON c.merchant_id = p.merchant_id AND c.provider = p.provider
 AND p.trade_day >= c.eff_from AND (c.eff_to IS NULL OR p.trade_day < c.eff_to)"""


@dataclass(frozen=True, slots=True)
class Terms:
    """SQL for the contract terms of a payment row: the joins and the expressions they give."""

    joins: str
    rate: str
    cap: str
    settle_days: str
    working_days: str
    contracted: str


def terms(p: str, day: str, kind: str | None) -> Terms:
    """The terms in force on ``day`` for payment row ``p`` (it has ``merchant_id`` and ``provider``).

    With ``kind`` (the SQL of the payment's card kind, NULL when unknown): the contract of that card
    kind when one is in force (``st_kind_contract``), else the ``any`` one — the rule of the bill fee
    check (reconciliation/fee_check.py). Without: the ``any`` contract only, which is the same answer
    when no payment has a known card kind or no card-kind contract exists (``match`` chooses)."""
    any_join = f"""LEFT JOIN st_contract c
  ON c.merchant_id = {p}.merchant_id AND c.provider = {p}.provider
 AND {day} >= c.eff_from AND (c.eff_to IS NULL OR {day} < c.eff_to)"""
    if kind is None:
        return Terms(
            any_join, RATE, "c.cap_fen", "coalesce(c.settle_days, 1)",
            "coalesce(c.working_days, FALSE)", "c.rate_ppm IS NOT NULL",
        )  # fmt: skip
    kind_join = f"""
LEFT JOIN st_kind_contract ck
  ON ck.merchant_id = {p}.merchant_id AND ck.provider = {p}.provider AND ck.card_kind = {kind}
 AND {day} >= ck.eff_from AND (ck.eff_to IS NULL OR {day} < ck.eff_to)"""
    return Terms(
        any_join + kind_join,
        f"coalesce(ck.rate_ppm, c.rate_ppm, {STANDARD_RATE_PPM})",
        "CASE WHEN ck.rate_ppm IS NOT NULL THEN ck.cap_fen ELSE c.cap_fen END",
        "coalesce(ck.settle_days, c.settle_days, 1)",
        "coalesce(ck.working_days, c.working_days, FALSE)",
        "coalesce(ck.rate_ppm, c.rate_ppm) IS NOT NULL",
    )


# Per payment, its fee and the provider lines naming it, aggregated first so the join is one to one.
PAY = f"""
CREATE OR REPLACE TEMP TABLE st_pay_fee AS
SELECT p.merchant_id, p.provider, p.id, p.trade_day, p.amount, p.in_window,
       c.rate_ppm IS NOT NULL AS contracted, {RATE} AS rate_ppm,
       coalesce(c.settle_days, 1) AS settle_days, coalesce(c.working_days, FALSE) AS working_days,
       {fee_sql("p.amount", RATE, "c.cap_fen")} AS fee
FROM st_pay p {CONTRACT_JOIN}
"""


# The whole day query: one pass over the statement lines (and the refunds, by the payment they name)
# joined to the payments by id and to the refunds by id, grouped once into a few rows per merchant-day
# and part: ``i``/``f`` income/fee lines of a payment in the window (its trade day), ``v`` refund and
# returned-fee lines (the refund's day, else the booked day), ``b`` bank credits (memo day, else value
# day - 1; one group per amount, so a repeated amount is a duplicate), ``x`` the refunds themselves
# (one group per refund: the fee it returns is at the payment day's contract), ``o`` any other
# provider line (it only says the provider's statements were imported). Payments are aggregated per
# day on their own (with the contract's fee per payment); ``plain`` marks the days that are settled on
# a calendar cycle (received = expected, no line twice, nothing after the due day), which Python then
# takes as they are. A refund whose payment is not in ``st_pay`` is not counted (``service.load``
# always loads the payment a refund names).
#: A refund's group key packs its row, its payment's amount and day into one HUGEINT:
#: row * 2**64 + payment amount * 100000 + days since 1970 (amounts < 9e13 fen, days < 100000).
XK_SHIFT = "18446744073709551616::HUGEINT"
XK_DAYS = 100_000

#: At most this many distinct (rate, cap) terms are summed side by side (``days_sql``'s ``rates``).
MAX_RATE_COLUMNS = 8


def _candidates(rates: list[tuple[int, int | None]]) -> list[tuple[int, int | None]]:
    """The (rate, cap) terms summed side by side: the standard rate (no contract) first."""
    return [(STANDARD_RATE_PPM, None), *[r for r in rates if r != (STANDARD_RATE_PPM, None)]]


def _pick(column: str, rates: list[tuple[int, int | None]]) -> str:
    """The ``{column}{i}`` of the terms of contract ``c`` (the standard rate's without one)."""
    whens = " ".join(
        f"WHEN c.rate_ppm = {rate} AND c.cap_fen IS NOT DISTINCT FROM {'NULL' if cap is None else cap} "
        f"THEN {column}{i}"
        for i, (rate, cap) in enumerate(_candidates(rates))
    )
    return f"CASE WHEN c.rate_ppm IS NULL THEN {column}0 {whens} END"


def _exp_pay_by_rates(rates: list[tuple[int, int | None]]) -> str:
    """Expected payments per merchant-day without joining each payment to its contract: the day's
    fee is summed per payment at every candidate (rate, cap) side by side (integer arithmetic per row,
    half-up per payment as ever) and the day then takes the column of the contract in force on it —
    one ``any`` contract covers a whole merchant-day (contract periods never overlap). The same
    numbers as the per-payment join, for a fraction of its cost with few distinct terms."""
    candidates = _candidates(rates)
    sums = ",\n         ".join(
        f"sum({fee_sql('p.amount', str(rate), 'NULL' if cap is None else str(cap))}) AS f{i}"
        for i, (rate, cap) in enumerate(candidates)
    )
    return f"""pay_day AS (
  SELECT p.merchant_id, p.provider, p.trade_day, count(*) AS n, sum(p.amount) AS gross,
         {sums}
  FROM st_pay p WHERE p.in_window GROUP BY ALL
), exp_pay AS (
  SELECT d.merchant_id, d.provider, d.trade_day, d.n, d.gross,
         {_pick("d.f", rates)} AS fees,
         c.rate_ppm IS NOT NULL AS contracted, coalesce(c.settle_days, 1) AS settle_days,
         coalesce(c.working_days, FALSE) AS wd
  FROM pay_day d LEFT JOIN st_contract c
    ON c.merchant_id = d.merchant_id AND c.provider = d.provider
   AND d.trade_day >= c.eff_from AND (c.eff_to IS NULL OR d.trade_day < c.eff_to)
)"""


def days_sql(kinds: bool, rates: list[tuple[int, int | None]] | None = None) -> str:
    """The day query; with ``kinds`` the fees follow each payment's card kind (``terms``); else with
    ``rates`` (every distinct (rate_ppm, cap_fen) of ``st_contract``) the day's fees are summed per
    candidate rate (``_exp_pay_by_rates``) instead of joining every payment to its contract."""
    pay = terms("p", "p.trade_day", "pk.card_kind" if kinds else None)
    ref = terms("g", "g.pd", "gk.card_kind" if kinds else None)
    pay_kind = "LEFT JOIN st_pay_kind pk ON pk.merchant_id = p.merchant_id AND pk.id = p.id" if kinds else ""
    ref_kind = "LEFT JOIN st_pay_kind gk ON gk.merchant_id = g.merchant_id AND gk.id = g.pid" if kinds else ""
    pid = ", CASE WHEN part = 'x' THEN p.id END AS pid" if kinds else ""  # the refund's payment
    pid_key = ", pid" if kinds else ""
    # A refund's group: with ``rates`` one per refund day and payment day, carrying the fee returned at
    # every candidate rate (``ret{i}``); else one per refund, its payment's amount and day packed in xk.
    by_rates = rates is not None and not kinds
    if by_rates:
        assert rates is not None
        exp_pay = _exp_pay_by_rates(rates)
        x_key = "(p.trade_day - DATE '1970-01-01')::HUGEINT"
        ret_cols = "".join(
            f",\n         CASE WHEN part = 'x' THEN least({fee_sql('q.amount', str(rate), 'NULL')}, "
            f"{fee_sql('p.amount', str(rate), 'NULL' if cap is None else str(cap))}) END AS ret{i}"
            for i, (rate, cap) in enumerate(_candidates(rates))
        )
        ret_sums = "".join(f", sum(ret{i}) AS ret{i}" for i in range(len(_candidates(rates))))
        gx = "SELECT *, DATE '1970-01-01' + xk::INTEGER AS pd FROM g WHERE part = 'x'"
        returns = f"sum({_pick('g.ret', rates)})"
        ref_joins = terms("g", "g.pd", None).joins
    else:
        x_key = f"q.rn::HUGEINT * {XK_SHIFT} + p.amount * {XK_DAYS} + (p.trade_day - DATE '1970-01-01')"
        ret_cols = ret_sums = ""
        gx = f"""SELECT *, s AS a, ((xk % {XK_SHIFT}) // {XK_DAYS})::BIGINT AS pa,
         DATE '1970-01-01' + ((xk % {XK_SHIFT}) % {XK_DAYS})::INTEGER AS pd
  FROM g WHERE part = 'x'"""
        returns = (
            f"sum(g.n * least({fee_sql('g.a', ref.rate, 'NULL')}, {fee_sql('g.pa', ref.rate, ref.cap)}))"
        )
        ref_joins = ref.joins
    if not by_rates:
        exp_pay = f"""exp_pay AS (
  SELECT p.merchant_id, p.provider, p.trade_day, count(*) AS n, sum(p.amount) AS gross,
         sum({fee_sql("p.amount", pay.rate, pay.cap)}) AS fees,
         bool_and({pay.contracted}) AS contracted, max({pay.settle_days}) AS settle_days,
         bool_or({pay.working_days}) AS wd
  FROM st_pay p {pay_kind} {pay.joins}
  WHERE p.in_window GROUP BY ALL
)"""
    return f"""
WITH probe AS (
  SELECT merchant_id, provider, source = 'bank' AS bank, kind, amount, booked_day, trade_day AS memo_day,
         NULL::BIGINT AS rn,
         CASE WHEN source <> 'bank' AND kind IN ('income', 'fee') THEN out_trade_no END AS pkey,
         CASE WHEN source <> 'bank' AND kind IN ('refund', 'fee_return') THEN out_trade_no END AS rkey,
         FALSE AS is_ref
  FROM st_line
  UNION ALL
  SELECT merchant_id, provider, FALSE, NULL, amount, NULL, trade_day, rowid, payment_id, NULL, TRUE
  FROM st_ref
), att AS (
  SELECT q.merchant_id, q.amount, q.booked_day,
         CASE WHEN q.is_ref THEN (CASE WHEN p.id IS NOT NULL THEN 'x' END)
              WHEN q.pkey IS NOT NULL THEN (CASE WHEN p.id IS NULL OR NOT p.in_window THEN 'o'
                                                 WHEN q.kind = 'income' THEN 'i' ELSE 'f' END)
              WHEN q.rkey IS NOT NULL THEN 'v'
              WHEN q.bank AND q.kind = 'income' THEN 'b'
              WHEN NOT q.bank THEN 'o' END AS part,
         CASE WHEN part IN ('i', 'f') THEN p.provider ELSE q.provider END AS provider,
         CASE part WHEN 'i' THEN p.trade_day WHEN 'f' THEN p.trade_day
              WHEN 'v' THEN coalesce(r.trade_day, q.booked_day)
              WHEN 'b' THEN coalesce(q.memo_day, q.booked_day - 1) WHEN 'x' THEN q.memo_day END AS trade_day,
         CASE part WHEN 'b' THEN q.amount::HUGEINT WHEN 'x' THEN {x_key} END AS xk{pid}{ret_cols}
  FROM probe q
  LEFT JOIN st_pay p ON p.merchant_id = q.merchant_id AND p.id = q.pkey
  LEFT JOIN st_ref r ON r.merchant_id = q.merchant_id AND r.id = q.rkey
), g AS (
  SELECT merchant_id, provider, trade_day, part, xk{pid_key},
         sum(amount) AS s, count(*) AS n, max(booked_day) AS last_day{ret_sums}
  FROM att WHERE part IS NOT NULL GROUP BY ALL
), gx AS (
  {gx}
), rx AS (
  SELECT g.merchant_id, g.provider, g.trade_day, sum(g.n) AS n, sum(g.s) AS refunds, {returns} AS returns
  FROM gx g {ref_kind} {ref_joins}
  GROUP BY ALL
), pick AS (
  SELECT merchant_id, provider, bool_or(part IN ('i', 'f', 'v', 'o')) AS provider_truth FROM g GROUP BY ALL
), recv AS (
  SELECT g.merchant_id, g.provider, g.trade_day,
         sum(g.s) AS received, sum(g.n) AS lines, max(g.last_day) AS last_day,
         sum(g.n) FILTER (WHERE g.part = 'i') AS n_income, bool_or(g.part = 'b') AS bank,
         coalesce(sum(g.n - 1) FILTER (WHERE g.part = 'b'), 0) AS dups
  FROM g JOIN pick t ON t.merchant_id = g.merchant_id AND t.provider = g.provider
  WHERE g.part IN ('i', 'f') OR (g.part = 'v' AND t.provider_truth) OR (g.part = 'b' AND NOT t.provider_truth)
  GROUP BY ALL
), {exp_pay}, keys AS (
  SELECT merchant_id, provider, trade_day FROM exp_pay UNION
  SELECT merchant_id, provider, trade_day FROM rx
), days AS (
  SELECT k.merchant_id, k.provider, k.trade_day,
         coalesce(e.n, 0) AS n, coalesce(e.gross, 0) AS gross, coalesce(e.fees, 0) AS fees,
         coalesce(x.n, 0) AS rn, coalesce(x.refunds, 0) AS refunds, coalesce(x.returns, 0) AS returns,
         coalesce(e.settle_days, 1) AS sd, coalesce(e.wd, FALSE) AS wd, coalesce(e.contracted, FALSE) AS ct,
         coalesce(r.received, 0) AS received, coalesce(r.lines, 0) AS lines, r.last_day,
         CASE WHEN r.bank THEN 'bank' WHEN r.lines > 0 THEN 'provider' END AS src,
         greatest(coalesce(r.n_income, 0) - coalesce(e.n, 0), 0) + coalesce(r.dups, 0) AS dups
  FROM keys k
  LEFT JOIN exp_pay e USING (merchant_id, provider, trade_day)
  LEFT JOIN rx x USING (merchant_id, provider, trade_day)
  LEFT JOIN recv r USING (merchant_id, provider, trade_day)
)
SELECT merchant_id, provider, trade_day, n, gross, fees, rn, refunds, returns, sd, wd, ct, received, lines,
       last_day, src, dups,
       NOT wd AND dups = 0 AND received = gross - refunds - fees + returns
         AND (last_day IS NULL OR last_day <= trade_day + sd::INTEGER) AS plain
FROM days
"""


DAYS = days_sql(False)


# For the days that are not settled: which trades have no income line, and which have two.
def evidence_sql(kinds: bool) -> str:
    """For the days that are not settled: which trades have no income line, and which have two."""
    pay = terms("p", "p.trade_day", "pk.card_kind" if kinds else None)
    pay_kind = "LEFT JOIN st_pay_kind pk ON pk.merchant_id = p.merchant_id AND pk.id = p.id" if kinds else ""
    return f"""
WITH open_pay AS MATERIALIZED (  -- the open days' payments, read from st_pay once
  SELECT p.merchant_id, p.provider, p.trade_day, p.id, p.amount
  FROM st_pay p JOIN st_open o USING (merchant_id, provider, trade_day)
  WHERE p.in_window AND p.merchant_id BETWEEN $lo AND $hi
), credited AS (
  SELECT l.merchant_id, l.out_trade_no, count(*) AS n FROM st_line l
  JOIN open_pay p ON p.merchant_id = l.merchant_id AND p.id = l.out_trade_no
  WHERE l.kind = 'income' AND l.source <> 'bank' AND l.merchant_id BETWEEN $lo AND $hi GROUP BY ALL
)
SELECT p.merchant_id, p.provider, p.trade_day, p.id, p.amount, {fee_sql("p.amount", pay.rate, pay.cap)},
       coalesce(cr.n, 0) AS n
FROM open_pay p {pay_kind} {pay.joins}
LEFT JOIN credited cr ON cr.merchant_id = p.merchant_id AND cr.out_trade_no = p.id
WHERE coalesce(cr.n, 0) <> 1
QUALIFY row_number() OVER (PARTITION BY p.merchant_id, p.provider, p.trade_day ORDER BY p.id)
  <= {EVIDENCE_PER_DAY}
"""


EVIDENCE = evidence_sql(False)  # parameters $lo, $hi: the open days' first and last merchant id


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
    kinds = _card_kinds(con)
    rates = [(int(r), None if c is None else int(c)) for r, c in con.execute(
        "SELECT DISTINCT rate_ppm, cap_fen FROM st_contract ORDER BY ALL"
    ).fetchall()]  # fmt: skip
    many = len(rates) >= MAX_RATE_COLUMNS
    rows = con.execute(days_sql(kinds, None if many else rates)).fetchall()
    results: list[DayResult] = []
    append = results.append
    for row in rows:
        (m, prov, day, n, gross, fees, rn, refunds, returns, sd, wd, ct) = row[:12]
        recv, lines, last, src, dups, plain = row[12:]
        expected = Expected(day, due_day(day, sd, working_days=wd), gross, refunds, fees, returns, n, rn)
        received = Received(recv, lines, last, dups)
        # A plainly settled day (the SQL said so) needs no classification: it is settled, age 0.
        outcome = SETTLED if plain else classify(expected, received, today, grace_days)
        append(DayResult(m, prov, expected, received, outcome, ct, src, {}))
    if evidence:
        results = _attach_evidence(con, results, today, grace_days, kinds=kinds)
    return results


def _card_kinds(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether any payment's card kind can change its fee: a known kind and a card-kind contract."""
    row = con.execute(
        "SELECT EXISTS (SELECT 1 FROM st_kind_contract) AND EXISTS (SELECT 1 FROM st_pay_kind)"
    ).fetchone()
    return bool(row and row[0])


def _attach_evidence(
    con: duckdb.DuckDBPyConnection,
    results: list[DayResult],
    today: date,
    grace_days: int,
    *,
    kinds: bool = False,
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
    for m, prov, day, pay_id, amount, fee, n in con.execute(
        evidence_sql(kinds),  # the merchants' range lets the scans skip the other merchants' row groups
        {"lo": min(d[0] for d in open_days), "hi": max(d[0] for d in open_days)},
    ).fetchall():
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
