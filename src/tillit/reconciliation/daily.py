"""The daily fetch: a ``reconcile_daily`` job per merchant, run by the resolver loop, fetches each
provider account's bill for yesterday (China time) after 10:00 and reconciles it.

Bills exist from about 09:00 the next day (providers.md §1.6, §2.7); the job runs at 10:05 provider
time, catches up at most ``CATCH_UP_DAYS`` missed days, and retries hourly while a bill is not there
yet or cannot be fetched (an exception is opened after ``ALERT_AFTER`` failed attempts).
"""

from __future__ import annotations

import tempfile
from datetime import UTC, date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import Connection, func, insert, select

from tillit.adapters.db.engine import Database
from tillit.adapters.db.schema import jobs as jobs_table
from tillit.adapters.db.schema import payments, provider_accounts, recon_runs
from tillit.adapters.providers.http import BillDownloadError
from tillit.domain.errors import DomainError
from tillit.exceptions import cases as exc_svc
from tillit.kernel import jobs
from tillit.kernel.context import Deps
from tillit.reconciliation import formats, service

log = structlog.get_logger("tillit.reconciliation.daily")

CHINA_TZ = timezone(timedelta(hours=8), name="Asia/Shanghai")
KIND = "reconcile_daily"
READY_AT = time(10, 5)  # bills are generated from 09:00 and fetched after 10:00 (provider time)
RETRY = timedelta(hours=1)
NO_BILL_WAIT_UNTIL = time(18, 0)  # WeChat's "No Bill Exist" with local trades: retry until then
CATCH_UP_DAYS = 7
ALERT_AFTER = 3
ACTOR = "system:daily-reconciliation"


def next_due(now: datetime) -> datetime:
    """The next 10:05 China time at or after ``now``."""
    local = now.astimezone(CHINA_TZ)
    due = datetime.combine(local.date(), READY_AT, tzinfo=CHINA_TZ)
    if local > due:
        due += timedelta(days=1)
    return due.astimezone(UTC)


def ensure_scheduled(conn: Connection, deps: Deps, merchant_id: str) -> str:
    """Make sure the merchant has one pending daily job (due at the next 10:05 China time)."""
    row = conn.execute(
        select(jobs_table.c.id).where(
            jobs_table.c.kind == KIND,
            jobs_table.c.merchant_id == merchant_id,
            jobs_table.c.state == "pending",
        )
    ).first()
    if row is not None:
        return str(row.id)
    now = deps.clock.now()
    job_id = deps.ids.new()
    conn.execute(
        insert(jobs_table).values(
            id=job_id,
            kind=KIND,
            merchant_id=merchant_id,
            state="pending",
            due_at=next_due(now),
            attempts=0,
            created_at=now,
            updated_at=now,
        )
    )
    return job_id


def ensure_all(db: Database, deps: Deps) -> int:
    """One daily job for every merchant with a provider account (run when a worker starts)."""
    with db.transaction() as conn:
        merchants = [r[0] for r in conn.execute(select(provider_accounts.c.merchant_id).distinct())]
        for merchant_id in merchants:
            ensure_scheduled(conn, deps, merchant_id)
    return len(merchants)


def _fetched_days(conn: Connection, merchant_id: str, provider: str, since: date) -> set[date]:
    rows = conn.execute(
        select(recon_runs.c.bill_date).where(
            recon_runs.c.merchant_id == merchant_id,
            recon_runs.c.provider == provider,
            recon_runs.c.bill_date >= since,
        )
    )
    return {r[0] for r in rows}


def _has_local_trades(conn: Connection, merchant_id: str, provider: str, day: date) -> bool:
    start, end = formats.china_day_bounds(day)
    count = conn.execute(
        select(func.count())
        .select_from(payments)
        .where(
            payments.c.merchant_id == merchant_id,
            payments.c.provider == provider,
            payments.c.status.in_(("captured", "refunded")),
            payments.c.created_at >= start.replace(tzinfo=UTC),
            payments.c.created_at < end.replace(tzinfo=UTC),
        )
    ).scalar_one()
    return int(count) > 0


