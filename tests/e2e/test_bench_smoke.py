"""The benchmarks in bench/ run end to end at their smallest size and write the JSON their docs describe.

No timing is asserted (speed is measured by bench/, never by tests): each script runs as `make bench`
runs it, as a file in a child process, against real `tillit` processes, and its JSON must carry the
figures' keys. PostgreSQL is part of the checkout run; without it the test fails or skips as every
PostgreSQL test does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support import pg

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 240


def run_bench(script: str, *args: str, tmp_path: Path) -> dict[str, Any]:
    out = tmp_path / f"{Path(script).stem}.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TILLIT_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args, "--json", str(out)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    tail = f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert proc.returncode == 0, f"{script} failed ({proc.returncode}):\n{tail}"
    data: dict[str, Any] = json.loads(out.read_text())
    return data


def test_checkout_runs_on_both_databases(tmp_path: Path) -> None:
    admin = pg.pg_admin_url()
    if not admin:
        pg.require_or_skip("TILLIT_TEST_PG_URL is not set")
    assert admin is not None
    data = run_bench(
        "checkout.py",
        "--db",
        "both",
        "--checkouts",
        "6",
        "--warmup",
        "2",
        "--concurrency",
        "2",
        "--ceiling-seconds",
        "1",
        "--duration",
        "60",
        "--pg-url",
        admin,
        tmp_path=tmp_path,
    )
    assert {"date", "git", "command", "checkouts", "concurrency", "client", "elapsed_s"} <= set(data["meta"])
    assert [r["db"] for r in data["results"]] == ["sqlite", "postgres"]
    for r in data["results"]:
        assert set(r) == {
            "db", "label", "durability", "server_stack", "checkout", "server", "framework_ceiling",
            "post_framework_ceiling", "database_ceiling", "database_ceilings", "ratios", "targets",
        }  # fmt: skip
        assert r["checkout"]["requested"] == 6
        assert r["checkout"]["ok"] + r["checkout"]["errors_non_2xx"] >= 1
        assert {"p50", "p99", "order_p50", "order_p99", "payment_p50", "payment_p99"} == set(
            r["checkout"]["latency_ms"]
        )
        assert {"server_cores", "client_cores", "postgres_cores", "other_cores"} <= set(r["checkout"]["cpu"])
        assert r["server"]["peak_rss_mb"] is not None
        assert r["framework_ceiling"]["requests"] > 0
        assert {"checkouts", "errors", "checkouts_per_s", "transactions_per_s"} <= set(r["database_ceiling"])
        # the ceiling writes the checkout's own rows: a schema it no longer matches must not pass as 0/s
        assert r["database_ceiling"]["errors"] == 0 and r["database_ceiling"]["checkouts"] > 0
        assert set(r["ratios"]) == {
            "requests_vs_framework_ceiling",
            "checkouts_vs_database_ceiling",
            "requests_vs_post_ceiling",
            "checkouts_vs_group_commit_ceiling",
        }
        # the POST ceiling validated real order bodies and answered a real order's bytes (issue 11.1)
        post = r["post_framework_ceiling"]
        assert post["requests"] > 0 and post["errors_non_2xx"] == 0 and post["answer_bytes"] > 100
        # one writer at full and weak durability, and 32 checkouts per commit, each writing every row
        assert [v["checkouts_per_commit"] for v in r["database_ceilings"]] == [1, 1, 32]
        assert all(v["errors"] == 0 and v["checkouts"] == 6 for v in r["database_ceilings"])


def test_till_sync_runs(tmp_path: Path) -> None:
    data = run_bench("till_sync.py", "--sales", "5", "--no-baseline", tmp_path=tmp_path)
    assert set(data) == {
        "sales", "offline_s", "sync_s", "synced_sales_per_s", "checkout_baseline", "peak_rss_mb", "rejected",
    }  # fmt: skip
    assert data["sales"] == 5
    assert data["rejected"] == 0
    assert data["checkout_baseline"] is None


def test_recovery_runs(tmp_path: Path) -> None:
    # chaos waits up to --settle-seconds for in-flight work; the daily reconciliation job stays pending
    # all along, so a small bound keeps this short (the 4 attempts settle within a few seconds).
    data = run_bench(
        "recovery.py", "--checkouts", "4", "--no-baseline", "--settle-seconds", "8", tmp_path=tmp_path
    )
    assert {"date", "checkouts", "chaos_ok", "providers", "provider_checkouts_per_s"} <= set(data)
    assert {"cash_checkouts_per_s", "provider_over_cash"} <= set(data)
    assert data["checkouts"] == 4
    assert data["chaos_ok"] is True
    kinds = {"lost answer", "not at the provider", "password pending"}
    for by_kind in data["providers"].values():
        assert set(by_kind) <= kinds  # issue 11.6: lost answers apart from the customer's own time
        for figures in by_kind.values():
            assert set(figures) == {"unknown_attempts", "p50_s", "p99_s", "max_s", "aim_s", "p99_over_window"}


def test_reconcile_runs(tmp_path: Path) -> None:
    data = run_bench("reconcile.py", "--lines", "1000", "--plant", "2", "--repeat", "1", tmp_path=tmp_path)
    assert data["ok"] is True
    # Per class 2 planted: missing at the provider and late locally have no bill row, duplicates have two.
    assert data["lines"] == 1000 - 2 - 2 + 2
    assert data["reconcile"]["found"] == data["planted"]
    ratios = {"parse_lines_per_s", "match_lines_per_s", "match_over_raw_join", "match_over_payload_join"}
    assert ratios <= set(data)


def test_settlement_runs(tmp_path: Path) -> None:  # settle12
    data = run_bench(
        "settlement.py",
        "--merchants",
        "20",
        "--days",
        "5",
        "--per-day",
        "10",
        "--plant",
        "2",
        "--repeat",
        "1",
        tmp_path=tmp_path,
    )
    assert data["ok"] and data["found"] == data["planted"]


def test_refund_confirmation_bench_runs(tmp_path: Path) -> None:
    data = run_bench("refund_confirm.py", "--db", "sqlite", "--refunds", "4", tmp_path=tmp_path)
    figures = data["databases"]["sqlite"]
    assert figures["refunds"] == 4 and figures["unconfirmed"] == 0
    for group in figures["providers"].values():
        assert {"count", "p50_s", "p99_s", "max_s"} == set(group)


def test_resend_bench_runs(tmp_path: Path) -> None:
    data = run_bench("resend.py", "--db", "sqlite", "--rounds", "1", tmp_path=tmp_path)
    figures = data["databases"]["sqlite"]
    assert figures["rounds"] == 1 and figures["problems"] == []
    assert set(figures["statuses"]) <= {"201", "202"}
