"""The till's own cost of a scan (issue 17 speed aim), without a browser: the cashier page's app driven
in-process (FastAPI TestClient) over a real journal file, server unreachable (the journal path). Prints
the wall time and the process CPU time per scan (add a line, answer the panel) with a fresh journal and
with a day's journal (``--day`` completed sales, each with its tender and outbox entries), so a query
that grows with the day shows as a ratio.

Usage: .venv/bin/python bench/till_panel.py [--scans 200] [--day 5000] [--json PATH]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from bench.harness import cli  # noqa: E402
from bench.harness.report import console, figure_table, percentile, write_json  # noqa: E402


def journal_with(folder: Path, sales: int) -> Any:
    from tillit.till.client import ServerClient
    from tillit.till.journal import Journal
    from tillit.till.service import Till

    journal = Journal(folder / "journal.sqlite")
    with journal.tx() as conn:
        for i in range(40):
            conn.execute(
                "INSERT INTO products(id, sku, barcode, name, price, active, category)"
                " VALUES (?, ?, ?, ?, ?, 1, 'Cat')",
                (f"p{i}", f"SKU{i}", f"69012345679{i:02d}", f"Product {i}", 100 + i),
            )
    till = Till(journal, ServerClient("http://127.0.0.1:9", "unused"), terminal_id="bench")
    till.link.up = False
    till.open_shift(0)
    shift = till.current_shift()["id"]
    with journal.tx() as conn:
        for n in range(1, sales + 1):
            sid = f"s{n}"
            conn.execute(
                "INSERT INTO sales(id, number, status, shift_id, created_at, frozen, total)"
                " VALUES (?, ?, 'completed', ?, '2026-12-03T10:00:00+00:00', 1, 100)",
                (sid, n, shift),
            )
            conn.execute(
                "INSERT INTO sale_lines(sale_id, line_no, product_id, sku, name, unit_price, quantity)"
                " VALUES (?, 1, 'p1', 'SKU1', 'P', 100, 1)",
                (sid,),
            )
            conn.execute(
                "INSERT INTO tenders(id, sale_id, method, amount, status, created_at, updated_at)"
                " VALUES (?, ?, 'cash', 100, 'captured', 'x', 'x')",
                (f"t{n}", sid),
            )
            for op in ("order", "payment"):
                conn.execute(
                    "INSERT INTO outbox(op, key, sale_id, entity_id, body, state, created_at)"
                    " VALUES (?, ?, ?, ?, '{}', 'done', 'x')",
                    (op, f"{op}-{n}", sid, sid),
                )
    return till


def measure(sales: int, scans: int) -> dict[str, float]:
    from fastapi.testclient import TestClient

    from tillit.till.printer import FilePrinter
    from tillit.till.web import create_till_app

    with tempfile.TemporaryDirectory(prefix="tillit-till-panel-") as tmp:
        till = journal_with(Path(tmp), sales)
        client = TestClient(create_till_app(till, FilePrinter(Path(tmp) / "receipts")))
        client.cookies.set("lang", "en")
        walls: list[float] = []
        cpus: list[float] = []
        for i in range(5 + scans):
            w0, c0 = time.perf_counter(), time.process_time()
            response = client.post("/scan", data={"code": "6901234567905"})
            wall, cpu = time.perf_counter() - w0, time.process_time() - c0
            assert response.status_code == 200
            if i >= 5:
                walls.append(wall * 1000)
                cpus.append(cpu * 1000)
            if i % 20 == 19:  # keep the sale small, as a real one is
                client.post("/sale/cancel", data={"reason": "customer_cancelled"})
        till.journal._conn.close()
    return {
        "sales_in_journal": sales,
        "wall_p50_ms": round(statistics.median(walls), 2),
        "wall_p95_ms": round(percentile(walls, 95) or 0.0, 2),
        "cpu_mean_ms": round(statistics.mean(cpus), 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__doc__)
    parser.add_argument("--scans", type=int, default=200)
    parser.add_argument("--day", type=int, default=5000)
    cli.add_json(parser)
    args = parser.parse_args(argv)
    if not 1 <= args.scans <= 10_000 or not 0 <= args.day <= 100_000:
        parser.error("--scans is 1..10000 and --day 0..100000")
    fresh, day = measure(10, args.scans), measure(args.day, args.scans)
    rows = [
        (
            f"{f['sales_in_journal']} sales in the journal",
            f"wall p50 {f['wall_p50_ms']} ms · p95 {f['wall_p95_ms']} ms · CPU {f['cpu_mean_ms']} ms/scan",
        )
        for f in (fresh, day)
    ]
    rows.append(("CPU ratio day / fresh", f"{day['cpu_mean_ms'] / max(fresh['cpu_mean_ms'], 1e-9):.2f}"))
    console.print(figure_table("till panel: one scan, in-process, server down", rows))
    write_json(args.json, {"bench": "till_panel", "fresh": fresh, "day": day})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
