"""The resolver's fulfilment job (kind ``fulfilment_timers``, one per merchant, due at the merchant's
earliest timer): open an exception for an order not shipped within the SLA, remind the customer before
the auto-confirm, auto-confirm when the period is over. Each fulfilment is handled in its own
transaction with the same compare-and-set moves as the API, so a customer confirming at the same
moment wins or loses cleanly; the job is re-planned for the next timer when it is done.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, and_, or_, select, update

from tillit.adapters.db.engine import Database
from tillit.adapters.db.schema import fulfilments, orders
from tillit.domain import fulfilment as rules
from tillit.exceptions import cases
from tillit.fulfilment import keys, service
from tillit.fulfilment.links import LinkSigner
from tillit.kernel import jobs
from tillit.kernel.context import Deps

BATCH = 200
TIMER_JOB = service.TIMER_JOB
SLA_EXCEPTION = "fulfilment_sla_missed"


def run_job(db: Database, deps: Deps, _cfg: Any, job: jobs.Job) -> None:
    """The job handler for ``payments.engine.register_job_handler`` (wired in bootstrap.wire_areas)."""
    run_timers(db, deps, keys.signer_for(db, deps), job.merchant_id)
    with db.transaction() as conn:  # this job, re-planned for the next timer (or closed)
        service.reschedule(conn, deps, job.merchant_id)


def _due(conn: Connection, merchant_id: str, now: Any) -> list[Any]:
    active = sorted(rules.AUTO_CONFIRM_FROM)
    return list(
        conn.execute(
            select(fulfilments.c.id)
            .where(
                fulfilments.c.merchant_id == merchant_id,
                or_(
                    and_(
                        fulfilments.c.status.in_(sorted(rules.SLA_RUNS_IN)),
                        fulfilments.c.sla_exception_id.is_(None),
                        fulfilments.c.ship_due_at <= now,
                    ),
                    and_(
                        fulfilments.c.status.in_(active),
                        fulfilments.c.reminded_at.is_(None),
                        fulfilments.c.remind_at <= now,
                    ),
                    and_(fulfilments.c.status.in_(active), fulfilments.c.confirm_due_at <= now),
                ),
            )
            .order_by(fulfilments.c.id)
            .limit(BATCH)
        )
    )


def run_timers(db: Database, deps: Deps, signer: LinkSigner, merchant_id: str) -> int:
    """Act on every due timer of ``merchant_id``; returns how many fulfilments were handled."""
    now = deps.clock.now()
    with db.read() as conn:
        due = _due(conn, merchant_id, now)
    for head in due:
        with db.transaction() as conn:
            _one(db, conn, deps, signer, merchant_id, head.id)
    return len(due)


def _one(db: Database, conn: Connection, deps: Deps, signer: LinkSigner, merchant_id: str, fid: str) -> None:
    row, order = service.lock(db, conn, merchant_id, fid)
    now = deps.clock.now()
    sla_running = row.status in rules.SLA_RUNS_IN and row.sla_exception_id is None
    if sla_running and row.ship_due_at is not None and row.ship_due_at <= now:
        _sla_missed(conn, deps, signer, row, order)
        return
    if row.status not in rules.AUTO_CONFIRM_FROM:
        return
    if row.confirm_due_at is not None and row.confirm_due_at <= now:
        service.confirm(conn, deps, signer, row, "auto", service.SYSTEM)
        return
    if row.reminded_at is None and row.remind_at is not None and row.remind_at <= now:
        conn.execute(
            update(fulfilments)
            .where(fulfilments.c.merchant_id == merchant_id, fulfilments.c.id == fid)
            .values(reminded_at=now, updated_at=now, version=fulfilments.c.version + 1)
        )
        service.tell(conn, deps, signer, service.row_of(conn, merchant_id, fid), "reminder")


def _sla_missed(conn: Connection, deps: Deps, signer: LinkSigner, row: Any, order: Any) -> None:
    """Not shipped (or ready) in time. An order cancelled at the till meanwhile cancels its fulfilment;
    otherwise a person must act: an exception names the order and how late it is."""
    if order.status == "cancelled":
        service.move(
            conn,
            deps,
            signer,
            row,
            "cancelled",
            service.SYSTEM,
            reason="order_cancelled",
            values={"resolution": "cancel", "ship_due_at": None},
        )
        return
    exc_id = cases.open_exception(
        conn,
        deps,
        kind=SLA_EXCEPTION,
        merchant_id=row.merchant_id,
        order_id=row.order_id,
        amount=int(
            conn.execute(
                select(orders.c.total).where(
                    orders.c.merchant_id == row.merchant_id, orders.c.id == row.order_id
                )
            ).scalar_one()
        ),
        details={"fulfilment_id": row.id, "kind": row.kind, "ship_due_at": row.ship_due_at.isoformat()},
        dedupe_by_order=True,
    )
    conn.execute(
        update(fulfilments)
        .where(fulfilments.c.merchant_id == row.merchant_id, fulfilments.c.id == row.id)
        .values(sla_exception_id=exc_id, updated_at=deps.clock.now(), version=fulfilments.c.version + 1)
    )
