"""Chaos at the goal's size (issue 16.4): 10,000 checkouts per database against a faulty sandbox.

SQLite runs one `tillit serve` process (its resolver inside); PostgreSQL runs two API processes and two
separate `tillit worker` processes sharing the recovery jobs. Meanwhile a monkey SIGKILLs and restarts
servers, workers and — with provider outages of 1–4 s — the sandbox itself, every 3–8 s; the "goal"
fault profile breaks at least 30 % of all provider calls (lost answers, SYSTEMERROR, hangs, bad
signatures; notifications lost, duplicated, delayed, reordered). The proof at the end compares every
order with the sandbox wallets' ledgers (tools/chaos.py `_verify`). Printed per database: checkouts,
the share of provider calls faulted, faults by kind, kills by process, lost / double-charged / unknown,
resend wait p99, refund confirmation p99 and wall time.

This is not a speed figure: it is the integrity figure at size, and the run must end with zero lost,
zero double-charged, zero unresolved and a clean ledger check (exit status 1 otherwise).

    .venv/bin/python bench/chaos.py [--db sqlite|postgres|both] [--checkouts 10000] [--seed 16]
                                    [--profile goal] [--json PATH]
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from bench.harness import cli
from bench.harness.report import console, figure_table, git_state, machine, write_json

from tillit.tools import chaos

MAX_CHECKOUTS = 50_000


def run_one(kind: str, args: Any) -> dict[str, Any]:
    url = drop = None
    if kind == "postgres":
        url, drop = chaos.pg_database(args.pg_url)
    opts = chaos.ChaosOptions(
        checkouts=args.checkouts,
        seed=args.seed,
        profile=args.profile,
        database_url=url,
        api_processes=2 if kind == "postgres" else 1,
        workers=2 if kind == "postgres" else 0,
        concurrency=args.concurrency,
        kill_provider=True,
        settle_seconds=300.0,
    )
    try:
        with console.status(f"{kind}: {args.checkouts} checkouts") as status:
            opts.progress = lambda n: status.update(f"{kind}: {n}/{args.checkouts} checkouts")
            report = chaos.run(opts)
    finally:
        if drop is not None:
            drop()
    data = report.as_dict()
    data["database"] = kind
    data["examples"] = {
        "lost": report.lost[:5],
        "double_charged": report.double_charged[:5],
        "unresolved": report.unresolved[:5],
        "ledger_violations": report.ledger_violations[:5],
    }
    return data


def show(data: dict[str, Any]) -> None:
    rows = [
        ("checkouts (orders)", f"{data['checkouts']} ({data['orders']})"),
        ("processes", "1 API (resolver inside)" if data["database"] == "sqlite" else "2 API + 2 workers"),
        ("provider calls / faulted", f"{data['provider_calls']} / {data['provider_calls_faulted']}"),
        ("faulted share", f"{data['faulted_share']}"),
        ("kills", f"{data['kills']} {data['kills_by']}"),
        ("lost / double / unresolved", f"{data['lost']} / {data['double_charged']} / {data['unresolved']}"),
        ("ledger violations", str(data["ledger_violations"])),
        ("resend wait p99 (s, real)", f"{data['resend_wait_p99_s']} over {data['resends']} resends"),
        (
            "refund confirmation p99 (s, provider)",
            f"{data['refund_confirmation_p99_s']} over {data['refunds_confirmed']}",
        ),
        ("wall time (s): all / load", f"{data['seconds']} / {data['load_seconds']}"),
    ]
    console.print(figure_table(f"chaos on {data['database']}", rows))
    console.print("faults fired:", dict(sorted(data["faults_injected"].items())))
    console.print("outcomes:", data["outcomes"])
    console.print("scenarios:", data["scenarios"])
    console.print("open exceptions:", data["open_exceptions"])


def main() -> int:
    p = cli.parser(__doc__)
    cli.add_db(p)
    cli.add_json(p)
    p.add_argument("--checkouts", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=16)
    p.add_argument("--profile", default="goal", choices=sorted(chaos.PROFILES))
    p.add_argument("--concurrency", type=int, default=8)
    args = p.parse_args()
    if not 1 <= args.checkouts <= MAX_CHECKOUTS:
        p.error(f"--checkouts must be between 1 and {MAX_CHECKOUTS}")
    if not 1 <= args.concurrency <= 64:
        p.error("--concurrency must be between 1 and 64")
    results = []
    for kind in cli.db_kinds(p, args):
        data = run_one(kind, args)
        show(data)
        results.append(data)
    write_json(args.json, {"machine": machine(), "git": git_state(), "runs": results})
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
