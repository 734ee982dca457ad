"""Demo data for `make run`: one merchant, store, terminal and a small catalogue. Idempotent."""

from __future__ import annotations

import struct
import zlib
from typing import Any

from sqlalchemy import Connection, select, update

from tillit.access import keys
from tillit.access import merchants as merchant_svc
from tillit.adapters.db.schema import api_keys, merchants, products, stores, terminals
from tillit.kernel.context import Deps
from tillit.sales import catalog, tiles

DEMO_MERCHANT = "Tillit Demo Café"
DEMO_PRODUCTS = [
    ("COF-LATTE", "6901234567892", "Latte 拿铁", 2800),
    ("COF-AMER", "6901234567908", "Americano 美式", 2200),
    ("TEA-OOLONG", "6901234567915", "Oolong tea 乌龙茶", 1800),
    ("BAK-CROIS", "6901234567922", "Croissant 可颂", 1500),
    ("BAK-MUFFIN", "6901234567939", "Blueberry muffin 蓝莓松饼", 1600),
    ("WAT-500", "6901234567946", "Mineral water 500ml 矿泉水", 300),
]
# The till's touch grid (issue 17): category, tile colour, favourite; the croissant has an image.
DEMO_TILES = {
    "COF-LATTE": {"category": "Coffee 咖啡", "tile_colour": "#7b4a2d", "favourite": True},
    "COF-AMER": {"category": "Coffee 咖啡", "tile_colour": "#5a3825", "favourite": False},
    "TEA-OOLONG": {"category": "Tea 茶", "tile_colour": "#4f7942", "favourite": False},
    "BAK-CROIS": {"category": "Bakery 烘焙", "tile_colour": "#c8913c", "favourite": True},
    "BAK-MUFFIN": {"category": "Bakery 烘焙", "tile_colour": "#5b5ea6", "favourite": False},
    "WAT-500": {"category": "Drinks 饮品", "tile_colour": "#2d6f9e", "favourite": False},
}
DEMO_MANAGER = ("Manager", "8888")  # the demo store's manager PIN (docs/till.md)


def solid_png(rgb: tuple[int, int, int], size: int = 48) -> bytes:
    """A small solid-colour PNG, made here so the demo needs no image file."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" + bytes(rgb) * size
    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(row * size)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


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
                tile=DEMO_TILES.get(sku),
            )
    croissant = conn.execute(
        select(products.c.id).where(products.c.merchant_id == merchant_id, products.c.sku == "BAK-CROIS")
    ).scalar_one()
    tiles.set_image(conn, deps, merchant_id, croissant, "image/png", solid_png((200, 145, 60)))
    tiles.put_settings(
        conn, deps, merchant_id, store_id, discount_limit_pct=20, rounding="jiao", managers=[DEMO_MANAGER]
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
