"""Read models for the shop manager (back office): the day's figures, order search, till sync state.

Every function takes the caller's ``merchant_id`` and reads only that merchant's rows; none writes.
Amounts are minor units. ``today`` is set-based (a handful of grouped queries over the day's window, on
the ``(merchant_id, created_at)`` indexes), so its cost follows the day's volume, not the history.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import TypedDict

from sqlalchemy import Connection, and_, case, func, select

from tillit.adapters.db.schema import exceptions, orders, payments, refunds, shifts, terminals
from tillit.domain.errors import not_found
from tillit.domain.shifts import GENESIS, chain_hash
from tillit.kernel.context import iso
from tillit.sales.shifts import view as shift_view
from tillit.sales.views import ShiftView

TAKEN = ("captured", "refunded")  # payments whose money was taken (a refund does not undo the take)
IN_FLIGHT = ("pending", "unknown", "reversing")
OPEN_EXCEPTIONS_SHOWN = 20
MAX_SEARCH_RESULTS = 100


class MethodTotal(TypedDict):
    method: str
    count: int
    amount: int


class RefundTotal(TypedDict):
    status: str
    count: int
    amount: int


class OpenException(TypedDict):
    id: str
    kind: str
    order_id: str | None
    amount: int | None
    recommended_action: str
    created_at: str


class TillState(TypedDict):
    """What the server has heard from one till: today's orders, the last one, what is still unsettled."""

    terminal_id: str
    name: str
    orders_today: int
    last_order_at: str | None
    open_orders: int
    payments_in_flight: int
    last_z_number: int | None
    last_z_at: str | None
    state: str  # "active" (sent orders today), "idle" (nothing today), "attention" (unsettled payments)


class TodayView(TypedDict):
    start: str
    end: str
    sales_count: int
    sales_amount: int
    open_orders: int
    cancelled_orders: int
    payments_by_method: list[MethodTotal]
    refunds: list[RefundTotal]
    refunded_amount: int
    open_exceptions: int
    exceptions: list[OpenException]
    tills: list[TillState]


def today(conn: Connection, merchant_id: str, start: datetime, end: datetime) -> TodayView:
    """The figures of ``[start, end)`` (aware datetimes): sales, payments by method, refunds, exceptions,
    and each till's sync state."""
    window = and_(
        orders.c.merchant_id == merchant_id, orders.c.created_at >= start, orders.c.created_at < end
    )
    sold = conn.execute(
        select(
            func.count().filter(orders.c.status.in_(("paid", "refunded"))),
            func.coalesce(func.sum(case((orders.c.status.in_(("paid", "refunded")), orders.c.total))), 0),
            func.count().filter(orders.c.status == "open"),
            func.count().filter(orders.c.status == "cancelled"),
        ).where(window)
    ).one()
    by_method = [
        MethodTotal(method=r.method, count=int(r.n), amount=int(r.amount))
        for r in conn.execute(
            select(payments.c.method, func.count().label("n"), func.sum(payments.c.amount).label("amount"))
            .where(
                payments.c.merchant_id == merchant_id,
                payments.c.created_at >= start,
                payments.c.created_at < end,
                payments.c.status.in_(TAKEN),
            )
            .group_by(payments.c.method)
            .order_by(payments.c.method)
        )
    ]
    refund_rows = [
        RefundTotal(status=r.status, count=int(r.n), amount=int(r.amount))
        for r in conn.execute(
            select(refunds.c.status, func.count().label("n"), func.sum(refunds.c.amount).label("amount"))
            .where(
                refunds.c.merchant_id == merchant_id,
                refunds.c.created_at >= start,
                refunds.c.created_at < end,
            )
            .group_by(refunds.c.status)
            .order_by(refunds.c.status)
        )
    ]
    open_scope = and_(exceptions.c.merchant_id == merchant_id, exceptions.c.status == "open")
    open_count = int(conn.execute(select(func.count()).where(open_scope)).scalar_one())
    shown = [
        OpenException(
            id=e.id,
            kind=e.kind,
            order_id=e.order_id,
            amount=e.amount,
            recommended_action=e.recommended_action,
            created_at=iso(e.created_at),
        )
        for e in conn.execute(
            select(exceptions)
            .where(open_scope)
            .order_by(exceptions.c.created_at)
            .limit(OPEN_EXCEPTIONS_SHOWN)
        )
    ]
    return TodayView(
        start=iso(start),
        end=iso(end),
        sales_count=int(sold[0]),
        sales_amount=int(sold[1]),
        open_orders=int(sold[2]),
        cancelled_orders=int(sold[3]),
        payments_by_method=by_method,
        refunds=refund_rows,
        refunded_amount=sum(r["amount"] for r in refund_rows if r["status"] == "succeeded"),
        open_exceptions=open_count,
        exceptions=shown,
        tills=till_states(conn, merchant_id, start, end),
    )


