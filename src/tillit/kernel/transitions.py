"""The one place where a status changes.

``transition`` checks the move against the declared machine, applies it with a compare-and-set on the
current status (so a concurrent change is detected, never overwritten) and appends an event row in the
same transaction. ``record_created`` writes the event for a row born in its first status.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table, bindparam, insert, update
from sqlalchemy.sql.dml import Update

from tillit.adapters.db.schema import (
    events,
    fulfilments,
    merchant_events,
    merchant_profiles,
    orders,
    payments,
    refunds,
)
from tillit.domain.errors import conflict
from tillit.domain.fulfilment import FULFILMENT
from tillit.domain.states import MACHINES as SALES_MACHINES
from tillit.domain.states import MERCHANT, StateMachine

TABLES: dict[str, Table] = {"order": orders, "payment": payments, "refund": refunds}
MACHINES: dict[str, StateMachine] = dict(SALES_MACHINES)
# fulfilment (docs/fulfilment.md): its machine is declared in domain/fulfilment.py
TABLES["fulfilment"] = fulfilments
MACHINES[FULFILMENT.name] = FULFILMENT

# The statements of every state change, built once (issue 11.2): building and cache-keying a statement
# costs more than running it, and a checkout makes several transitions. One UPDATE per entity and set of
# extra columns; the event INSERT is one statement for all.
_INSERT_EVENT = insert(events)
_UPDATES: dict[tuple[str, tuple[str, ...]], Update] = {}


def _update_for(entity: str, extra: tuple[str, ...]) -> Update:
    """The compare-and-set UPDATE of ``entity`` that also sets the ``extra`` columns (``v_<name>``)."""
    statement = _UPDATES.get((entity, extra))
    if statement is None:
        table = TABLES[entity]
        changes: dict[str, Any] = {
            "status": bindparam("b_status", type_=table.c.status.type),
            "updated_at": bindparam("b_now", type_=table.c.updated_at.type),
        }
        if "version" in table.c:
            changes["version"] = table.c.version + 1
        for name in extra:
            changes[name] = bindparam(f"v_{name}", type_=table.c[name].type)
        statement = (
            update(table)
            .where(
                table.c.merchant_id == bindparam("b_merchant"),
                table.c.id == bindparam("b_id"),
                table.c.status == bindparam("b_current"),
            )
            .values(**changes)
        )
        _UPDATES[(entity, extra)] = statement  # a race builds the same statement twice: harmless
    return statement


def event_row(
    *,
    merchant_id: str,
    order_id: str,
    entity: str,
    entity_id: str,
    from_status: str | None,
    to_status: str,
    actor: str,
    now: datetime,
    reason: str | None = None,
    provider_ref: str | None = None,
) -> dict[str, Any]:
    """The events row of one move (``from_status`` None: the row was born in ``to_status``); the one
    shape ``record_created``, ``transition`` and the bulk sync write."""
    return {
        "merchant_id": merchant_id,
        "order_id": order_id,
        "entity": entity,
        "entity_id": entity_id,
        "from_status": from_status,
        "to_status": to_status,
        "actor": actor,
        "reason": reason,
        "provider_ref": provider_ref,
        "at": now,
    }


def record_created(
    conn: Connection,
    *,
    entity: str,
    entity_id: str,
    status: str,
    merchant_id: str,
    order_id: str,
    actor: str,
    now: datetime,
    reason: str | None = None,
    provider_ref: str | None = None,
) -> None:
    machine = MACHINES[entity]
    assert status in machine.initial, f"{entity} cannot be created as {status}"
    conn.execute(
        _INSERT_EVENT,
        event_row(
            merchant_id=merchant_id,
            order_id=order_id,
            entity=entity,
            entity_id=entity_id,
            from_status=None,
            to_status=status,
            actor=actor,
            now=now,
            reason=reason,
            provider_ref=provider_ref,
        ),
    )


def transition(
    conn: Connection,
    *,
    entity: str,
    entity_id: str,
    current: str,
    target: str,
    merchant_id: str,
    order_id: str,
    actor: str,
    now: datetime,
    reason: str | None = None,
    provider_ref: str | None = None,
    values: dict[str, Any] | None = None,
) -> None:
    """Move ``entity_id`` from ``current`` to ``target``; raise if the move is not allowed or lost a race."""
    MACHINES[entity].check(current, target)
    more = values or {}
    extra = tuple(sorted(more))
    params: dict[str, Any] = {
        "b_status": target,
        "b_now": now,
        "b_merchant": merchant_id,
        "b_id": entity_id,
        "b_current": current,
    }
    for name in extra:
        params[f"v_{name}"] = more[name]
    result = conn.execute(_update_for(entity, extra), params)
    if result.rowcount != 1:
        raise conflict(
            f"{entity}_changed",
            f"The {entity} changed while this request was processed; retry.",
            {"id": entity_id, "expected": current},
        )
    conn.execute(
        _INSERT_EVENT,
        event_row(
            merchant_id=merchant_id,
            order_id=order_id,
            entity=entity,
            entity_id=entity_id,
            from_status=current,
            to_status=target,
            actor=actor,
            now=now,
            reason=reason,
            provider_ref=provider_ref,
        ),
    )


# --- merchants area (issue 12): the merchant lifecycle ------------------------------------------------
# Merchants have their own event table (merchant_events): their events belong to no order and are read
# by operators, not by the till.


def record_merchant_created(
    conn: Connection, *, merchant_id: str, status: str, actor: str, now: datetime, reason: str | None = None
) -> None:
    """The profile row and first event of a merchant born in ``status`` (applied, or active)."""
    assert status in MERCHANT.initial, f"a merchant cannot be created as {status}"
    conn.execute(insert(merchant_profiles).values(merchant_id=merchant_id, status=status, updated_at=now))
    conn.execute(
        insert(merchant_events).values(
            merchant_id=merchant_id, from_status=None, to_status=status, actor=actor, reason=reason, at=now
        )
    )


def move_merchant(
    conn: Connection,
    *,
    merchant_id: str,
    current: str,
    target: str,
    actor: str,
    now: datetime,
    reason: str | None = None,
    values: dict[str, Any] | None = None,
) -> None:
    """Move a merchant from ``current`` to ``target`` (compare-and-set) and append its event."""
    MERCHANT.check(current, target)
    changes: dict[str, Any] = {
        "status": target,
        "updated_at": now,
        "version": merchant_profiles.c.version + 1,
        "status_reason": (reason or "")[:500] or None,
    }
    changes.update(values or {})
    result = conn.execute(
        update(merchant_profiles)
        .where(merchant_profiles.c.merchant_id == merchant_id, merchant_profiles.c.status == current)
        .values(**changes)
    )
    if result.rowcount != 1:
        raise conflict(
            "merchant_changed",
            "The merchant changed while this request was processed; retry.",
            {"id": merchant_id, "expected": current},
        )
    conn.execute(
        insert(merchant_events).values(
            merchant_id=merchant_id,
            from_status=current,
            to_status=target,
            actor=actor,
            reason=(reason or "")[:500] or None,
            at=now,
        )
    )
