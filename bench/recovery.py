"""Recovery benchmark: how fast Tillit settles payments whose answer was lost, and what provider payments
cost against cash.

1. Under the chaos fault profile (no process kills, so the figure is the resolver's own), the time from
   an attempt becoming ``unknown`` to its final status, in provider time, per provider and per kind
   (issue 11.6):
   - **lost answer**: the provider already had the final state (paid) when Tillit's answer was lost or
     came back SYSTEMERROR; aim: settled by the first query the rules allow, p99 ≤ 7 s;
   - **not at the provider**: the pay request never made a trade there (SYSTEMERROR before it); it ends
     when a reverse is allowed and two queries found nothing (WeChat 15 s, Alipay 10 s);
   - **password pending**: the customer's own time (amounts above the sandbox's password threshold);
     aim: ended inside the provider's window (WeChat 45 s, Alipay 60 s), p99 as a share of it.
2. Checkouts/s paying by WeChat/Alipay code with the sandbox answering instantly (calm profile, no
   password step), against bench/checkout.py's cash checkouts/s measured in the same run.

Provider time runs ``--speed`` times real time (default 5): every real millisecond of Tillit's work and
of the job poll counts that many times over in provider time, so a slower speed measures the schedule
rather than the machine.

Usage: .venv/bin/python bench/recovery.py [--checkouts 600] [--json PATH] [--no-baseline]
                                         [--settle-seconds S] [--speed 5]
"""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import text

# bench/ is not installed: import the shared harness from this checkout.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import cli
from bench.harness.report import (
    checkout_baseline,
    columns_table,
    console,
    percentile_rounded_index,
    verdict,
    write_json,
)

from tillit.tools import chaos

WINDOW = {"wechat": 45.0, "alipay": 60.0}
LOST_ANSWER_AIM_S = 7.0
KINDS = ("lost answer", "not at the provider", "password pending")


def _ts(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def kind_of(amount: int, final_status: str) -> str:
    """Whose time an unknown attempt waited on: the customer's (password), or only Tillit's and the
    provider's (the final state was there to be found, or there was no trade at all)."""
    if amount > chaos.PASSWORD_THRESHOLD_FEN:
        return "password pending"
    return "lost answer" if final_status == "captured" else "not at the provider"


def resolution_times(container: Any, out: dict[tuple[str, str], list[float]]) -> None:
    """Provider seconds from 'became unknown' to the final status, for every attempt that was unknown,
    keyed by (provider, kind)."""
    with container.db.read() as conn:
        rows = conn.execute(
            text(
                "SELECT p.method, p.amount, p.status, e1.at AS unknown_at, MAX(e2.at) AS final_at"
                " FROM payments p"
                " JOIN events e1 ON e1.entity_id = p.id AND e1.to_status = 'unknown'"
                " JOIN events e2 ON e2.entity_id = p.id AND e2.to_status IN ('captured','failed','reversed')"
                " WHERE p.method <> 'cash' GROUP BY p.id, p.method, p.amount, p.status, e1.at"
            )
        ).all()
    for method, amount, status, unknown_at, final_at in rows:
        key = (method, kind_of(int(amount), status))
        out.setdefault(key, []).append((_ts(final_at) - _ts(unknown_at)).total_seconds())


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__doc__)
    parser.add_argument("--checkouts", type=int, default=600)
    parser.add_argument("--seed", type=int, default=21)
    parser.add_argument("--speed", type=float, default=5.0, help="provider seconds per real second")
    cli.add_json(parser)
    parser.add_argument("--no-baseline", action="store_true", help="skip bench/checkout.py")
    parser.add_argument(
        "--settle-seconds",
        type=float,
        default=chaos.ChaosOptions.settle_seconds,
        help="how long each chaos run waits, at most, for in-flight work to settle (default %(default)s)",
    )
    args = parser.parse_args(argv)
    if not 1 <= args.checkouts <= 100_000:
        parser.error("--checkouts must be between 1 and 100,000")
    if not 1 <= args.speed <= 50:
        parser.error("--speed must be between 1 and 50")

    times: dict[tuple[str, str], list[float]] = {}
    console.print(f"[bold]1/3[/bold] chaos profile, {args.checkouts} checkouts, no kills …")
    faulty = chaos.run(
        chaos.ChaosOptions(
            checkouts=args.checkouts,
            seed=args.seed,
            profile="default",
            speed=args.speed,
            kill_every=(0.0, 0.0),
            duplicate_share=0,
            refund_share=0,
            settle_seconds=args.settle_seconds,
            inspect=lambda c: resolution_times(c, times),
        )
    )
    console.print(f"[bold]2/3[/bold] calm sandbox, {args.checkouts} provider checkouts …")
    calm = chaos.run(
        chaos.ChaosOptions(
            checkouts=args.checkouts,
            seed=args.seed,
            profile="calm",
            kill_every=(0.0, 0.0),
            password_share=0,
            duplicate_share=0,
            refund_share=0,
            settle_seconds=args.settle_seconds,
        )
    )
    cash = None
    if not args.no_baseline:
        console.print("[bold]3/3[/bold] bench/checkout.py cash checkouts on SQLite …")
        cash = checkout_baseline(max(1000, args.checkouts))
    provider_rate = args.checkouts / calm.load_seconds if calm.load_seconds else 0.0

    table = columns_table(
        f"Recovery: unknown -> settled, provider time (speed {args.speed:g})",
        ("provider", "kind", "attempts", "p50 s", "p99 s", "max s", "aim", "met"),
    )
    result: dict[str, Any] = {
        "date": datetime.now().date().isoformat(),
        "checkouts": args.checkouts,
        "speed": args.speed,
        "chaos_ok": faulty.ok and calm.ok,
        "providers": {},
    }
    for (method, kind), values in sorted(times.items(), key=lambda kv: (kv[0][0], KINDS.index(kv[0][1]))):
        p50, p99 = percentile_rounded_index(values, 50), percentile_rounded_index(values, 99)
        aim = WINDOW[method] if kind == "password pending" else LOST_ANSWER_AIM_S
        shown_aim = f"<= {aim:.0f} s" if kind != "not at the provider" else "-"
        met = "-" if kind == "not at the provider" else verdict(p99 is not None and p99 <= aim)
        result["providers"].setdefault(method, {})[kind] = {
            "unknown_attempts": len(values),
            "p50_s": p50,
            "p99_s": p99,
            "max_s": round(max(values), 2),
            "aim_s": None if kind == "not at the provider" else aim,
            "p99_over_window": round(p99 / WINDOW[method], 3) if p99 is not None else None,
        }
        table.add_row(
            method, kind, str(len(values)), f"{p50:.1f}", f"{p99:.1f}", f"{max(values):.1f}", shown_aim, met
        )
    console.print(table)
    result["provider_checkouts_per_s"] = round(provider_rate, 1)
    result["cash_checkouts_per_s"] = cash
    result["provider_over_cash"] = round(provider_rate / cash, 3) if cash else None
    console.print(
        f"provider checkouts/s (calm sandbox, incl. issuing each code): {provider_rate:.1f}; "
        f"cash checkouts/s (bench/checkout.py): {cash}; ratio {result['provider_over_cash']}"
    )
    console.print(f"integrity: chaos run ok={faulty.ok}, calm run ok={calm.ok}")
    write_json(args.json, result)
    return 0 if faulty.ok and calm.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
