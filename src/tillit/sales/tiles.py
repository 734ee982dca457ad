"""The till station's share of the catalogue and the store: product tiles (category, colour, favourite,
sort order, image) and a store's till rules (discount limit, 抹零 rounding, managers' PIN hashes)."""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from tillit.adapters.db.schema import product_tiles, store_manager_pins, store_till_settings, stores
from tillit.domain.errors import invalid, not_found
from tillit.domain.tillrules import hash_pin, valid_pin
from tillit.kernel.context import Deps
from tillit.sales.views import TerminalTillSettingsView, TillSettingsView

TILE_FIELDS = ("category", "tile_colour", "favourite", "sort_order")
IMAGE_TYPES = {
    "image/png": b"\x89PNG",
    "image/jpeg": b"\xff\xd8\xff",
    "image/webp": b"RIFF",
    "image/gif": b"GIF8",
}
MAX_IMAGE_BYTES = 200_000  # a tile is ~120 px: a bigger image is a mistake, and the till caches them all
DEFAULT_LIMIT_PCT = 20
DEFAULT_ROUNDING = "jiao"

# Columns of product_tiles read with a product (never the image bytes).
TILE_COLUMNS = [
    product_tiles.c.category,
    product_tiles.c.tile_colour,
    product_tiles.c.favourite,
    product_tiles.c.sort_order,
    product_tiles.c.image_sha256,
]


def image_path(product_id: str, sha256: str | None) -> str | None:
    return f"/v1/products/{product_id}/image?v={sha256[:16]}" if sha256 else None


def set_tile(
    conn: Connection, deps: Deps, merchant_id: str, product_id: str, changes: dict[str, Any]
) -> None:
    """Write the tile fields present in ``changes`` (the product is known to belong to the merchant)."""
    values = {k: changes[k] for k in TILE_FIELDS if k in changes}
    if not values:
        return
    if "favourite" in values:
        values["favourite"] = 1 if values["favourite"] else 0
    if values.get("tile_colour"):
        values["tile_colour"] = str(values["tile_colour"]).lower()
    _upsert(conn, deps, merchant_id, product_id, values)


def _upsert(conn: Connection, deps: Deps, merchant_id: str, product_id: str, values: dict[str, Any]) -> None:
    now = deps.clock.now()
    key = (product_tiles.c.merchant_id == merchant_id, product_tiles.c.product_id == product_id)
    found = conn.execute(select(product_tiles.c.product_id).where(*key)).first()
    if found is None:
        conn.execute(
            insert(product_tiles).values(
                merchant_id=merchant_id, product_id=product_id, updated_at=now, **values
            )
        )
    else:
        conn.execute(update(product_tiles).where(*key).values(updated_at=now, **values))


def set_image(
    conn: Connection, deps: Deps, merchant_id: str, product_id: str, content_type: str, data: bytes
) -> str:
    """Store a tile image; answers its digest. The bytes must be a PNG, JPEG, WebP or GIF, at most 200 kB."""
    content_type = content_type.split(";")[0].strip().lower()
    magic = IMAGE_TYPES.get(content_type)
    if magic is None:
        raise invalid(
            "unsupported_image_type",
            "A tile image is image/png, image/jpeg, image/webp or image/gif.",
            {"content_type": content_type[:40]},
        )
    if not data or len(data) > MAX_IMAGE_BYTES:
        raise invalid(
            "image_too_large",
            f"A tile image is 1 to {MAX_IMAGE_BYTES} bytes.",
            {"size": len(data), "max": MAX_IMAGE_BYTES},
        )
    if not data.startswith(magic):
        raise invalid("invalid_image", f"The bytes are not a {content_type} image.")
    digest = hashlib.sha256(data).hexdigest()
    _upsert(
        conn,
        deps,
        merchant_id,
        product_id,
        {"image_type": content_type, "image_data": data, "image_sha256": digest},
    )
    return digest


