"""Refunds of captured payments: never more than was captured, each with its ledger entries."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from tillit.access.idempotency import Call
from tillit.adapters.db.engine import Database
from tillit.adapters.db.schema import orders, payments, refunds
from tillit.domain.errors import conflict, invalid, not_found
from tillit.domain.ids import normalise_id
from tillit.domain.ledger import refund_postings
from tillit.domain.money import check_amount
from tillit.kernel.context import Actor, Deps
from tillit.kernel.transitions import record_created, transition
from tillit.notifications import contacts
from tillit.sales import ledger
from tillit.sales.gateway import ProviderGateway
from tillit.sales.orders import lock_order, refund_view
from tillit.sales.views import RefundView

MAX_REASON = 500


def refund_captured(
    conn: Connection,
    deps: Deps,
    actor: Actor,
    order: Any,
    payment: Any,
    amount: int,
    reason: str | None,
    now: datetime,
    refund_id: str | None = None,
) -> RefundView:
    """Return ``amount`` of a captured cash payment. The caller holds the order lock.

    Updates the payment's and the order's refunded totals with relative updates (several refunds can
    happen in one transaction), moves the payment to ``refunded`` and a paid order to ``refunded``
    when everything has been returned.
    """
    assert payment.method == "cash", "provider refunds go through the integrity engine"
    refund_id = refund_id or deps.ids.new()
    record = {
        "id": refund_id,
        "merchant_id": order.merchant_id,
        "order_id": order.id,
        "payment_id": payment.id,
        "amount": amount,
        "currency": payment.currency,
        "status": "succeeded",
        "reason": reason,
        "provider_ref": None,
        "created_at": now,
        "updated_at": now,
    }
    conn.execute(insert(refunds).values(**record))
    record_created(
        conn,
        entity="refund",
        entity_id=refund_id,
        status="succeeded",
        merchant_id=order.merchant_id,
        order_id=order.id,
        actor=actor.label,
        now=now,
        reason=reason,
    )
    ledger.post(
        conn,
        txn_id=deps.ids.new(),
        merchant_id=order.merchant_id,
        order_id=order.id,
        currency=payment.currency,
        kind="refund",
        postings=refund_postings(order.id, payment.method, amount),
        now=now,
        payment_id=payment.id,
        refund_id=refund_id,
    )
    add_refunded(conn, order, payment, amount, actor.label, reason, now, refund_id=refund_id)
    return refund_view(record)


def add_refunded(
    conn: Connection,
    order: Any,
    payment: Any,
    amount: int,
    actor: str,
    reason: str | None,
    now: datetime,
    *,
    refund_id: str | None = None,
) -> None:
    """Count a succeeded refund on its payment and order (relative updates: several refunds may land in
    one transaction); a fully refunded payment, and a fully refunded paid order, move to ``refunded``.
    With ``refund_id`` the customer is told the refund is done (issue 14), in this transaction."""
    if refund_id is not None:
        contacts.notify_refunded(
            conn, now, merchant_id=order.merchant_id, order_id=order.id, refund_id=refund_id, amount=amount
        )
    pay_refunded = (
        conn.execute(
            select(payments.c.refunded_amount).where(
                payments.c.merchant_id == payment.merchant_id, payments.c.id == payment.id
            )
        ).scalar_one()
        + amount
    )
    if pay_refunded == payment.amount:
        transition(
            conn,
            entity="payment",
            entity_id=payment.id,
            current="captured",
            target="refunded",
            merchant_id=order.merchant_id,
            order_id=order.id,
            actor=actor,
            now=now,
            reason=reason,
            values={"refunded_amount": pay_refunded},
        )
    else:
        conn.execute(
            update(payments)
            .where(payments.c.merchant_id == payment.merchant_id, payments.c.id == payment.id)
            .values(refunded_amount=pay_refunded, version=payments.c.version + 1, updated_at=now)
        )
    fresh = conn.execute(
        select(orders.c.status, orders.c.refunded_amount, orders.c.paid_amount).where(
            orders.c.merchant_id == order.merchant_id, orders.c.id == order.id
        )
    ).one()
    order_refunded = fresh.refunded_amount + amount
    if fresh.status == "paid" and order_refunded == fresh.paid_amount:
        transition(
            conn,
            entity="order",
            entity_id=order.id,
            current="paid",
            target="refunded",
            merchant_id=order.merchant_id,
            order_id=order.id,
            actor=actor,
            now=now,
            reason=reason,
            values={"refunded_amount": order_refunded},
        )
    else:
        conn.execute(
            update(orders)
            .where(orders.c.merchant_id == order.merchant_id, orders.c.id == order.id)
            .values(refunded_amount=order_refunded, version=orders.c.version + 1, updated_at=now)
        )


def create_refund(
    db: Database,
    conn: Connection,
    deps: Deps,
    actor: Actor,
    body: dict[str, Any],
    gateway: ProviderGateway | None = None,
) -> tuple[int, RefundView] | Call:
    """Refund part or all of a captured payment. ``amount`` defaults to what is left to refund."""
    merchant_id = actor.merchant()
    payment_id = normalise_id(body["payment_id"], "payment_id")
    refund_id = normalise_id(body["id"]) if body.get("id") else None
    reason = body.get("reason")
    if reason is not None and len(reason) > MAX_REASON:
        raise invalid("invalid_reason", f"reason is at most {MAX_REASON} characters.")
    head = conn.execute(
        select(payments.c.order_id).where(payments.c.id == payment_id, payments.c.merchant_id == merchant_id)
    ).first()
    if head is None:
        raise not_found("payment", payment_id)
    order = lock_order(db, conn, merchant_id, head.order_id)
    pay_query = select(payments).where(payments.c.merchant_id == merchant_id, payments.c.id == payment_id)
    if db.is_postgres:
        pay_query = pay_query.with_for_update()
    payment = conn.execute(pay_query).one()
    if refund_id is not None:
        # Only this merchant's refunds: another merchant's id is an unused id here.
        existing = conn.execute(
            select(refunds).where(refunds.c.merchant_id == merchant_id, refunds.c.id == refund_id)
        ).first()
        if existing is not None:
            if existing.payment_id != payment_id:
                raise conflict("id_conflict", "This id is already in use; generate a new one.")
            return 200, refund_view(existing)
    if order.status == "open":
        raise conflict(
            "order_open",
            "This order is not fully paid yet; cancel it to hand back what was taken.",
            {"order_id": order.id},
        )
    if payment.status != "captured":
        raise conflict(
            "payment_not_refundable",
            f"Only a captured payment can be refunded; this one is {payment.status}.",
            {"status": payment.status},
        )
    reserved = conn.execute(
        select(func.coalesce(func.sum(refunds.c.amount), 0)).where(
            refunds.c.merchant_id == merchant_id,
            refunds.c.payment_id == payment.id,
            refunds.c.status.in_(("pending", "processing")),
        )
    ).scalar_one()
    remaining = payment.amount - payment.refunded_amount - int(reserved)
    amount = body.get("amount")
    amount = remaining if amount is None else check_amount(amount)
    if amount > remaining:
        raise conflict(
            "refund_exceeds_captured",
            f"At most {remaining} of this payment can still be refunded.",
            {"refundable": remaining, "amount": amount},
        )
    if payment.method != "cash":
        if gateway is None:
            raise invalid("method_not_enabled", f"{payment.method} refunds need the provider integration.")
        return gateway.start_refund(db, conn, deps, actor, order, payment, amount, reason, refund_id)
    view = refund_captured(conn, deps, actor, order, payment, amount, reason, deps.clock.now(), refund_id)
    return 201, view


def refund_finished(view: RefundView) -> tuple[int, RefundView]:
    """201 once the refund is settled either way; 202 while the provider is still processing it."""
    return (202 if view["status"] in ("pending", "processing") else 201), view


def refund_takeover(conn: Connection, merchant_id: str, refund_id: str) -> tuple[int, RefundView]:
    return refund_finished(get_refund(conn, merchant_id, refund_id))


def get_refund(conn: Connection, merchant_id: str, refund_id: str) -> RefundView:
    row = conn.execute(
        select(refunds).where(refunds.c.id == refund_id, refunds.c.merchant_id == merchant_id)
    ).first()
    if row is None:
        raise not_found("refund", refund_id)
    return refund_view(row)
