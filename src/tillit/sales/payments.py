"""Payments. This module handles cash; provider methods go through the integrity engine, which uses
the same attempt rows, events and ledger postings."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select, update

from tillit.access.idempotency import Call
from tillit.adapters.db.engine import Database
from tillit.adapters.db.schema import orders, payments
from tillit.domain.errors import conflict, invalid, not_found
from tillit.domain.ids import normalise_id
from tillit.domain.ledger import capture_postings
from tillit.domain.money import MAX_AMOUNT, check_amount
from tillit.domain.states import PAYMENT_IN_FLIGHT, PAYMENT_METHODS
from tillit.kernel.context import Actor, Deps
from tillit.kernel.transitions import record_created, transition
from tillit.notifications import contacts
from tillit.sales import ledger
from tillit.sales.gateway import ProviderGateway
from tillit.sales.orders import (
    apply_stock,
    in_flight_payment,
    lock_order,
    payment_in_progress,
    payment_view,
)
from tillit.sales.views import PaymentView

CashGate = Callable[[Connection, str], None]
"""Told before a cash payment is written: (conn, merchant id); raises a DomainError to refuse it. The
merchants area registers its rule (a suspended merchant may keep cash, per its setting) at the
composition root, so sales never imports it."""

_CASH_GATES: list[CashGate] = []


def on_cash_payment(gate: CashGate) -> None:
    """Register ``gate`` once; registering the same gate again changes nothing."""
    if gate not in _CASH_GATES:
        _CASH_GATES.append(gate)


def cash_gates() -> list[CashGate]:
    """The registered cash gates, in registration order (the bulk sync asks them once per batch)."""
    return list(_CASH_GATES)


# Built once (see sales/orders.py): the cash payment path runs these on every sale.
_PAYMENT = select(payments).where(
    payments.c.merchant_id == bindparam("b_merchant"), payments.c.id == bindparam("b_id")
)
_INSERT_PAYMENT = insert(payments)
_ORDER_AMOUNTS = select(orders.c.paid_amount, orders.c.total).where(
    orders.c.merchant_id == bindparam("b_merchant"), orders.c.id == bindparam("b_id")
)
_ADD_PAID = (
    update(orders)
    .where(orders.c.merchant_id == bindparam("b_merchant"), orders.c.id == bindparam("b_id"))
    .values(
        paid_amount=bindparam("b_paid", type_=orders.c.paid_amount.type),
        version=orders.c.version + 1,
        updated_at=bindparam("b_now", type_=orders.c.updated_at.type),
    )
)


def create_payment(
    db: Database, conn: Connection, deps: Deps, actor: Actor, body: dict[str, Any]
) -> tuple[int, PaymentView]:
    """Take a payment for an open order.

    ``amount`` defaults to the balance due and may not exceed it; for cash, ``tendered`` (>= amount)
    gives the change due. A client-generated ``id`` that already exists for this order returns that
    payment (200), so a till replaying its journal never pays twice.
    """
    merchant_id = actor.merchant()
    method = body.get("method") or "cash"
    if method not in PAYMENT_METHODS:
        raise invalid("invalid_method", f"Unknown payment method {method!r}.", {"method": method})
    if method != "cash":
        raise invalid("payment_code_required", f"A {method} payment needs the customer's payment_code.")
    order_id = normalise_id(body["order_id"], "order_id")
    payment_id = normalise_id(body["id"]) if body.get("id") else deps.ids.new()
    order = lock_order(db, conn, merchant_id, order_id)
    if body.get("id"):
        # Only this merchant's payments: another merchant's id is an unused id here.
        existing = conn.execute(_PAYMENT, {"b_id": payment_id, "b_merchant": merchant_id}).first()
        if existing is not None:
            if existing.order_id != order_id:
                raise conflict("id_conflict", "This id is already in use; generate a new one.")
            return 200, payment_view(existing)
    if order.currency != (body.get("currency") or order.currency):
        raise invalid(
            "currency_mismatch", f"The order is in {order.currency}.", {"currency": body.get("currency")}
        )
    for gate in _CASH_GATES:
        gate(conn, merchant_id)
    if order.status != "open":
        raise conflict(
            "order_not_open",
            f"The order is {order.status}; it takes no more payments.",
            {"status": order.status},
        )
    flight = in_flight_payment(conn, order_id, merchant_id=merchant_id)
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
    record = cash_payment_record(
        payment_id=payment_id,
        merchant_id=merchant_id,
        order_id=order_id,
        terminal_id=actor.terminal_id,
        amount=amount,
        currency=order.currency,
        tendered=tendered,
        change_due=change_due,
        now=now,
    )
    conn.execute(_INSERT_PAYMENT, record)
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
    # ``order`` was locked above and nothing in this transaction has changed it since.
    credit_order(conn, order, amount, actor.label, now, order_is_current=True)
    return 201, payment_view(record)


def cash_payment_record(
    *,
    payment_id: str,
    merchant_id: str,
    order_id: str,
    terminal_id: str | None,
    amount: int,
    currency: str,
    tendered: int | None,
    change_due: int | None,
    now: datetime,
) -> dict[str, Any]:
    """The payments row of a cash payment, captured when it is written (``create_payment`` and the bulk
    sync write the same row)."""
    return {
        "id": payment_id,
        "merchant_id": merchant_id,
        "order_id": order_id,
        "terminal_id": terminal_id,
        "method": "cash",
        "provider": None,
        "amount": amount,
        "currency": currency,
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


def credit_order(
    conn: Connection, order: Any, amount: int, actor: str, now: datetime, *, order_is_current: bool = False
) -> None:
    """Count a captured payment towards its (locked, open) order; the order is paid when nothing is due.

    ``order_is_current``: the caller's ``order`` row was read (locked) in this transaction and is
    unchanged since, so its amounts need not be read again."""
    if order_is_current:
        paid_amount, total = order.paid_amount, order.total
    else:
        fresh = conn.execute(_ORDER_AMOUNTS, {"b_id": order.id, "b_merchant": order.merchant_id}).one()
        paid_amount, total = fresh.paid_amount, fresh.total
    new_paid = paid_amount + amount
    assert new_paid <= total, "a capture can never exceed the order total"
    if new_paid == total:
        transition(
            conn,
            entity="order",
            entity_id=order.id,
            current="open",
            target="paid",
            merchant_id=order.merchant_id,
            order_id=order.id,
            actor=actor,
            now=now,
            reason="fully paid",
            values={"paid_amount": new_paid},
        )
        apply_stock(conn, order.id, merchant_id=order.merchant_id)
        # The customer hears of it in this same transaction (issue 14), if they gave a contact.
        contacts.notify_paid(conn, now, merchant_id=order.merchant_id, order_id=order.id, amount=new_paid)
    else:
        conn.execute(
            _ADD_PAID, {"b_id": order.id, "b_merchant": order.merchant_id, "b_paid": new_paid, "b_now": now}
        )


def start_payment(
    db: Database,
    conn: Connection,
    deps: Deps,
    actor: Actor,
    body: dict[str, Any],
    gateway: ProviderGateway | None,
) -> tuple[int, PaymentView] | Call:
    """Cash settles at once; a scanned payment code starts a provider attempt through ``gateway``."""
    if not body.get("payment_code"):
        return create_payment(db, conn, deps, actor, body)
    if body.get("method") == "cash":
        raise invalid("payment_code_unexpected", "Cash takes no payment_code.")
    if gateway is None:
        raise invalid("method_not_enabled", "Provider payments are not configured on this server.")
    return gateway.start_payment(db, conn, deps, actor, body)


def payment_finished(view: PaymentView) -> tuple[int, PaymentView]:
    """201 once the attempt is settled (captured or failed); 202 while its outcome is still being resolved."""
    return (202 if view["status"] in PAYMENT_IN_FLIGHT else 201), view


def payment_takeover(
    conn: Connection, deps: Deps, merchant_id: str, payment_id: str
) -> tuple[int, PaymentView]:
    """Answer a resend whose first request's process died holding the key: from the attempt's state.

    Pay is never sent again (only the request that created the attempt sends it). An attempt still
    ``pending`` has nobody waiting on its answer any more, so the engine is asked to query it now instead
    of at its safety-net time (``Deps.resolve_attempt``)."""
    row = conn.execute(_PAYMENT, {"b_id": payment_id, "b_merchant": merchant_id}).first()
    if row is None:
        raise not_found("payment", payment_id)
    if row.status == "pending" and deps.resolve_attempt is not None:
        deps.resolve_attempt(conn, deps, row)
    return payment_finished(payment_view(row))


def get_payment(conn: Connection, merchant_id: str, payment_id: str) -> PaymentView:
    row = conn.execute(_PAYMENT, {"b_id": payment_id, "b_merchant": merchant_id}).first()
    if row is None:
        raise not_found("payment", payment_id)
    return payment_view(row)
