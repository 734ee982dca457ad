"""Limit-check cost: provider checkouts per second with and without merchant + terminal limits, same run.

A provider checkout here is what the payment path does in the database for a WeChat payment: open an
order, then phase 1 of the engine (merchant status check, limit reservation — the conditional UPDATEs of
limits.py — the attempt row and its safety-net job) and phase 3 with a SUCCESS answer (capture, ledger,
order paid). The provider call itself is left out: it is the same with or without limits and would only
add noise. Both configurations run in the same process against the same database, in alternating rounds,
so the machine's load affects them alike; the verdict is the ratio against the 5 % ceiling of issue 12.
Each round also measures this process's CPU seconds per checkout (``time.process_time``: with SQLite
that is the whole checkout; with PostgreSQL it is Tillit's side, the server's own CPU is not counted),
so a shared machine's load — which moves wall time but hardly CPU time — shows as a gap between the two
ratios. Both ratios are printed; the verdict is the CPU one when the load average is above the cores.

Why not bench/checkout.py: it measures *cash* checkouts, which limits never touch (they apply to the
provider methods); a limits run there would measure nothing but noise.

    .venv/bin/python bench/limits.py [--db sqlite|postgres|both] [--checkouts N] [--rounds R] [--json PATH]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from bench.harness.report import console, machine, verdict, write_json
from tests.support import pg
from tests.support.world import Tenant, make_tenant

from tillit.adapters.db import migrate
from tillit.bootstrap import Container, build
from tillit.config import Settings
from tillit.domain.provider import Outcome, PayResult
from tillit.kernel.context import Actor
from tillit.merchants import limits
from tillit.payments import accounts
from tillit.payments import engine as pay_engine
from tillit.sales import orders

CEILING = 1.05  # without / with: a limit check may cost at most 5 % of checkouts/s


def _tenant(c: Container, name: str, with_limits: bool) -> Tenant:
    tenant = make_tenant(c, name)
    with c.db.transaction() as conn:
        accounts.set_account(
            conn,
            c.deps,
            tenant.merchant_id,
            "wechat",
            {
                "appid": "wx",
                "mch_id": f"m{uuid.uuid4().hex[:12]}",
                "api_key": "k" * 32,
                "base_url": "http://127.0.0.1:9",
            },
        )
        if with_limits:
            for scope in ("merchant", tenant.terminal_id):
                limits.set_limit(
                    conn,
                    c.deps,
                    tenant.merchant_id,
                    scope=scope,
                    method="wechat",
                    single_max=10**8,
                    daily_max=10**12,
                    monthly_max=10**13,
                    actor="bench",
                    reason="bench",
                )
    return tenant


def _checkouts(c: Container, tenant: Tenant, n: int) -> tuple[float, float]:
    """``n`` checkouts: (checkouts per wall second, CPU seconds of this process per checkout)."""
    actor = Actor(
        key_id="bench",
        role="terminal",
        merchant_id=tenant.merchant_id,
        terminal_id=tenant.terminal_id,
        store_id=tenant.store_id,
    )
    paid = PayResult(outcome=Outcome.SUCCESS, provider_ref="4200000000")
    assert c.engine is not None
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        with c.db.transaction() as conn:
            order = orders.create_order(conn, c.deps, actor, {"lines": [{"sku": "LATTE", "quantity": 1}]})[1]
            attempt, _provider, _number = pay_engine.prepare_provider_payment(  # type: ignore[misc]
                c.db,
                conn,
                c.deps,
                c.engine,
                actor,
                {"order_id": order["id"], "payment_code": "134567890123456789"},
            )
        with c.db.transaction() as conn:
            pay_engine.apply_pay_result(
                c.db, conn, c.deps, attempt.id, paid, "bench", merchant_id=tenant.merchant_id
            )
    wall, used = time.perf_counter() - start, time.process_time() - cpu
    return n / wall, used / n


def run(db: str, checkouts: int, rounds: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        url = (
            pg.create_database("tillit_bench") if db == "postgres" else f"sqlite:///{home / 'tillit.sqlite'}"
        )
        c = build(Settings(home=home, database_url=url))
        try:
            migrate.upgrade(c.db)
            plain, limited = _tenant(c, "Plain", False), _tenant(c, "Limited", True)
            _checkouts(c, plain, 20), _checkouts(c, limited, 20)  # warm-up
            without: list[tuple[float, float]] = []
            with_: list[tuple[float, float]] = []
            for i in range(rounds):  # interleaved A/B/B/A…: alternate who goes first
                pair = [(without, plain), (with_, limited)]
                for bucket, tenant in pair if i % 2 == 0 else pair[::-1]:
                    bucket.append(_checkouts(c, tenant, checkouts))
        finally:
            c.db.dispose()
            if db == "postgres":
                pg.drop_database(url)
    a, b = statistics.median(r for r, _ in without), statistics.median(r for r, _ in with_)
    cpu_a, cpu_b = statistics.median(u for _, u in without), statistics.median(u for _, u in with_)
    loaded = os.getloadavg()[0] > (os.cpu_count() or 1)
    throughput_ok, cpu_ok = a / b <= CEILING, cpu_b / cpu_a <= CEILING
    return {
        "db": db,
        "without_limits_per_s": round(a, 1),
        "with_limits_per_s": round(b, 1),
        "ratio": round(a / b, 3),
        "cpu_ms_per_checkout_without": round(cpu_a * 1000, 3),
        "cpu_ms_per_checkout_with": round(cpu_b * 1000, 3),
        "cpu_ratio": round(cpu_b / cpu_a, 3),
        "load_average": round(os.getloadavg()[0], 2),
        "verdict_on": "cpu" if loaded else "throughput",
        "ok": cpu_ok if loaded else throughput_ok,
        "rounds": rounds,
        "checkouts_per_round": checkouts,
        "cpu_ms_per_round": {
            "without": [round(u * 1000, 3) for _, u in without],
            "with": [round(u * 1000, 3) for _, u in with_],
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--checkouts", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = [
        run(db, args.checkouts, args.rounds)
        for db in (["sqlite", "postgres"] if args.db == "both" else [args.db])
    ]
    for r in results:
        console.print(
            f"{r['db']}: {r['without_limits_per_s']}/s without limits, {r['with_limits_per_s']}/s with "
            f"merchant + terminal limits -> throughput ratio {r['ratio']}; CPU per checkout "
            f"{r['cpu_ms_per_checkout_without']} ms vs {r['cpu_ms_per_checkout_with']} ms -> CPU ratio "
            f"{r['cpu_ratio']} (ceiling {CEILING}, verdict on {r['verdict_on']}, load {r['load_average']}) "
            f"{verdict(r['ok'])}"
        )
    write_json(args.json, {"machine": machine(), "results": results})


if __name__ == "__main__":
    main()
