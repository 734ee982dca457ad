"""`tillit reconcile FILE`: parse a bill, match it, print the result (table, JSON or CSV).

Exit codes: 0 everything matched (no open discrepancy), 3 discrepancies remain, 2 a bad file (or a
bill that belongs to no merchant it was given for). JSON shape: docs/reconciliation.md.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from sqlalchemy import select

from tillit.adapters.db import migrate as migrations
from tillit.adapters.db.schema import provider_accounts
from tillit.bootstrap import Container, build
from tillit.domain.errors import DomainError
from tillit.domain.ids import normalise_id
from tillit.reconciliation import formats, service
from tillit.reconciliation.match import CLASSES

EXIT_OK, EXIT_BAD_FILE, EXIT_DISCREPANCIES = 0, 2, 3
PROGRESS_FROM_BYTES = 8 * 1024 * 1024
TABLE_ROWS = 200

app = typer.Typer()  # no name: its command sits at the top of `tillit`
err = Console(stderr=True)


@app.command()
def reconcile(
    file: Annotated[Path, typer.Argument(help="The bill: WeChat CSV, Alipay ZIP, or a generic CSV")],
    provider: Annotated[str, typer.Option("--provider", help="The file's format: wechat, alipay or csv")],
    mapping: Annotated[
        Path | None, typer.Option("--mapping", help="Column mapping (TOML or JSON) for --provider csv")
    ] = None,
    bill_date: Annotated[
        str | None, typer.Option("--date", help="The bill's day (YYYY-MM-DD); read from the file if omitted")
    ] = None,
    output: Annotated[str, typer.Option("--format", help="table, json or csv")] = "table",
    merchant_id: Annotated[
        str | None,
        typer.Option("--merchant", help="Whose bill it is (default: the merchant owning the bill's account)"),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Match and print; store nothing")] = False,
) -> None:
    """Reconcile a provider bill: exit 0 when everything matched, 3 when discrepancies remain, 2 on a
    bad file. See docs/reconciliation.md."""
    code = run_reconcile(
        file=file,
        fmt=provider,
        mapping=mapping,
        bill_date=bill_date,
        output=output,
        merchant_id=merchant_id,
        dry_run=dry_run,
    )
    raise typer.Exit(code)


def _fen(value: Any) -> str:
    if value is None:
        return ""
    sign = "-" if value < 0 else ""
    return f"{sign}{abs(value) // 100}.{abs(value) % 100:02d}"


def _owner(c: Container, bill: Any) -> str | None:
    """The merchant whose provider account issued this bill (WeChat mch_id / Alipay seller id)."""
    if bill.account is None:
        return None
    with c.db.read() as conn:
        for row in conn.execute(
            select(provider_accounts).where(provider_accounts.c.provider == bill.provider)
        ):
            config = json.loads(row.config)
            ref = row.account_ref if bill.provider == "wechat" else config.get("seller_id")
            if ref and str(bill.account).startswith(str(ref)):
                return str(row.merchant_id)
    return None


def run_reconcile(
    *,
    file: Path,
    fmt: str,
    mapping: Path | None,
    bill_date: str | None,
    output: str,
    merchant_id: str | None,
    dry_run: bool,
) -> int:
    """Parse, match and print one bill; returns the exit code (EXIT_OK, EXIT_DISCREPANCIES, EXIT_BAD_FILE)."""
    if output not in ("table", "json", "csv"):
        err.print("[red]--format is table, json or csv[/red]")
        return EXIT_BAD_FILE
    if fmt not in formats.FORMATS:
        err.print("[red]--provider is wechat, alipay or csv[/red]")
        return EXIT_BAD_FILE
    try:
        day = date.fromisoformat(bill_date) if bill_date else None
    except ValueError:
        err.print(f"[red]--date {bill_date!r} is not YYYY-MM-DD[/red]")
        return EXIT_BAD_FILE
    con = service.connect()
    progress: Progress | None = None
    try:
        try:
            parsed_mapping = formats.load_mapping(mapping) if mapping is not None else None
            size = file.stat().st_size if file.is_file() else 0
            advance: Callable[[int], None] | None = None
            if size >= PROGRESS_FROM_BYTES:
                progress = Progress(
                    TextColumn("{task.description}"),
                    BarColumn(),
                    DownloadColumn(),
                    TimeRemainingColumn(),
                    console=err,
                    transient=True,
                )
                progress.start()
                task = progress.add_task(f"reading {file.name}", total=size)

                def advance(n: int) -> None:
                    assert progress is not None
                    progress.advance(task, n)

            bill = service.parse_bill(con, file, fmt, mapping=parsed_mapping, progress=advance)
            if progress is not None:
                progress.update(task, description="matching", completed=size)
            if bill.account is None and not merchant_id:
                # A bill that names no account (an empty WeChat bill has no rows to name it) cannot be
                # told apart from "this merchant sold nothing": matched against no local payments it
                # would report everything matched, so the merchant must be named (issue #9, defect 16).
                raise DomainError(
                    "bill_merchant_required",
                    "The bill names no account: give --merchant to reconcile it against that merchant.",
                )
            day = day or bill.bill_date
            if day is None:
                raise DomainError("bill_date_required", "The bill has no rows to tell its date: give --date.")
            c = build()
            at_head = migrations.current_revision(c.db) == migrations.head_revision()
            owner = None
            if at_head and not dry_run:
                owner = normalise_id(merchant_id, "merchant_id") if merchant_id else _owner(c, bill)
            if owner is None:
                if merchant_id and not at_head:
                    raise DomainError(
                        "merchant_not_found", "The database is not migrated: run `tillit migrate`."
                    )
                why = (
                    "dry run"
                    if dry_run
                    else "database not initialised"
                    if not at_head
                    else f"no merchant owns {bill.provider} account {bill.account} (use --merchant)"
                )
                err.print(f"[yellow]{why}: matched against no local payments; nothing stored[/yellow]")
                outcome = service.reconcile_offline(con, bill, day)
            else:
                outcome = service.import_bill(
                    c.db,
                    c.deps,
                    merchant_id=owner,
                    bill=bill,
                    con=con,
                    source="cli",
                    actor="cli",
                    bill_date=day,
                )
        finally:
            if progress is not None:
                progress.stop()
    except DomainError as exc:
        details = exc.details if isinstance(exc.details, dict) else {}
        if output == "json":
            print(
                json.dumps(
                    {"error": {"code": exc.code, "message": exc.message, "details": details}},
                    ensure_ascii=False,
                    default=str,
                )
            )
        err.print(f"[red]{exc.code}[/red]: {exc.message}", soft_wrap=True)
        return EXIT_BAD_FILE
    finally:
        con.close()
    code = EXIT_DISCREPANCIES if outcome.open_count else EXIT_OK
    if output == "json":
        payload = outcome.as_json()
        payload["exit_code"] = code
        print(json.dumps(payload, ensure_ascii=False, default=str))
    elif output == "csv":
        sys.stdout.write(service.export_csv(outcome.discrepancies))
    else:
        _print_table(outcome, file)
    return code


def _print_table(outcome: Any, file: Path) -> None:
    out = Console(width=None if sys.stdout.isatty() else 140)
    bill, run = outcome.bill, outcome.run
    out.print(
        f"[bold]{file.name}[/bold]: {bill['format']} bill ({bill['bill_type']}) for {run['bill_date']}, "
        f"account {bill.get('account') or '-'}, {run['lines']} lines, totals checked"
        + (f"; run {run['id']}" if run.get("id") else "; not stored")
        + ("" if outcome.created else " (already imported: unchanged)")
    )
    summary = Table(title="Reconciliation summary")
    for col in ("class", "count", "amount (yuan)"):
        summary.add_column(col, justify="right" if col != "class" else "left")
    summary.add_row("matched", str(run["matched"]), "")
    for cls in CLASSES:
        summary.add_row(cls, str(run["counts"].get(cls, 0)), _fen(run["amounts"].get(cls, 0)))
    out.print(summary)
    rows = outcome.discrepancies
    if not rows:
        out.print("[green]Everything matched.[/green]")
        return
    table = Table(title=f"{len(rows)} discrepancies ({outcome.open_count} open)")
    for col in ("line", "class", "out_trade_no", "out_refund_no", "provider", "tillit", "status", "action"):
        table.add_column(col, overflow="fold")
    for d in rows[:TABLE_ROWS]:
        table.add_row(
            str(d["line"] or ""),
            d["class"],
            d["out_trade_no"] or "",
            d["out_refund_no"] or "",
            _fen(d["provider_amount"]),
            _fen(d["local_amount"]),
            d["status"],
            d["action"],
        )
    out.print(table)
    if len(rows) > TABLE_ROWS:
        out.print(f"… {len(rows) - TABLE_ROWS} more: use --format csv or json")
