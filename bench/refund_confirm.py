"""Refund confirmation benchmark (issue 16.2): how soon Tillit knows a refund the provider completed.

N provider payments (WeChat and Alipay, one wallet each) are refunded while half the refund calls lose
their answer after the provider did the refund (HTTP 502); afterwards the refund queries fail in a fixed
cycle: in two provider seconds out of every three every query fails (HTTP 502), in the third it is
answered — "at least one query in three is answered". Provider time moves in 1 s steps on both
clocks (Tillit's and the sandbox's), with the resolver run after each step, so minutes of provider
time take seconds.

The figure per provider is the lag from the moment the sandbox's wallet ledger shows the money returned
to the moment Tillit's refund event says ``succeeded``: p50 / p99 / max in provider seconds, against the
aim of 10 s p99. The ceiling printed beside it is the old behaviour's first look for a lost answer
(WeChat 60 s, Alipay 10 s): the wait a failed query used to add. Alipay forbids a refund query in the
first 10 s (providers.md §2.5), so a refund whose answer was lost is never confirmed sooner there.
``--processing S`` makes WeChat answer PROCESSING for S seconds first: then the provider's own pace
(1 min, …) decides, and the lag shows it.

Usage: .venv/bin/python bench/refund_confirm.py [--db sqlite|postgres|both] [--refunds 200] [--json PATH]
                                               [--processing 0]
"""

from __future__ import annotations

import logging
import sys
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import structlog
from sqlalchemy import select

ROOT = Path(__file__).resolve().parents[1]
# bench/ is not installed: the shared harness, the test support (sandbox accounts) and this checkout's code.
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from bench.harness import cli  # noqa: E402
from bench.harness.db import pg_create, pg_drop, pg_url_for  # noqa: E402
from bench.harness.report import columns_table, console, percentile_rounded_index, write_json  # noqa: E402
from tests.support.live import live_server  # noqa: E402
from tests.support.sandbox import START, Accounts, running_sandbox  # noqa: E402
from tests.support.sandbox import provider_accounts as account_settings  # noqa: E402
from tests.support.world import make_tenant  # noqa: E402

from tillit.adapters.db import migrate  # noqa: E402
from tillit.adapters.db.schema import events  # noqa: E402
from tillit.bootstrap import build  # noqa: E402
from tillit.config import Settings  # noqa: E402
from tillit.domain.clock import ManualClock  # noqa: E402
from tillit.payments import accounts as provider_accounts  # noqa: E402
from tillit.worker import drain  # noqa: E402

# The resolver's per-call log lines would bury the table: warnings only.
structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

AIM_S = 10.0
OLD_FIRST_LOOK = {"wechat": 60.0, "alipay": 10.0}
QUERY = {"wechat": "wechat.refundquery", "alipay": "alipay.trade.fastpay.refund.query"}
CALL = {"wechat": "wechat.refund", "alipay": "alipay.trade.refund"}
MAX_STEPS = 3600
GROUPS = {
    "lost": "answer lost",  # the aim applies: a failed call or query is retried in seconds
    "accepted": "accepted",  # WeChat: the result comes from the query, first at its 1-minute pace
    "answered": "answered",  # Alipay fund_change=Y: known at once
}