def till_states(conn: Connection, merchant_id: str, start: datetime, end: datetime) -> list[TillState]:
    """Each terminal of the merchant with what reached the server from it in ``[start, end)``."""
    day = (
        select(
            orders.c.terminal_id,
            func.count().label("n"),
            func.max(orders.c.created_at).label("last_at"),
            func.count().filter(orders.c.status == "open").label("open_n"),
        )
        .where(orders.c.merchant_id == merchant_id, orders.c.created_at >= start, orders.c.created_at < end)
        .group_by(orders.c.terminal_id)
    )
    per_till = {r.terminal_id: r for r in conn.execute(day)}
    in_flight = {
        r.terminal_id: int(r.n)
        for r in conn.execute(
            select(payments.c.terminal_id, func.count().label("n"))
            .where(payments.c.merchant_id == merchant_id, payments.c.status.in_(IN_FLIGHT))
            .group_by(payments.c.terminal_id)
        )
    }
    last_z = {
        r.terminal_id: r
        for r in conn.execute(
            select(
                shifts.c.terminal_id,
                func.max(shifts.c.number).label("number"),
                func.max(shifts.c.closed_at).label("closed_at"),
            )
            .where(shifts.c.merchant_id == merchant_id, shifts.c.status == "closed")
            .group_by(shifts.c.terminal_id)
        )
    }
    states: list[TillState] = []
    for t in conn.execute(
        select(terminals.c.id, terminals.c.name)
        .where(terminals.c.merchant_id == merchant_id)
        .order_by(terminals.c.name, terminals.c.id)
    ):
        day_row = per_till.get(t.id)
        z = last_z.get(t.id)
        flying = in_flight.get(t.id, 0)
        states.append(
            TillState(
                terminal_id=t.id,
                name=t.name,
                orders_today=int(day_row.n) if day_row else 0,
                last_order_at=iso(day_row.last_at) if day_row else None,
                open_orders=int(day_row.open_n) if day_row else 0,
                payments_in_flight=flying,
                last_z_number=int(z.number) if z else None,
                last_z_at=iso(z.closed_at) if z else None,
                state="attention" if flying else ("active" if day_row else "idle"),
            )
        )
    return states


@dataclass(frozen=True)
class OrderSearch:
    """Order search criteria; every field is optional and they combine with AND."""

    number: int | None = None
    amount: int | None = None  # the order total, minor units
    since: datetime | None = None
    until: datetime | None = None
    provider_ref: str | None = None  # the provider's transaction id of one of its payments
    code_last4: str | None = None  # last 4 digits of the customer's payment code
    limit: int = 50


class OrderHit(TypedDict):
    id: str
    number: int
    status: str
    total: int
    paid_amount: int
    refunded_amount: int
    terminal_id: str | None
    created_at: str


def search_orders(conn: Connection, merchant_id: str, criteria: OrderSearch) -> list[OrderHit]:
    """Orders matching ``criteria``, newest first, at most ``min(limit, MAX_SEARCH_RESULTS)``."""
    query = select(orders).where(orders.c.merchant_id == merchant_id)
    if criteria.number is not None:
        query = query.where(orders.c.number == criteria.number)
    if criteria.amount is not None:
        query = query.where(orders.c.total == criteria.amount)
    if criteria.since is not None:
        query = query.where(orders.c.created_at >= criteria.since)
    if criteria.until is not None:
        query = query.where(orders.c.created_at < criteria.until)
    if criteria.provider_ref or criteria.code_last4:
        pay = select(payments.c.order_id).where(payments.c.merchant_id == merchant_id)
        if criteria.provider_ref:
            pay = pay.where(payments.c.provider_ref == criteria.provider_ref)
        if criteria.code_last4:
            pay = pay.where(payments.c.payment_code_masked.like(f"%{criteria.code_last4}"))
        refund_ref = select(refunds.c.order_id).where(
            refunds.c.merchant_id == merchant_id, refunds.c.provider_ref == criteria.provider_ref
        )
        matched = pay if not criteria.provider_ref or criteria.code_last4 else pay.union(refund_ref)
        query = query.where(orders.c.id.in_(matched))
    query = query.order_by(orders.c.created_at.desc(), orders.c.id.desc()).limit(
        max(1, min(criteria.limit, MAX_SEARCH_RESULTS))
    )
    return [
        OrderHit(
            id=r.id,
            number=r.number,
            status=r.status,
            total=r.total,
            paid_amount=r.paid_amount,
            refunded_amount=r.refunded_amount,
            terminal_id=r.terminal_id,
            created_at=iso(r.created_at),
        )
        for r in conn.execute(query)
    ]


