"""Transaction limits per merchant and per terminal, per method: single maximum, daily and monthly totals.

The totals are captured minus refunded, per merchant-local day and month. They are enforced by counter
rows (limit_usage) moved with one conditional UPDATE — ``used = used + amount WHERE used + amount <=
max`` — inside the transaction that creates the payment attempt, before any provider call. On
PostgreSQL the UPDATE takes the row lock and re-checks its condition against the committed value, so
concurrent attempts queue on the row and can never together pass the limit; on SQLite the transaction
is the single writer (BEGIN IMMEDIATE). What an attempt reserved is written to limit_holds and given
back once on a definite failure (failed, reversed) and in proportion to refunds.

Counters count from the time a limit of that kind exists for the scope; no limit, no counting (and no
cost on the checkout path beyond one indexed read).
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, and_, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from tillit.adapters.db.engine import Database
from tillit.adapters.db.schema import limit_changes, limit_holds, limit_usage, merchant_limits, terminals
from tillit.domain.errors import DomainError, ErrorKind, invalid, not_found
from tillit.domain.merchants import BARCODE_TIERS, LIMIT_METHODS, LimitBreach, period_keys, single_breach
from tillit.domain.messages import MESSAGES
from tillit.kernel.context import Deps, iso
from tillit.merchants import lifecycle
from tillit.merchants.views import LimitChangeView, LimitView

MERCHANT_SCOPE = "merchant"


def limit_exceeded(breach: LimitBreach) -> DomainError:
    """The stable refusal: names the limit, the amount still allowed and the cashier's next step."""
    return DomainError(
        "limit_exceeded",
        f"This payment is over the {breach.scope}'s {breach.kind} {breach.method} limit of {breach.limit}; "
        f"{breach.remaining} is still allowed.",
        ErrorKind.CONFLICT,
        {
            "limit": {
                "scope": breach.scope,
                "method": breach.method,
                "kind": breach.kind,
                "max": breach.limit,
            },
            "remaining": breach.remaining,
            "cashier_message": MESSAGES["limit_exceeded"].as_dict(),
        },
    )


def _check_scope(conn: Connection, merchant_id: str, scope: str) -> str:
    if scope == MERCHANT_SCOPE:
        return scope
    row = conn.execute(
        select(terminals.c.id).where(terminals.c.merchant_id == merchant_id, terminals.c.id == scope)
    ).first()
    if row is None:
        raise not_found("terminal", scope)
    return scope


def _amounts(row: Any) -> dict[str, int | None]:
    return {"single_max": row.single_max, "daily_max": row.daily_max, "monthly_max": row.monthly_max}


def set_limit(
    conn: Connection,
    deps: Deps,
    merchant_id: str,
    *,
    scope: str,
    method: str,
    single_max: int | None,
    daily_max: int | None,
    monthly_max: int | None,
    actor: str,
    reason: str,
) -> LimitView:
    """Create, change or (all None) remove a limit; every change is audited (before, after, who, why)."""
    lifecycle.load(conn, merchant_id)
    scope = _check_scope(conn, merchant_id, scope)
    if method not in LIMIT_METHODS:
        raise invalid(
            "limit_method_invalid", "Limits apply to wechat or alipay.", {"methods": list(LIMIT_METHODS)}
        )
    for name, value in (("single_max", single_max), ("daily_max", daily_max), ("monthly_max", monthly_max)):
        if value is not None and value <= 0:
            raise invalid("limit_invalid", f"{name} must be a positive amount in fen, or null for none.")
    key = and_(
        merchant_limits.c.merchant_id == merchant_id,
        merchant_limits.c.scope == scope,
        merchant_limits.c.method == method,
    )
    before_row = conn.execute(select(merchant_limits).where(key)).first()
    after = {"single_max": single_max, "daily_max": daily_max, "monthly_max": monthly_max}
    now = deps.clock.now()
    if before_row is None:
        conn.execute(
            insert(merchant_limits).values(
                merchant_id=merchant_id, scope=scope, method=method, updated_by=actor, updated_at=now, **after
            )
        )
    else:
        conn.execute(update(merchant_limits).where(key).values(updated_by=actor, updated_at=now, **after))
    conn.execute(
        insert(limit_changes).values(
            merchant_id=merchant_id,
            scope=scope,
            method=method,
            before=json.dumps(_amounts(before_row)) if before_row is not None else None,
            after=json.dumps(after),
            actor=actor,
            reason=reason,
            at=now,
        )
    )
    return _view(conn, conn.execute(select(merchant_limits).where(key)).one(), deps)


