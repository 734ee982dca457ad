"""Due-dated recovery work, shared safely by any number of worker processes.

Claiming takes a lease: on PostgreSQL with ``FOR UPDATE SKIP LOCKED`` (two workers never claim the
same job at once), on SQLite inside the single ``BEGIN IMMEDIATE`` writer. A worker that dies leaves
its lease to expire and another takes the job over; every job's provider call is safe to repeat.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import Connection, and_, insert, or_, select, update

from tillit.adapters.db.engine import Database
from tillit.adapters.db.schema import jobs
from tillit.kernel.context import Deps

LEASE = timedelta(seconds=120)
MAX_ERROR = 500


@dataclass(frozen=True, slots=True)
class Job:
    id: str
    kind: str
    merchant_id: str
    payment_id: str | None
    refund_id: str | None
    exception_id: str | None
    attempts: int
    created_at: datetime
    request_id: str | None = None  # the request that scheduled it (its logs carry it)
    last_error: str | None = None  # what the previous run left (retry_later's ``error``)


def schedule(
    conn: Connection,
    deps: Deps,
    *,
    kind: str,
    merchant_id: str,
    due_at: datetime,
    payment_id: str | None = None,
    refund_id: str | None = None,
    exception_id: str | None = None,
) -> str:
    """Make sure one pending job of ``kind`` exists for the object, due no later than ``due_at``.

    A new job remembers the request id bound in the log context (monitoring/logs.py), if any."""
    now = deps.clock.now()
    existing = conn.execute(
        select(jobs.c.id, jobs.c.due_at).where(
            jobs.c.kind == kind,
            jobs.c.state == "pending",
            jobs.c.merchant_id == merchant_id,
            jobs.c.payment_id == payment_id if payment_id else jobs.c.payment_id.is_(None),
            jobs.c.refund_id == refund_id if refund_id else jobs.c.refund_id.is_(None),
            jobs.c.exception_id == exception_id if exception_id else jobs.c.exception_id.is_(None),
        )
    ).first()
    if existing is not None:
        conn.execute(
            update(jobs)
            .where(jobs.c.id == existing.id)
            .values(due_at=due_at, lease_until=None, updated_at=now)
        )
        return str(existing.id)
    job_id = deps.ids.new()
    conn.execute(
        insert(jobs).values(
            id=job_id,
            kind=kind,
            merchant_id=merchant_id,
            payment_id=payment_id,
            refund_id=refund_id,
            exception_id=exception_id,
            state="pending",
            due_at=due_at,
            attempts=0,
            request_id=_request_id(),
            created_at=now,
            updated_at=now,
        )
    )
    return job_id


def _request_id() -> str | None:
    value = structlog.contextvars.get_contextvars().get("request_id")
    return str(value)[:64] if value else None


def claim(db: Database, deps: Deps, worker: str, limit: int = 20) -> list[Job]:
    """Lease up to ``limit`` due jobs for ``worker``."""
    now = deps.clock.now()
    with db.transaction() as conn:
        query = (
            select(jobs)
            .where(
                jobs.c.state == "pending",
                jobs.c.due_at <= now,
                or_(jobs.c.lease_until.is_(None), jobs.c.lease_until < now),
            )
            .order_by(jobs.c.due_at)
            .limit(limit)
        )
        if db.is_postgres:
            query = query.with_for_update(skip_locked=True)
        rows = list(conn.execute(query))
        if not rows:
            return []
        conn.execute(
            update(jobs)
            .where(jobs.c.id.in_([r.id for r in rows]))
            .values(
                lease_until=now + LEASE, leased_by=worker[:64], attempts=jobs.c.attempts + 1, updated_at=now
            )
        )
    return [
        Job(
            r.id,
            r.kind,
            r.merchant_id,
            r.payment_id,
            r.refund_id,
            r.exception_id,
            r.attempts + 1,
            r.created_at,
            r.request_id,
            r.last_error,
        )
        for r in rows
    ]


def finish(conn: Connection, deps: Deps, job_id: str) -> None:
    conn.execute(
        update(jobs)
        .where(jobs.c.id == job_id)
        .values(state="done", lease_until=None, updated_at=deps.clock.now())
    )


def finish_for(
    conn: Connection,
    deps: Deps,
    *,
    kind: str,
    merchant_id: str,
    payment_id: str | None = None,
    refund_id: str | None = None,
) -> None:
    """Close the pending job of ``kind`` for ``merchant_id``'s object settled by another path (API,
    notification)."""
    cond = [jobs.c.kind == kind, jobs.c.state == "pending", jobs.c.merchant_id == merchant_id]
    cond.append(jobs.c.payment_id == payment_id if payment_id else jobs.c.payment_id.is_(None))
    if refund_id:
        cond.append(jobs.c.refund_id == refund_id)
    conn.execute(
        update(jobs).where(and_(*cond)).values(state="done", lease_until=None, updated_at=deps.clock.now())
    )


def retry_later(
    conn: Connection, deps: Deps, job_id: str, due_at: datetime, error: str | None = None
) -> None:
    values: dict[str, Any] = {"due_at": due_at, "lease_until": None, "updated_at": deps.clock.now()}
    if error is not None:
        values["last_error"] = error[:MAX_ERROR]
    conn.execute(update(jobs).where(jobs.c.id == job_id).values(**values))


def pending_count(conn: Connection) -> int:
    from sqlalchemy import func

    return int(
        conn.execute(select(func.count()).select_from(jobs).where(jobs.c.state == "pending")).scalar_one()
    )
