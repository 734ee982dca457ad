"""Cashier station benchmark (issue 17), in a real browser: how long a tap on a tile and a scan take to show
their line, with the server up and with the server down (the journal path), and how long recalling a
parked sale takes. Measured inside the page (performance.now() from the tap/submit to htmx's settle of
the swapped panel), against real `tillit` processes (sandbox, server, till) prepared as `tillit demo`.

Aims (the issue's): tap/scan line p95 <= 100 ms, server up and down; recall p95 <= 150 ms.

Usage: .venv/bin/python bench/till_ui.py [--taps 60] [--recalls 30] [--json PATH]
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from bench.harness import cli  # noqa: E402
from bench.harness.proc import free_port  # noqa: E402
from bench.harness.report import console, figure_table, percentile, write_json  # noqa: E402

from tillit.tools.demo import prepare  # noqa: E402

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"]
HEALTH = {"sandbox": "/sandbox/health", "api": "/healthz", "till": "/healthz"}

# One measured action: run ``start`` in the page, resolve when htmx has settled the swapped panel.
MEASURE = """async (start) => {
  // Only the cashier panel's settle counts (the status bar polls and settles on its own).
  const settled = new Promise(resolve => {
    const done = e => {
      if (e.detail.target && e.detail.target.id === 'app') {
        document.body.removeEventListener('htmx:afterSettle', done);
        resolve();
      }
    };
    document.body.addEventListener('htmx:afterSettle', done);
  });
  const t0 = performance.now();
  (new Function(start))();
  await settled;
  return performance.now() - t0;
}"""


def p95(values: list[float]) -> float:
    return percentile(values, 95) or 0.0


def start(plan: Any, env: dict[str, str], name: str) -> subprocess.Popen[bytes]:
    log = open(plan.logs / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
    command = plan.commands["server" if name == "api" else name]
    proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = plan.urls[name] + HEALTH[name]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit(f"{name} did not come up")


def settle(page: Any, script: str) -> float:
    return float(page.evaluate(MEASURE, script))


def taps_and_scans(page: Any, n: int) -> tuple[list[float], list[float]]:
    tap, scan = [], []
    for i in range(n):
        sku = ["COF-LATTE", "BAK-CROIS", "TEA-OOLONG"][i % 3]
        tap.append(settle(page, f"document.querySelector('#grid .tile[data-sku=\"{sku}\"]').click()"))
        scan.append(
            settle(
                page,
                "const s = document.getElementById('scan'); s.value = '6901234567946';"
                " document.getElementById('scan-form').requestSubmit();",
            )
        )
        if i % 20 == 19:  # keep the sale small, as a real one is
            settle(page, "document.getElementById('cancel-sale').click()")
    if page.locator("#cancel-sale").count():
        settle(page, "document.getElementById('cancel-sale').click()")
    return tap, scan


def recalls(page: Any, n: int) -> list[float]:
    out = []
    for _ in range(n):
        settle(page, "document.querySelector('#grid .tile[data-sku=\"COF-LATTE\"]').click()")
        settle(page, "document.getElementById('hold').click()")
        if not page.locator("#held-list").count():
            settle(page, "document.getElementById('held-toggle').click()")
        out.append(settle(page, "document.querySelector('#held-list .recall').click()"))
        settle(page, "document.getElementById('cancel-sale').click()")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__doc__)
    parser.add_argument("--taps", type=int, default=60)
    parser.add_argument("--recalls", type=int, default=30)
    cli.add_json(parser)
    args = parser.parse_args(argv)
    if not 1 <= args.taps <= 10_000 or not 1 <= args.recalls <= 1_000:
        parser.error("--taps is 1..10000 and --recalls 1..1000")
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        parser.error("needs Debian's chromium")
    with tempfile.TemporaryDirectory(prefix="tillit-till-ui-") as tmp:
        home = Path(tmp) / "home"
        env = {k: v for k, v in os.environ.items() if not k.startswith("TILLIT_")}
        env.update({"TILLIT_HOME": str(home), "NO_COLOR": "1"})
        os.environ["TILLIT_HOME"] = str(home)
        os.environ.pop("TILLIT_DATABASE_URL", None)
        plan = prepare(api_port=free_port(), sandbox_port=free_port(), till_port=free_port())
        procs = {name: start(plan, env, name) for name in ("sandbox", "api", "till")}
        figures: dict[str, Any] = {}
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
                page = browser.new_page(viewport={"width": 1024, "height": 768})
                page.goto(plan.urls["till"] + "/lang/en")
                if page.locator("#open-shift").count():
                    page.fill("#shift-float", "100.00")
                    page.click("#open-shift")
                page.wait_for_selector("#grid")
                page.wait_for_selector("#scan")
                taps_and_scans(page, 5)  # warm up
                up_tap, up_scan = taps_and_scans(page, args.taps)
                recall = recalls(page, args.recalls)
                procs["api"].kill()
                procs["api"].wait(10)
                # (The header shows "offline" only once a sync fails; the cash path never waits for it.)
                down_tap, down_scan = taps_and_scans(page, args.taps)
                browser.close()
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    proc.terminate()
                    proc.wait(10)
        for name, values, aim in (
            ("tap_up", up_tap, 100),
            ("scan_up", up_scan, 100),
            ("tap_down", down_tap, 100),
            ("scan_down", down_scan, 100),
            ("recall", recall, 150),
        ):
            figures[name] = {
                "n": len(values),
                "p50_ms": round(statistics.median(values), 1),
                "p95_ms": round(p95(values), 1),
                "max_ms": round(max(values), 1),
                "aim_p95_ms": aim,
                "met": p95(values) <= aim,
            }
    rows = [
        (
            f"{name} (n={f['n']})",
            f"p50 {f['p50_ms']} ms · p95 {f['p95_ms']} ms (aim <= {f['aim_p95_ms']}: "
            f"{'met' if f['met'] else 'NOT met'})",
        )
        for name, f in figures.items()
    ]
    console.print(figure_table("till UI: line shown / recall, in the browser", rows))
    write_json(args.json, {"bench": "till_ui", "figures": figures})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
