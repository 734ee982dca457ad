"""Settlement matching throughput: M merchants x D days of payments (about P per merchant-day) with their
fund-flow lines and planted faults, matched by Tillit's settlement check, next to DuckDB's raw join of
the same data in the same run.

    .venv/bin/python bench/settlement.py                         # 1,000 merchants x 30 days x 100
    .venv/bin/python bench/settlement.py --merchants 10 --days 3 --per-day 10 --json results.json

Seeding is DuckDB SQL straight into the matcher's input tables (``settlement/matching.py``: st_pay,
st_ref, st_contract, st_line): one income line per payment net of its fee, one refund on every 10th
payment, and ``--plant`` merchant-days of each fault: short (one line 1 yuan less), late (all lines
booked 3 days after the due day), missing (no line), duplicate (one line repeated under a new key).

Timed, alternating, best of ``--repeat``: ``matching.match`` (fees per payment half-up at the
contract's rate, attribution, per-day aggregation, duplicates, the classification of every
merchant-day in Python and the evidence query for the days not settled) and the raw join
``st_pay LEFT JOIN st_line ON (merchant_id, out_trade_no = id)`` aggregated per merchant-day.
Loading from the application database is not part of either (it is the same for both). Checks that
exactly the planted days were found. Results: docs/benchmarks.md ("Settlement").
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

import duckdb  # noqa: E402
from bench.harness import cli  # noqa: E402
from bench.harness.proc import self_peak_rss_mb  # noqa: E402
from bench.harness.report import machine, write_json  # noqa: E402

from tillit.settlement import matching  # noqa: E402

FIRST_DAY = date(2026, 10, 1)
RATE = 3800
FAULTS = ("short", "late", "missing", "duplicate")


def seed(
    con: duckdb.DuckDBPyConnection, merchants: int, days: int, per_day: int, plant: int
) -> dict[str, int]:
    matching.create_tables(con)
    first = FIRST_DAY.isoformat()
    con.execute(
        f"""
        INSERT INTO st_pay
        SELECT 'm' || lpad(m::VARCHAR, 5, '0'), 'wechat', 'p' || m || '_' || d || '_' || k,
               DATE '{first}' + d::INTEGER, 100 + (m * 7919 + d * 104729 + k * 1299709) % 50000, TRUE
        FROM range({merchants}) a(m), range({days}) b(d), range({per_day}) c(k)
        """
    )
    con.execute(
        """
        INSERT INTO st_ref
        SELECT merchant_id, provider, 'r' || id, id, trade_day, amount // 2 FROM st_pay
        WHERE hash(id) % 10 = 0
        """
    )
    con.execute(
        f"""
        INSERT INTO st_contract
        SELECT 'm' || lpad(m::VARCHAR, 5, '0'), 'wechat', {RATE}, NULL, 1, FALSE, DATE '2026-01-01', NULL
        FROM range({merchants}) a(m)
        """
    )
    # The planted merchant-days: fault i takes days (i * plant .. (i + 1) * plant - 1) of merchant 0..
    con.execute("CREATE TEMP TABLE planted (merchant_id VARCHAR, trade_day DATE, fault VARCHAR)")
    for i, fault in enumerate(FAULTS):
        con.execute(
            f"""
            INSERT INTO planted
            SELECT 'm' || lpad((n % {merchants})::VARCHAR, 5, '0'),
                   DATE '{first}' + (n // {merchants})::INTEGER, '{fault}'
            FROM range({i * plant}, {(i + 1) * plant}) r(n)
            """
        )
    fee = f"(2 * p.amount * {RATE} + 1000000) // 2000000"
    con.execute(
        f"""
        INSERT INTO st_line
        SELECT p.merchant_id, 'wechat', 'wechat_fundflow', 'L' || p.id, 'income',
               p.amount - {fee}
                 - CASE WHEN x.fault = 'short' AND p.id LIKE '%\\_0' ESCAPE '\\' THEN 100 ELSE 0 END,
               p.id, p.trade_day + CASE WHEN x.fault = 'late' THEN 4 ELSE 1 END, NULL
        FROM st_pay p LEFT JOIN planted x ON x.merchant_id = p.merchant_id AND x.trade_day = p.trade_day
        WHERE x.fault IS DISTINCT FROM 'missing'
        UNION ALL
        SELECT p.merchant_id, 'wechat', 'wechat_fundflow', 'D' || p.id, 'income', p.amount - {fee}, p.id,
               p.trade_day + 1, NULL
        FROM st_pay p JOIN planted x ON x.merchant_id = p.merchant_id AND x.trade_day = p.trade_day
        WHERE x.fault = 'duplicate' AND p.id LIKE '%\\_0' ESCAPE '\\'
        UNION ALL
        SELECT r.merchant_id, 'wechat', 'wechat_fundflow', 'R' || r.id, 'refund',
               -(r.amount - least((2 * r.amount * {RATE} + 1000000) // 2000000, {fee})),
               r.id, r.trade_day, NULL
        FROM st_ref r JOIN st_pay p ON p.merchant_id = r.merchant_id AND p.id = r.payment_id
        LEFT JOIN planted x ON x.merchant_id = r.merchant_id AND x.trade_day = r.trade_day
        WHERE x.fault IS DISTINCT FROM 'missing'
        """
    )
    count = {
        t: int(con.execute(f"SELECT count(*) FROM {t}").fetchone()[0])
        for t in ("st_pay", "st_ref", "st_line")
    }  # type: ignore[index]
    return count


RAW = """
SELECT p.merchant_id, p.provider, p.trade_day, count(*), sum(p.amount), sum(l.amount), max(l.booked_day)
FROM st_pay p LEFT JOIN st_line l ON l.merchant_id = p.merchant_id AND l.out_trade_no = p.id
GROUP BY ALL
"""


def main(argv: list[str] | None = None) -> None:
    parser = cli.parser(__doc__)
    parser.add_argument("--merchants", type=int, default=1000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--per-day", type=int, default=100)
    parser.add_argument("--plant", type=int, default=5, help="merchant-days planted per fault")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--memory-limit", default="1500MB")
    parser.add_argument("--repeat", type=int, default=3)
    cli.add_json(parser)
    args = parser.parse_args(argv)
    days_total = args.merchants * args.days
    if not (args.plant >= 1 and 4 * args.plant <= days_total and args.per_day >= 1 and args.repeat >= 1):
        parser.error("need 1 <= --plant, 4 x --plant <= merchants x days, --per-day >= 1, --repeat >= 1")
    con = duckdb.connect()
    con.execute(f"SET threads = {args.threads}; SET memory_limit = '{args.memory_limit}'")
    t = time.perf_counter()
    counts = seed(con, args.merchants, args.days, args.per_day, args.plant)
    seed_s = time.perf_counter() - t
    today = FIRST_DAY + timedelta(days=args.days + 10)  # every day past its cycle and grace
    match_runs: list[float] = []
    raw_runs: list[float] = []
    results: list[matching.DayResult] = []
    for _ in range(args.repeat):
        t = time.perf_counter()
        results = matching.match(con, today, 2)
        match_runs.append(time.perf_counter() - t)
        t = time.perf_counter()
        raw = con.execute(RAW).fetchall()
        raw_runs.append(time.perf_counter() - t)
    found = Counter(r.outcome.status for r in results)
    expected = {"settled": days_total - 4 * args.plant, **{f: args.plant for f in FAULTS}}
    ok = dict(found) == expected and len(raw) == days_total
    match_s, raw_s = min(match_runs), min(raw_runs)
    print(
        f"{args.merchants:,} merchants x {args.days} days: {counts['st_pay']:,} payments, "
        f"{counts['st_ref']:,} refunds, {counts['st_line']:,} statement lines; "
        f"seeded in {seed_s:.1f} s; threads={args.threads}"
    )
    runs = ", ".join(f"{x:.2f}" for x in match_runs)
    rate = counts["st_pay"] / match_s
    print(f"match     {match_s:7.2f} s  {rate:>12,.0f} payments/s  (best of {args.repeat}: {runs})")
    print(f"raw join  {raw_s:7.2f} s   ratio match/raw {match_s / raw_s:.2f}")
    print(f"peak RSS {self_peak_rss_mb():,.0f} MB")
    print(
        f"planted {expected}\nfound   {dict(found)}\n"
        + ("OK: exactly the planted ones" if ok else "MISMATCH")
    )
    write_json(
        args.json,
        {
            "meta": {**machine(), "threads": args.threads, "memory_limit": args.memory_limit},
            "merchants": args.merchants,
            "days": args.days,
            "merchant_days": days_total,
            **counts,
            "seed_s": seed_s,
            "match_s": match_s,
            "match_runs": match_runs,
            "raw_join_s": raw_s,
            "raw_runs": raw_runs,
            "match_over_raw_join": match_s / raw_s,
            "planted": expected,
            "found": dict(found),
            "ok": ok,
        },
    )
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
