"""Outbox benchmark: messages/s through the notification outbox to a local SMTP server, against raw
smtplib to the same server in the same run; and checkouts/s with and without the outbox write.

Per database (SQLite, PostgreSQL):

1. **Throughput.** A local aiosmtpd server. The ceiling: raw smtplib sending the same mail on one
   connection (the mailer's habit too). Then as many messages enqueued (one transaction each, as a
   sale writes them) and drained by ``OutboxSender.send_due`` to the same server: claim under a lease,
   render the Jinja2 template, send, record. Five alternating rounds; the medians of both rates and
   their ratio are reported (aim >= 0.5).
2. **Cost on checkouts.** A fresh ``tillit serve`` (SMTP not configured, so its resolver leaves mail
   rows waiting: only the write is measured), seeded by ``tillit init --demo``; M cash checkouts
   (order + payment over HTTP, httpx processes) in three modes, rotated A B C, C B A, ...
   (``--pairs`` rotations): (A) no customer contact; (B) an e-mail contact without the opt-in — the
   contact is stored, nothing is announced, no outbox row; (C) the same contact opted in — the order
   also records the consent, the payment writes the outbox row. The aim (issue 14: "the cost of the
   outbox write on checkouts/s, with and without") is taken on C against B, the same checkout with the
   outbox on and off: the contact itself (storing it, validating the address, the larger request) is
   the customer feature, paid whether or not a message is written. C against A — the whole customer
   feature — is printed beside it. Per mode the medians of checkouts/s and of the **server's CPU per
   checkout** (from /proc; on PostgreSQL plus its backends) are compared; the CPU figure is the one a
   shared machine does not move.

Only 127.0.0.1 is targeted; every loop is bounded in count and time.

    .venv/bin/python bench/outbox.py [--db sqlite|postgres|both] [--messages N] [--checkouts M]
                                     [--concurrency C] [--json PATH]
"""

from __future__ import annotations

import smtplib
import statistics
import sys
import time
import uuid
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any

import httpx
from aiosmtpd.controller import Controller
from rich.table import Table

# bench/ is not installed: import the shared harness from this checkout.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import cli
from bench.harness.db import target
from bench.harness.load import httpx_load
from bench.harness.proc import free_port, postgres_cpu_seconds, process_cpu_seconds
from bench.harness.report import console, fmt, machine, verdict, write_json
from bench.harness.server import Service, seed_demo

from tillit.access import merchants
from tillit.adapters.db import migrate
from tillit.bootstrap import build, build_outbox
from tillit.config import Settings
from tillit.notifications.messages import Message
from tillit.notifications.outbox import enqueue

THROUGHPUT_GOAL = 0.5
CHECKOUT_GOAL = 0.95
CPU_GOAL = 1.05  # server CPU per checkout with the outbox write, relative to without
BASKET = [{"sku": "COF-LATTE", "quantity": 1}, {"sku": "BAK-CROIS", "quantity": 1}]


class Counter:
    """The aiosmtpd handler: counts accepted messages."""

    def __init__(self) -> None:
        self.count = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.count += 1
        return "250 OK"


