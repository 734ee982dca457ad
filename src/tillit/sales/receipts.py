"""The receipt of a paid order as the customer sees it (e-receipt page, PDF). Only paid (or since
refunded) orders have a receipt; anything else answers like a missing order, so a receipt link never
tells whether an unpaid order exists."""

from __future__ import annotations

from sqlalchemy import Connection, select

from tillit.adapters.db.schema import merchants, orders, stores, terminals
from tillit.domain.errors import not_found
from tillit.domain.receipt import Receipt, ReceiptLine, ReceiptPayment, ReceiptRefund
from tillit.sales.orders import get_order

RECEIPT_STATUSES = ("paid", "refunded")


def receipt(conn: Connection, merchant_id: str, order_id: str, url: str | None = None) -> Receipt:
    """The receipt of ``merchant_id``'s paid order; ``order_not_found`` otherwise."""
    names = conn.execute(
        select(
            merchants.c.name.label("merchant_name"),
            stores.c.name.label("store_name"),
            terminals.c.name.label("terminal_name"),
            orders.c.status,
        )
        .select_from(orders)
        .join(merchants, merchants.c.id == orders.c.merchant_id)
        .join(stores, stores.c.id == orders.c.store_id)
        .outerjoin(terminals, terminals.c.id == orders.c.terminal_id)
        .where(orders.c.merchant_id == merchant_id, orders.c.id == order_id)
    ).first()
    if names is None or names.status not in RECEIPT_STATUSES:
        raise not_found("order", order_id)
    view = get_order(conn, merchant_id, order_id)
    return Receipt(
        merchant_name=names.merchant_name,
        store_name=names.store_name,
        terminal_name=names.terminal_name,
        number=view["number"],
        at=view["created_at"],
        currency=view["currency"],
        status=view["status"],
        subtotal=view["subtotal"],
        discount_total=view["discount_total"],
        total=view["total"],
        lines=[
            ReceiptLine(ln["name"], ln["quantity"], ln["unit_price"], ln["discount"], ln["amount"])
            for ln in view["lines"]
        ],
        payments=[
            ReceiptPayment(p["method"], p["amount"], p["payment_code_masked"], p["tendered"], p["change_due"])
            for p in view["payments"]
            if p["status"] in ("captured", "refunded")
        ],
        refunds=[
            ReceiptRefund(r["amount"], r["created_at"]) for r in view["refunds"] if r["status"] == "succeeded"
        ],
        url=url,
    )
