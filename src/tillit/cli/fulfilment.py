"""`tillit fulfilment`: pickup and delivery orders from the shell, acting for one merchant (`--merchant`).

Moves without money (ready, ship, deliver, redeliver) and the merchant's periods; refunds of disputes and
cancels go through the API (`POST /v1/fulfilments/{id}/resolve|cancel`), which runs the provider call in
its phases. Every move is recorded with the actor ``merchant:cli``. docs/fulfilment.md.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table

from tillit.bootstrap import Container, build
from tillit.cli.output import console, exit_on_refusal
from tillit.domain.ids import normalise_id
from tillit.fulfilment import keys, service
from tillit.kernel.context import Actor

app = typer.Typer(
    help="Pickup and delivery orders: list, move, the customer link, periods.", no_args_is_help=True
)
Merchant = Annotated[str, typer.Option("--merchant", help="The merchant id")]
Output = Annotated[str, typer.Option("--format", help="table or json")]


def _actor(merchant_id: str) -> Actor:
    return Actor(key_id="cli", role="merchant", merchant_id=normalise_id(merchant_id, "merchant_id"))


def _print(view: Any, output: str) -> None:
    if output == "json":
        print(json.dumps(view, ensure_ascii=False))
        return
    for name in ("id", "order_number", "kind", "status", "carrier", "tracking_number", "confirm_due_at"):
        console.print(f"{name}: {view[name]}")
    console.print(f"customer_path: {view['customer_path']}")


@app.command("list")
def list_cmd(merchant: Merchant, status: str | None = None, output: Output = "table") -> None:
    """The merchant's fulfilment orders, newest first (200 at most)."""
    c = build()
    with exit_on_refusal():
        who = _actor(merchant)
        signer = keys.signer_for(c.db, c.deps)
        with c.db.read() as conn:
            rows = service.list_fulfilments(conn, signer, who.merchant(), limit=200, status=status)
    if output == "json":
        print(json.dumps(rows, ensure_ascii=False))
        return
    table = Table(title=f"{len(rows)} fulfilment orders")
    for col in ("id", "order", "kind", "status", "tracking", "confirm by"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(
            r["id"],
            str(r["order_number"]),
            r["kind"],
            r["status"],
            r["tracking_number"] or "",
            r["confirm_due_at"] or "",
        )
    console.print(table)


@app.command("show")
def show_cmd(merchant: Merchant, fulfilment_id: str, output: Output = "table") -> None:
    """One fulfilment order with its customer link."""
    c = build()
    with exit_on_refusal():
        who = _actor(merchant)
        with c.db.read() as conn:
            view = service.get_fulfilment(
                conn, keys.signer_for(c.db, c.deps), who.merchant(), normalise_id(fulfilment_id)
            )
    _print(view, output)


def _move(c: Container, merchant: str, run: Any) -> Any:
    with exit_on_refusal():
        who = _actor(merchant)
        signer = keys.signer_for(c.db, c.deps)
        with c.db.transaction() as conn:
            return run(conn, who, signer)


@app.command("ready")
def ready_cmd(merchant: Merchant, fulfilment_id: str, output: Output = "table") -> None:
    """A pickup order is ready to collect (the customer is told)."""
    c = build()
    fid = normalise_id(fulfilment_id)
    _print(
        _move(c, merchant, lambda conn, who, s: service.mark_ready(c.db, conn, c.deps, who, s, fid)), output
    )


@app.command("ship")
def ship_cmd(
    merchant: Merchant,
    fulfilment_id: str,
    carrier: Annotated[str, typer.Option(help="The carrier, e.g. SF Express")],
    tracking: Annotated[str, typer.Option(help="The tracking number")],
    output: Output = "table",
) -> None:
    """A delivery order was handed to the carrier: the auto-confirm timer starts."""
    c = build()
    fid = normalise_id(fulfilment_id)
    body = {"carrier": carrier, "tracking_number": tracking}
    _print(
        _move(c, merchant, lambda conn, who, s: service.mark_shipped(c.db, conn, c.deps, who, s, fid, body)),
        output,
    )


@app.command("deliver")
def deliver_cmd(merchant: Merchant, fulfilment_id: str, output: Output = "table") -> None:
    """The carrier reports the order delivered."""
    c = build()
    fid = normalise_id(fulfilment_id)
    _print(
        _move(c, merchant, lambda conn, who, s: service.mark_delivered(c.db, conn, c.deps, who, s, fid)),
        output,
    )


@app.command("redeliver")
def redeliver_cmd(
    merchant: Merchant,
    fulfilment_id: str,
    carrier: Annotated[str, typer.Option(help="The carrier")],
    tracking: Annotated[str, typer.Option(help="The new tracking number")],
    output: Output = "table",
) -> None:
    """Resolve a dispute by sending the goods again (a fresh auto-confirm timer)."""
    c = build()
    fid = normalise_id(fulfilment_id)
    body = {"carrier": carrier, "tracking_number": tracking}
    _print(
        _move(
            c, merchant, lambda conn, who, s: service.resolve_redeliver(c.db, conn, c.deps, who, s, fid, body)
        ),
        output,
    )


@app.command("settings")
def settings_cmd(
    merchant: Merchant,
    auto_confirm_days: Annotated[int | None, typer.Option(help="1-90 days after shipping")] = None,
    reminder_hours: Annotated[int | None, typer.Option(help="1-168 hours before the auto-confirm")] = None,
    ship_sla_hours: Annotated[int | None, typer.Option(help="1-720 hours to ship or make ready")] = None,
) -> None:
    """Show the merchant's periods, or set them (give all three)."""
    c = build()
    with exit_on_refusal():
        who = _actor(merchant)
        given = {
            "auto_confirm_days": auto_confirm_days,
            "reminder_hours": reminder_hours,
            "ship_sla_hours": ship_sla_hours,
        }
        if all(v is None for v in given.values()):
            with c.db.read() as conn:
                view = service.get_settings(conn, who.merchant())
        else:
            if any(v is None for v in given.values()):
                console.print("[red]invalid_fulfilment_settings[/red]: give all three periods.")
                raise typer.Exit(2)
            with c.db.transaction() as conn:
                view = service.put_settings(
                    conn, c.deps, who.merchant(), {k: int(v or 0) for k, v in given.items()}
                )
    print(json.dumps(view))
