"""Orders: created with server-computed totals, paid by payments, cancelled with a reason code."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, func, insert, select, text, update

from tillit.adapters.db.engine import Database
from tillit.adapters.db.schema import (
    events,
    merchants,
    order_lines,
    orders,
    payments,
    products,
    refunds,
    stores,
)
from tillit.domain.errors import DomainError, ErrorKind, conflict, invalid, not_found
from tillit.domain.ids import normalise_id
from tillit.domain.messages import for_payment
from tillit.domain.money import check_currency
from tillit.domain.pricing import MAX_LINES, OrderTotals, PricedLine, price_order
from tillit.domain.states import PAYMENT_IN_FLIGHT
from tillit.kernel.context import Actor, Deps, iso, row_dict
from tillit.kernel.transitions import event_row, record_created, transition
from tillit.notifications import contacts
from tillit.sales.views import CashierMessageView, EventView, LineView, OrderView, PaymentView, RefundView

MAX_PAGE = 200

# The statements of the sale path, built once: building and cache-keying a SQLAlchemy statement costs
# several times more than running a prebuilt one, and these run on every order and payment.
_ORDER = select(orders).where(
    orders.c.id == bindparam("b_id"), orders.c.merchant_id == bindparam("b_merchant")
)
_ORDER_FOR_UPDATE = _ORDER.with_for_update()
_NEXT_NUMBERS = text(
    "INSERT INTO counters (merchant_id, name, value) VALUES (:m, :n, :k) "
    "ON CONFLICT (merchant_id, name) DO UPDATE SET value = counters.value + :k RETURNING value"
)
_IN_FLIGHT = select(payments.c.id, payments.c.status, payments.c.method, payments.c.amount).where(
    payments.c.merchant_id == bindparam("b_merchant"),
    payments.c.order_id == bindparam("b_order"),
    payments.c.status.in_(PAYMENT_IN_FLIGHT),
)
# What create_order checks before it writes, in one statement: the merchant's currency, the owner of
# the store it sells in and the owner of an order that already has the client's id (NULL if none).
# Only this merchant's orders are looked at: another merchant's id is an unused id here.
_ORDER_CONTEXT = select(
    merchants.c.currency,
    select(stores.c.merchant_id)
    .where(stores.c.id == bindparam("b_store"))
    .scalar_subquery()
    .label("store_merchant"),
    select(orders.c.merchant_id)
    .where(orders.c.merchant_id == bindparam("b_merchant"), orders.c.id == bindparam("b_order"))
    .scalar_subquery()
    .label("order_merchant"),
).where(merchants.c.id == bindparam("b_merchant"))
_PRODUCTS_BY_ID = select(products).where(
    products.c.merchant_id == bindparam("b_merchant"), products.c.id.in_(bindparam("b_ids", expanding=True))
)
_PRODUCTS_BY_SKU = select(products).where(
    products.c.merchant_id == bindparam("b_merchant"), products.c.sku.in_(bindparam("b_skus", expanding=True))
)
_INSERT_ORDER = insert(orders)
_INSERT_LINES = insert(order_lines)
_INSERT_EVENT = insert(events)
_LINE_QUANTITIES = select(order_lines.c.product_id, order_lines.c.quantity).where(
    order_lines.c.merchant_id == bindparam("b_merchant"), order_lines.c.order_id == bindparam("b_order")
)
_TAKE_STOCK = (
    update(products)
    .where(products.c.id == bindparam("b_product"), products.c.stock.is_not(None))
    .values(stock=products.c.stock - bindparam("b_quantity", type_=products.c.stock.type))
)
_RETURN_STOCK = (
    update(products)
    .where(
        products.c.merchant_id == bindparam("b_merchant"),
        products.c.id == bindparam("b_product"),
        products.c.stock.is_not(None),
    )
    .values(stock=products.c.stock + bindparam("b_quantity", type_=products.c.stock.type))
)
_LINES = (
    select(order_lines)
    .where(
        order_lines.c.merchant_id == bindparam("b_merchant"), order_lines.c.order_id == bindparam("b_order")
    )
    .order_by(order_lines.c.line_no)
)
_PAYMENTS = (
    select(payments)
    .where(payments.c.merchant_id == bindparam("b_merchant"), payments.c.order_id == bindparam("b_order"))
    .order_by(payments.c.id)
)
_REFUNDS = (
    select(refunds)
    .where(refunds.c.merchant_id == bindparam("b_merchant"), refunds.c.order_id == bindparam("b_order"))
    .order_by(refunds.c.id)
)


def lock_order(db: Database, conn: Connection, merchant_id: str, order_id: str) -> Any:
    """Read an order for update. Lock order: the order row first, then its payments, then refunds."""
    query = _ORDER_FOR_UPDATE if db.is_postgres else _ORDER
    row = conn.execute(query, {"b_id": order_id, "b_merchant": merchant_id}).first()
    if row is None:
        raise not_found("order", order_id)
    return row


def next_number(conn: Connection, merchant_id: str, name: str) -> int:
    """Allocate the next value of a per-merchant counter (receipt numbers) inside the transaction.

    On PostgreSQL this takes the merchant-wide counter row lock until commit: call it as late as the
    transaction allows, after every read and check, so that concurrent orders queue on it briefly."""
    return next_numbers(conn, merchant_id, name, 1)


def next_numbers(conn: Connection, merchant_id: str, name: str, count: int) -> int:
    """Allocate ``count`` consecutive values of a counter at once (a bulk sync's orders take them in
    order); returns the last, so they are ``last - count + 1 … last``. Same lock as ``next_number``."""
    return int(conn.execute(_NEXT_NUMBERS, {"m": merchant_id, "n": name, "k": count}).scalar_one())


def in_flight_payment(conn: Connection, order_id: str, *, merchant_id: str) -> Any:
    return conn.execute(_IN_FLIGHT, {"b_order": order_id, "b_merchant": merchant_id}).first()


def stored_time(conn: Connection, value: datetime) -> datetime:
    """``value`` as reading it back from this database gives it: SQLite keeps no time zone."""
    return value.replace(tzinfo=None) if conn.dialect.name == "sqlite" else value


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
        for row in conn.execute(_PRODUCTS_BY_ID, {"b_merchant": merchant_id, "b_ids": sorted(ids)}):
            found[("id", row.id)] = row
    if skus:
        for row in conn.execute(_PRODUCTS_BY_SKU, {"b_merchant": merchant_id, "b_skus": sorted(skus)}):
            found[("sku", row.sku)] = row
    return priced_lines(found, currency, lines)


def priced_lines(
    found: dict[tuple[str, str], Any], currency: str, lines: list[dict[str, Any]]
) -> list[PricedLine]:
    """The order's lines priced from ``found`` (``("id", product id)`` / ``("sku", sku)`` -> product
    row, this merchant's only); raises for a missing, inactive or foreign-currency product."""
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


