"""`tillit exceptions`: the cases a person has to decide."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from tillit.bootstrap import build
from tillit.cli.output import console
from tillit.exceptions import cases

app = typer.Typer()  # no name: its command sits at the top of `tillit`


@app.command("exceptions")
def exceptions_cmd(
    status: Annotated[str, typer.Option(help="open or resolved")] = "open",
    merchant_id: str | None = None,
    output: Annotated[str, typer.Option("--format", help="table or json")] = "table",
) -> None:
    """List what needs attention: payments the engine could not settle, with the recommended action."""
    c = build()
    with c.db.read() as conn:
        rows = cases.list_exceptions(conn, merchant_id, status, 200)
    if output == "json":
        print(json.dumps(rows, ensure_ascii=False))
        return
    table = Table(title=f"{len(rows)} {status} exceptions")
    for col in ("id", "kind", "payment_id", "amount", "created_at", "recommended_action"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(
            r["id"],
            r["kind"],
            r["payment_id"] or "",
            str(r["amount"] or ""),
            r["created_at"],
            r["recommended_action"],
        )
    console.print(table)
