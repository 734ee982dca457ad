"""Products: what a merchant sells, at the price the server charges."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from tillit.adapters.db.schema import product_tiles, products
from tillit.domain.errors import conflict, invalid, not_found
from tillit.domain.money import check_amount, check_currency
from tillit.kernel.context import Deps, iso, row_dict
from tillit.sales.tiles import TILE_COLUMNS, TILE_FIELDS, image_path, set_tile
from tillit.sales.views import ProductView

# A product with its till tile (outer join: most products have none).
_WITH_TILE = products.outerjoin(
    product_tiles,
    (product_tiles.c.merchant_id == products.c.merchant_id) & (product_tiles.c.product_id == products.c.id),
)


def product_view(row: Any) -> ProductView:
    data = row if isinstance(row, dict) else row_dict(row)
    return {
        "id": data["id"],
        "sku": data["sku"],
        "barcode": data["barcode"],
        "name": data["name"],
        "price": data["price"],
        "currency": data["currency"],
        "stock": data["stock"],
        "active": bool(data["active"]),
        "created_at": iso(data["created_at"]),
        "updated_at": iso(data["updated_at"]),
        "category": data.get("category"),
        "tile_colour": data.get("tile_colour"),
        "favourite": bool(data.get("favourite") or 0),
        "sort_order": int(data.get("sort_order") or 0),
        "image": image_path(data["id"], data.get("image_sha256")),
    }


def _unique_conflict(sku: str, barcode: str | None) -> Exception:
    return conflict(
        "product_exists",
        "Another product of this merchant already has this sku or barcode.",
        {"sku": sku, "barcode": barcode},
    )


def create_product(
    conn: Connection,
    deps: Deps,
    *,
    merchant_id: str,
    merchant_currency: str,
    sku: str,
    name: str,
    price: int,
    barcode: str | None = None,
    currency: str | None = None,
    stock: int | None = None,
    tile: dict[str, Any] | None = None,
) -> ProductView:
    currency = check_currency(currency or merchant_currency)
    if currency != merchant_currency:
        raise invalid(
            "currency_mismatch",
            f"This merchant sells in {merchant_currency}; a {currency} price cannot be mixed in.",
            {"merchant_currency": merchant_currency, "currency": currency},
        )
    now = deps.clock.now()
    record = {
        "id": deps.ids.new(),
        "merchant_id": merchant_id,
        "sku": sku,
        "barcode": barcode,
        "name": name,
        "price": check_amount(price, "price", allow_zero=True),
        "currency": currency,
        "stock": stock,
        "active": 1,
        "created_at": now,
        "updated_at": now,
    }
    try:
        with conn.begin_nested():
            conn.execute(insert(products).values(**record))
    except IntegrityError:
        raise _unique_conflict(sku, barcode) from None
    if tile:
        set_tile(conn, deps, merchant_id, str(record["id"]), tile)
        return get_product(conn, merchant_id, str(record["id"]))
    return product_view(record)


def get_product(conn: Connection, merchant_id: str, product_id: str) -> ProductView:
    row = conn.execute(
        select(products, *TILE_COLUMNS)
        .select_from(_WITH_TILE)
        .where(products.c.id == product_id, products.c.merchant_id == merchant_id)
    ).first()
    if row is None:
        raise not_found("product", product_id)
    return product_view(row)


def list_products(
    conn: Connection, merchant_id: str, *, q: str | None, limit: int, after: str | None
) -> list[ProductView]:
    """Search by exact barcode or sku, or by a substring of the name; keyset-paginated by id."""
    query = (
        select(products, *TILE_COLUMNS)
        .select_from(_WITH_TILE)
        .where(products.c.merchant_id == merchant_id)
        .order_by(products.c.id)
        .limit(limit)
    )
    if q:
        pattern = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        query = query.where(
            or_(products.c.barcode == q, products.c.sku == q, products.c.name.like(pattern, escape="\\"))
        )
    if after:
        query = query.where(products.c.id > after)
    return [product_view(r) for r in conn.execute(query)]


def update_product(
    conn: Connection, deps: Deps, merchant_id: str, product_id: str, changes: dict[str, Any]
) -> ProductView:
    current = get_product(conn, merchant_id, product_id)
    tile = {k: changes.pop(k) for k in list(changes) if k in TILE_FIELDS}
    set_tile(conn, deps, merchant_id, product_id, tile)
    if "price" in changes:
        check_amount(changes["price"], "price", allow_zero=True)
    if "active" in changes:
        changes["active"] = 1 if changes["active"] else 0
    if changes:
        try:
            with conn.begin_nested():
                conn.execute(
                    update(products)
                    .where(products.c.id == product_id)
                    .values(**changes, updated_at=deps.clock.now())
                )
        except IntegrityError:
            raise _unique_conflict(changes.get("sku", current["sku"]), changes.get("barcode")) from None
    return get_product(conn, merchant_id, product_id)
