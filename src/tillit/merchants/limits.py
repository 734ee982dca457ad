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
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Integer, and_, bindparam, insert, or_, select, text, update
from sqlalchemy.exc import IntegrityError

from tillit.adapters.db.engine import Database
from tillit.adapters.db.schema import (
    MONEY,
    limit_changes,
    limit_holds,
    limit_usage,
    merchant_limits,
    merchant_profiles,
    terminals,
)
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
    conn: Connection,
    merchant_id: str,
    scope: str,
    method: str,
    period: str,
    amount: int,
    limit: int,
) -> bool:
    """Add ``amount`` to the counter unless that passes ``limit``; True if added. The slow path: only for
    a counter the one-statement move left alone (missing — the period's first payment — or full)."""
    key = and_(
        limit_usage.c.merchant_id == merchant_id,
        limit_usage.c.scope == scope,
        limit_usage.c.method == method,
        limit_usage.c.period == period,
    )
    if conn.execute(select(limit_usage.c.used).where(key)).first() is not None:
        return False  # it exists and the conditional move just refused it: full
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


@dataclass(frozen=True, slots=True)
class Rule:
    """One scope's limit for one method (fen; None: no such limit)."""

    scope: str  # "merchant" or the terminal's id
    single_max: int | None
    daily_max: int | None
    monthly_max: int | None


@dataclass(frozen=True, slots=True)
class Admission:
    """What the checkout path needs of the merchants area, read in one statement: the merchant may take
    provider payments (else the read raised), its time zone, and the limits that apply to this payment
    (merchant first, then terminal)."""

    timezone: str
    rules: tuple[Rule, ...]


# The merchant-status check and the limit rules of the merchant and the terminal for the method, in one
# prebuilt statement (the checkout path runs it once per provider payment).
_M_RULE = merchant_limits.alias("m_rule")
_T_RULE = merchant_limits.alias("t_rule")
_ADMIT = (
    select(
        merchant_profiles.c.status,
        merchant_profiles.c.status_reason,
        merchant_profiles.c.timezone,
        _M_RULE.c.single_max.label("m_single"),
        _M_RULE.c.daily_max.label("m_daily"),
        _M_RULE.c.monthly_max.label("m_monthly"),
        _T_RULE.c.single_max.label("t_single"),
        _T_RULE.c.daily_max.label("t_daily"),
        _T_RULE.c.monthly_max.label("t_monthly"),
    )
    .select_from(
        merchant_profiles.outerjoin(
            _M_RULE,
            and_(
                _M_RULE.c.merchant_id == merchant_profiles.c.merchant_id,
                _M_RULE.c.scope == MERCHANT_SCOPE,
                _M_RULE.c.method == bindparam("b_method"),
            ),
        ).outerjoin(
            _T_RULE,
            and_(
                _T_RULE.c.merchant_id == merchant_profiles.c.merchant_id,
                _T_RULE.c.scope == bindparam("b_terminal"),
                _T_RULE.c.method == bindparam("b_method"),
            ),
        )
    )
    .where(merchant_profiles.c.merchant_id == bindparam("b_merchant"))
)


def _rule(scope: str, single: int | None, daily: int | None, monthly: int | None) -> Rule | None:
    if single is None and daily is None and monthly is None:
        return None  # no row, or a limit set back to "none"
    return Rule(scope, single, daily, monthly)


def admit(conn: Connection, merchant_id: str, terminal_id: str | None, method: str) -> Admission:
    """Raise unless the merchant may take a provider payment (``merchant_suspended``,
    ``merchant_not_active``, 404); its time zone and the limits on ``method`` for it and the terminal."""
    row = conn.execute(
        _ADMIT, {"b_merchant": merchant_id, "b_terminal": terminal_id, "b_method": method}
    ).first()
    if row is None:
        raise not_found("merchant", merchant_id)
    lifecycle.refuse_unless_active(row)
    rules = [_rule(MERCHANT_SCOPE, row.m_single, row.m_daily, row.m_monthly)]
    if terminal_id:
        rules.append(_rule(terminal_id, row.t_single, row.t_daily, row.t_monthly))
    return Admission(row.timezone, tuple(r for r in rules if r is not None))


_MAX_COUNTERS = 4  # daily and monthly, merchant and terminal


def _move_sqlite(n: int) -> Any:
    """UPDATE … RETURNING of ``n`` counters at once, each row checked against its own limit."""
    conds = [
        and_(
            limit_usage.c.scope == bindparam(f"b_s{i}"),
            limit_usage.c.period == bindparam(f"b_p{i}"),
            limit_usage.c.used + bindparam("b_amount", type_=MONEY) <= bindparam(f"b_l{i}", type_=MONEY),
        )
        for i in range(n)
    ]
    return (
        update(limit_usage)
        .where(
            limit_usage.c.merchant_id == bindparam("b_merchant"),
            limit_usage.c.method == bindparam("b_method"),
            or_(*conds),
        )
        .values(used=limit_usage.c.used + bindparam("b_amount", type_=MONEY))
        .returning(limit_usage.c.scope, limit_usage.c.period)
    )


