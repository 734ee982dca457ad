"""bench/outbox.py runs end to end at its smallest size and writes the JSON docs/benchmarks.md reads.
No timing is asserted: every message must arrive and every checkout must succeed."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.test_bench_smoke import run_bench


def test_outbox_bench_runs(tmp_path: Path) -> None:
    args = ["--db", "sqlite", "--messages", "5", "--checkouts", "3", "--concurrency", "1", "--pairs", "1"]
    data = run_bench("outbox.py", *args, tmp_path=tmp_path)
    (result,) = data["results"]
    assert result["throughput"]["delivered"] == result["throughput"]["messages"] == 5
    assert {"raw_smtplib_per_s", "outbox_per_s", "ratio"} <= set(result["throughput"])
    checkout = result["checkout"]
    assert checkout["errors"] == 0, checkout["error_sample"]
    assert {"without_outbox_per_s", "with_outbox_per_s", "ratio"} <= set(checkout)
    cpu = checkout["server_cpu_ms_per_checkout"]
    assert {"without", "with", "ratio", "runs"} <= set(cpu) and len(cpu["runs"]["with"]) == 1