def _usage(conn: Connection, merchant_id: str, scope: str, method: str, period: str) -> int:
    used = conn.execute(
        select(limit_usage.c.used).where(
            limit_usage.c.merchant_id == merchant_id,
            limit_usage.c.scope == scope,
            limit_usage.c.method == method,
            limit_usage.c.period == period,
        )
    ).scalar()
    return int(used or 0)


def _view(conn: Connection, row: Any, deps: Deps) -> LimitView:
    tz = lifecycle.load(conn, row.merchant_id).timezone
    day, month = period_keys(deps.clock.now(), tz)
    return {
        "merchant_id": row.merchant_id,
        "scope": row.scope,
        "method": row.method,
        "single_max": row.single_max,
        "daily_max": row.daily_max,
        "monthly_max": row.monthly_max,
        "daily_used": _usage(conn, row.merchant_id, row.scope, row.method, day),
        "monthly_used": _usage(conn, row.merchant_id, row.scope, row.method, month),
        "updated_by": row.updated_by,
        "updated_at": iso(row.updated_at),
    }


def list_limits(conn: Connection, deps: Deps, merchant_id: str) -> list[LimitView]:
    lifecycle.load(conn, merchant_id)
    rows = conn.execute(
        select(merchant_limits)
        .where(merchant_limits.c.merchant_id == merchant_id)
        .order_by(merchant_limits.c.scope, merchant_limits.c.method)
    )
    return [_view(conn, r, deps) for r in rows]


def list_changes(conn: Connection, merchant_id: str, *, limit: int) -> list[LimitChangeView]:
    lifecycle.load(conn, merchant_id)
    rows = conn.execute(
        select(limit_changes)
        .where(limit_changes.c.merchant_id == merchant_id)
        .order_by(limit_changes.c.id.desc())
        .limit(limit)
    )
    return [
        {
            "scope": r.scope,
            "method": r.method,
            "before": json.loads(r.before) if r.before else None,
            "after": json.loads(r.after) if r.after else None,
            "actor": r.actor,
            "reason": r.reason,
            "at": iso(r.at),
        }
        for r in rows
    ]


def tiers() -> list[dict[str, Any]]:
    """The defaults offered: the PBoC barcode-payment daily tiers (operations.md §7.1)."""
    return [{"name": t.name, "daily_max": t.daily_max, "description": t.description} for t in BARCODE_TIERS]


# --- the checkout path -----------------------------------------------------------------------------------


def _bump(
    db: Database,
    conn: Connection,
    merchant_id: str,
    scope: str,
    method: str,
    period: str,
    amount: int,
    limit: int,
) -> bool:
    """Add ``amount`` to the counter unless that passes ``limit``; True if added."""
    key = and_(
        limit_usage.c.merchant_id == merchant_id,
        limit_usage.c.scope == scope,
        limit_usage.c.method == method,
        limit_usage.c.period == period,
    )
    result = conn.execute(
        update(limit_usage)
        .where(key, limit_usage.c.used + amount <= limit)
        .values(used=limit_usage.c.used + amount)
    )
    if result.rowcount == 1:
        return True
    if conn.execute(select(limit_usage.c.used).where(key)).first() is not None:
        return False
    try:  # first payment of the period: create the counter (a concurrent creator wins the race)
        with conn.begin_nested():
            conn.execute(
                insert(limit_usage).values(
                    merchant_id=merchant_id, scope=scope, method=method, period=period, used=0
                )
            )
    except IntegrityError:
        pass
    result = conn.execute(
        update(limit_usage)
        .where(key, limit_usage.c.used + amount <= limit)
        .values(used=limit_usage.c.used + amount)
    )
    return result.rowcount == 1


def _label(scope: str) -> str:
    return "merchant" if scope == MERCHANT_SCOPE else "terminal"


