"""Resend benchmark (issue 16.1): how long a till's resend waits after the server died during a payment.

Each round: a real `tillit serve` process takes a WeChat payment that the sandbox holds open; the server
is killed with SIGKILL in the middle of the call and started again; the till's resend with the same
Idempotency-Key is sent every 50 ms from the moment the new server answers /healthz. The figure is the
time from "server back up" to the first answer that is not 409 (the attempt's state, 202 or final; pay
is never sent again), p50/p99/max per database, against the aim of 2 s p99. The ceiling printed next to
it is the lease (TILLIT_KEY_LEASE_S): what a resend would wait at most if nothing freed the key sooner.
Each round also checks that the order has exactly one attempt and the wallet at most one debit.

Usage: .venv/bin/python bench/resend.py [--db sqlite|postgres|both] [--rounds 20] [--json PATH]
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import signal
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

ROOT = Path(__file__).resolve().parents[1]
# bench/ is not installed: the shared harness, the test support (sandbox accounts) and this checkout's code.
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from bench.harness import cli  # noqa: E402
from bench.harness.db import pg_create, pg_drop, pg_url_for  # noqa: E402
from bench.harness.proc import base_env  # noqa: E402
from bench.harness.report import columns_table, console, percentile_rounded_index, write_json  # noqa: E402
from bench.harness.server import Server  # noqa: E402
from tests.support.sandbox import Accounts, running_sandbox  # noqa: E402
from tests.support.sandbox import provider_accounts as account_settings  # noqa: E402
from tests.support.world import make_tenant  # noqa: E402

from tillit.adapters.db import migrate  # noqa: E402
from tillit.adapters.db.schema import payments  # noqa: E402
from tillit.bootstrap import Container, build  # noqa: E402
from tillit.config import Settings  # noqa: E402
from tillit.payments import accounts as provider_accounts  # noqa: E402
from tillit.sandbox.clock import SandboxClock  # noqa: E402

AIM_S = 2.0


def kill(server: Server) -> None:
    """SIGKILL: the process dies mid-call, holding its keys; no clean shutdown."""
    assert server.proc is not None
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait(10)


def attempt_of(c: Container, merchant_id: str, order_id: str) -> list[str]:
    with c.db.read() as conn:
        rows = conn.execute(
            select(payments.c.id).where(
                payments.c.merchant_id == merchant_id, payments.c.order_id == order_id
            )
        ).all()
    return [str(r.id) for r in rows]


def run_db(kind: str, rounds: int, pg_admin: str, lease_s: float) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix=f"tillit-resend-{kind}-"))
    home = work / "var"
    dbname = f"tillit_resend_{uuid.uuid4().hex[:8]}"
    if kind == "postgres":
        pg_create(pg_admin, dbname)
        url = pg_url_for(pg_admin, dbname)
    else:
        url = f"sqlite:///{home / 'tillit.sqlite'}"
    secret_key = base64.b64encode(secrets.token_bytes(32)).decode()
    c = build(Settings(home=home, database_url=url, secret_key=secret_key))
    migrate.upgrade(c.db)
    env = base_env(home) | {
        "PYTHONPATH": str(ROOT / "src"),  # the server runs this checkout's code, like this process
        "TILLIT_DATABASE_URL": url,
        "TILLIT_SECRET_KEY": secret_key,
        "TILLIT_KEY_LEASE_S": str(lease_s),
    }
    waits: list[float] = []
    statuses: dict[int, int] = {}
    problems: list[str] = []
    try:
        accounts = Accounts.fresh()
        with running_sandbox(work / "sandbox", accounts, clock=SandboxClock(speed=1)) as sbx:
            tenant = make_tenant(c, f"Resend {uuid.uuid4().hex[:8]}")
            sbx_accounts = account_settings(accounts, sbx.url, timeout_s=10.0)
            with c.db.transaction() as conn:
                for provider, settings in sbx_accounts.items():
                    provider_accounts.set_account(conn, c.deps, tenant.merchant_id, provider, settings)
            server = Server(env, work)  # restarted on the same port after each kill
            server.start()
            try:
                for n in range(rounds):
                    seconds, status, problem = one_round(c, sbx, tenant, server)
                    waits.append(seconds)
                    statuses[status] = statuses.get(status, 0) + 1
                    if problem:
                        problems.append(problem)
                    console.print(
                        f"  {kind} round {n + 1}/{rounds}: answered {status} after {waits[-1]:.2f} s"
                    )
            finally:
                kill(server)
    finally:
        c.db.dispose()
        if kind == "postgres":
            pg_drop(pg_admin, dbname)
    return {
        "rounds": rounds,
        "p50_s": percentile_rounded_index(waits, 50),
        "p99_s": percentile_rounded_index(waits, 99),
        "max_s": max(waits) if waits else None,
        "lease_s": lease_s,
        "statuses": statuses,
        "problems": problems,
    }


def one_round(c: Container, sbx: Any, tenant: Any, server: Server) -> tuple[float, int, str | None]:
    base = server.base_url
    auth = tenant.auth()
    wallet = sbx.wallet("wechat")
    order = httpx.post(
        f"{base}/v1/orders",
        json={"lines": [{"sku": "LATTE", "quantity": 1}]},
        headers={**auth, "Idempotency-Key": uuid.uuid4().hex},
    ).json()
    body = {"order_id": order["id"], "payment_code": sbx.code(wallet)}
    headers = {**auth, "Idempotency-Key": "pay-" + uuid.uuid4().hex}
    sbx.faults({"wechat.micropay": {"hang": 1.0}}, hang_seconds=3)

    def first() -> None:
        with contextlib.suppress(httpx.HTTPError):
            httpx.post(f"{base}/v1/payments", json=body, headers=headers, timeout=30)

    threading.Thread(target=first, daemon=True).start()
    deadline = time.monotonic() + 10
    while not attempt_of(c, tenant.merchant_id, order["id"]):
        if time.monotonic() > deadline:
            raise RuntimeError("the payment attempt was never written")
        time.sleep(0.02)
    time.sleep(0.2)  # the pay call is open at the sandbox
    kill(server)
    sbx.faults({})
    server.start()
    up = time.monotonic()
    while True:
        r = httpx.post(f"{base}/v1/payments", json=body, headers=headers, timeout=10)
        if r.status_code != 409 or time.monotonic() - up > 60:
            break
        time.sleep(0.05)
    seconds = time.monotonic() - up
    problem = None
    ids = attempt_of(c, tenant.merchant_id, order["id"])
    if r.status_code not in (201, 202) or len(ids) != 1 or r.json().get("id") != ids[0]:
        problem = f"order {order['id']}: answered {r.status_code}, attempts {ids}"
    if sbx.ledger(wallet)["total_debited_fen"] > order["total"]:
        problem = f"order {order['id']}: debited more than once"
    return seconds, r.status_code, problem


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__doc__)
    cli.add_db(parser)
    parser.add_argument("--rounds", type=int, default=20, help="kills per database (1..200)")
    parser.add_argument("--lease", type=float, default=3.0, help="TILLIT_KEY_LEASE_S for the server")
    cli.add_json(parser)
    args = parser.parse_args(argv)
    if not 1 <= args.rounds <= 200:
        parser.error("--rounds must be between 1 and 200")
    result: dict[str, Any] = {"date": datetime.now().date().isoformat(), "aim_p99_s": AIM_S, "databases": {}}
    table = columns_table(
        "Resend after a crash mid-payment: seconds from 'server up' to an answer that is not 409",
        ("database", "rounds", "p50 s", "p99 s", "max s", "lease s (ceiling)", "aim p99 s", "answers"),
    )
    ok = True
    for kind in cli.db_kinds(parser, args):
        console.print(f"[bold]{kind}[/bold]: {args.rounds} rounds …")
        figures = run_db(kind, args.rounds, args.pg_url, args.lease)
        result["databases"][kind] = figures
        ok = ok and not figures["problems"]
        table.add_row(
            kind,
            str(figures["rounds"]),
            f"{figures['p50_s']:.2f}",
            f"{figures['p99_s']:.2f}",
            f"{figures['max_s']:.2f}",
            f"{figures['lease_s']:.1f}",
            f"{AIM_S:.1f}",
            ", ".join(f"{k}×{v}" for k, v in sorted(figures["statuses"].items())),
        )
        for problem in figures["problems"]:
            console.print(f"[red]{problem}[/red]")
    console.print(table)
    write_json(args.json, result)
    return 0 if ok else 1


if __name__ == "__main__":
    os.environ.setdefault("NO_COLOR", "1")
    raise SystemExit(main())
