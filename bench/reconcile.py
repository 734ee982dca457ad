"""Reconciliation throughput: N local payments against a WeChat ``downloadbill`` (ALL) of N lines with
planted discrepancies, parsed and matched by Tillit's code, next to DuckDB's raw join of the same data.

    .venv/bin/python bench/reconcile.py                 # 1 million lines (the routine run)
    .venv/bin/python bench/reconcile.py --lines 10000000
    .venv/bin/python bench/reconcile.py --lines 1000 --plant 2 --json results.json

Phases, each in its own process so that the peak RSS printed is the reconciliation's own:
1. generate (DuckDB): the local payments table and the bill file, exact WeChat layout (backquotes,
   CRLF, summary row), with ``--plant`` discrepancies of every class;
2. reconcile: ``formats.parse`` (scan: SHA-256 + UTF-8 check + line count; DuckDB read_csv; totals
   checked) then ``match.classify``; then the raw join, ``SELECT count(*) FROM bill FULL JOIN lp ON
   out_trade_no = id``, and the same join carrying the compared columns; the match is timed
   ``--repeat`` times, alternating with the joins, and the best of each is compared.

Prints lines/s for parse and match, the ratio match / raw join, peak RSS, and checks that exactly the
planted discrepancies were found. Results: docs/benchmarks.md ("Reconciliation").
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# bench/ is not installed: the shared harness and this checkout's code come from the checkout.
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from bench.harness import cli  # noqa: E402
from bench.harness.proc import self_peak_rss_mb  # noqa: E402
from bench.harness.report import machine, write_json  # noqa: E402

HEADER = (
    "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,"
    "应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,"
    "手续费,费率,订单金额,申请退款金额,费率备注"
)
SUMMARY = "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额"
RATE = 3800  # 0.38 %
DAY_START_UTC = "2026-11-19 16:00:00"  # 2026-11-20 00:00 China time
CLASSES = (
    "missing_at_provider",
    "missing_locally",
    "amount_mismatch",
    "status_mismatch",
    "fee_mismatch",
    "duplicate",
    "timing",
)


def generate(workdir: Path, lines: int, plant: int, threads: int) -> dict[str, int]:
    """lp (local payments) in workdir/local.duckdb and the bill in workdir/bill.csv."""
    import duckdb

    db = workdir / "local.duckdb"
    con = duckdb.connect(str(db), config={"threads": threads, "memory_limit": "2GB"})
    con.execute(f"SET temp_directory = '{workdir / 'spill'}'")
    k = plant
    # Row i: local payment i; bill row i is its payment unless planted otherwise (ranges below).
    con.execute(
        f"""CREATE TABLE src AS SELECT i,
              md5(i::VARCHAR) AS id,
              '4200' || lpad(i::VARCHAR, 24, '0') AS trade_no,
              (100 + (i * 37) % 99900)::BIGINT AS amount,
              TIMESTAMP '{DAY_START_UTC}' + to_seconds(60 + (i * 7919) % 86000) AS ts
            FROM range({lines}) r(i)"""
    )
    # Planted ranges (k each): [0,k) missing_locally, [k,2k) missing_at_provider, [2k,3k) amount,
    # [3k,4k) fee, [4k,5k) duplicate, [5k,6k) in-flight (status), [6k,7k) timing (late local, no bill).
    con.execute(
        f"""CREATE TABLE lp AS SELECT id, trade_no AS provider_ref,
              amount + CASE WHEN i >= {2 * k} AND i < {3 * k} THEN 1 ELSE 0 END AS amount,
              CASE WHEN i >= {5 * k} AND i < {6 * k} THEN 'unknown' ELSE 'captured' END AS status,
              CASE WHEN i >= {6 * k} AND i < {7 * k} THEN TIMESTAMP '{DAY_START_UTC}' + INTERVAL 86398 SECOND
                   ELSE ts END AS ts,
              'order' AS order_id
            FROM src WHERE i >= {k}"""
    )
    fee = (
        f"CASE WHEN i >= {3 * k} AND i < {4 * k} THEN (amount * 6000) // 1000 "
        f"ELSE (amount * {RATE} + 500) // 1000 END"
    )
    body = workdir / "body.csv"
    con.execute(
        f"""COPY (
          SELECT '`' || strftime(ts + INTERVAL 8 HOUR, '%Y-%m-%d %H:%M:%S')
                 || ',`wx2421b1c4370ec43b,`10000100,`0,`T001,`' || trade_no || ',`' || id
                 || ',`oUpF8uMuAJO_M2pxb1Q9zNjWeS6o,`MICROPAY,`SUCCESS,`OTHERS,`CNY,`'
                 || printf('%.2f', amount / 100) || ',`0.00,`0,`0,`0.00,`0.00,`,`,`商品,`,`'
                 || printf('%.5f', ({fee}) / 100000) || ',`0.38%,`' || printf('%.2f', amount / 100)
                 || ',`0.00,`' AS l,
                 fee_e5, amount, i
          FROM (SELECT *, {fee} AS fee_e5 FROM src
                WHERE NOT (i >= {k} AND i < {2 * k}) AND NOT (i >= {6 * k} AND i < {7 * k})
                UNION ALL SELECT *, {fee} FROM src WHERE i >= {4 * k} AND i < {5 * k})
          ORDER BY i
        ) TO '{workdir / "body.parquet"}' (FORMAT parquet)"""
    )
    totals = con.execute(
        f"SELECT count(*), sum(amount), sum(fee_e5) FROM read_parquet('{workdir / 'body.parquet'}')"
    ).fetchone()
    assert totals is not None
    con.execute(
        f"COPY (SELECT l FROM read_parquet('{workdir / 'body.parquet'}')) TO '{body}' "
        "(HEADER false, QUOTE '', ESCAPE '', DELIMITER '\t', NEW_LINE '\r\n')"
    )
    con.execute("DROP TABLE src")
    con.close()
    (workdir / "body.parquet").unlink()
    rows, amount, fees = (int(x) for x in totals)
    bill = workdir / "bill.csv"
    with bill.open("wb") as out:
        out.write((HEADER + "\r\n").encode())
        with body.open("rb") as src:
            shutil.copyfileobj(src, out, 16 * 1024 * 1024)
        money = f"{amount // 100}.{amount % 100:02d}"
        out.write((SUMMARY + "\r\n").encode())
        out.write(
            f"`{rows},`{money},`0.00,`0.00,`{fees // 100000}.{fees % 100000:05d},`{money},`0.00\r\n".encode()
        )
    body.unlink()
    return {"bill_rows": rows, "local_rows": lines - k, "size": bill.stat().st_size}


def reconcile(workdir: Path, threads: int, memory_limit: str, repeat: int) -> dict[str, object]:
    import duckdb

    from tillit.reconciliation import formats, match

    con = duckdb.connect(
        str(workdir / "local.duckdb"), config={"threads": threads, "memory_limit": memory_limit}
    )
    con.execute(f"SET temp_directory = '{workdir / 'spill'}'")
    con.execute("SET preserve_insertion_order = true")
    t0 = time.perf_counter()
    bill = formats.parse(con, workdir / "bill.csv", "wechat")
    parse_s = time.perf_counter() - t0
    con.execute(f"CREATE OR REPLACE TEMP TABLE lr ({match.LOCAL_REFUNDS})")
    con.execute(f"CREATE OR REPLACE TEMP TABLE er ({match.ENGINE_REFUNDS})")
    start, end = formats.china_day_bounds(bill.bill_date)  # type: ignore[arg-type]
    window, fee = match.Window(start, end), match.FeeRule(RATE, bill.fee_unit)
    raw_sql = f"SELECT count(*) FROM {bill.table} b FULL JOIN lp l ON b.out_trade_no = l.id"
    payload_sql = (
        f"SELECT count(*), sum(b.amount), sum(l.amount), count(l.status), max(l.ts), sum(b.fee) "
        f"FROM {bill.table} b FULL JOIN lp l ON b.out_trade_no = l.id"
    )
    match_s, raw_s, payload_s = [], [], []
    result = None
    for _ in range(repeat):
        t = time.perf_counter()
        con.execute(raw_sql).fetchall()
        raw_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        result = match.classify(con, bill.table, window, fee, lines=bill.rows, dups=bill.dups)
        match_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        con.execute(payload_sql).fetchall()
        payload_s.append(time.perf_counter() - t)
    assert result is not None
    found = dict(result.counts)
    con.close()
    return {
        "bill_rows": bill.rows,
        "parse_s": parse_s,
        "match_s": min(match_s),
        "raw_join_s": min(raw_s),
        "payload_join_s": min(payload_s),
        "match_runs": match_s,
        "raw_runs": raw_s,
        "found": found,
        "peak_rss_mb": self_peak_rss_mb(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = cli.parser(__doc__)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--plant", type=int, default=10, help="discrepancies planted per class")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--memory-limit", default="1500MB", help="DuckDB memory_limit for the reconcile phase"
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--phase", choices=("all", "generate", "reconcile"), default="all")
    cli.add_json(parser)
    args = parser.parse_args(argv)
    if not 7 * args.plant < args.lines <= 100_000_000 or args.plant < 1 or args.repeat < 1:
        parser.error("need 1 <= --plant, 7 x --plant < --lines <= 100,000,000 and --repeat >= 1")
    own = args.workdir is None
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="tillit-bench-recon-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        if args.phase == "generate":
            print(json.dumps(generate(workdir, args.lines, args.plant, args.threads)))
            return
        if args.phase == "reconcile":
            print(json.dumps(reconcile(workdir, args.threads, args.memory_limit, args.repeat)))
            return
        common = [
            "--workdir",
            str(workdir),
            "--lines",
            str(args.lines),
            "--plant",
            str(args.plant),
            "--threads",
            str(args.threads),
            "--memory-limit",
            args.memory_limit,
            "--repeat",
            str(args.repeat),
        ]
        t = time.perf_counter()
        gen = json.loads(_child([*common, "--phase", "generate"]))
        gen_s = time.perf_counter() - t
        rec = json.loads(_child([*common, "--phase", "reconcile"]))
        expected = {c: args.plant for c in CLASSES}
        expected["missing_at_provider"] = args.plant  # [k,2k) have no bill row
        ok = rec["found"] == expected
        n = rec["bill_rows"]
        print(
            f"bill: {n:,} lines ({gen['size'] / 1e6:,.0f} MB), local: {gen['local_rows']:,} payments, "
            f"generated in {gen_s:.1f} s; threads={args.threads}, memory_limit={args.memory_limit}"
        )
        print(
            f"parse  {rec['parse_s']:7.2f} s  {n / rec['parse_s']:>12,.0f} lines/s  "
            "(scan + read_csv + totals + duplicates)"
        )
        print(
            f"match  {rec['match_s']:7.2f} s  {n / rec['match_s']:>12,.0f} lines/s  (best of {args.repeat}: "
            + ", ".join(f"{x:.2f}" for x in rec["match_runs"])
            + ")"
        )
        print(
            f"raw join (count)     {rec['raw_join_s']:7.2f} s   ratio match/raw   "
            f"{rec['match_s'] / rec['raw_join_s']:.2f}"
        )
        print(
            f"raw join (+columns)  {rec['payload_join_s']:7.2f} s   ratio match/join  "
            f"{rec['match_s'] / rec['payload_join_s']:.2f}"
        )
        print(f"peak RSS (reconcile process) {rec['peak_rss_mb']:,.0f} MB")
        print(
            f"planted {expected}\nfound   {rec['found']}\n"
            + ("OK: exactly the planted ones" if ok else "MISMATCH")
        )
        write_json(
            args.json,
            {
                "meta": {**machine(), "threads": args.threads, "memory_limit": args.memory_limit},
                "lines": n,
                "generate": {**gen, "seconds": gen_s},
                "reconcile": rec,
                "parse_lines_per_s": n / rec["parse_s"],
                "match_lines_per_s": n / rec["match_s"],
                "match_over_raw_join": rec["match_s"] / rec["raw_join_s"],
                "match_over_payload_join": rec["match_s"] / rec["payload_join_s"],
                "planted": expected,
                "ok": ok,
            },
        )
        if not ok:
            sys.exit(1)
    finally:
        if own:
            shutil.rmtree(workdir, ignore_errors=True)


def _child(args: list[str]) -> str:
    env = dict(os.environ)
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        sys.stderr.write(out.stderr)
        raise SystemExit(f"{args[-1]} phase failed")
    return out.stdout.strip().splitlines()[-1]


if __name__ == "__main__":
    main()
