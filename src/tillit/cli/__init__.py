"""The `tillit` command line: one Typer sub-app per area, each a thin layer over that area's use cases.

setup (init, migrate, serve, check, prune, worker), exceptions and reconciliation and tools (chaos, till,
demo) have no name of their own, so their commands sit at the top (`tillit migrate`); access, payments
and secrets are the `tillit keys`, `tillit providers` and `tillit secrets` groups; the sandbox brings its
own. The order below is the order `tillit --help` lists them in.
"""

from __future__ import annotations

import typer

from tillit.cli import access, exceptions, merchants, payments, reconciliation, secrets, setup, tools
from tillit.sandbox.cli import app as sandbox_app

app = typer.Typer(
    help="Tillit: a point of sale that never loses, leaves unknown or double-charges a sale.",
    no_args_is_help=True,
)
app.add_typer(setup.app)
app.add_typer(exceptions.app)
app.add_typer(reconciliation.app)
app.add_typer(tools.app)
app.add_typer(access.app, name="keys")
app.add_typer(payments.app, name="providers")
app.add_typer(secrets.app, name="secrets")
app.add_typer(merchants.app, name="merchants")  # merchants area (issue 12)
app.add_typer(sandbox_app, name="sandbox")


def main() -> None:
    app()