def run_daily(db: Database, deps: Deps, cfg: Any, job: jobs.Job) -> None:
    """The job: fetch and reconcile every account's missing days up to yesterday, then reschedule."""
    now = deps.clock.now()
    local = now.astimezone(CHINA_TZ)
    if local.time() < READY_AT:
        with db.transaction() as conn:
            jobs.retry_later(conn, deps, job.id, next_due(now), "bills not ready before 10:00")
        return
    yesterday = local.date() - timedelta(days=1)
    with db.read() as conn:
        accounts = [
            r[0]
            for r in conn.execute(
                select(provider_accounts.c.provider).where(provider_accounts.c.merchant_id == job.merchant_id)
            )
        ]
    pending: list[str] = []
    for provider in sorted(accounts):
        with db.read() as conn:
            done = _fetched_days(conn, job.merchant_id, provider, yesterday - timedelta(days=CATCH_UP_DAYS))
        first = max(done) + timedelta(days=1) if done else yesterday
        day = max(first, yesterday - timedelta(days=CATCH_UP_DAYS - 1))
        while day <= yesterday:
            if day not in done:
                problem = fetch_and_reconcile(db, deps, cfg, job.merchant_id, provider, day, job.attempts)
                if problem is not None:
                    pending.append(f"{provider} {day.isoformat()}: {problem}")
                    break
            day += timedelta(days=1)
    with db.transaction() as conn:
        if pending:
            jobs.retry_later(conn, deps, job.id, now + RETRY, "; ".join(pending))
        else:
            jobs.finish(conn, deps, job.id)
            ensure_scheduled(conn, deps, job.merchant_id)


def fetch_and_reconcile(
    db: Database, deps: Deps, cfg: Any, merchant_id: str, provider: str, day: date, attempts: int
) -> str | None:
    """One account and day. Returns None when done, else why it must be tried again later."""
    with db.read() as conn:
        adapter = cfg.providers.get(conn, merchant_id, provider)
    try:
        data = adapter.download_bill(day)
    except BillDownloadError as exc:
        return _failing(db, deps, merchant_id, provider, day, attempts, f"download failed: {exc.code}")
    if data is None:
        now_local = deps.clock.now().astimezone(CHINA_TZ)
        with db.read() as conn:
            trades = _has_local_trades(conn, merchant_id, provider, day)
        if provider == "alipay" or (
            trades
            and now_local < datetime.combine(day + timedelta(days=1), NO_BILL_WAIT_UNTIL, tzinfo=CHINA_TZ)
        ):
            return "no bill yet"
        service.record_no_bill(db, deps, merchant_id=merchant_id, provider=provider, day=day, actor=ACTOR)
        log.info("no_bill", merchant=merchant_id, provider=provider, day=day.isoformat())
        return None
    con = service.connect()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"{provider}_{day:%Y%m%d}.{'zip' if provider == 'alipay' else 'csv'}"
            path.write_bytes(data)
            try:
                bill = service.parse_bill(con, path, provider)
                outcome = service.import_bill(
                    db,
                    deps,
                    merchant_id=merchant_id,
                    bill=bill,
                    con=con,
                    source="fetch",
                    actor=ACTOR,
                    bill_date=day,
                )
            except DomainError as exc:
                return _failing(
                    db, deps, merchant_id, provider, day, ALERT_AFTER, f"{exc.code}: {exc.message}"
                )
    finally:
        con.close()
    log.info(
        "reconciled",
        merchant=merchant_id,
        provider=provider,
        day=day.isoformat(),
        lines=outcome.run["lines"],
        open=outcome.open_count,
    )
    return None


def _failing(
    db: Database, deps: Deps, merchant_id: str, provider: str, day: date, attempts: int, reason: str
) -> str:
    if attempts >= ALERT_AFTER:
        with db.transaction() as conn:
            exc_svc.open_exception(
                conn,
                deps,
                kind="bill_fetch_failing",
                merchant_id=merchant_id,
                provider=provider,
                provider_ref=f"bill:{day.isoformat()}",
                details={"bill_date": day.isoformat(), "reason": reason[:300], "attempts": attempts},
            )
    return reason
