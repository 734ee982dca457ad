"""The back office's Today page and the cancellation heat map over many orders: p95 time to render each
over HTTP (a real `tillit serve`; the page signed in with a session cookie, the heat map's SVG from
``GET /v1/monitoring/charts/heatmap.svg`` for today with the manager's key), next to the raw query behind
it in the same run (``sales.reports.today``; the heat map's grouping as one SQL statement).

    .venv/bin/python bench/backoffice.py                  # 1,000,000 orders over 30 days, both databases
    .venv/bin/python bench/backoffice.py --orders 200000 --db sqlite
    .venv/bin/python bench/backoffice.py --orders 1000 --renders 20 --json results.json

Seeding is set-based (one INSERT ... SELECT per table over a generated series): ``--orders`` paid orders
for one merchant, one captured payment each (cash, WeChat, Alipay in turn), a refund on every 50th, spread
evenly over ``--days`` days ending a minute before the shop's last midnight, and the page is asked for
that day (``?day=``), so the measured day is a full one holding about orders / days of them; 4 tills; and
orders / 10 cancelled orders with one failed (every fifth: reversed) WeChat or Alipay attempt each, with
provider codes, spread the same way. Then ``--renders`` times, alternating: the raw Today query in this
process, ``GET /backoffice/today`` through the server, the raw heat-map query, the heat-map SVG. Prints
the p50/p95 of each and the ratios render / raw (aim <= 1.5x), the seed time and sizes, the load average
before and after (the machine may be shared), and checks that the page shows the count the query found
and the SVG the cells the raw query found. Results: docs/benchmarks.md ("Back office").
"""

from __future__ import annotations

import os
import re
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

import httpx  # noqa: E402
from bench.harness import cli, db, server  # noqa: E402
from bench.harness.report import (  # noqa: E402
    console,
    figure_table,
    fmt,
    machine,
    ms,
    percentile,
    verdict,
    write_json,
)
from sqlalchemy import text  # noqa: E402

AIM = 1.5
TILLS = 4
CANCELS = ("customer_cancelled", "cashier_cancelled", "payment_failed", "timeout")
CODES = ("NOTENOUGH", "PAYERROR", "AUTHCODEEXPIRE", "ACQ.BUYER_BALANCE_NOT_ENOUGH", "SYSTEMERROR")


def _series(kind: str, n: int) -> str:
    """A table ``s(i)`` of 0..n-1."""
    if kind == "sqlite":
        return (
            f"(WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i < {n - 1})"
            " SELECT i FROM s)"
        )
    return f"(SELECT generate_series(0, {n - 1}) AS i)"