def order_rows(
    *,
    order_id: str,
    merchant_id: str,
    store_id: str,
    terminal_id: str | None,
    currency: str,
    priced: list[PricedLine],
    totals: OrderTotals,
    note: str | None,
    now: datetime,
    number: int | None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The orders row of a new (open) order and its order_lines rows, as ``create_order`` and the bulk
    sync write them (the bulk sync gives the receipt ``number`` at its write)."""
    lines = [
        {
            "merchant_id": merchant_id,
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
    ]
    record: dict[str, Any] = {
        "id": order_id,
        "merchant_id": merchant_id,
        "store_id": store_id,
        "terminal_id": terminal_id,
        "number": number,
        "status": "open",
        "currency": currency,
        "subtotal": totals.subtotal,
        "discount_total": totals.discount_total,
        "total": totals.total,
        "paid_amount": 0,
        "refunded_amount": 0,
        "note": note,
        "version": 1,
        "created_at": now,
        "updated_at": now,
    }
    return record, lines


def approval_events(
    merchant_id: str, order_id: str, via: str, approvals: list[dict[str, Any]], now: datetime
) -> list[dict[str, Any]]:
    """A manager's approval at the till is an event of the order (it stays open): who approved, and why."""
    rows = []
    for a in approvals:
        line = f" line {a['line_no']}" if a.get("line_no") else ""
        rows.append(
            event_row(
                merchant_id=merchant_id,
                order_id=order_id,
                entity="order",
                entity_id=order_id,
                from_status="open",
                to_status="open",
                actor=f"manager:{a['approved_by']} via {via}"[:100],
                now=now,
                reason=f"approval {a['kind']}{line} amount {a['amount']}: {a['reason']}"[:500],
            )
        )
    return rows


def create_order(conn: Connection, deps: Deps, actor: Actor, body: dict[str, Any]) -> tuple[int, OrderView]:
    """Create an order. A client-generated ``id`` that already exists returns that order (200).

    Every read and check comes first; the receipt number is allocated last, just before the rows are
    written, and the answer is built from the values written rather than read back."""
    merchant_id = actor.merchant()
    requested_currency = body.get("currency")
    if requested_currency:
        check_currency(requested_currency)
    id_error: DomainError | None = None
    order_id: str | None = None
    if body.get("id"):
        try:
            order_id = normalise_id(body["id"])
        except DomainError as exc:  # reported after the currency checks, as they come first
            id_error = exc
    store_id = body.get("store_id") or actor.store_id
    context = conn.execute(
        _ORDER_CONTEXT, {"b_merchant": merchant_id, "b_store": store_id, "b_order": order_id}
    ).one()
    currency = check_currency(requested_currency or context.currency)
    if currency != context.currency:
        raise invalid("currency_mismatch", f"This merchant sells in {context.currency}, not {currency}.")
    if id_error is not None:
        raise id_error
    if order_id is None:
        order_id = deps.ids.new()
    elif context.order_merchant is not None:
        return 200, get_order(conn, merchant_id, order_id)
    if store_id is None:
        raise invalid("store_required", "A merchant key must say which store_id the order belongs to.")
    if context.store_merchant is None or context.store_merchant != merchant_id:
        raise not_found("store", store_id)
    if actor.store_id is not None and store_id != actor.store_id:
        raise invalid(
            "store_mismatch", "A terminal sells only in its own store.", {"store_id": actor.store_id}
        )
    priced = _resolve_lines(conn, merchant_id, currency, body.get("lines") or [])
    totals = price_order(priced, body.get("total"))
    customer = body.get("customer")  # notifications (issue 14): checked before anything is written
    contact = (
        contacts.check_contact(
            customer.get("email"), customer.get("phone"), customer.get("locale"), bool(customer.get("opt_in"))
        )
        if customer
        else None
    )
    now = deps.clock.now()
    record, lines = order_rows(
        order_id=order_id,
        merchant_id=merchant_id,
        store_id=store_id,
        terminal_id=actor.terminal_id,
        currency=currency,
        priced=priced,
        totals=totals,
        note=body.get("note"),
        now=now,
        number=next_number(conn, merchant_id, "order"),
    )
    conn.execute(_INSERT_ORDER, record)
    conn.execute(_INSERT_LINES, lines)
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
    if contact is not None:
        contacts.attach(conn, now, merchant_id, order_id, contact)
    _record_approvals(conn, merchant_id, order_id, actor.label, body.get("approvals") or [], now)
    written = {**record, "cancel_reason": None, "created_at": stored_time(conn, now)}
    written["updated_at"] = written["created_at"]
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
        apply_stock(
            conn, order_id, [(line.product_id, line.quantity) for line in priced], merchant_id=merchant_id
        )
        written.update(status="paid", version=2)
        contacts.notify_paid(conn, now, merchant_id=merchant_id, order_id=order_id, amount=0)
    # A new order has no payments or refunds yet.
    return 201, order_view(written, lines, [], [])


def _record_approvals(
    conn: Connection,
    merchant_id: str,
    order_id: str,
    via: str,
    approvals: list[dict[str, Any]],
    now: datetime,
) -> None:
    for row in approval_events(merchant_id, order_id, via, approvals, now):
        conn.execute(_INSERT_EVENT, row)


def apply_stock(
    conn: Connection, order_id: str, lines: Iterable[tuple[str, int]] | None = None, *, merchant_id: str
) -> None:
    """Take sold quantities out of tracked stock. Stock may go negative: a till never refuses a sale
    because the shelf count is off; the negative figure tells the manager to recount.

    ``lines`` are the order's (product id, quantity) pairs when the caller has them (else they are
    read). One batch (executemany) of one UPDATE per product, in product id order so that concurrent
    payments lock products in the same order; untracked (NULL) stock is left alone."""
    if lines is None:
        lines = [
            (row.product_id, row.quantity)
            for row in conn.execute(_LINE_QUANTITIES, {"b_order": order_id, "b_merchant": merchant_id})
        ]
    sold: dict[str, int] = {}
    for product_id, quantity in lines:
        sold[product_id] = sold.get(product_id, 0) + quantity
    take_stock(conn, sold)


def take_stock(conn: Connection, sold: dict[str, int]) -> None:
    """Take ``sold`` (product id -> quantity) out of tracked stock: one executemany in product id order,
    so that concurrent sales lock products in the same order; untracked (NULL) stock is left alone."""
    if sold:
        conn.execute(_TAKE_STOCK, [{"b_product": p, "b_quantity": q} for p, q in sorted(sold.items())])


def release_stock(conn: Connection, order_id: str, *, merchant_id: str) -> int:
    """Put an order's sold quantities back into tracked stock (goods that never left the shop: a
    fulfilment order cancelled or refunded before delivery). The inverse of ``apply_stock``, same lock
    order; untracked (NULL) stock is left alone. Returns how many products were touched."""
    returned: dict[str, int] = {}
    for row in conn.execute(_LINE_QUANTITIES, {"b_order": order_id, "b_merchant": merchant_id}):
        returned[row.product_id] = returned.get(row.product_id, 0) + row.quantity
    if returned:
        conn.execute(
            _RETURN_STOCK,
            [
                {"b_merchant": merchant_id, "b_product": p, "b_quantity": q}
                for p, q in sorted(returned.items())
            ],
        )
    return len(returned)


def order_view(order: Any, lines: list[Any], pays: list[Any], refs: list[Any]) -> OrderView:
    """The API's order: ``order`` and ``lines`` are rows or the dicts that were written."""
    o = order if isinstance(order, dict) else row_dict(order)
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
        "lines": [_line_view(ln if isinstance(ln, dict) else ln._mapping) for ln in lines],
        "payments": [payment_view(p) for p in pays],
        "refunds": [refund_view(r) for r in refs],
    }


