"""The daily settlement check: a ``settlement_daily`` job per merchant, run by the resolver loop at
11:00 China time (after the providers' statements of the day are ready, operations.md §1.1, §2.1),
recomputes the last ``LOOKBACK_DAYS`` trade days and opens one exception per merchant-day that ended
``short``, ``missing`` or ``duplicate`` (a ``late`` day is shown, not escalated, until its grace ends).
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta, timezone
from typing import Any

import structlog
from sqlalchemy import Connection, select

from tillit.adapters.db.engine import Database
from tillit.adapters.db.schema import provider_accounts
from tillit.exceptions import cases as exc_svc
from tillit.kernel import jobs
from tillit.kernel.context import Deps
from tillit.settlement import service

log = structlog.get_logger("tillit.settlement.daily")

CHINA_TZ = timezone(timedelta(hours=8), name="Asia/Shanghai")
KIND = "settlement_daily"
RUN_AT = time(11, 0)
ESCALATE = ("short", "missing", "duplicate")
ACTOR = "system:daily-settlement"


def next_due(now: datetime) -> datetime:
    """The next 11:00 China time after ``now``."""
    local = now.astimezone(CHINA_TZ)
    due = datetime.combine(local.date(), RUN_AT, tzinfo=CHINA_TZ)
    if local >= due:
        due += timedelta(days=1)
    return due.astimezone(UTC)


def ensure_scheduled(conn: Connection, deps: Deps, merchant_id: str) -> str:
    """One pending daily settlement job for the merchant (hooked to a provider account connecting)."""
    return jobs.schedule(conn, deps, kind=KIND, merchant_id=merchant_id, due_at=next_due(deps.clock.now()))


def ensure_all(db: Database, deps: Deps) -> int:
    with db.transaction() as conn:
        merchants = [r[0] for r in conn.execute(select(provider_accounts.c.merchant_id).distinct())]
        for merchant_id in merchants:
            ensure_scheduled(conn, deps, merchant_id)
    return len(merchants)


def run_daily(db: Database, deps: Deps, cfg: Any, job: jobs.Job) -> None:
    """The job: recompute the merchant's recent days, escalate the bad ones, schedule tomorrow's run."""
    today = deps.clock.now().astimezone(CHINA_TZ).date()
    first = today - timedelta(days=service.LOOKBACK_DAYS)
    days = service.run(db, deps, merchant_id=job.merchant_id, first=first, last=today - timedelta(days=1))
    bad = [d for d in days if d["status"] in ESCALATE]
    with db.transaction() as conn:
        for day in bad:
            exc_svc.open_exception(
                conn,
                deps,
                kind="settlement_" + day["status"],
                merchant_id=job.merchant_id,
                provider=day["provider"],
                provider_ref=f"settlement:{day['trade_day']}",
                details={
                    "trade_day": day["trade_day"],
                    "due_day": day["due_day"],
                    "expected": day["expected"],
                    "received": day["received"],
                    "age_days": day["age_days"],
                    "next_action": day["next_action"],
                },
            )
        jobs.finish(conn, deps, job.id)
        ensure_scheduled(conn, deps, job.merchant_id)
    log.info("settlement_checked", merchant=job.merchant_id, days=len(days), escalated=len(bad))
