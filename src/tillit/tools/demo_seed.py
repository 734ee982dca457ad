"""Demo data for `make run`: one merchant, store, terminal and a small catalogue. Idempotent."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select, update

from tillit.access import keys
from tillit.access import merchants as merchant_svc
from tillit.adapters.db.schema import api_keys, merchants, products, stores, terminals
from tillit.kernel.context import Deps
from tillit.sales import catalog

DEMO_MERCHANT = "Tillit Demo Café"
DEMO_PRODUCTS = [
    ("COF-LATTE", "6901234567892", "Latte 拿铁", 2800),
    ("COF-AMER", "6901234567908", "Americano 美式", 2200),
    ("TEA-OOLONG", "6901234567915", "Oolong tea 乌龙茶", 1800),
    ("BAK-CROIS", "6901234567922", "Croissant 可颂", 1500),
    ("BAK-MUFFIN", "6901234567939", "Blueberry muffin 蓝莓松饼", 1600),
    ("WAT-500", "6901234567946", "Mineral water 500ml 矿泉水", 300),
]


def seed(conn: Connection, deps: Deps) -> dict[str, Any]:
    """Create the demo objects if missing, and fresh demo keys (older demo keys are revoked)."""
    merchant = conn.execute(select(merchants).where(merchants.c.name == DEMO_MERCHANT)).first()
    merchant_id = (
        merchant.id if merchant else merchant_svc.create_merchant(conn, deps, name=DEMO_MERCHANT)["id"]
    )
    store = conn.execute(select(stores).where(stores.c.merchant_id == merchant_id)).first()
    store_id = (
        store.id
        if store
        else merchant_svc.create_store(conn, deps, merchant_id=merchant_id, name="Main St")["id"]
    )
    term = conn.execute(select(terminals).where(terminals.c.store_id == store_id)).first()
    terminal_id = (
        term.id if term else merchant_svc.create_terminal(conn, deps, store_id=store_id, name="Till 1")["id"]
    )
    for sku, barcode, name, price in DEMO_PRODUCTS:
        exists = conn.execute(
            select(products.c.id).where(products.c.merchant_id == merchant_id, products.c.sku == sku)
        ).first()
        if exists is None:
            catalog.create_product(
                conn,
                deps,
                merchant_id=merchant_id,
                merchant_currency="CNY",
                sku=sku,
                name=name,
                price=price,
                barcode=barcode,
                stock=100,
            )
    conn.execute(
        update(api_keys)
        .where(api_keys.c.name.like("demo %"), api_keys.c.revoked_at.is_(None))
        .values(revoked_at=deps.clock.now())
    )
    _, admin = keys.create_key(conn, deps, role="admin", name="demo admin")
    _, manager = keys.create_key(conn, deps, role="merchant", name="demo manager", merchant_id=merchant_id)
    _, cashier = keys.create_key(conn, deps, role="terminal", name="demo cashier", terminal_id=terminal_id)
    return {
        "merchant_id": merchant_id,
        "store_id": store_id,
        "terminal_id": terminal_id,
        "admin_key": admin,
        "merchant_key": manager,
        "terminal_key": cashier,
    }