def wait_for(counter: Counter, n: int, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while counter.count < n and time.monotonic() < deadline:
        time.sleep(0.01)


def raw_smtp(port: int, n: int, counter: Counter) -> float:
    """The ceiling: the same mail (same headers, a body of the same size) with plain smtplib on one
    connection, built and sent in a loop with nothing else."""
    start_count = counter.count
    t0 = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        for i in range(n):
            msg = EmailMessage()
            msg["From"], msg["To"] = "Tillit <no-reply@tillit.local>", f"c{i}@example.com"
            msg["Subject"] = f"Payment received — order {i} at Bench"
            msg["Date"] = formatdate(localtime=False)
            msg["Message-ID"] = make_msgid(idstring=f"m:bench-{i}:email", domain="tillit.local")
            msg.set_content(
                f"Thank you. We received 49.00 CNY for order {i} at Bench.\n\n"
                f"Your e-receipt: http://127.0.0.1:8000/receipts/{uuid.uuid4().hex}/{uuid.uuid4().hex}/"
                f"{uuid.uuid4().hex}"
            )
            smtp.send_message(msg)
    wait_for(counter, start_count + n)
    return n / (time.perf_counter() - t0)


ROUNDS = 5


def throughput(env: dict[str, str], n: int) -> dict[str, Any]:
    """``n`` messages each way, in ``ROUNDS`` alternating rounds (raw, then outbox) so that a machine
    whose load changes during the run weighs on both; the medians of the per-round rates are compared."""
    counter = Counter()
    controller = Controller(counter, hostname="127.0.0.1", port=free_port())
    controller.start()
    raw_rates: list[float] = []
    outbox_rates: list[float] = []
    enqueue_rates: list[float] = []
    delivered = 0
    try:
        settings = Settings.from_env(
            {**env, "TILLIT_SMTP_HOST": "127.0.0.1", "TILLIT_SMTP_PORT": str(controller.port)}
        )
        c = build(settings)
        migrate.upgrade(c.db)
        with c.db.transaction() as conn:
            merchant = merchants.create_merchant(conn, c.deps, name=f"Bench {uuid.uuid4().hex[:6]}")
        assert c.signing_key is not None
        sender = build_outbox(settings, c.signing_key)
        per_round = max(1, n // ROUNDS)
        for r in range(ROUNDS):
            raw_rates.append(raw_smtp(controller.port, per_round, counter))
            t0 = time.perf_counter()
            for i in range(per_round):
                with c.db.transaction() as conn:  # one transaction per message, as a sale writes it
                    enqueue(
                        conn,
                        c.deps,
                        Message(
                            merchant["id"],
                            f"bench-{r}-{i}",
                            "email",
                            f"c{i}@example.com",
                            "payment_captured",
                            "en",
                            {
                                "order_id": uuid.uuid4().hex,
                                "order_number": i,
                                "amount": 4900,
                                "currency": "CNY",
                            },
                        ),
                    )
            enqueue_rates.append(per_round / (time.perf_counter() - t0))
            before = counter.count
            t0 = time.perf_counter()
            deadline = time.monotonic() + 300
            while sender.send_due(c.db, c.deps, "bench") and time.monotonic() < deadline:
                pass
            wait_for(counter, before + per_round)
            outbox_rates.append((counter.count - before) / (time.perf_counter() - t0))
            delivered += counter.count - before
        sender.close()
        c.db.dispose()
    finally:
        controller.stop()
    raw, out = statistics.median(raw_rates), statistics.median(outbox_rates)
    return {
        "messages": per_round * ROUNDS,
        "rounds": ROUNDS,
        "raw_smtplib_per_s": round(raw, 1),
        "outbox_per_s": round(out, 1),
        "enqueue_per_s": round(statistics.median(enqueue_rates), 1),
        "ratio": round(out / raw, 3),
        "per_round": {"raw": [round(x, 1) for x in raw_rates], "outbox": [round(x, 1) for x in outbox_rates]},
        "delivered": delivered,
    }


def checkout_step(
    client: httpx.Client, context: dict[str, Any], tid: int, n: int
) -> tuple[float, float, list[httpx.Response]]:
    """One cash checkout; with ``context['customer']`` the order carries an e-mail contact, opted in when
    ``context['opt_in']`` (then the payment writes an outbox row; without the opt-in nothing is sent)."""
    headers = {"Authorization": f"Bearer {context['key']}", "Content-Type": "application/json"}
    oid = f"{context['nonce']}{tid:08x}{n:016x}"
    body: dict[str, Any] = {"id": oid, "lines": BASKET}
    if context["customer"]:
        body["customer"] = {
            "email": f"c{tid}-{n}@example.com",
            "locale": "zh-CN",
            "opt_in": bool(context.get("opt_in", True)),
        }
    t0 = time.perf_counter()
    r1 = client.post("/v1/orders", json=body, headers={**headers, "Idempotency-Key": f"o-{oid}"})
    t1 = time.perf_counter()
    r2 = client.post(
        "/v1/payments",
        json={"order_id": oid, "method": "cash", "tendered": 10000},
        headers={**headers, "Idempotency-Key": f"p-{oid}"},
    )
    return (t1 - t0) * 1000, (time.perf_counter() - t1) * 1000, [r1, r2]


def checkouts(
    env: dict[str, str],
    workdir: Path,
    m: int,
    concurrency: int,
    seconds: float,
    pairs: int = 3,
    postgres: bool = False,
) -> dict[str, Any]:
    key = seed_demo(env, workdir)
    modes = ("without", "contact", "with")
    rates: dict[str, list[float]] = {mode: [] for mode in modes}
    # Server-side CPU per checkout (the server process, plus PostgreSQL's backends on PostgreSQL), in ms:
    # what the outbox write costs, less swayed than checkouts/s by the other work on a shared machine.
    cpu_ms: dict[str, list[float]] = {mode: [] for mode in modes}
    errors, sample = 0, None
    # On PostgreSQL only this server's backends (the machine's PostgreSQL serves other sessions too).
    database = env["TILLIT_DATABASE_URL"].rsplit("/", 1)[-1].split("?")[0] if postgres else None

    def pg_cpu() -> float:
        return postgres_cpu_seconds(database) if postgres else 0.0

    # No resolver in this server: SMTP is not configured, so it would send nothing, and its polling (every
    # TILLIT_WORKER_POLL_S, four threads) costs CPU per second of wall time, not per checkout — on a
    # loaded machine a slower run would be charged more of it.
    server = Service(["serve", "--no-access-log", "--no-worker"], "/healthz", env, workdir, "server")
    server.start()
    try:
        # Rotated A B C, C B A, A B C ...: a machine that slows down (or warms up) during the run weighs on
        # every mode alike.
        order = [modes if k % 2 == 0 else modes[::-1] for k in range(pairs)]
        for mode in [mode for turn in order for mode in turn]:
            ctx = {
                "key": key,
                "nonce": uuid.uuid4().hex[:8],
                "customer": mode != "without",
                "opt_in": mode == "with",
            }
            cpu0 = process_cpu_seconds(server.pid) + pg_cpu()
            result = httpx_load(checkout_step, ctx, server.base_url, m, concurrency, seconds)
            used = process_cpu_seconds(server.pid) + pg_cpu() - cpu0
            if result.ok:
                cpu_ms[mode].append(used / result.ok * 1000)
            errors += result.errors + result.transport_errors
            sample = sample or result.error_sample
            rates[mode].append(result.ok / result.seconds if result.seconds else 0.0)
    finally:
        server.stop()
    median_without, median_with = statistics.median(rates["without"]), statistics.median(rates["with"])
    median_contact = statistics.median(rates["contact"])
    cpu = {mode: statistics.median(cpu_ms[mode]) if cpu_ms[mode] else None for mode in modes}
    cpu_without, cpu_contact, cpu_with = cpu["without"], cpu["contact"], cpu["with"]
    return {
        "server_cpu_ms_per_checkout": {
            "without": round(cpu_without, 3) if cpu_without else None,
            "contact": round(cpu_contact, 3) if cpu_contact else None,
            "with": round(cpu_with, 3) if cpu_with else None,
            "runs": {k: [round(v, 3) for v in vs] for k, vs in cpu_ms.items()},
            # The aim: the outbox write on the same checkout with a contact, opted in (outbox row) / not
            # opted in (no row): at most 1.05 for "costs at most 5 %".
            "ratio": round(cpu_with / cpu_contact, 3) if cpu_with and cpu_contact else None,
            # For the record: the whole customer-contact feature, opted in / no contact at all.
            "ratio_vs_no_contact": round(cpu_with / cpu_without, 3) if cpu_with and cpu_without else None,
        },
        "checkouts_per_run": m,
        "concurrency": concurrency,
        "no_contact_per_s": round(median_without, 1),
        "without_outbox_per_s": round(median_contact, 1),  # the contact, not opted in: no outbox row
        "with_outbox_per_s": round(median_with, 1),
        "runs": {k: [round(v, 1) for v in vs] for k, vs in rates.items()},
        "ratio": round(median_with / median_contact, 3) if median_contact else None,  # outbox on / off
        "ratio_vs_no_contact": round(median_with / median_without, 3) if median_without else None,
        "errors": errors,
        "error_sample": sample,
    }


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__doc__)
    cli.add_db(parser, default="sqlite")
    cli.add_load(parser, connections=4, duration=120.0)
    parser.add_argument("--messages", type=int, default=500, help="messages per throughput run (default 500)")
    parser.add_argument("--checkouts", type=int, default=300, help="checkouts per run (default 300)")
    parser.add_argument("--pairs", type=int, default=3, help="runs without and with the outbox (default 3)")
    cli.add_json(parser)
    args = parser.parse_args(argv)
    if not (1 <= args.messages <= 100_000 and 1 <= args.checkouts <= 100_000 and 1 <= args.pairs <= 10):
        parser.error("limits: 1 <= --messages, --checkouts <= 100,000; 1 <= --pairs <= 10")
    cli.check_load(parser, args)
    results = []
    for kind in cli.db_kinds(parser, args):
        with target(kind, args.sqlite_synchronous, args.pg_url) as t:
            row = {"db": t.label, "throughput": throughput(t.env, args.messages)}
            row["checkout"] = checkouts(
                t.env,
                t.workdir,
                args.checkouts,
                args.concurrency,
                args.duration,
                args.pairs,
                postgres=kind == "postgres",
            )
            results.append(row)
    table = Table(title="notification outbox")
    for col in (
        "db",
        "raw smtplib/s",
        "outbox/s",
        "ratio",
        "goal",
        "checkouts/s outbox off (contact, no opt-in)",
        "on (opted in)",
        "ratio",
        "goal",
        "server CPU ms/checkout, no contact",
        "contact, no opt-in",
        "contact, opted in (outbox row)",
        "CPU ratio outbox on/off",
        "goal",
        "CPU ratio vs no contact",
    ):
        table.add_column(col)
    for r in results:
        tp, co = r["throughput"], r["checkout"]
        table.add_row(
            r["db"],
            fmt(tp["raw_smtplib_per_s"]),
            fmt(tp["outbox_per_s"]),
            fmt(tp["ratio"], digits=2),
            verdict(tp["ratio"] >= THROUGHPUT_GOAL),
            fmt(co["without_outbox_per_s"]),
            fmt(co["with_outbox_per_s"]),
            fmt(co["ratio"], digits=3),
            verdict(co["ratio"] is not None and co["ratio"] >= CHECKOUT_GOAL),
            fmt(co["server_cpu_ms_per_checkout"]["without"], digits=2),
            fmt(co["server_cpu_ms_per_checkout"]["contact"], digits=2),
            fmt(co["server_cpu_ms_per_checkout"]["with"], digits=2),
            fmt(co["server_cpu_ms_per_checkout"]["ratio"], digits=3),
            verdict(
                co["server_cpu_ms_per_checkout"]["ratio"] is not None
                and co["server_cpu_ms_per_checkout"]["ratio"] <= CPU_GOAL
            ),
            fmt(co["server_cpu_ms_per_checkout"]["ratio_vs_no_contact"], digits=3),
        )
    console.print(table)
    write_json(
        args.json,
        {"meta": {**machine(), "messages": args.messages, "checkouts": args.checkouts}, "results": results},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
