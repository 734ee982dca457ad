"""The daily settlement check: a ``settlement_daily`` job per merchant, run by the resolver loop at
11:00 China time (after the providers' statements of the day are ready, operations.md §1.1, §2.1),
first fetches each connected account's statement of the last ``FETCH_DAYS`` days that has none yet
(``settlement/fetch.py``: WeChat fund-flow bill, Alipay account statement, over their own protocols),
then recomputes the last ``LOOKBACK_DAYS`` trade days and opens one exception per merchant-day that ended
``short``, ``missing`` or ``duplicate`` (a ``late`` day is shown, not escalated, until its grace ends).
A statement not generated yet (or a download that failed) is tried again ``RETRY`` later the same day
(until ``RETRY_UNTIL``), then by the next day's run; it is never an error by itself.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any

import structlog
from sqlalchemy import Connection, select

from tillit.adapters.db.engine import Database
from tillit.adapters.db.schema import provider_accounts, settlement_statements
from tillit.exceptions import cases as exc_svc
from tillit.kernel import jobs
from tillit.kernel.context import Deps
from tillit.settlement import fetch, service

log = structlog.get_logger("tillit.settlement.daily")

CHINA_TZ = timezone(timedelta(hours=8), name="Asia/Shanghai")
KIND = "settlement_daily"
RUN_AT = time(11, 0)
ESCALATE = ("short", "missing", "duplicate")
ACTOR = "system:daily-settlement"
FETCH_DAYS = 3
RETRY = timedelta(hours=1)
RETRY_UNTIL = time(22, 0)


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


def _fetched(conn: Connection, merchant_id: str, names: list[str]) -> set[str]:
    rows = conn.execute(
        select(settlement_statements.c.filename).where(
            settlement_statements.c.merchant_id == merchant_id, settlement_statements.c.filename.in_(names)
        )
    )
    return {str(r[0]) for r in rows}


def fetch_recent(db: Database, deps: Deps, directory: Any, merchant_id: str, today: date) -> list[str]:
    """Fetch the statements of the last ``FETCH_DAYS`` days not fetched yet; returns what must be
    tried again ("wechat 2026-11-20: not_ready BILL_CREATING")."""
    days = [today - timedelta(days=n) for n in range(FETCH_DAYS, 0, -1)]
    providers = fetch.connected_providers(db, merchant_id)
    wanted = {(p, d): f"{fetch.SOURCE_OF[p]}_{d:%Y%m%d}" for p in providers for d in days}
    with db.read() as conn:
        done = _fetched(conn, merchant_id, sorted(set(wanted.values())))
    again: list[str] = []
    for (provider, day), name in sorted(wanted.items()):
        if name in done:
            continue
        got = fetch.fetch_day(
            db, deps, directory, merchant_id=merchant_id, provider=provider, day=day, actor=ACTOR
        )
        if got.outcome in ("not_ready", "failed"):
            again.append(f"{provider} {day.isoformat()}: {got.outcome} {got.code or ''}".strip())
    return again


def run_daily(db: Database, deps: Deps, cfg: Any, job: jobs.Job) -> None:
    """The job: fetch the recent statements, recompute the merchant's recent days, escalate the bad
    ones, schedule the next run (in an hour while a statement is not there yet, else tomorrow)."""
    now = deps.clock.now()
    today = now.astimezone(CHINA_TZ).date()
    directory = getattr(cfg, "providers", None)
    again = fetch_recent(db, deps, directory, job.merchant_id, today) if directory is not None else []
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
        local = now.astimezone(CHINA_TZ)
        if again and local.time() < RETRY_UNTIL:
            jobs.retry_later(conn, deps, job.id, now + RETRY, "; ".join(again)[:500])
        else:
            jobs.finish(conn, deps, job.id)
            ensure_scheduled(conn, deps, job.merchant_id)
    log.info(
        "settlement_checked", merchant=job.merchant_id, days=len(days), escalated=len(bad), refetch=len(again)
    )
