"""Payments. This module handles cash; provider methods go through the integrity engine, which uses
the same attempt rows, events and ledger postings."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, insert, select, update

from tillit.adapters.db.engine import Database
from tillit.adapters.db.schema import orders, payments
from tillit.domain.errors import conflict, invalid, not_found
from tillit.domain.ids import normalise_id
from tillit.domain.ledger import capture_postings
from tillit.domain.money import MAX_AMOUNT, check_amount
from tillit.domain.states import PAYMENT_METHODS
from tillit.services import ledger
from tillit.services.context import Actor, Deps
from tillit.services.orders import (
    apply_stock,
    in_flight_payment,
    lock_order,
    payment_in_progress,
    payment_view,
)
from tillit.services.transitions import record_created, transition


def create_payment(
    db: Database, conn: Connection, deps: Deps, actor: Actor, body: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    """Take a payment for an open order.

    ``amount`` defaults to the balance due and may not exceed it; for cash, ``tendered`` (>= amount)
    gives the change due. A client-generated ``id`` that already exists for this order returns that
    payment (200), so a till replaying its journal never pays twice.
    """
    merchant_id = actor.merchant()
    method = body.get("method", "cash")
    if method not in PAYMENT_METHODS:
        raise invalid("invalid_method", f"Unknown payment method {method!r}.", {"method": method})
    if method != "cash":
        raise invalid(
            "method_not_enabled",
            f"{method} payments need a provider account configured for this merchant.",
            {"method": method},
        )
    order_id = normalise_id(body["order_id"], "order_id")
    payment_id = normalise_id(body["id"]) if body.get("id") else deps.ids.new()
    order = lock_order(db, conn, merchant_id, order_id)
    if body.get("id"):
        existing = conn.execute(select(payments).where(payments.c.id == payment_id)).first()
        if existing is not None:
            if existing.merchant_id != merchant_id or existing.order_id != order_id:
                raise conflict("id_conflict", "This id is already in use; generate a new one.")
            return 200, payment_view(existing)
    if order.currency != (body.get("currency") or order.currency):
        raise invalid(
            "currency_mismatch", f"The order is in {order.currency}.", {"currency": body.get("currency")}
        )
    if order.status != "open":
        raise conflict(
            "order_not_open",
            f"The order is {order.status}; it takes no more payments.",
            {"status": order.status},
        )
    flight = in_flight_payment(conn, order_id)
    if flight is not None:
        raise payment_in_progress(flight)
    balance = order.total - order.paid_amount
    amount = body.get("amount")
    amount = balance if amount is None else check_amount(amount)
    if amount > balance:
        raise conflict(
            "amount_exceeds_balance",
            f"Only {balance} is due on this order; {amount} is too much.",
            {"balance_due": balance, "amount": amount},
        )
    tendered = body.get("tendered")
    change_due = None
    if tendered is not None:
        check_amount(tendered, "tendered")
        if tendered < amount:
            raise invalid(
                "insufficient_tender",
                f"Tendered {tendered} is less than the amount {amount}.",
                {"tendered": tendered, "amount": amount},
            )
        if tendered > MAX_AMOUNT:
            raise invalid("invalid_amount", "tendered is too large.")
        change_due = tendered - amount
    now = deps.clock.now()
    record = {
        "id": payment_id,
        "merchant_id": merchant_id,
        "order_id": order_id,
        "terminal_id": actor.terminal_id,
        "method": method,
        "provider": None,
        "amount": amount,
        "currency": order.currency,
        "status": "captured",
        "tendered": tendered,
        "change_due": change_due,
        "refunded_amount": 0,
        "provider_ref": None,
        "payment_code_masked": None,
        "failure_code": None,
        "failure_message": None,
        "version": 1,
        "created_at": now,
        "updated_at": now,
        "resolved_at": now,
    }
    conn.execute(insert(payments).values(**record))
    record_created(
        conn,
        entity="payment",
        entity_id=payment_id,
        status="captured",
        merchant_id=merchant_id,
        order_id=order_id,
        actor=actor.label,
        now=now,
        reason="cash received",
    )
    ledger.post(
        conn,
        txn_id=deps.ids.new(),
        merchant_id=merchant_id,
        order_id=order_id,
        currency=order.currency,
        kind="capture",
        postings=capture_postings(order_id, method, amount),
        now=now,
        payment_id=payment_id,
    )
    new_paid = order.paid_amount + amount
    if new_paid == order.total:
        transition(
            conn,
            entity="order",
            entity_id=order_id,
            current="open",
            target="paid",
            merchant_id=merchant_id,
            order_id=order_id,
            actor=actor.label,
            now=now,
            reason="fully paid",
            values={"paid_amount": new_paid},
        )
        apply_stock(conn, order_id)
    else:
        conn.execute(
            update(orders)
            .where(orders.c.id == order_id)
            .values(paid_amount=new_paid, version=orders.c.version + 1, updated_at=now)
        )
    return 201, payment_view(record)


def get_payment(conn: Connection, merchant_id: str, payment_id: str) -> dict[str, Any]:
    row = conn.execute(
        select(payments).where(payments.c.id == payment_id, payments.c.merchant_id == merchant_id)
    ).first()
    if row is None:
        raise not_found("payment", payment_id)
    return payment_view(row)