class ChainLink(TypedDict):
    """One Z report as the chain check sees it."""

    id: str
    number: int
    closed_at: str | None
    expected_cash: int | None
    counted_cash: int | None
    report_hash: str | None
    ok: bool
    problem: str | None  # "hash" (report altered), "link" (prev_hash is not the previous report's), "gap"


class ChainCheck(TypedDict):
    terminal_id: str
    name: str
    reports: int
    ok: bool
    links: list[ChainLink]


def verify_chains(conn: Connection, merchant_id: str, terminal_id: str | None = None) -> list[ChainCheck]:
    """Re-verify each terminal's Z-report chain from the stored reports (domain/shifts.chain_hash):
    every report's hash is recomputed, and each must link to the previous report's hash (number n-1)."""
    query = select(terminals.c.id, terminals.c.name).where(terminals.c.merchant_id == merchant_id)
    if terminal_id is not None:
        query = query.where(terminals.c.id == terminal_id)
    checks: list[ChainCheck] = []
    tills = list(conn.execute(query.order_by(terminals.c.name, terminals.c.id)))
    if terminal_id is not None and not tills:
        raise not_found("terminal", terminal_id)  # another merchant's terminal is an unused id here
    for t in tills:
        links: list[ChainLink] = []
        prev_hash, prev_number = GENESIS, 0
        for s in conn.execute(
            select(shifts)
            .where(
                shifts.c.merchant_id == merchant_id, shifts.c.terminal_id == t.id, shifts.c.status == "closed"
            )
            .order_by(shifts.c.number)
        ):
            problem: str | None = None
            if s.number != prev_number + 1:
                problem = "gap"
            elif s.prev_hash != prev_hash:
                problem = "link"
            elif s.report is None or _rehash(s.prev_hash, s.report) != s.report_hash:
                problem = "hash"
            links.append(
                ChainLink(
                    id=s.id,
                    number=s.number,
                    closed_at=iso(s.closed_at),
                    expected_cash=s.expected_cash,
                    counted_cash=s.counted_cash,
                    report_hash=s.report_hash,
                    ok=problem is None,
                    problem=problem,
                )
            )
            prev_hash, prev_number = s.report_hash or "", s.number
        checks.append(
            ChainCheck(
                terminal_id=t.id,
                name=t.name,
                reports=len(links),
                ok=all(link["ok"] for link in links),
                links=links,
            )
        )
    return checks


def _rehash(prev_hash: str, report_json: str) -> str:
    # The stored report is the canonical JSON that was hashed; decoding and re-encoding it canonically
    # gives the same text, so an edit to any field changes the hash.
    return chain_hash(prev_hash, json.loads(report_json))


def get_shift(conn: Connection, merchant_id: str, shift_id: str) -> ShiftView:
    """One of the merchant's shifts with its Z report; another merchant's id is ``shift_not_found``."""
    row = conn.execute(
        select(shifts).where(shifts.c.merchant_id == merchant_id, shifts.c.id == shift_id)
    ).first()
    if row is None:
        raise not_found("shift", shift_id)
    return shift_view(row)


class TillName(TypedDict):
    terminal_id: str
    name: str


def till_names(conn: Connection, merchant_id: str) -> list[TillName]:
    return [
        TillName(terminal_id=t.id, name=t.name)
        for t in conn.execute(
            select(terminals.c.id, terminals.c.name)
            .where(terminals.c.merchant_id == merchant_id)
            .order_by(terminals.c.name, terminals.c.id)
        )
    ]
