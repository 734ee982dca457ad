"""Cancelling an order: cash handed back at once, provider money refunded through the gateway."""

from __future__ import annotations

from sqlalchemy import Connection, select

from tillit.adapters.db.engine import Database
from tillit.adapters.db.schema import payments
from tillit.domain.errors import conflict, invalid
from tillit.domain.states import CANCEL_REASONS
from tillit.kernel.context import Actor, Deps
from tillit.kernel.transitions import transition
from tillit.sales.gateway import ProviderGateway
from tillit.sales.orders import (
    get_order,
    in_flight_payment,
    lock_order,
    payment_in_progress,
    reserved_refunds,
)
from tillit.sales.refunds import refund_captured
from tillit.sales.views import OrderView


def cancel_order(
    db: Database,
    conn: Connection,
    deps: Deps,
    actor: Actor,
    order_id: str,
    reason: str,
    note: str | None,
    gateway: ProviderGateway | None,
) -> OrderView:
    """Cancel an open order with a reason code. Cash already taken is handed back at once (refund rows
    and ledger entries); provider money is refunded through the provider by the resolver. An order with
    a payment still in progress cannot be cancelled until that payment is settled."""
    merchant_id = actor.merchant()
    if reason not in CANCEL_REASONS:
        raise invalid(
            "invalid_cancel_reason",
            f"reason must be one of {', '.join(sorted(CANCEL_REASONS))}.",
            {"reason": reason, "allowed": sorted(CANCEL_REASONS)},
        )
    order = lock_order(db, conn, merchant_id, order_id)
    if order.status != "open":
        raise conflict(
            "order_not_open",
            f"Only an open order can be cancelled; this one is {order.status}.",
            {"status": order.status},
        )
    flight = in_flight_payment(conn, order_id, merchant_id=merchant_id)
    if flight is not None:
        raise payment_in_progress(flight)
    now = deps.clock.now()
    captured = list(
        conn.execute(
            select(payments)
            .where(
                payments.c.merchant_id == merchant_id,
                payments.c.order_id == order_id,
                payments.c.status == "captured",
            )
            .order_by(payments.c.id)
        )
    )
    for pay in captured:
        remaining = pay.amount - pay.refunded_amount - reserved_refunds(conn, pay.id, merchant_id=merchant_id)
        if remaining <= 0:
            continue
        if pay.method == "cash":
            refund_captured(conn, deps, actor, order, pay, remaining, f"order cancelled: {reason}", now)
        else:
            # Provider money goes back through the provider: a pending refund that the resolver sends
            # (same refund number on every retry) and confirms by query.
            if gateway is None:
                raise invalid("method_not_enabled", f"{pay.method} refunds need the provider integration.")
            gateway.queue_refund(conn, deps, actor, pay, remaining, f"order cancelled: {reason}")
    transition(
        conn,
        entity="order",
        entity_id=order_id,
        current="open",
        target="cancelled",
        merchant_id=merchant_id,
        order_id=order_id,
        actor=actor.label,
        now=now,
        reason=reason if not note else f"{reason}: {note}",
        values={"cancel_reason": reason},
    )
    return get_order(conn, merchant_id, order_id)