def seed(container: Any, kind: str, orders: int, days: int, now: datetime) -> dict[str, Any]:
    """One merchant with TILLS tills and ``orders`` paid orders (set-based inserts); returns its ids."""
    from tillit.access import keys, merchants
    from tillit.sales import catalog

    with container.db.transaction() as conn:
        m = merchants.create_merchant(conn, container.deps, name="Bench shop")
        store = merchants.create_store(conn, container.deps, merchant_id=m["id"], name="Main")
        tills = [
            merchants.create_terminal(conn, container.deps, store_id=store["id"], name=f"Till {n}")["id"]
            for n in range(1, TILLS + 1)
        ]
        _, manager_key = keys.create_key(
            conn, container.deps, role="merchant", name="bench", merchant_id=m["id"]
        )
        catalog.create_product(
            conn,
            container.deps,
            merchant_id=m["id"],
            merchant_currency="CNY",
            sku="LATTE",
            name="Latte",
            price=2800,
        )
    span_s = days * 86400
    mid, sid = m["id"], store["id"]
    till_case = "CASE " + " ".join(f"WHEN i % {TILLS} = {k} THEN '{t}'" for k, t in enumerate(tills)) + " END"
    if kind == "sqlite":
        hexid = "printf('%032x', i + {offset})"
        offset = f"'-' || ((i * {span_s}) / {orders}) || ' seconds'"
        at = f"strftime('%Y-%m-%d %H:%M:%S', '{now:%Y-%m-%d %H:%M:%S}', {offset}) || '.000000'"
    else:
        hexid = "lpad(to_hex(i + {offset}), 32, '0')"
        at = f"(TIMESTAMPTZ '{now.isoformat()}' - make_interval(secs => (i::bigint * {span_s}) / {orders}))"
    amount = "(1000 + (i * 37) % 20000)"
    method = "CASE i % 3 WHEN 0 THEN 'cash' WHEN 1 THEN 'wechat' ELSE 'alipay' END"
    order_id, payment_id = hexid.format(offset=0), hexid.format(offset=orders)
    refunded, series = "i % 50 = 0", _series(kind, orders)
    started = time.perf_counter()
    with container.db.transaction() as conn:
        conn.execute(
            text(
                "INSERT INTO orders (id, merchant_id, store_id, terminal_id, number, status, currency,"
                " subtotal, discount_total, total, paid_amount, refunded_amount, version, created_at,"
                " updated_at)"
                f" SELECT {order_id}, '{mid}', '{sid}', {till_case}, i + 1,"
                f" CASE WHEN {refunded} THEN 'refunded' ELSE 'paid' END, 'CNY',"
                f" {amount}, 0, {amount}, {amount}, CASE WHEN {refunded} THEN {amount} ELSE 0 END, 1,"
                f" {at}, {at} FROM {series} s"
            )
        )
        conn.execute(
            text(
                "INSERT INTO payments (id, merchant_id, order_id, terminal_id, method, provider, amount,"
                " currency, status, refunded_amount, provider_ref, version, created_at, updated_at,"
                " resolved_at)"
                f" SELECT {payment_id}, '{mid}', {order_id}, {till_case}, {method},"
                f" CASE WHEN i % 3 = 0 THEN NULL ELSE {method} END, {amount}, 'CNY',"
                f" CASE WHEN {refunded} THEN 'refunded' ELSE 'captured' END,"
                f" CASE WHEN {refunded} THEN {amount} ELSE 0 END,"
                f" CASE WHEN i % 3 = 0 THEN NULL ELSE 'ref' || i END, 1, {at}, {at}, {at} FROM {series} s"
            )
        )
        conn.execute(
            text(
                "INSERT INTO refunds (id, merchant_id, order_id, payment_id, amount, currency, status,"
                " created_at, updated_at)"
                f" SELECT {hexid.format(offset=2 * orders)}, '{mid}', {order_id}, {payment_id}, {amount},"
                f" 'CNY', 'succeeded', {at}, {at} FROM {series} s WHERE {refunded}"
            )
        )
        # The heat map's rows: cancelled orders, each after one failed or reversed provider attempt.
        cancels = max(1, orders // 10)
        c_series = _series(kind, cancels)
        if kind == "sqlite":
            c_at = (
                f"strftime('%Y-%m-%d %H:%M:%S', '{now:%Y-%m-%d %H:%M:%S}',"
                f" '-' || ((i * {span_s} + 1234) / {cancels}) || ' seconds') || '.000000'"
            )
        else:
            c_at = (
                f"(TIMESTAMPTZ '{now.isoformat()}'"
                f" - make_interval(secs => (i::bigint * {span_s} + 1234) / {cancels}))"
            )
        c_order = hexid.format(offset=3 * orders)
        reason = "CASE i % 4 " + " ".join(f"WHEN {k} THEN '{r}'" for k, r in enumerate(CANCELS)) + " END"
        code = "CASE i % 5 " + " ".join(f"WHEN {k} THEN '{c}'" for k, c in enumerate(CODES)) + " END"
        c_method = "CASE i % 2 WHEN 0 THEN 'wechat' ELSE 'alipay' END"
        conn.execute(
            text(
                "INSERT INTO orders (id, merchant_id, store_id, terminal_id, number, status, currency,"
                " subtotal, discount_total, total, paid_amount, refunded_amount, cancel_reason, version,"
                " created_at, updated_at)"
                f" SELECT {c_order}, '{mid}', '{sid}', {till_case}, {orders} + i + 1, 'cancelled', 'CNY',"
                f" {amount}, 0, {amount}, 0, 0, {reason}, 1, {c_at}, {c_at} FROM {c_series} s"
            )
        )
        conn.execute(
            text(
                "INSERT INTO payments (id, merchant_id, order_id, terminal_id, method, provider, amount,"
                " currency, status, failure_code, refunded_amount, version, created_at, updated_at,"
                " resolved_at)"
                f" SELECT {hexid.format(offset=4 * orders)}, '{mid}', {c_order}, {till_case}, {c_method},"
                f" {c_method}, {amount}, 'CNY', CASE WHEN i % 5 = 0 THEN 'reversed' ELSE 'failed' END,"
                f" {code}, 0, 1, {c_at}, {c_at}, {c_at} FROM {c_series} s"
            )
        )
    inserted_s = time.perf_counter() - started
    with container.db.transaction() as conn:
        conn.execute(text("ANALYZE"))
    return {
        "merchant_id": mid,
        "manager_key": manager_key,
        "seed_s": round(time.perf_counter() - started, 1),
        "insert_s": round(inserted_s, 1),
        "cancels": cancels,
    }


def heat_map_sql(kind: str, offset: int) -> str:
    """The grouping behind the heat map as one statement on the database (no reason mapping to the
    cashier's messages, no terminal names, no SVG): what the heat map costs at least."""
    from tillit.domain.messages import FAILURE_REASONS

    cases = " ".join(f"WHEN '{c}' THEN '{r}'" for c, r in FAILURE_REASONS.items())
    if kind == "sqlite":
        hour = f"CAST(strftime('%H', created_at, '{offset:+d} minutes') AS INTEGER)"
    else:
        hour = f"extract(hour FROM timezone('UTC', created_at) + make_interval(mins => {offset}))::int"
    return f"""SELECT reason, terminal_id, hour, count(*) FROM (
        SELECT CASE coalesce(failure_code, '') {cases} ELSE 'declined' END AS reason,
               coalesce(terminal_id, '') AS terminal_id, {hour} AS hour
        FROM payments WHERE merchant_id = :m AND created_at >= :s AND created_at < :e
          AND status IN ('failed', 'reversed') AND method <> 'cash'
        UNION ALL
        SELECT 'order:' || cancel_reason, coalesce(terminal_id, ''), {hour}
        FROM orders WHERE merchant_id = :m AND created_at >= :s AND created_at < :e AND status = 'cancelled'
    ) AS f GROUP BY 1, 2, 3"""


def load_average() -> str:
    try:
        return " ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "?"


def run(kind: str, args: Any) -> dict[str, Any]:
    from tillit.adapters.db import migrate
    from tillit.backoffice.pages.today import day_window
    from tillit.backoffice.web import SHOP_TZ
    from tillit.bootstrap import build
    from tillit.config import Settings
    from tillit.sales import reports

    with db.target("postgres" if kind == "postgres" else "sqlite", args.sqlite_synchronous, args.pg_url) as t:
        # The measured day is a full shop day whatever the hour the bench runs at: the data ends a minute
        # before the shop's last midnight and the page is asked for that day (?day=).
        anchor = datetime.now(SHOP_TZ).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(
            minutes=1
        )
        os.environ.update({k: v for k, v in t.env.items() if k.startswith("TILLIT_")})
        container = build(Settings.from_env())
        migrate.upgrade(container.db)
        seeded = seed(
            container,
            "sqlite" if kind == "sqlite" else "postgres",
            args.orders,
            args.days,
            anchor.astimezone(UTC),
        )
        console.print(f"{t.label}: seeded {args.orders:,} orders in {seeded['seed_s']} s")
        start, end = day_window(anchor.date())
        raw_ms: list[float] = []
        render_ms: list[float] = []
        heat_raw_ms: list[float] = []
        heat_ms: list[float] = []
        heat_sql = text(heat_map_sql("sqlite" if kind == "sqlite" else "postgres", 480))
        if kind == "sqlite":
            stamp = "%Y-%m-%d %H:%M:%S.%f"  # as SQLite stores them: ISO text, UTC
            heat_params: dict[str, Any] = {
                "m": seeded["merchant_id"],
                "s": start.astimezone(UTC).strftime(stamp),
                "e": end.astimezone(UTC).strftime(stamp),
            }
        else:
            heat_params = {"m": seeded["merchant_id"], "s": start, "e": end}
        chart_params = {"start": start.isoformat(), "end": end.isoformat(), "lang": "zh-CN"}
        bearer = {"Authorization": f"Bearer {seeded['manager_key']}"}
        load_before = load_average()
        with server.serve(t.env, t.workdir) as srv, httpx.Client(base_url=srv.base_url, timeout=60) as client:
            form = client.get("/backoffice/signin")
            token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
            assert token is not None
            client.post(
                "/backoffice/signin", data={"api_key": seeded["manager_key"], "csrf_token": token.group(1)}
            )
            view = None
            for n in range(args.renders + 2):  # the first two of each are warm-up
                t0 = time.perf_counter()
                with container.db.read() as conn:
                    view = reports.today(conn, seeded["merchant_id"], start, end)
                t1 = time.perf_counter()
                page = client.get("/backoffice/today", params={"day": anchor.date().isoformat()})
                t2 = time.perf_counter()
                assert page.status_code == 200, page.text[:300]
                with container.db.read() as conn:
                    cells = conn.execute(heat_sql, heat_params).all()
                t3 = time.perf_counter()
                svg = client.get("/v1/monitoring/charts/heatmap.svg", params=chart_params, headers=bearer)
                t4 = time.perf_counter()
                assert svg.status_code == 200, svg.text[:300]
                if n >= 2:
                    raw_ms.append((t1 - t0) * 1000)
                    render_ms.append((t2 - t1) * 1000)
                    heat_raw_ms.append((t3 - t2) * 1000)
                    heat_ms.append((t4 - t3) * 1000)
            assert view is not None
            shown = re.search(r'id="sales-count">(\d+)<', page.text)
            assert shown is not None and int(shown.group(1)) == view["sales_count"], "page and query disagree"
            drawn = {
                (m[0], m[1], int(m[2])): int(m[3])
                for m in re.findall(
                    r'data-reason="([^"]+)" data-terminal="([^"]*)" data-hour="(\d+)" data-count="(\d+)"',
                    svg.text,
                )
            }
            counted = {(str(r[0]), str(r[1]), int(r[2])): int(r[3]) for r in cells}
            assert {k: v for k, v in drawn.items() if v} == counted, "heat map and raw query disagree"
        container.db.dispose()
    load_after = load_average()
    raw95, render95 = percentile(raw_ms, 95), percentile(render_ms, 95)
    ratio = (render95 / raw95) if raw95 and render95 else None
    h_raw95, h95 = percentile(heat_raw_ms, 95), percentile(heat_ms, 95)
    h_ratio = (h95 / h_raw95) if h_raw95 and h95 else None
    return {
        "db": kind,
        "orders": args.orders,
        "days": args.days,
        "orders_today": view["sales_count"],
        "renders": args.renders,
        "seed_s": seeded["seed_s"],
        "raw_p50_ms": ms(percentile(raw_ms, 50)),
        "raw_p95_ms": ms(raw95),
        "render_p50_ms": ms(percentile(render_ms, 50)),
        "render_p95_ms": ms(render95),
        "ratio_p95": round(ratio, 2) if ratio else None,
        "aim_met": ratio is not None and ratio <= AIM,
        "cancels": seeded["cancels"],
        "heat_cells": len(counted),
        "heat_events_today": sum(counted.values()),
        "heat_raw_p50_ms": ms(percentile(heat_raw_ms, 50)),
        "heat_raw_p95_ms": ms(h_raw95),
        "heat_p50_ms": ms(percentile(heat_ms, 50)),
        "heat_p95_ms": ms(h95),
        "heat_ratio_p95": round(h_ratio, 2) if h_ratio else None,
        "heat_aim_met": h_ratio is not None and h_ratio <= AIM,
        "load_before": load_before,
        "load_after": load_after,
    }


def main() -> None:
    p = cli.parser(__doc__)
    cli.add_db(p)
    p.add_argument("--orders", type=int, default=1_000_000)
    p.add_argument("--days", type=int, default=30, help="the orders are spread over this many days")
    p.add_argument("--renders", type=int, default=100, help="measured renders (and raw queries)")
    cli.add_json(p)
    args = p.parse_args()
    if not (1 <= args.orders <= 10**8 and 1 <= args.days <= 3650 and 1 <= args.renders <= 100_000):
        p.error("--orders 1..1e8, --days 1..3650, --renders 1..100000")
    results = [run(kind, args) for kind in cli.db_kinds(p, args)]
    for r in results:
        console.print(
            figure_table(
                f"Back office Today page, {r['db']}: {r['orders']:,} orders over {r['days']} days "
                f"({r['orders_today']:,} today)",
                [
                    ("seed (set-based inserts + ANALYZE)", fmt(r["seed_s"], " s")),
                    (
                        "raw query p50 / p95",
                        f"{fmt(r['raw_p50_ms'], ' ms', 2)} / {fmt(r['raw_p95_ms'], ' ms', 2)}",
                    ),
                    (
                        "page render p50 / p95",
                        f"{fmt(r['render_p50_ms'], ' ms', 2)} / {fmt(r['render_p95_ms'], ' ms', 2)}",
                    ),
                    (
                        "render / raw at p95",
                        f"{fmt(r['ratio_p95'], 'x', 2)} (aim <= {AIM}x: {verdict(r['aim_met'])})",
                    ),
                    (
                        "heat map today: cells / events",
                        f"{r['heat_cells']} / {r['heat_events_today']:,} ({r['cancels']:,} cancels seeded)",
                    ),
                    (
                        "heat map raw query p50 / p95",
                        f"{fmt(r['heat_raw_p50_ms'], ' ms', 2)} / {fmt(r['heat_raw_p95_ms'], ' ms', 2)}",
                    ),
                    (
                        "heat map SVG p50 / p95",
                        f"{fmt(r['heat_p50_ms'], ' ms', 2)} / {fmt(r['heat_p95_ms'], ' ms', 2)}",
                    ),
                    (
                        "heat map / raw at p95",
                        f"{fmt(r['heat_ratio_p95'], 'x', 2)} (aim <= {AIM}x: {verdict(r['heat_aim_met'])})",
                    ),
                    ("load average before / after", f"{r['load_before']} / {r['load_after']}"),
                ],
            )
        )
    write_json(args.json, {"machine": machine(), "results": results})


if __name__ == "__main__":
    main()