def run_db(kind: str, n: int, pg_admin: str, processing: int) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix=f"tillit-refund-{kind}-"))
    dbname = f"tillit_refund_{uuid.uuid4().hex[:8]}"
    if kind == "postgres":
        pg_create(pg_admin, dbname)
        url = pg_url_for(pg_admin, dbname)
    else:
        url = f"sqlite:///{work / 'tillit.sqlite'}"
    clock = ManualClock(START.astimezone(UTC))
    c = build(Settings(home=work, database_url=url, provider_timeout_s=3.0), clock=clock)
    migrate.upgrade(c.db)
    assert c.engine is not None
    accounts = Accounts.fresh()
    try:
        behaviour = {"wechat_refund_processing_seconds": processing, "wechat_refund_min_interval_seconds": 0}
        with running_sandbox(work / "sandbox", accounts, **behaviour) as sbx, live_server(c) as base:
            tenant = make_tenant(c, f"Refunds {uuid.uuid4().hex[:8]}")
            with c.db.transaction() as conn:
                for provider, settings in account_settings(accounts, sbx.url).items():
                    provider_accounts.set_account(conn, c.deps, tenant.merchant_id, provider, settings)
            http = httpx.Client(base_url=base, headers=tenant.auth(), timeout=30)

            def post(path: str, body: dict[str, Any]) -> httpx.Response:
                return http.post(path, json=body, headers={"Idempotency-Key": uuid.uuid4().hex})

            def step(seconds: float) -> None:
                clock.advance(seconds)
                sbx.advance(seconds)
                assert c.engine is not None
                drain(c.db, c.deps, c.engine, max_seconds=60)

            refunds: list[tuple[str, str, int]] = []  # (refund id, provider, wallet)
            for i in range(n):
                provider = "wechat" if i % 2 == 0 else "alipay"
                wallet = sbx.wallet(provider)
                order = post("/v1/orders", {"lines": [{"sku": "CROIS", "quantity": 1}]}).json()
                pay = post("/v1/payments", {"order_id": order["id"], "payment_code": sbx.code(wallet)})
                assert pay.status_code == 201, pay.text
                refunds.append((pay.json()["id"], provider, wallet))
            # Half the refund calls lose their answer after the provider did the refund (the money moves).
            sbx.faults({ep: {"answer_lost": 0.5} for ep in CALL.values()})
            sent: list[tuple[str, str, int]] = []
            for pay_id, provider, wallet in refunds:
                r = post("/v1/refunds", {"payment_id": pay_id, "amount": 1500})
                assert r.status_code in (201, 202), r.text
                sent.append((r.json()["id"], provider, wallet))
            for steps in range(MAX_STEPS):
                answered = steps % 3 == 2
                sbx.faults({} if answered else {ep: {"answer_lost": 1.0} for ep in QUERY.values()})
                step(1)
                if steps % 30 == 29 and all(
                    http.get(f"/v1/refunds/{rid}").json()["status"] not in ("pending", "processing")
                    for rid, _, _ in sent
                ):
                    break
            sbx.faults({})
            lags: dict[str, list[float]] = {}
            unconfirmed = 0
            with c.db.read() as conn:
                moves = conn.execute(
                    select(
                        events.c.entity_id,
                        events.c.from_status,
                        events.c.to_status,
                        events.c.reason,
                        events.c.at,
                    )
                    .where(events.c.merchant_id == tenant.merchant_id, events.c.entity == "refund")
                    .order_by(events.c.id)
                ).all()
            confirmed = {str(m.entity_id): m.at for m in moves if m.to_status == "succeeded"}
            # How the refund call itself was answered: at once (succeeded), accepted (WeChat's answer only
            # means accepted: PROCESSING, no code), or not at all (lost, refused unprocessed, bad answer).
            first_move = {}
            for m in moves:
                if m.from_status == "pending":
                    first_move.setdefault(str(m.entity_id), m)
            for rid, provider, wallet in sent:
                book = sbx.ledger(wallet)["refunds"]
                if not book or rid not in confirmed:
                    unconfirmed += 1
                    continue
                move = first_move.get(rid)
                if move is None or move.to_status == "succeeded":
                    group = "answered"
                elif move.reason == "processing":
                    group = "accepted"
                else:
                    group = "lost"
                at_provider = datetime.fromisoformat(book[0]["at"])
                lag = (confirmed[rid] - at_provider).total_seconds()
                lags.setdefault(f"{provider}/{group}", []).append(lag)
            http.close()
    finally:
        c.db.dispose()
        if kind == "postgres":
            pg_drop(pg_admin, dbname)
    return {
        "refunds": n,
        "unconfirmed": unconfirmed,
        "providers": {
            p: {
                "count": len(v),
                "p50_s": percentile_rounded_index(v, 50),
                "p99_s": percentile_rounded_index(v, 99),
                "max_s": max(v),
            }
            for p, v in sorted(lags.items())
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__doc__)
    cli.add_db(parser, default="sqlite")
    parser.add_argument("--refunds", type=int, default=200, help="refunds per database (2..2000)")
    parser.add_argument("--processing", type=int, default=0, help="WeChat PROCESSING seconds (0..600)")
    cli.add_json(parser)
    args = parser.parse_args(argv)
    if not 2 <= args.refunds <= 2000 or not 0 <= args.processing <= 600:
        parser.error("--refunds must be 2..2000 and --processing 0..600")
    result: dict[str, Any] = {
        "date": datetime.now().date().isoformat(),
        "aim_p99_s": AIM_S,
        "processing_s": args.processing,
        "databases": {},
    }
    table = columns_table(
        "Refund confirmation lag after the provider completed it (provider seconds; 1 query in 3 answered)",
        (
            "database",
            "provider",
            "refund call",
            "refunds",
            "p50 s",
            "p99 s",
            "max s",
            "old first look s",
            "aim p99 s",
        ),
    )
    ok = True
    for kind in cli.db_kinds(parser, args):
        console.print(f"[bold]{kind}[/bold]: {args.refunds} refunds …")
        figures = run_db(kind, args.refunds, args.pg_url, args.processing)
        result["databases"][kind] = figures
        ok = ok and figures["unconfirmed"] == 0
        for name, f in figures["providers"].items():
            provider, group = name.split("/")
            table.add_row(
                kind,
                provider,
                GROUPS[group],
                str(f["count"]),
                f"{f['p50_s']:.1f}",
                f"{f['p99_s']:.1f}",
                f"{f['max_s']:.1f}",
                f"{OLD_FIRST_LOOK[provider]:.0f}" if group == "lost" else "-",
                f"{AIM_S:.0f}" if group == "lost" else "-",
            )
        if figures["unconfirmed"]:
            console.print(f"[red]{kind}: {figures['unconfirmed']} refunds never confirmed[/red]")
    console.print(table)
    write_json(args.json, result)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
