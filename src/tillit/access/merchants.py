"""Operator use cases: merchants, their stores and terminals."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, insert, select
from sqlalchemy.exc import IntegrityError

from tillit.adapters.db.schema import merchants, stores, terminals
from tillit.domain.errors import conflict, not_found
from tillit.domain.money import DEFAULT_CURRENCY, check_currency
from tillit.kernel.context import Actor, Deps, iso, row_dict


def _view(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (iso(v) if k.endswith("_at") else v) for k, v in row.items()}


def create_merchant(
    conn: Connection, deps: Deps, *, name: str, currency: str = DEFAULT_CURRENCY
) -> dict[str, Any]:
    record = {
        "id": deps.ids.new(),
        "name": name,
        "currency": check_currency(currency),
        "status": "active",
        "created_at": deps.clock.now(),
    }
    conn.execute(insert(merchants).values(**record))
    return _view(record)


def get_merchant(conn: Connection, actor: Actor, merchant_id: str) -> dict[str, Any]:
    if actor.role != "admin" and actor.merchant_id != merchant_id:
        raise not_found("merchant", merchant_id)
    row = conn.execute(select(merchants).where(merchants.c.id == merchant_id)).first()
    if row is None:
        raise not_found("merchant", merchant_id)
    return _view(row_dict(row))


def list_merchants(conn: Connection, *, limit: int, after: str | None) -> list[dict[str, Any]]:
    query = select(merchants).order_by(merchants.c.id).limit(limit)
    if after:
        query = query.where(merchants.c.id > after)
    return [_view(row_dict(r)) for r in conn.execute(query)]


def create_store(conn: Connection, deps: Deps, *, merchant_id: str, name: str) -> dict[str, Any]:
    if conn.execute(select(merchants.c.id).where(merchants.c.id == merchant_id)).first() is None:
        raise not_found("merchant", merchant_id)
    record = {"id": deps.ids.new(), "merchant_id": merchant_id, "name": name, "created_at": deps.clock.now()}
    try:
        with conn.begin_nested():
            conn.execute(insert(stores).values(**record))
    except IntegrityError:
        raise conflict("store_exists", f"The merchant already has a store named {name!r}.") from None
    return _view(record)


def get_store(conn: Connection, actor: Actor, store_id: str) -> dict[str, Any]:
    row = conn.execute(select(stores).where(stores.c.id == store_id)).first()
    if row is None or (actor.role != "admin" and row.merchant_id != actor.merchant_id):
        raise not_found("store", store_id)
    return _view(row_dict(row))


def list_stores(conn: Connection, actor: Actor, merchant_id: str | None = None) -> list[dict[str, Any]]:
    query = select(stores).order_by(stores.c.id)
    scope = actor.merchant_id if actor.role != "admin" else merchant_id
    if scope is not None:
        query = query.where(stores.c.merchant_id == scope)
    return [_view(row_dict(r)) for r in conn.execute(query.limit(1000))]


def create_terminal(conn: Connection, deps: Deps, *, store_id: str, name: str) -> dict[str, Any]:
    store = conn.execute(select(stores).where(stores.c.id == store_id)).first()
    if store is None:
        raise not_found("store", store_id)
    record = {
        "id": deps.ids.new(),
        "merchant_id": store.merchant_id,
        "store_id": store_id,
        "name": name,
        "created_at": deps.clock.now(),
    }
    try:
        with conn.begin_nested():
            conn.execute(insert(terminals).values(**record))
    except IntegrityError:
        raise conflict("terminal_exists", f"The store already has a terminal named {name!r}.") from None
    return _view(record)


def get_terminal(conn: Connection, actor: Actor, terminal_id: str) -> dict[str, Any]:
    row = conn.execute(select(terminals).where(terminals.c.id == terminal_id)).first()
    if row is None or (actor.role != "admin" and row.merchant_id != actor.merchant_id):
        raise not_found("terminal", terminal_id)
    return _view(row_dict(row))


def list_terminals(conn: Connection, actor: Actor, merchant_id: str | None = None) -> list[dict[str, Any]]:
    query = select(terminals).order_by(terminals.c.id)
    scope = actor.merchant_id if actor.role != "admin" else merchant_id
    if scope is not None:
        query = query.where(terminals.c.merchant_id == scope)
    return [_view(row_dict(r)) for r in conn.execute(query.limit(1000))]
