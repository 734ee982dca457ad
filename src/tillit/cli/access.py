"""`tillit keys create / list / revoke`: API keys."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from tillit.access import keys
from tillit.bootstrap import build
from tillit.cli.output import console, exit_on_refusal

app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)


@app.command("create")
def keys_create(
    role: Annotated[str, typer.Option(help="admin, merchant or terminal")],
    name: Annotated[str, typer.Option(help="What the key is for")] = "cli",
    merchant_id: str | None = None,
    terminal_id: str | None = None,
) -> None:
    """Create an API key; the secret is printed once."""
    c = build()
    with exit_on_refusal(), c.db.transaction() as conn:
        record, secret = keys.create_key(
            conn, c.deps, role=role, name=name, merchant_id=merchant_id, terminal_id=terminal_id
        )
    console.print(f"{record['role']} key {record['id']}:")
    console.print(f"[bold]{secret}[/bold]")


@app.command("list")
def keys_list(merchant_id: str | None = None) -> None:
    """List keys (prefixes only; secrets are never stored)."""
    c = build()
    with c.db.read() as conn:
        rows = keys.list_keys(conn, merchant_id)
    table = Table()
    for col in ("id", "prefix", "role", "name", "merchant_id", "created_at", "revoked_at"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            *(
                str(r[k] or "")
                for k in ("id", "prefix", "role", "name", "merchant_id", "created_at", "revoked_at")
            )
        )
    console.print(table)


@app.command("revoke")
def keys_revoke(key_id: str) -> None:
    """Revoke a key at once."""
    c = build()
    with exit_on_refusal(), c.db.transaction() as conn:
        keys.revoke_key(conn, c.deps, key_id)
    console.print(f"revoked {key_id}")
