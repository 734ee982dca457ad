"""The `tillit` command line: one Typer sub-app per area, each a thin layer over that area's use cases.

setup (init, migrate, serve, check, prune, worker), exceptions and reconciliation and tools (chaos, till,
demo) have no name of their own, so their commands sit at the top (`tillit migrate`); access, payments
and secrets are the `tillit keys`, `tillit providers` and `tillit secrets` groups; the sandbox brings its
own. The order below is the order `tillit --help` lists them in.
"""

from __future__ import annotations

import typer

from tillit.cli import access, exceptions, merchants, payments, reconciliation, secrets, setup, tools
from tillit.cli import fulfilment as fulfilment_cli
from tillit.cli import monitoring as monitoring_cli
from tillit.cli import settlement as settlement_cli  # settle12
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
app.add_typer(settlement_cli.fees_app, name="fees")  # settle12
app.add_typer(settlement_cli.settlement_app, name="settlement")  # settle12
app.add_typer(monitoring_cli.app)  # monitoring: `tillit analytics`, `tillit health`
app.add_typer(monitoring_cli.alerts_app, name="alerts")  # monitoring: `tillit alerts …`
app.add_typer(fulfilment_cli.app, name="fulfilment")  # pickup and delivery orders (docs/fulfilment.md)


def main() -> None:
    app()