def _move_pg(n: int) -> Any:
    """The same move and the hold's insert in one statement: the hold is written only when every
    counter moved (a data-modifying CTE sees the UPDATE's RETURNING rows)."""
    conds = " OR ".join(
        f"(scope = :b_s{i} AND period = :b_p{i} AND used + :b_amount <= :b_l{i})" for i in range(n)
    )
    return text(
        "WITH moved AS (UPDATE limit_usage SET used = used + :b_amount"
        f" WHERE merchant_id = :b_merchant AND method = :b_method AND ({conds}) RETURNING scope, period),"
        " hold AS (INSERT INTO limit_holds (merchant_id, payment_id, method, scopes, day, month, amount,"
        " returned) SELECT :b_merchant, :b_payment, :b_method, :b_scopes, :b_day, :b_month, :b_amount, 0"
        " WHERE (SELECT count(*) FROM moved) = :b_n RETURNING 1)"
        " SELECT scope, period FROM moved"
    ).bindparams(
        bindparam("b_amount", type_=MONEY),
        bindparam("b_n", type_=Integer),
        *(bindparam(f"b_l{i}", type_=MONEY) for i in range(n)),
    )


_MOVE_SQLITE = {n: _move_sqlite(n) for n in range(1, _MAX_COUNTERS + 1)}
_MOVE_PG = {n: _move_pg(n) for n in range(1, _MAX_COUNTERS + 1)}
_INSERT_HOLD = insert(limit_holds).values(
    merchant_id=bindparam("b_merchant"),
    payment_id=bindparam("b_payment"),
    method=bindparam("b_method"),
    scopes=bindparam("b_scopes"),
    day=bindparam("b_day"),
    month=bindparam("b_month"),
    amount=bindparam("b_amount", type_=MONEY),
    returned=0,
)


def reserve(
    db: Database,
    conn: Connection,
    deps: Deps,
    admission: Admission,
    *,
    merchant_id: str,
    method: str,
    payment_id: str,
    amount: int,
) -> None:
    """Check and reserve ``amount`` against every limit of ``admission`` (the merchant's and the
    terminal's for ``method``); raise ``limit_exceeded`` (the caller's transaction then rolls back every
    counter it moved). With no limits this costs nothing. With limits: one statement on PostgreSQL (the
    counters and the hold), two on SQLite — unless a counter is missing (the period's first payment)."""
    if not admission.rules:
        return
    day, month = period_keys(deps.clock.now(), admission.timezone)
    # (scope, period, limit, kind, tag) of every counter this payment moves
    counters: list[tuple[str, str, int, str, str]] = []
    for rule in admission.rules:  # merchant first, then terminal
        breach = single_breach(_label(rule.scope), method, amount, rule.single_max)
        if breach is not None:
            raise limit_exceeded(breach)
        if rule.daily_max is not None:
            counters.append((rule.scope, day, rule.daily_max, "daily", "d"))
        if rule.monthly_max is not None:
            counters.append((rule.scope, month, rule.monthly_max, "monthly", "m"))
    if not counters:
        return
    params: dict[str, Any] = {
        "b_merchant": merchant_id,
        "b_method": method,
        "b_amount": amount,
        "b_payment": payment_id,
        "b_scopes": " ".join(f"{tag}:{scope}" for scope, _p, _l, _k, tag in counters),
        "b_day": day,
        "b_month": month,
        "b_n": len(counters),
    }
    for i, (scope, period, limit, _kind, _tag) in enumerate(counters):
        params[f"b_s{i}"], params[f"b_p{i}"], params[f"b_l{i}"] = scope, period, limit
    statements = _MOVE_PG if db.is_postgres else _MOVE_SQLITE
    moved = {(r.scope, r.period) for r in conn.execute(statements[len(counters)], params)}
    if db.is_postgres and len(moved) == len(counters):
        return  # the hold was written by the same statement
    for scope, period, limit, kind, _tag in counters:
        if (scope, period) in moved:
            continue
        if not _bump(conn, merchant_id, scope, method, period, amount, limit):
            used = _usage(conn, merchant_id, scope, method, period)
            raise limit_exceeded(LimitBreach(_label(scope), method, kind, limit, max(limit - used, 0)))
    conn.execute(_INSERT_HOLD, params)


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
