"""Operator use cases: merchants, their stores and terminals."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, insert, select
from sqlalchemy.exc import IntegrityError

from tillit.access.views import MerchantView, StoreView, TerminalView
from tillit.adapters.db.schema import merchant_profiles, merchants, stores, terminals
from tillit.domain.errors import conflict, not_found
from tillit.domain.money import DEFAULT_CURRENCY, check_currency
from tillit.kernel.context import Actor, Deps, iso
from tillit.kernel.transitions import record_merchant_created


# Keys in the tables' column order, as the API has always answered them.
def _merchant(row: Mapping[Any, Any]) -> MerchantView:
    return {
        "id": row["id"],
        "name": row["name"],
        "currency": row["currency"],
        "status": row["status"],
        "created_at": iso(row["created_at"]),
    }


def _store(row: Mapping[Any, Any]) -> StoreView:
    return {
        "id": row["id"],
        "merchant_id": row["merchant_id"],
        "name": row["name"],
        "created_at": iso(row["created_at"]),
    }


def _terminal(row: Mapping[Any, Any]) -> TerminalView:
    return {
        "id": row["id"],
        "merchant_id": row["merchant_id"],
        "store_id": row["store_id"],
        "name": row["name"],
        "created_at": iso(row["created_at"]),
    }


def create_merchant(
    conn: Connection,
    deps: Deps,
    *,
    name: str,
    currency: str = DEFAULT_CURRENCY,
    lifecycle: str = "active",
    actor: str = "system",
) -> MerchantView:
    """A merchant, born ``active`` (the operator vouches for it) or ``applied`` (an application the
    merchants area reviews). ``status`` in the view is the lifecycle status (merchant_profiles)."""
    merchant_id, now = deps.ids.new(), deps.clock.now()
    record = {
        "id": merchant_id,
        "name": name,
        "currency": check_currency(currency),
        "status": "active",  # legacy column, superseded by merchant_profiles.status
        "created_at": now,
    }
    conn.execute(insert(merchants).values(**record))
    record_merchant_created(
        conn, merchant_id=merchant_id, status=lifecycle, actor=actor, now=now, reason="created"
    )
    return _merchant(record | {"status": lifecycle})


def get_merchant(conn: Connection, actor: Actor, merchant_id: str) -> MerchantView:
    if actor.role != "admin" and actor.merchant_id != merchant_id:
        raise not_found("merchant", merchant_id)
    row = conn.execute(_with_lifecycle().where(merchants.c.id == merchant_id)).first()
    if row is None:
        raise not_found("merchant", merchant_id)
    return _merchant(row._mapping)


def _with_lifecycle() -> Any:
    """Merchant rows whose ``status`` is the lifecycle status (merchants area, issue 12)."""
    return select(
        merchants.c.id,
        merchants.c.name,
        merchants.c.currency,
        merchant_profiles.c.status,
        merchants.c.created_at,
    ).join(merchant_profiles, merchant_profiles.c.merchant_id == merchants.c.id)


def list_merchants(conn: Connection, *, limit: int, after: str | None) -> list[MerchantView]:
    query = _with_lifecycle().order_by(merchants.c.id).limit(limit)
    if after:
        query = query.where(merchants.c.id > after)
    return [_merchant(r._mapping) for r in conn.execute(query)]


def create_store(conn: Connection, deps: Deps, *, merchant_id: str, name: str) -> StoreView:
    if conn.execute(select(merchants.c.id).where(merchants.c.id == merchant_id)).first() is None:
        raise not_found("merchant", merchant_id)
    record = {"id": deps.ids.new(), "merchant_id": merchant_id, "name": name, "created_at": deps.clock.now()}
    try:
        with conn.begin_nested():
            conn.execute(insert(stores).values(**record))
    except IntegrityError:
        raise conflict("store_exists", f"The merchant already has a store named {name!r}.") from None
    return _store(record)


def get_store(conn: Connection, actor: Actor, store_id: str) -> StoreView:
    row = conn.execute(select(stores).where(stores.c.id == store_id)).first()
    if row is None or (actor.role != "admin" and row.merchant_id != actor.merchant_id):
        raise not_found("store", store_id)
    return _store(row._mapping)


def list_stores(conn: Connection, actor: Actor, merchant_id: str | None = None) -> list[StoreView]:
    query = select(stores).order_by(stores.c.id)
    scope = actor.merchant_id if actor.role != "admin" else merchant_id
    if scope is not None:
        query = query.where(stores.c.merchant_id == scope)
    return [_store(r._mapping) for r in conn.execute(query.limit(1000))]


def create_terminal(conn: Connection, deps: Deps, *, store_id: str, name: str) -> TerminalView:
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
    return _terminal(record)


def get_terminal(conn: Connection, actor: Actor, terminal_id: str) -> TerminalView:
    row = conn.execute(select(terminals).where(terminals.c.id == terminal_id)).first()
    if row is None or (actor.role != "admin" and row.merchant_id != actor.merchant_id):
        raise not_found("terminal", terminal_id)
    return _terminal(row._mapping)


def list_terminals(conn: Connection, actor: Actor, merchant_id: str | None = None) -> list[TerminalView]:
    query = select(terminals).order_by(terminals.c.id)
    scope = actor.merchant_id if actor.role != "admin" else merchant_id
    if scope is not None:
        query = query.where(terminals.c.merchant_id == scope)
    return [_terminal(r._mapping) for r in conn.execute(query.limit(1000))]
