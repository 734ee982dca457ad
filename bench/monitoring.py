"""Monitoring benchmark: (1) the cancellation heat map over many orders against the raw SQL behind it,
(2) cash checkouts/s with and without the /metrics instrumentation (request counter, latency histogram,
request id), in the same run.

1. A fresh SQLite database is filled with N orders over 30 days at 8 tills (every tenth cancelled with
   a failed provider attempt, every tenth paid after a failed one, the rest paid) with plain inserts.
   Then, interleaved R times each: the heat map as the page and the API build it
   (``analytics.heat_map_cells`` — the failed attempts and cancelled orders filtered in the database,
   grouped in DuckDB, reasons mapped to cashier messages — plus ``charts.heat_map`` SVG), and the raw
   query: the same grouping as one SQL statement on the database. p50/p95 of both and their ratio.
2. Two `tillit serve` processes on two fresh databases, one with ``TILLIT_METRICS=0``; the other keeps
   the instrumentation on and is scraped (``GET /metrics`` with the scrape token) every
   ``--scrape-every`` seconds while its rounds run, as Prometheus would. Checkout rounds alternate
   between them (A B B A A B ...) so machine noise hits both. For each round: checkouts/s and the
   server process's CPU seconds per checkout (``/proc/<pid>/stat`` through ``harness.proc.CpuWindow``),
   which a shared machine disturbs far less than throughput. Printed: the medians of each side and the
   ratios with / without, for throughput and for CPU per checkout (aim: at most 3 % worse).

    .venv/bin/python bench/monitoring.py [--orders N] [--rounds R] [--checkouts N] [--checkout-rounds K]
                                         [--concurrency C] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

# bench/ is not installed: import the shared harness from this checkout.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
from bench.checkout import httpx_checkouts, wrk_checkouts
from bench.harness import cli
from bench.harness.db import target
from bench.harness.load import ensure_wrk
from bench.harness.proc import CpuWindow, loadavg
from bench.harness.report import console, machine, percentile, write_json
from bench.harness.server import Server, seed_demo
from sqlalchemy import insert, text

from tillit.adapters.db import migrate
from tillit.adapters.db.engine import Database, make_engine
from tillit.adapters.db.schema import merchants, orders, payments, stores, terminals
from tillit.api.observability import Observability
from tillit.domain.messages import FAILURE_REASONS
from tillit.monitoring import analytics, charts
from tillit.monitoring.frames import Range

HEATMAP_TARGET = 1.5  # the aim: the heat map within 1.5x the raw query
METRICS_TARGET = 0.03  # /metrics must not lower checkouts/s by more than 3 %
CODES = ("NOTENOUGH", "PAYERROR", "AUTHCODEEXPIRE", "ACQ.BUYER_BALANCE_NOT_ENOUGH", "SYSTEMERROR")
CANCELS = ("customer_cancelled", "cashier_cancelled", "payment_failed", "timeout")
START = datetime(2026, 10, 1, tzinfo=UTC)
MID = "m" * 32


def seed(db: Database, n: int) -> None:
    now = START
    with db.transaction() as conn:
        conn.execute(insert(merchants).values(id=MID, name="Bench", currency="CNY", created_at=now))
        conn.execute(insert(stores).values(id="s" * 32, merchant_id=MID, name="Main", created_at=now))
        conn.execute(
            insert(terminals),
            [
                {
                    "id": f"{t:032x}",
                    "merchant_id": MID,
                    "store_id": "s" * 32,
                    "name": f"Till {t + 1}",
                    "created_at": now,
                }
                for t in range(8)
            ],
        )
    chunk = 20_000
    for base in range(0, n, chunk):
        order_rows, pay_rows = [], []
        for i in range(base, min(n, base + chunk)):
            at = START + timedelta(seconds=(i * 2593) % (30 * 86400))
            term = f"{i % 8:032x}"
            oid = f"o{i:031x}"
            cancelled = i % 10 == 0
            order_rows.append(
                {
                    "id": oid,
                    "merchant_id": MID,
                    "store_id": "s" * 32,
                    "terminal_id": term,
                    "number": i + 1,
                    "status": "cancelled" if cancelled else "paid",
                    "currency": "CNY",
                    "subtotal": 2800,
                    "discount_total": 0,
                    "total": 2800,
                    "paid_amount": 0 if cancelled else 2800,
                    "refunded_amount": 0,
                    "cancel_reason": CANCELS[i % 4] if cancelled else None,
                    "version": 1,
                    "created_at": at,
                    "updated_at": at,
                }
            )
            method = "wechat" if i % 3 else "alipay"
            common = {
                "merchant_id": MID,
                "order_id": oid,
                "terminal_id": term,
                "method": method,
                "provider": method,
                "amount": 2800,
                "currency": "CNY",
                "refunded_amount": 0,
                "version": 1,
                "created_at": at,
                "updated_at": at,
                "resolved_at": at,
            }
            if i % 10 in (0, 1):
                pay_rows.append(
                    {
                        **common,
                        "id": f"f{i:031x}",
                        "status": "failed" if i % 20 else "reversed",
                        "failure_code": CODES[i % len(CODES)],
                    }
                )
            if not cancelled:
                pay_rows.append(
                    {
                        **common,
                        "id": f"p{i:031x}",
                        "status": "captured",
                        "failure_code": None,
                        "pay_latency_ms": 40 + i % 200,
                    }
                )
        with db.transaction() as conn:
            conn.execute(insert(orders), order_rows)
            conn.execute(insert(payments), pay_rows)


def raw_sql(offset: int) -> str:
    """The grouping behind the heat map as one SQLite statement (times as stored: ISO text, UTC)."""
    cases = " ".join(f"WHEN '{c}' THEN '{r}'" for c, r in FAILURE_REASONS.items())
    hour = f"CAST(strftime('%H', created_at, '+{offset} minutes') AS INTEGER)"
    return f"""SELECT reason, terminal_id, hour, count(*) FROM (
        SELECT CASE coalesce(failure_code, '') {cases} ELSE 'declined' END AS reason,
               coalesce(terminal_id, '') AS terminal_id, {hour} AS hour
        FROM payments WHERE merchant_id = :m AND created_at >= :s AND created_at < :e
          AND status IN ('failed', 'reversed') AND method <> 'cash'
        UNION ALL
        SELECT 'order:' || cancel_reason, coalesce(terminal_id, ''), {hour}
        FROM orders WHERE merchant_id = :m AND created_at >= :s AND created_at < :e AND status = 'cancelled'
    ) GROUP BY 1, 2, 3"""


def bench_heatmap(n: int, rounds: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-mon-") as tmp:
        db = Database(make_engine(f"sqlite:///{tmp}/bench.sqlite", sqlite_synchronous="OFF"))
        migrate.upgrade(db)
        t0 = time.perf_counter()
        seed(db, n)
        console.print(f"  seeded {n} orders in {time.perf_counter() - t0:.1f}s")
        rng = Range(MID, START, START + timedelta(days=31))
        stamp = "%Y-%m-%d %H:%M:%S.%f"
        params = {"m": MID, "s": rng.start.strftime(stamp), "e": rng.end.strftime(stamp)}
        sql = text(raw_sql(480))
        ours, raw = [], []
        cells: tuple[analytics.FailureCell, ...] = ()
        raw_rows: list[Any] = []
        for _ in range(rounds):
            with db.read() as conn:
                t = time.perf_counter()
                cells = analytics.heat_map_cells(conn, rng, utc_offset_minutes=480)
                svg = charts.heat_map(cells, lang="zh")
                ours.append(time.perf_counter() - t)
                t = time.perf_counter()
                raw_rows = list(conn.execute(sql, params))
                raw.append(time.perf_counter() - t)
        db.dispose()
    same = {(c.reason, c.terminal_id, c.hour): c.count for c in cells} == {
        (r[0], r[1], int(r[2])): int(r[3]) for r in raw_rows
    }
    p95_ours, p95_raw = percentile(ours, 95), percentile(raw, 95)
    assert p95_ours is not None and p95_raw is not None
    return {
        "orders": n,
        "rounds": rounds,
        "cells": len(cells),
        "svg_bytes": len(svg),
        "same_counts": same,
        "heatmap_p50_ms": round(statistics.median(ours) * 1000, 1),
        "heatmap_p95_ms": round(p95_ours * 1000, 1),
        "raw_p50_ms": round(statistics.median(raw) * 1000, 1),
        "raw_p95_ms": round(p95_raw * 1000, 1),
        "ratio_p95": round(p95_ours / p95_raw, 2),
        "target": HEATMAP_TARGET,
    }


def bench_metrics(args: argparse.Namespace) -> dict[str, Any]:
    wrk = ensure_wrk(allow=True)
    with (
        target("sqlite", args.sqlite_synchronous, args.pg_url) as on_t,
        target("sqlite", args.sqlite_synchronous, args.pg_url) as off_t,
    ):
        off_t.env["TILLIT_METRICS"] = "0"
        token = "scrape-" + uuid.uuid4().hex
        on_t.env["TILLIT_METRICS_TOKEN"] = token
        servers = {}
        keys = {}
        scrapes = {"ok": 0, "failed": 0}
        try:
            for name, t in (("with_metrics", on_t), ("without_metrics", off_t)):
                keys[name] = seed_demo(t.env, t.workdir)
                servers[name] = Server(t.env, t.workdir)
                servers[name].start()
            rates: dict[str, list[float]] = {name: [] for name in servers}
            cpu_ms: dict[str, list[float]] = {name: [] for name in servers}

            def scraper(stop: threading.Event, base_url: str) -> None:
                """GET /metrics every --scrape-every seconds until ``stop`` (bounded by the round)."""
                with httpx.Client(timeout=10) as client:
                    while not stop.wait(args.scrape_every):
                        try:
                            r = client.get(
                                base_url + "/metrics", headers={"Authorization": f"Bearer {token}"}
                            )
                            scrapes["ok" if r.status_code == 200 else "failed"] += 1
                        except httpx.HTTPError:
                            scrapes["failed"] += 1

            def load(name: str, n: int) -> tuple[float, float]:
                """One round: (checkouts/s, server CPU ms per checkout)."""
                s, t = servers[name], on_t if name == "with_metrics" else off_t
                stop = threading.Event()
                thread = None
                if name == "with_metrics" and args.scrape_every > 0:
                    thread = threading.Thread(target=scraper, args=(stop, s.base_url), daemon=True)
                    thread.start()
                try:
                    with CpuWindow(s.pid) as window:
                        if wrk:
                            r = wrk_checkouts(
                                wrk, s.base_url, keys[name], n, args.concurrency, args.duration, t.workdir
                            )
                        else:
                            r = httpx_checkouts(s.base_url, keys[name], n, args.concurrency, args.duration)
                        cpu = window.read()
                finally:
                    stop.set()
                    if thread is not None:
                        thread.join(timeout=15)
                server_cpu_s = cpu["server_cores"] * cpu["wall_s"]
                rate = r.completed / r.seconds if r.seconds else 0.0
                return rate, (server_cpu_s * 1000 / r.completed if r.completed else float("nan"))

            for name in servers:
                load(name, max(args.checkouts // 4, 50))  # warm-up
            for k in range(args.checkout_rounds):
                order = list(servers) if k % 2 == 0 else list(reversed(servers))
                for name in order:
                    rate, per = load(name, args.checkouts)
                    rates[name].append(rate)
                    cpu_ms[name].append(per)
                console.print(
                    f"  round {k + 1}: "
                    + ", ".join(f"{n} {rates[n][-1]:.0f}/s {cpu_ms[n][-1]:.2f} ms CPU" for n in servers)
                )
        finally:
            for s in servers.values():
                s.stop()
    on, off = statistics.median(rates["with_metrics"]), statistics.median(rates["without_metrics"])
    cpu_on, cpu_off = statistics.median(cpu_ms["with_metrics"]), statistics.median(cpu_ms["without_metrics"])
    pair_cpu = [a / b for a, b in zip(cpu_ms["with_metrics"], cpu_ms["without_metrics"], strict=True) if b]
    pair_rate = [a / b for a, b in zip(rates["with_metrics"], rates["without_metrics"], strict=True) if b]
    return {
        "scrape_every_s": args.scrape_every,
        "scrapes": dict(scrapes),
        "with_metrics_server_cpu_ms_per_checkout": round(cpu_on, 3),
        "without_metrics_server_cpu_ms_per_checkout": round(cpu_off, 3),
        "all_rounds_cpu_ms": {k: [round(v, 3) for v in vs] for k, vs in cpu_ms.items()},
        "throughput_ratio_with_over_without": round(on / off, 4) if off else None,
        "cpu_per_checkout_ratio_with_over_without": round(cpu_on / cpu_off, 4) if cpu_off else None,
        "median_pair_throughput_ratio": round(statistics.median(pair_rate), 4) if pair_rate else None,
        "median_pair_cpu_ratio": round(statistics.median(pair_cpu), 4) if pair_cpu else None,
        "cpu_aim_met": bool(cpu_off) and cpu_on / cpu_off <= 1 + METRICS_TARGET,
        "load_average_at_end": " ".join(loadavg()),
        "client": "wrk" if wrk else "httpx",
        "checkouts_per_round": args.checkouts,
        "rounds": args.checkout_rounds,
        "concurrency": args.concurrency,
        "with_metrics_per_s": round(on, 1),
        "without_metrics_per_s": round(off, 1),
        "all_rounds": {k: [round(v, 1) for v in vs] for k, vs in rates.items()},
        "lower_by": round((off - on) / off, 4) if off else None,
        "target": METRICS_TARGET,
    }


class _Route:
    path = "/v1/orders"


async def _bare_app(scope: Any, receive: Any, send: Any) -> None:
    scope["route"] = _Route()
    await send({"type": "http.response.start", "status": 201, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


def bench_middleware(n: int = 20_000) -> dict[str, Any]:
    """The instrumentation alone, in-process: one request through ``Observability`` around an app that
    answers at once, against the bare app, interleaved in blocks (the noise-free part of the cost)."""

    async def noop_send(message: Any) -> None:
        return None

    async def noop_receive() -> Any:
        return {}

    wrapped = Observability(_bare_app)
    scope = {"type": "http", "method": "POST", "headers": [(b"x-request-id", b"bench-1")]}

    async def run() -> tuple[float, float]:
        bare = with_mw = 0.0
        for _ in range(10):
            t = time.perf_counter()
            for _ in range(n // 10):
                await _bare_app(dict(scope), noop_receive, noop_send)
            bare += time.perf_counter() - t
            t = time.perf_counter()
            for _ in range(n // 10):
                await wrapped(dict(scope), noop_receive, noop_send)
            with_mw += time.perf_counter() - t
        return bare, with_mw

    bare, with_mw = asyncio.run(run())
    return {"requests": n, "overhead_us_per_request": round((with_mw - bare) / n * 1e6, 1)}


def main(argv: list[str] | None = None) -> int:
    p = cli.parser(__doc__)
    cli.add_db(p, default="sqlite")
    cli.add_load(p, connections=8, duration=120.0)
    cli.add_json(p)
    p.add_argument("--orders", type=int, default=200_000)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--checkouts", type=int, default=1500)
    p.add_argument("--checkout-rounds", type=int, default=4)
    p.add_argument("--skip-metrics", action="store_true")
    p.add_argument("--skip-heatmap", action="store_true")
    p.add_argument(
        "--scrape-every", type=float, default=5.0, help="seconds between /metrics scrapes (0: none)"
    )
    args = p.parse_args(argv)
    if not (1 <= args.orders <= 5_000_000 and 1 <= args.rounds <= 200 and 1 <= args.checkout_rounds <= 20):
        p.error("--orders 1..5000000, --rounds 1..200, --checkout-rounds 1..20")
    if not 0 <= args.scrape_every <= 600:
        p.error("--scrape-every 0..600")
    heat: dict[str, Any] = {"same_counts": True}
    if not args.skip_heatmap:
        console.print(f"[bold]heat map[/bold] over {args.orders} orders, {args.rounds} rounds")
        heat = bench_heatmap(args.orders, args.rounds)
        console.print(heat)
    result: dict[str, Any] = {"meta": machine(), "heatmap": heat, "middleware": bench_middleware()}
    console.print(result["middleware"])
    if not args.skip_metrics:
        console.print(
            f"[bold]/metrics cost[/bold]: {args.checkout_rounds} rounds of {args.checkouts} checkouts each"
        )
        result["metrics"] = bench_metrics(args)
        per_checkout_us = 2 * result["middleware"]["overhead_us_per_request"]  # two requests per checkout
        rate = result["metrics"]["without_metrics_per_s"]
        result["metrics"]["instrumentation_share_of_a_checkout"] = (
            round(per_checkout_us / (1e6 / rate), 4) if rate else None
        )
        console.print(result["metrics"])
    write_json(args.json, result)
    return 0 if heat["same_counts"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
