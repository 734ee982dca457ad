"""Figures and output: percentiles, the Rich console and tables, the git state and machine for the JSON."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.harness.proc import loadavg, now_utc
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[2]

# Wide enough for the results table when the output goes to a file or a pipe.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)


def percentile(values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile of ``values`` (None when there are none)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(pct / 100.0 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def percentile_rounded_index(values: list[float], pct: float) -> float | None:
    """The value at index round(pct% x (n - 1)) of the sorted ``values`` (None when there are none).

    Not the nearest rank: bench/recovery.py has always reported this one, so its figures stay
    comparable with those already published."""
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def ms(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def fmt(value: Any, unit: str = "", digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}{unit}"
    return f"{value:,}{unit}" if isinstance(value, int) else f"{value}{unit}"


def verdict(ok: bool) -> str:
    return "[green]met[/green]" if ok else "[red]not met[/red]"


def figure_table(title: str, rows: Sequence[tuple[str, str]]) -> Table:
    """A two-column table: figure, value."""
    table = Table(title=title)
    table.add_column("figure")
    table.add_column("value", justify="right")
    for name, value in rows:
        table.add_row(name, value)
    return table


def columns_table(title: str, columns: Sequence[str]) -> Table:
    """A table of right-aligned columns, one row per subject."""
    table = Table(title=title)
    for col in columns:
        table.add_column(col, justify="right")
    return table


def git_state() -> dict[str, Any]:
    """The commit measured, and whether the work tree had uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": head or None, "dirty": bool(dirty)}


def machine() -> dict[str, Any]:
    """The command and machine a run was made with."""
    return {
        "date": now_utc().isoformat(timespec="seconds"),
        "git": git_state(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "cpus": os.cpu_count(),
        "loadavg_at_start": loadavg(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def write_json(path: Path | None, data: Any) -> None:
    """Write ``data`` as indented JSON to ``path`` (nothing when None)."""
    if path is None:
        return
    path.write_text(json.dumps(data, indent=2) + "\n")
    console.print(f"wrote {path}")


def checkout_baseline(checkouts: int, timeout: float = 900.0) -> float | None:
    """SQLite cash checkouts/s measured by bench/checkout.py in a child process, to set a figure beside."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "checkout.json"
        subprocess.run(
            [
                sys.executable,
                str(ROOT / "bench" / "checkout.py"),
                "--db",
                "sqlite",
                "--checkouts",
                str(checkouts),
                "--json",
                str(out),
            ],
            check=True,
            capture_output=True,
            timeout=timeout,
        )
        value = json.loads(out.read_text())["results"][0]["checkout"]["checkouts_per_s"]
        return float(value) if value is not None else None
