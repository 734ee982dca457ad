"""Till sync benchmark: N cash sales made offline into the till's journal, then the time for the till to
sync them all once the server is back, against bench/checkout.py's checkouts/s in the same run.

The till runs in this process (so its peak memory is this process's); the server is a real
`tillit serve` subprocess on embedded SQLite (synchronous=FULL). Aim: 10,000 sales synced in < 10 s,
till peak RSS <= 150 MB.

Usage: .venv/bin/python bench/till_sync.py [--sales 10000] [--json PATH] [--no-baseline]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from tillit.till.client import LinkDown, ServerClient  # noqa: E402
from tillit.till.journal import Journal  # noqa: E402
from tillit.till.service import Till  # noqa: E402


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tillit() -> list[str]:
    exe = shutil.which("tillit") or str(Path(sys.executable).parent / "tillit")
    return [exe] if Path(exe).exists() else [sys.executable, "-m", "tillit.cli"]


def start_server(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [*tillit(), "serve", "--port", str(port), "--no-access-log"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("server did not start")


def baseline_checkouts_per_s() -> float | None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "checkout.json"
        subprocess.run(
            [
                sys.executable,
                str(ROOT / "bench" / "checkout.py"),
                "--db",
                "sqlite",
                "--checkouts",
                "2000",
                "--json",
                str(out),
            ],
            check=True,
            capture_output=True,
            timeout=900,
        )
        text = out.read_text()
        match = re.search(r'"checkouts_per_s":\s*([0-9.]+)', text)
        return float(match.group(1)) if match else None


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sales", type=int, default=10_000)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--no-baseline", action="store_true", help="skip bench/checkout.py")
    args = parser.parse_args()
    console = Console()
    with tempfile.TemporaryDirectory(prefix="tillit-till-sync-") as tmp:
        home = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith("TILLIT_")} | {
            "TILLIT_HOME": str(home / "server")
        }
        out = subprocess.run(
            [*tillit(), "init", "--demo"],
            env=env | {"NO_COLOR": "1"},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        key = re.search(r"terminal_key\s+(\S+)", out).group(1)  # type: ignore[union-attr]
        port = free_port()
        server = start_server(env, port)
        till = Till(Journal(home / "till" / "journal.sqlite"), ServerClient(f"http://127.0.0.1:{port}", key))
        till.terminal_id = httpx.get(
            f"http://127.0.0.1:{port}/v1/me", headers={"Authorization": f"Bearer {key}"}
        ).json()["terminal_id"]
        till.refresh_catalogue()
        server.terminate()
        server.wait(15)
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
        server = start_server(env, port)
        t1 = time.perf_counter()
        rounds = 0
        while till.journal.pending_count():
            till.sync_once()
            rounds += 1
        sync_s = time.perf_counter() - t1
        synced = till.journal.one("SELECT COUNT(*) AS n FROM outbox WHERE state = 'done'")["n"]
        rejected = till.journal.one("SELECT COUNT(*) AS n FROM outbox WHERE state = 'rejected'")["n"]
        server.terminate()
        server.wait(15)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    baseline = None if args.no_baseline else baseline_checkouts_per_s()
    rate = args.sales / sync_s
    table = Table(title=f"Till sync: {args.sales} offline cash sales")
    table.add_column("figure")
    table.add_column("value", justify="right")
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
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "sales": args.sales,
                    "offline_s": offline_s,
                    "sync_s": sync_s,
                    "synced_sales_per_s": rate,
                    "checkout_baseline": baseline,
                    "peak_rss_mb": peak_mb,
                    "rejected": rejected,
                },
                indent=2,
            )
        )
    return 0 if rejected == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