def _line_view(ln: Any) -> LineView:
    return {
        "line_no": ln["line_no"],
        "product_id": ln["product_id"],
        "sku": ln["sku"],
        "name": ln["name"],
        "unit_price": ln["unit_price"],
        "quantity": ln["quantity"],
        "discount": ln["discount"],
        "amount": ln["amount"],
    }


def payment_view(row: Any) -> PaymentView:
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


def _cashier_message(p: dict[str, Any]) -> CashierMessageView | None:
    if p["method"] == "cash":
        return None
    msg = for_payment(p["status"], p["failure_code"], user_paying=p["failure_code"] == "USERPAYING")
    # the same keys, in the same order, as CashierMessage.as_dict()
    return {"reason": msg.reason, "en": msg.en, "zh-CN": msg.zh} if msg else None


def refund_view(row: Any) -> RefundView:
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


def get_order(conn: Connection, merchant_id: str, order_id: str) -> OrderView:
    order = conn.execute(_ORDER, {"b_id": order_id, "b_merchant": merchant_id}).first()
    if order is None:
        raise not_found("order", order_id)
    scope = {"b_order": order_id, "b_merchant": merchant_id}
    lines = list(conn.execute(_LINES, scope))
    pays = list(conn.execute(_PAYMENTS, scope))
    refs = list(conn.execute(_REFUNDS, scope))
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
) -> list[OrderView]:
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
        select(order_lines)
        .where(order_lines.c.merchant_id == merchant_id, order_lines.c.order_id.in_(ids))
        .order_by(order_lines.c.line_no)
    ):
        lines[ln.order_id].append(ln)
    pays: dict[str, list[Any]] = {i: [] for i in ids}
    for p in conn.execute(
        select(payments)
        .where(payments.c.merchant_id == merchant_id, payments.c.order_id.in_(ids))
        .order_by(payments.c.id)
    ):
        pays[p.order_id].append(p)
    refs: dict[str, list[Any]] = {i: [] for i in ids}
    for r in conn.execute(
        select(refunds)
        .where(refunds.c.merchant_id == merchant_id, refunds.c.order_id.in_(ids))
        .order_by(refunds.c.id)
    ):
        refs[r.order_id].append(r)
    return [order_view(r, lines[r.id], pays[r.id], refs[r.id]) for r in rows]


def timeline(conn: Connection, merchant_id: str, order_id: str) -> list[EventView]:
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
        for e in conn.execute(
            select(events)
            .where(events.c.merchant_id == merchant_id, events.c.order_id == order_id)
            .order_by(events.c.id)
        )
    ]


def reserved_refunds(conn: Connection, payment_id: str, *, merchant_id: str) -> int:
    """Refunds of a payment still on their way (pending/processing): already promised to the customer."""
    return int(
        conn.execute(
            select(func.coalesce(func.sum(refunds.c.amount), 0)).where(
                refunds.c.merchant_id == merchant_id,
                refunds.c.payment_id == payment_id,
                refunds.c.status.in_(("pending", "processing")),
            )
        ).scalar_one()
    )
