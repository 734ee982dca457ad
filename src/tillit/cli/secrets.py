"""`tillit secrets rotate`: the keys that seal provider secrets at rest (docs/security.md)."""

from __future__ import annotations

import typer

from tillit.bootstrap import build
from tillit.cli.output import console, exit_on_refusal
from tillit.payments import accounts as provider_accounts

app = typer.Typer(help="The keys that seal provider secrets at rest.", no_args_is_help=True)


@app.command("rotate")
def secrets_rotate() -> None:
    """Make a new current key, re-encrypt every stored secret under it, retire keys no longer used."""
    c = build()
    box = c.deps.secrets
    assert box is not None
    with exit_on_refusal():
        with c.db.read() as conn:
            provider_accounts.check_openable(conn, box)  # refuse before changing the keyring
        new = box.add_current_key()
        with c.db.transaction() as conn:  # all rows or none: an old key stays until this commits
            count = provider_accounts.reseal_all(conn, box)
        with c.db.read() as conn:
            retired = box.retire_keys(provider_accounts.key_ids_in_use(conn, box))
    console.print(
        f"current key {new}; re-encrypted {count} provider account(s); "
        f"retired {', '.join(retired) if retired else 'no keys'}"
    )
