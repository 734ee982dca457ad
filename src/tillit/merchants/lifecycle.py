"""The merchant lifecycle (domain/states.py MERCHANT) and what it allows: provider payments only while
``active``; cash while suspended only if the merchant's setting says so; nothing once terminated."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import Connection, select, update

from tillit.adapters.db.engine import Database
from tillit.adapters.db.schema import merchant_events, merchant_profiles, merchants
from tillit.domain.errors import DomainError, ErrorKind, not_found
from tillit.domain.merchants import zone
from tillit.domain.messages import MESSAGES
from tillit.kernel.context import Actor, Deps, iso
from tillit.kernel.transitions import move_merchant
from tillit.merchants.matching import hits_for
from tillit.merchants.views import MerchantEventView, ProfileView


def profile_query() -> Any:
    return select(merchant_profiles, merchants.c.name).join(
        merchants, merchants.c.id == merchant_profiles.c.merchant_id
    )


def load(conn: Connection, merchant_id: str, *, db: Database | None = None) -> Any:
    """The merchant's profile row (locked FOR UPDATE on PostgreSQL when ``db`` is given), or 404."""
    query = profile_query().where(merchant_profiles.c.merchant_id == merchant_id)
    if db is not None and db.is_postgres:
        query = query.with_for_update(of=merchant_profiles)
    row = conn.execute(query).first()
    if row is None:
        raise not_found("merchant", merchant_id)
    return row


def scoped(actor: Actor, merchant_id: str) -> str:
    """An operator may name any merchant; a merchant key only its own (another's answers 404)."""
    if actor.role != "admin" and actor.merchant_id != merchant_id:
        raise not_found("merchant", merchant_id)
    return merchant_id


def view(conn: Connection, row: Any) -> ProfileView:
    return {
        "merchant_id": row.merchant_id,
        "name": row.name,
        "status": row.status,
        "timezone": row.timezone,
        "cash_when_suspended": bool(row.cash_when_suspended),
        "status_reason": row.status_reason,
        "submitted_by": row.submitted_by,
        "submitted_at": iso(row.submitted_at),
        "reviewed_at": iso(row.reviewed_at),
        "next_review_on": row.next_review_on.isoformat() if row.next_review_on else None,
        "blacklist_hits": hits_for(conn, row.merchant_id),
    }


def get_profile(conn: Connection, actor: Actor, merchant_id: str) -> ProfileView:
    return view(conn, load(conn, scoped(actor, merchant_id)))


def list_profiles(
    conn: Connection, *, status: str | None, limit: int, after: str | None
) -> list[ProfileView]:
    query = profile_query().order_by(merchant_profiles.c.merchant_id).limit(limit)
    if status:
        query = query.where(merchant_profiles.c.status == status)
    if after:
        query = query.where(merchant_profiles.c.merchant_id > after)
    return [view(conn, r) for r in conn.execute(query)]


def history(conn: Connection, actor: Actor, merchant_id: str) -> list[MerchantEventView]:
    load(conn, scoped(actor, merchant_id))
    rows = conn.execute(
        select(merchant_events)
        .where(merchant_events.c.merchant_id == merchant_id)
        .order_by(merchant_events.c.id)
        .limit(1000)
    )
    return [
        {
            "from_status": r.from_status,
            "to_status": r.to_status,
            "actor": r.actor,
            "reason": r.reason,
            "at": iso(r.at),
        }
        for r in rows
    ]


def move(
    db: Database,
    conn: Connection,
    deps: Deps,
    merchant_id: str,
    target: str,
    actor: str,
    reason: str,
    **values: Any,
) -> Any:
    """Move the merchant to ``target`` from whatever it is now (checked by the machine); the new row."""
    row = load(conn, merchant_id, db=db)
    move_merchant(
        conn,
        merchant_id=merchant_id,
        current=row.status,
        target=target,
        actor=actor,
        now=deps.clock.now(),
        reason=reason,
        values=values or None,
    )
    return load(conn, merchant_id)


def suspend(
    db: Database, conn: Connection, deps: Deps, merchant_id: str, actor: str, reason: str
) -> ProfileView:
    return view(conn, move(db, conn, deps, merchant_id, "suspended", actor, reason))


def suspend_if_active(
    db: Database, conn: Connection, deps: Deps, merchant_id: str, actor: str, reason: str
) -> bool:
    """Suspend an active merchant (automatic suspensions: expired licence, blacklist); False otherwise."""
    if load(conn, merchant_id, db=db).status != "active":
        return False
    move(db, conn, deps, merchant_id, "suspended", actor, reason)
    return True


def resume(
    db: Database, conn: Connection, deps: Deps, merchant_id: str, actor: str, reason: str
) -> ProfileView:
    return view(conn, move(db, conn, deps, merchant_id, "active", actor, reason))


def terminate(
    db: Database, conn: Connection, deps: Deps, merchant_id: str, actor: str, reason: str
) -> ProfileView:
    return view(conn, move(db, conn, deps, merchant_id, "terminated", actor, reason))


def update_settings(
    conn: Connection,
    deps: Deps,
    merchant_id: str,
    *,
    timezone: str | None,
    cash_when_suspended: bool | None,
    next_review_on: date | None = None,
) -> ProfileView:
    load(conn, merchant_id)
    values: dict[str, Any] = {"updated_at": deps.clock.now()}
    if timezone is not None:
        zone(timezone)
        values["timezone"] = timezone
    if cash_when_suspended is not None:
        values["cash_when_suspended"] = 1 if cash_when_suspended else 0
    if next_review_on is not None:
        values["next_review_on"] = next_review_on
    conn.execute(
        update(merchant_profiles).where(merchant_profiles.c.merchant_id == merchant_id).values(**values)
    )
    return view(conn, load(conn, merchant_id))


# --- what the lifecycle allows -------------------------------------------------------------------------


def _said(reason: str, status: str) -> dict[str, object]:
    return {"status": status, "cashier_message": MESSAGES[reason].as_dict()}


def ensure_may_take_provider_payment(conn: Connection, merchant_id: str) -> Any:
    """Raise unless the merchant is ``active`` (called before any provider call); the row. The engine's
    checkout path reads the status together with the limits instead (limits.admit)."""
    row = load(conn, merchant_id)
    refuse_unless_active(row)
    return row


def refuse_unless_active(row: Any) -> None:
    """Raise ``merchant_suspended`` / ``merchant_not_active`` unless ``row.status`` is ``active``."""
    if row.status == "active":
        return
    if row.status == "suspended":
        raise DomainError(
            "merchant_suspended",
            "The merchant is suspended and cannot take provider payments"
            + (f": {row.status_reason}." if row.status_reason else "."),
            ErrorKind.CONFLICT,
            _said("merchant_suspended", row.status),
        )
    raise DomainError(
        "merchant_not_active",
        f"The merchant is {row.status} and cannot take provider payments.",
        ErrorKind.CONFLICT,
        _said("merchant_not_active", row.status),
    )


def ensure_may_take_cash(conn: Connection, merchant_id: str) -> None:
    """Cash stays allowed except for a terminated merchant, or a suspended one whose setting forbids it.
    Registered with sales (sales/payments.py ``on_cash_payment``) at the composition root."""
    row = load(conn, merchant_id)
    if row.status == "terminated" or (row.status == "suspended" and not row.cash_when_suspended):
        raise DomainError(
            "cash_not_allowed",
            f"The merchant is {row.status}: cash sales are off.",
            ErrorKind.CONFLICT,
            _said("cash_not_allowed", row.status),
        )
