"""The arguments the benchmarks share, with their bounds."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from urllib.parse import urlsplit

from bench.harness.db import DEFAULT_PG_URL
from bench.harness.proc import is_loopback


def parser(doc: str | None) -> argparse.ArgumentParser:
    """A parser whose description is the first paragraph of the script's docstring, usage kept as written."""
    return argparse.ArgumentParser(
        description=(doc or "").split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )


def add_db(p: argparse.ArgumentParser, default: str = "both") -> None:
    """--db sqlite|postgres|both, --pg-url (this machine only), --sqlite-synchronous."""
    p.add_argument("--db", choices=("sqlite", "postgres", "both"), default=default)
    p.add_argument(
        "--pg-url",
        default=os.environ.get("TILLIT_BENCH_PG_URL", DEFAULT_PG_URL),
        help="PostgreSQL maintenance URL on this machine (default %(default)s)",
    )
    p.add_argument(
        "--sqlite-synchronous",
        default=os.environ.get("TILLIT_SQLITE_SYNCHRONOUS", "FULL").upper(),
        choices=("OFF", "NORMAL", "FULL", "EXTRA"),
        help="as TILLIT_SQLITE_SYNCHRONOUS (default FULL)",
    )


def add_load(p: argparse.ArgumentParser, *, connections: int = 8, duration: float = 300.0) -> None:
    """--concurrency/--connections C and --duration S (an upper bound, never a target)."""
    p.add_argument(
        "--concurrency",
        "--connections",
        dest="concurrency",
        type=int,
        default=connections,
        help=f"connections / workers (default {connections})",
    )
    p.add_argument(
        "--duration",
        type=float,
        default=duration,
        help=f"upper bound in seconds for each measured phase (default {duration:.0f})",
    )


def add_json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", type=Path, help="also write the results as JSON to this path")


def db_kinds(p: argparse.ArgumentParser, args: argparse.Namespace) -> list[str]:
    """The databases --db names; refuses a PostgreSQL URL that is not on this machine."""
    kinds = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    if "postgres" in kinds and not is_loopback(urlsplit(args.pg_url).hostname):
        p.error("--pg-url must point at this machine (127.0.0.1 / localhost)")
    return kinds


def check_load(p: argparse.ArgumentParser, args: argparse.Namespace, max_concurrency: int = 256) -> None:
    if args.concurrency < 1 or args.duration <= 0:
        p.error("--concurrency and --duration must be positive")
    if args.concurrency > max_concurrency or args.duration > 3600:
        p.error(f"limits: --concurrency <= {max_concurrency}, --duration <= 3600")