def get_image(conn: Connection, merchant_id: str, product_id: str) -> tuple[str, bytes, str]:
    row = conn.execute(
        select(product_tiles.c.image_type, product_tiles.c.image_data, product_tiles.c.image_sha256).where(
            product_tiles.c.merchant_id == merchant_id, product_tiles.c.product_id == product_id
        )
    ).first()
    if row is None or row.image_data is None:
        raise not_found("product_image", product_id)
    return str(row.image_type), bytes(row.image_data), str(row.image_sha256)


# --- store till settings ---------------------------------------------------------------------------


def _store(conn: Connection, merchant_id: str, store_id: str) -> None:
    if (
        conn.execute(
            select(stores.c.id).where(stores.c.id == store_id, stores.c.merchant_id == merchant_id)
        ).first()
        is None
    ):
        raise not_found("store", store_id)


def put_settings(
    conn: Connection,
    deps: Deps,
    merchant_id: str,
    store_id: str,
    *,
    discount_limit_pct: int,
    rounding: str,
    managers: list[tuple[str, str]] | None,
) -> TillSettingsView:
    """Set a store's till rules; ``managers`` (name, PIN) replaces the store's managers when given."""
    _store(conn, merchant_id, store_id)
    if managers is not None:
        names = [name for name, _ in managers]
        if len(set(names)) != len(names):
            raise invalid("duplicate_manager", "Each manager name appears once.")
        for _, pin in managers:
            if not valid_pin(pin):
                raise invalid("invalid_pin", "A PIN is 4 to 12 digits.")
    now = deps.clock.now()
    key = (store_till_settings.c.merchant_id == merchant_id, store_till_settings.c.store_id == store_id)
    values = {"discount_limit_pct": discount_limit_pct, "rounding": rounding, "updated_at": now}
    if conn.execute(select(store_till_settings.c.store_id).where(*key)).first() is None:
        conn.execute(insert(store_till_settings).values(merchant_id=merchant_id, store_id=store_id, **values))
    else:
        conn.execute(update(store_till_settings).where(*key).values(**values))
    if managers is not None:
        conn.execute(
            delete(store_manager_pins).where(
                store_manager_pins.c.merchant_id == merchant_id, store_manager_pins.c.store_id == store_id
            )
        )
        for name, pin in managers:
            conn.execute(
                insert(store_manager_pins).values(
                    merchant_id=merchant_id,
                    store_id=store_id,
                    name=name,
                    pin_hash=hash_pin(pin, secrets.token_hex(8)),
                    created_at=now,
                )
            )
    return get_settings(conn, merchant_id, store_id)


def get_settings(conn: Connection, merchant_id: str, store_id: str) -> TillSettingsView:
    view = terminal_settings(conn, merchant_id, store_id)
    return {
        "store_id": view["store_id"],
        "discount_limit_pct": view["discount_limit_pct"],
        "rounding": view["rounding"],
        "managers": view["managers"],
    }


def terminal_settings(conn: Connection, merchant_id: str, store_id: str) -> TerminalTillSettingsView:
    """The till's copy: the rules and the managers' PIN hashes, so a PIN can be checked offline."""
    _store(conn, merchant_id, store_id)
    row = conn.execute(
        select(store_till_settings).where(
            store_till_settings.c.merchant_id == merchant_id, store_till_settings.c.store_id == store_id
        )
    ).first()
    pins = conn.execute(
        select(store_manager_pins.c.name, store_manager_pins.c.pin_hash)
        .where(store_manager_pins.c.merchant_id == merchant_id, store_manager_pins.c.store_id == store_id)
        .order_by(store_manager_pins.c.name)
    ).all()
    return {
        "store_id": store_id,
        "discount_limit_pct": row.discount_limit_pct if row else DEFAULT_LIMIT_PCT,
        "rounding": row.rounding if row else DEFAULT_ROUNDING,
        "managers": [p.name for p in pins],
        "manager_pins": [{"name": p.name, "pin_hash": p.pin_hash} for p in pins],
    }