def _move_counters(
    db: Database,
    conn: Connection,
    merchant_id: str,
    method: str,
    amount: int,
    counters: list[tuple[str, str, int, str, str]],
) -> None:
    """Add ``amount`` to every counter unless that passes its limit, in one conditional UPDATE (each row
    checked against its own limit); RETURNING says which rows moved. A counter that did not move is
    either missing (first payment of its period: created, then moved alone) or full: then raise, and the
    caller's transaction rolls back whatever this UPDATE moved."""
    conds = [
        and_(
            limit_usage.c.scope == scope, limit_usage.c.period == period, limit_usage.c.used + amount <= limit
        )
        for scope, period, limit, _kind, _tag in counters
    ]
    moved = {
        (r.scope, r.period)
        for r in conn.execute(
            update(limit_usage)
            .where(limit_usage.c.merchant_id == merchant_id, limit_usage.c.method == method, or_(*conds))
            .values(used=limit_usage.c.used + amount)
            .returning(limit_usage.c.scope, limit_usage.c.period)
        )
    }
    for scope, period, limit, kind, _tag in counters:
        if (scope, period) in moved:
            continue
        if not _bump(db, conn, merchant_id, scope, method, period, amount, limit):
            used = _usage(conn, merchant_id, scope, method, period)
            raise limit_exceeded(LimitBreach(_label(scope), method, kind, limit, max(limit - used, 0)))


def reserve(
    db: Database,
    conn: Connection,
    deps: Deps,
    *,
    merchant_id: str,
    terminal_id: str | None,
    method: str,
    payment_id: str,
    amount: int,
    timezone: str,
) -> None:
    """Check and reserve ``amount`` against every limit of the merchant and the terminal for ``method``;
    raise ``limit_exceeded`` (the caller's transaction then rolls back every counter it moved)."""
    scopes = [MERCHANT_SCOPE] + ([terminal_id] if terminal_id else [])
    rules = {
        r.scope: r
        for r in conn.execute(
            select(merchant_limits).where(
                merchant_limits.c.merchant_id == merchant_id,
                merchant_limits.c.method == method,
                merchant_limits.c.scope.in_(scopes),
            )
        )
    }
    if not rules:
        return
    day, month = period_keys(deps.clock.now(), timezone)
    # (scope, period, limit, kind, tag) of every counter this payment moves
    counters: list[tuple[str, str, int, str, str]] = []
    for scope in scopes:  # merchant first, then terminal
        rule = rules.get(scope)
        if rule is None:
            continue
        breach = single_breach(_label(scope), method, amount, rule.single_max)
        if breach is not None:
            raise limit_exceeded(breach)
        if rule.daily_max is not None:
            counters.append((scope, day, rule.daily_max, "daily", "d"))
        if rule.monthly_max is not None:
            counters.append((scope, month, rule.monthly_max, "monthly", "m"))
    if counters:
        _move_counters(db, conn, merchant_id, method, amount, counters)
    moved = [f"{tag}:{scope}" for scope, _p, _l, _k, tag in counters]
    if moved:
        conn.execute(
            insert(limit_holds).values(
                merchant_id=merchant_id,
                payment_id=payment_id,
                method=method,
                scopes=" ".join(moved),
                day=day,
                month=month,
                amount=amount,
                returned=0,
            )
        )


def give_back(conn: Connection, *, merchant_id: str, payment_id: str, amount: int | None = None) -> int:
    """Return ``amount`` (None: all that is left) of an attempt's hold to its counters, once; the amount
    returned. Called on a definite failure (all) and on each refund (its amount). The caller holds the
    payment's lock, so two give-backs of one payment never interleave."""
    hold = conn.execute(
        select(limit_holds).where(
            limit_holds.c.merchant_id == merchant_id, limit_holds.c.payment_id == payment_id
        )
    ).first()
    if hold is None:
        return 0
    left = int(hold.amount - hold.returned)
    back = left if amount is None else min(amount, left)
    if back <= 0:
        return 0
    changed = conn.execute(
        update(limit_holds)
        .where(
            limit_holds.c.merchant_id == merchant_id,
            limit_holds.c.payment_id == payment_id,
            limit_holds.c.returned == hold.returned,
        )
        .values(returned=hold.returned + back)
    )
    if changed.rowcount != 1:
        return 0
    for token in hold.scopes.split():
        tag, scope = token.split(":", 1)
        conn.execute(
            update(limit_usage)
            .where(
                limit_usage.c.merchant_id == merchant_id,
                limit_usage.c.scope == scope,
                limit_usage.c.method == hold.method,
                limit_usage.c.period == (hold.day if tag == "d" else hold.month),
            )
            .values(used=limit_usage.c.used - back)
        )
    return back
