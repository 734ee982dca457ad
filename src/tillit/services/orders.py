"""Orders: created with server-computed totals, paid by payments, cancelled with a reason code."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, text, update

from tillit.adapters.db.engine import Database
from tillit.adapters.db.schema import events, merchants, order_lines, orders, payments, products, refunds
from tillit.domain.errors import DomainError, ErrorKind, conflict, invalid, not_found
from tillit.domain.ids import normalise_id
from tillit.domain.messages import for_payment
from tillit.domain.money import check_currency
from tillit.domain.pricing import MAX_LINES, PricedLine, price_order
from tillit.domain.states import CANCEL_REASONS, PAYMENT_IN_FLIGHT
from tillit.services.context import Actor, Deps, iso, row_dict
from tillit.services.merchants import get_store
from tillit.services.transitions import record_created, transition

MAX_PAGE = 200


def lock_order(db: Database, conn: Connection, merchant_id: str, order_id: str) -> Any:
    """Read an order for update. Lock order: the order row first, then its payments, then refunds."""
    query = select(orders).where(orders.c.id == order_id, orders.c.merchant_id == merchant_id)
    if db.is_postgres:
        query = query.with_for_update()
    row = conn.execute(query).first()
    if row is None:
        raise not_found("order", order_id)
    return row


def next_number(conn: Connection, merchant_id: str, name: str) -> int:
    """Allocate the next value of a per-merchant counter (receipt numbers) inside the transaction."""
    return int(
        conn.execute(
            text(
                "INSERT INTO counters (merchant_id, name, value) VALUES (:m, :n, 1) "
                "ON CONFLICT (merchant_id, name) DO UPDATE SET value = counters.value + 1 RETURNING value"
            ),
            {"m": merchant_id, "n": name},
        ).scalar_one()
    )


def in_flight_payment(conn: Connection, order_id: str) -> Any:
    return conn.execute(
        select(payments.c.id, payments.c.status, payments.c.method, payments.c.amount).where(
            payments.c.order_id == order_id, payments.c.status.in_(PAYMENT_IN_FLIGHT)
        )
    ).first()


def payment_in_progress(row: Any) -> DomainError:
    return conflict(
        "payment_in_progress",
        "A payment for this order is still in progress; wait for its outcome and do not charge again.",
        {"payment_id": row.id, "status": row.status, "method": row.method, "amount": row.amount},
    )


def _resolve_lines(
    conn: Connection, merchant_id: str, currency: str, lines: list[dict[str, Any]]
) -> list[PricedLine]:
    if not lines:
        raise invalid("invalid_order", "An order needs at least one line.")
    if len(lines) > MAX_LINES:
        raise invalid("invalid_order", f"An order has at most {MAX_LINES} lines.")
    ids = {line["product_id"] for line in lines if line.get("product_id")}
    skus = {line["sku"] for line in lines if line.get("sku")}
    found: dict[tuple[str, str], Any] = {}
    if ids:
        for row in conn.execute(
            select(products).where(products.c.merchant_id == merchant_id, products.c.id.in_(ids))
        ):
            found[("id", row.id)] = row
    if skus:
        for row in conn.execute(
            select(products).where(products.c.merchant_id == merchant_id, products.c.sku.in_(skus))
        ):
            found[("sku", row.sku)] = row
    priced: list[PricedLine] = []
    for index, line in enumerate(lines):
        key = ("id", line["product_id"]) if line.get("product_id") else ("sku", line.get("sku") or "")
        product = found.get(key)
        if product is None:
            raise DomainError(
                "product_not_found",
                f"Line {index + 1}: no product {key[1]!r}.",
                ErrorKind.INVALID,
                {"line": index, key[0]: key[1]},
            )
        if not product.active:
            raise invalid(
                "product_inactive", f"Line {index + 1}: {product.name} is not for sale.", {"line": index}
            )
        if product.currency != currency:
            raise invalid(
                "currency_mismatch", f"Line {index + 1}: priced in {product.currency}, not {currency}."
            )
        priced.append(
            PricedLine(
                product_id=product.id,
                sku=product.sku,
                name=product.name,
                unit_price=product.price,
                quantity=line["quantity"],
                discount=line.get("discount") or 0,
            )
        )
    return priced


def create_order(
    conn: Connection, deps: Deps, actor: Actor, body: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    """Create an order. A client-generated ``id`` that already exists returns that order (200)."""
    merchant_id = actor.merchant()
    merchant = conn.execute(select(merchants).where(merchants.c.id == merchant_id)).one()
    currency = check_currency(body.get("currency") or merchant.currency)
    if currency != merchant.currency:
        raise invalid("currency_mismatch", f"This merchant sells in {merchant.currency}, not {currency}.")
    order_id = normalise_id(body["id"]) if body.get("id") else deps.ids.new()
    if body.get("id"):
        existing = conn.execute(select(orders.c.merchant_id).where(orders.c.id == order_id)).first()
        if existing is not None:
            if existing.merchant_id != merchant_id:
                raise conflict("id_conflict", "This id is already in use; generate a new one.")
            return 200, get_order(conn, merchant_id, order_id)
    store_id = body.get("store_id") or actor.store_id
    if store_id is None:
        raise invalid("store_required", "A merchant key must say which store_id the order belongs to.")
    get_store(conn, actor, store_id)
    if actor.store_id is not None and store_id != actor.store_id:
        raise invalid(
            "store_mismatch", "A terminal sells only in its own store.", {"store_id": actor.store_id}
        )
    priced = _resolve_lines(conn, merchant_id, currency, body.get("lines") or [])
    totals = price_order(priced, body.get("total"))
    now = deps.clock.now()
    conn.execute(
        insert(orders).values(
            id=order_id,
            merchant_id=merchant_id,
            store_id=store_id,
            terminal_id=actor.terminal_id,
            number=next_number(conn, merchant_id, "order"),
            status="open",
            currency=currency,
            subtotal=totals.subtotal,
            discount_total=totals.discount_total,
            total=totals.total,
            paid_amount=0,
            refunded_amount=0,
            note=body.get("note"),
            version=1,
            created_at=now,
            updated_at=now,
        )
    )
    conn.execute(
        insert(order_lines),
        [
            {
                "order_id": order_id,
                "line_no": n + 1,
                "product_id": line.product_id,
                "sku": line.sku,
                "name": line.name,
                "unit_price": line.unit_price,
                "quantity": line.quantity,
                "discount": line.discount,
                "amount": line.amount,
            }
            for n, line in enumerate(priced)
        ],
    )
    record_created(
        conn,
        entity="order",
        entity_id=order_id,
        status="open",
        merchant_id=merchant_id,
        order_id=order_id,
        actor=actor.label,
        now=now,
    )
    if totals.total == 0:
        # Nothing to pay (fully discounted): the order is settled the moment it exists.
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
            reason="zero_total",
        )
        apply_stock(conn, order_id)
    return 201, get_order(conn, merchant_id, order_id)


def apply_stock(conn: Connection, order_id: str) -> None:
    """Take sold quantities out of tracked stock. Stock may go negative: a till never refuses a sale
    because the shelf count is off; the negative figure tells the manager to recount."""
    for line in conn.execute(
        select(order_lines.c.product_id, order_lines.c.quantity).where(order_lines.c.order_id == order_id)
    ):
        conn.execute(
            update(products)
            .where(products.c.id == line.product_id, products.c.stock.is_not(None))
            .values(stock=products.c.stock - line.quantity)
        )


def order_view(order: Any, lines: list[Any], pays: list[Any], refs: list[Any]) -> dict[str, Any]:
    o = row_dict(order)
    return {
        "id": o["id"],
        "number": o["number"],
        "store_id": o["store_id"],
        "terminal_id": o["terminal_id"],
        "status": o["status"],
        "currency": o["currency"],
        "subtotal": o["subtotal"],
        "discount_total": o["discount_total"],
        "total": o["total"],
        "paid_amount": o["paid_amount"],
        "refunded_amount": o["refunded_amount"],
        "balance_due": o["total"] - o["paid_amount"] if o["status"] == "open" else 0,
        "cancel_reason": o["cancel_reason"],
        "note": o["note"],
        "version": o["version"],
        "created_at": iso(o["created_at"]),
        "updated_at": iso(o["updated_at"]),
        "lines": [
            {
                "line_no": ln.line_no,
                "product_id": ln.product_id,
                "sku": ln.sku,
                "name": ln.name,
                "unit_price": ln.unit_price,
                "quantity": ln.quantity,
                "discount": ln.discount,
                "amount": ln.amount,
            }
            for ln in lines
        ],
        "payments": [payment_view(p) for p in pays],
        "refunds": [refund_view(r) for r in refs],
    }


def payment_view(row: Any) -> dict[str, Any]:
    p = row if isinstance(row, dict) else row_dict(row)
    return {
        "id": p["id"],
        "order_id": p["order_id"],
        "method": p["method"],
        "provider": p["provider"],
        "amount": p["amount"],
        "currency": p["currency"],
        "status": p["status"],
        "tendered": p["tendered"],
        "change_due": p["change_due"],
        "refunded_amount": p["refunded_amount"],
        "provider_ref": p["provider_ref"],
        "payment_code_masked": p["payment_code_masked"],
        "failure_code": p["failure_code"],
        "failure_message": p["failure_message"],
        "message": _cashier_message(p),
        "created_at": iso(p["created_at"]),
        "updated_at": iso(p["updated_at"]),
    }


def _cashier_message(p: dict[str, Any]) -> dict[str, str] | None:
    if p["method"] == "cash":
        return None
    msg = for_payment(p["status"], p["failure_code"], user_paying=p["failure_code"] == "USERPAYING")
    return msg.as_dict() if msg else None


def refund_view(row: Any) -> dict[str, Any]:
    r = row if isinstance(row, dict) else row_dict(row)
    return {
        "id": r["id"],
        "order_id": r["order_id"],
        "payment_id": r["payment_id"],
        "amount": r["amount"],
        "currency": r["currency"],
        "status": r["status"],
        "reason": r["reason"],
        "provider_ref": r["provider_ref"],
        "created_at": iso(r["created_at"]),
        "updated_at": iso(r["updated_at"]),
    }


def get_order(conn: Connection, merchant_id: str, order_id: str) -> dict[str, Any]:
    order = conn.execute(
        select(orders).where(orders.c.id == order_id, orders.c.merchant_id == merchant_id)
    ).first()
    if order is None:
        raise not_found("order", order_id)
    lines = list(
        conn.execute(
            select(order_lines).where(order_lines.c.order_id == order_id).order_by(order_lines.c.line_no)
        )
    )
    pays = list(conn.execute(select(payments).where(payments.c.order_id == order_id).order_by(payments.c.id)))
    refs = list(conn.execute(select(refunds).where(refunds.c.order_id == order_id).order_by(refunds.c.id)))
    return order_view(order, lines, pays, refs)


def list_orders(
    conn: Connection,
    merchant_id: str,
    *,
    limit: int,
    before: str | None = None,
    status: str | None = None,
    number: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[dict[str, Any]]:
    """Newest first, keyset-paginated: pass the last id seen as ``before`` for the next page."""
    query = (
        select(orders).where(orders.c.merchant_id == merchant_id).order_by(orders.c.id.desc()).limit(limit)
    )
    if before:
        query = query.where(orders.c.id < before)
    if status:
        query = query.where(orders.c.status == status)
    if number is not None:
        query = query.where(orders.c.number == number)
    if since is not None:
        query = query.where(orders.c.created_at >= since)
    if until is not None:
        query = query.where(orders.c.created_at < until)
    rows = list(conn.execute(query))
    if not rows:
        return []
    ids = [r.id for r in rows]
    lines: dict[str, list[Any]] = {i: [] for i in ids}
    for ln in conn.execute(
        select(order_lines).where(order_lines.c.order_id.in_(ids)).order_by(order_lines.c.line_no)
    ):
        lines[ln.order_id].append(ln)
    pays: dict[str, list[Any]] = {i: [] for i in ids}
    for p in conn.execute(select(payments).where(payments.c.order_id.in_(ids)).order_by(payments.c.id)):
        pays[p.order_id].append(p)
    refs: dict[str, list[Any]] = {i: [] for i in ids}
    for r in conn.execute(select(refunds).where(refunds.c.order_id.in_(ids)).order_by(refunds.c.id)):
        refs[r.order_id].append(r)
    return [order_view(r, lines[r.id], pays[r.id], refs[r.id]) for r in rows]


def timeline(conn: Connection, merchant_id: str, order_id: str) -> list[dict[str, Any]]:
    exists = conn.execute(
        select(orders.c.id).where(orders.c.id == order_id, orders.c.merchant_id == merchant_id)
    ).first()
    if exists is None:
        raise not_found("order", order_id)
    return [
        {
            "id": e.id,
            "entity": e.entity,
            "entity_id": e.entity_id,
            "from_status": e.from_status,
            "to_status": e.to_status,
            "actor": e.actor,
            "reason": e.reason,
            "provider_ref": e.provider_ref,
            "at": iso(e.at),
        }
        for e in conn.execute(select(events).where(events.c.order_id == order_id).order_by(events.c.id))
    ]


def _reserved(conn: Connection, payment_id: str) -> int:
    """Refunds of a payment still on their way (pending/processing): already promised to the customer."""
    from sqlalchemy import func

    return int(
        conn.execute(
            select(func.coalesce(func.sum(refunds.c.amount), 0)).where(
                refunds.c.payment_id == payment_id, refunds.c.status.in_(("pending", "processing"))
            )
        ).scalar_one()
    )


def cancel_order(
    db: Database, conn: Connection, deps: Deps, actor: Actor, order_id: str, reason: str, note: str | None
) -> dict[str, Any]:
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
    flight = in_flight_payment(conn, order_id)
    if flight is not None:
        raise payment_in_progress(flight)
    from tillit.services.refunds import refund_captured

    now = deps.clock.now()
    captured = list(
        conn.execute(
            select(payments)
            .where(payments.c.order_id == order_id, payments.c.status == "captured")
            .order_by(payments.c.id)
        )
    )
    for pay in captured:
        remaining = pay.amount - pay.refunded_amount - _reserved(conn, pay.id)
        if remaining <= 0:
            continue
        if pay.method == "cash":
            refund_captured(conn, deps, actor, order, pay, remaining, f"order cancelled: {reason}", now)
        else:
            # Provider money goes back through the provider: a pending refund that the resolver sends
            # (same refund number on every retry) and confirms by query.
            from tillit.services.engine import queue_provider_refund

            queue_provider_refund(conn, deps, actor, pay, remaining, f"order cancelled: {reason}")
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
