"""Till sync benchmark: N cash sales made offline into the till's journal, then the time for the till to
sync them all once the server is back, against bench/checkout.py's checkouts/s in the same run.

The till runs in this process (so its peak memory is this process's); the server is a real
`tillit serve` subprocess on embedded SQLite (synchronous=FULL). Aim: 10,000 sales synced in < 10 s,
till peak RSS <= 150 MB.

Usage: .venv/bin/python bench/till_sync.py [--sales 10000] [--json PATH] [--no-baseline]
                                          [--baseline-checkouts 2000]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
# bench/ is not installed: the shared harness and this checkout's code come from the checkout.
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from bench.harness import cli  # noqa: E402
from bench.harness.proc import base_env, self_peak_rss_mb  # noqa: E402
from bench.harness.report import checkout_baseline, console, figure_table, write_json  # noqa: E402
from bench.harness.server import Server, seed_demo  # noqa: E402

from tillit.till.client import LinkDown, ServerClient  # noqa: E402
from tillit.till.journal import Journal  # noqa: E402
from tillit.till.service import Till  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__doc__)
    parser.add_argument("--sales", type=int, default=10_000)
    cli.add_json(parser)
    parser.add_argument("--no-baseline", action="store_true", help="skip bench/checkout.py")
    parser.add_argument(
        "--baseline-checkouts", type=int, default=2000, help="checkouts for bench/checkout.py (default 2000)"
    )
    args = parser.parse_args(argv)
    if not 1 <= args.sales <= 1_000_000:
        parser.error("--sales must be between 1 and 1,000,000")
    with tempfile.TemporaryDirectory(prefix="tillit-till-sync-") as tmp:
        home = Path(tmp)
        env = base_env(home / "server", "FULL")
        key = seed_demo(env, home)
        server = Server(env, home)
        try:
            server.start()
            till = Till(Journal(home / "till" / "journal.sqlite"), ServerClient(server.base_url, key))
            till.terminal_id = httpx.get(
                f"{server.base_url}/v1/me", headers={"Authorization": f"Bearer {key}"}
            ).json()["terminal_id"]
            till.refresh_catalogue()
            server.stop()
            till.open_shift(0)
            skus = ["COF-LATTE", "COF-AMER", "TEA-OOLONG", "BAK-CROIS", "WAT-500"]
            console.print(f"making {args.sales} cash sales offline …")
            t0 = time.perf_counter()
            for i in range(args.sales):
                till.add_item(skus[i % 5])
                till.add_item(skus[(i + 2) % 5])
                till.pay_cash(None)
            offline_s = time.perf_counter() - t0
            try:
                till.sync_once()
                raise SystemExit("the server should be down")
            except LinkDown:
                pass
            server.start()  # the same port: the till's link returns
            t1 = time.perf_counter()
            rounds = 0
            # Each round sends at least one entry (or raises), so this ends; the bound is a backstop.
            while till.journal.pending_count() and rounds <= args.sales:
                till.sync_once()
                rounds += 1
            sync_s = time.perf_counter() - t1
            if till.journal.pending_count():
                raise SystemExit(f"sync still pending after {rounds} rounds")
            synced = till.journal.one("SELECT COUNT(*) AS n FROM outbox WHERE state = 'done'")["n"]
            rejected = till.journal.one("SELECT COUNT(*) AS n FROM outbox WHERE state = 'rejected'")["n"]
        finally:
            server.stop()
    peak_mb = self_peak_rss_mb()
    baseline = None if args.no_baseline else checkout_baseline(args.baseline_checkouts)
    rate = args.sales / sync_s
    rows = [
        ("sales made offline (journal, fsync per commit) /s", f"{args.sales / offline_s:.0f}"),
        ("time to sync all after the link returns", f"{sync_s:.1f} s"),
        ("synced sales/s", f"{rate:.0f}"),
        ("outbox entries synced / rejected", f"{synced} / {rejected}"),
        ("sync round trips", str(rounds)),
        ("bench/checkout.py checkouts/s (SQLite)", f"{baseline:.1f}" if baseline else "-"),
        ("synced sales/s ÷ checkouts/s", f"{rate / baseline:.1f}" if baseline else "-"),
        ("till peak RSS", f"{peak_mb:.0f} MB"),
        ("aim: < 10 s, <= 150 MB", "met" if sync_s < 10 and peak_mb <= 150 else "NOT met"),
    ]
    console.print(figure_table(f"Till sync: {args.sales} offline cash sales", rows))
    write_json(
        args.json,
        {
            "sales": args.sales,
            "offline_s": offline_s,
            "sync_s": sync_s,
            "synced_sales_per_s": rate,
            "checkout_baseline": baseline,
            "peak_rss_mb": peak_mb,
            "rejected": rejected,
        },
    )
    return 0 if rejected == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
