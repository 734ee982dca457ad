"""Prometheus metrics: what the API process counts itself (requests by route template and status, their
latency) and what the database holds, read at scrape time (payments by provider and outcome, recovery
jobs due and late, per-till sync age, reconciliation results, open alerts): the database is the truth
for those, so every process answers the same and nothing is lost when a process restarts.

Several API processes (``tillit serve --workers N``): ``PROMETHEUS_MULTIPROC_DIR`` names a directory
the processes share; prometheus-client then keeps counters in per-process files and the scrape adds
them up (``MultiProcessCollector``). ``tillit serve`` sets it up (a fresh directory under the home).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from tillit.adapters.db.engine import Database
from tillit.adapters.db.schema import (
    alerts,
    jobs,
    orders,
    payments,
    recon_discrepancies,
    recon_runs,
    terminals,
    till_sync_reports,
)
from tillit.domain.clock import Clock

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: A pending job this long past its due time is late (the resolver polls every 0.25 s).
LATE_AFTER = timedelta(seconds=60)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

#: The process's own instruments, in their own registry (created once per process).
PROCESS = CollectorRegistry(auto_describe=True)
REQUESTS = Counter(
    "tillit_http_requests",
    "HTTP requests answered, by method, route template and status",
    ("method", "route", "status"),
    registry=PROCESS,
)
LATENCY = Histogram(
    "tillit_http_request_duration_seconds",
    "Time to answer an HTTP request, by method and route template",
    ("method", "route"),
    buckets=LATENCY_BUCKETS,
    registry=PROCESS,
)


_COUNTERS: dict[tuple[str, str, int], Any] = {}
_TIMERS: dict[tuple[str, str], Any] = {}


def observe(method: str, route: str, status: int, seconds: float) -> None:
    """Count and time one answered request. The labelled children are cached (route templates and
    statuses are few), which saves prometheus-client's locked lookup on every request."""
    counter = _COUNTERS.get((method, route, status))
    if counter is None:
        counter = _COUNTERS.setdefault((method, route, status), REQUESTS.labels(method, route, str(status)))
    timer = _TIMERS.get((method, route))
    if timer is None:
        timer = _TIMERS.setdefault((method, route), LATENCY.labels(method, route))
    counter.inc()
    timer.observe(seconds)


class DatabaseCollector(Collector):
    """Gauges read from the database when scraped (all merchants: /metrics is an operator view)."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self.db, self.clock = db, clock

    def collect(self) -> Iterator[Metric]:
        now = self.clock.now()
        pays = GaugeMetricFamily(
            "tillit_payments",
            "Payment attempts in the database, by method, provider and status",
            labels=("method", "provider", "status"),
        )
        due = GaugeMetricFamily("tillit_recovery_jobs_due", "Pending jobs due now, by kind", labels=("kind",))
        late = GaugeMetricFamily(
            "tillit_recovery_jobs_late", "Pending jobs more than 60 s past due, by kind", labels=("kind",)
        )
        sync_age = GaugeMetricFamily(
            "tillit_till_sync_age_seconds",
            "Seconds since the till last wrote an order (its journal reached the server)",
            labels=("merchant_id", "terminal_id"),
        )
        backlog = GaugeMetricFamily(
            "tillit_till_sync_backlog",
            "Journal entries still waiting in the till, as the till counted them at its last sync",
            labels=("merchant_id", "terminal_id"),
        )
        reported = GaugeMetricFamily(
            "tillit_till_sync_report_age_seconds",
            "Seconds since the till last reported its backlog (a till offline reports nothing)",
            labels=("merchant_id", "terminal_id"),
        )
        runs = GaugeMetricFamily(
            "tillit_reconciliation_runs", "Reconciliation runs, by provider", labels=("provider",)
        )
        diffs = GaugeMetricFamily(
            "tillit_reconciliation_discrepancies",
            "Reconciliation differences, by provider, class and status",
            labels=("provider", "class", "status"),
        )
        open_alerts = GaugeMetricFamily("tillit_alerts_open", "Open alerts, by status", labels=("status",))
        with self.db.read() as conn:
            for method, provider, status, n in conn.execute(
                select(payments.c.method, payments.c.provider, payments.c.status, func.count()).group_by(
                    payments.c.method, payments.c.provider, payments.c.status
                )
            ):
                pays.add_metric((method, provider or "", status), n)
            for kind, n in conn.execute(
                select(jobs.c.kind, func.count())
                .where(jobs.c.state == "pending", jobs.c.due_at <= now)
                .group_by(jobs.c.kind)
            ):
                due.add_metric((kind,), n)
            for kind, n in conn.execute(
                select(jobs.c.kind, func.count())
                .where(jobs.c.state == "pending", jobs.c.due_at < now - LATE_AFTER)
                .group_by(jobs.c.kind)
            ):
                late.add_metric((kind,), n)
            last = (
                select(orders.c.merchant_id, orders.c.terminal_id, func.max(orders.c.created_at).label("at"))
                .where(orders.c.terminal_id.is_not(None))
                .group_by(orders.c.merchant_id, orders.c.terminal_id)
                .subquery()
            )
            for merchant_id, terminal_id, at in conn.execute(
                select(terminals.c.merchant_id, terminals.c.id, last.c.at).join(
                    last, last.c.terminal_id == terminals.c.id
                )
            ):
                seen = at if at.tzinfo else at.replace(tzinfo=now.tzinfo)
                sync_age.add_metric((merchant_id, terminal_id), max((now - seen).total_seconds(), 0.0))
            for merchant_id, terminal_id, queued, at in conn.execute(
                select(
                    till_sync_reports.c.merchant_id,
                    till_sync_reports.c.terminal_id,
                    till_sync_reports.c.queued,
                    till_sync_reports.c.reported_at,
                )
            ):
                backlog.add_metric((merchant_id, terminal_id), int(queued))
                seen = at if at.tzinfo else at.replace(tzinfo=now.tzinfo)
                reported.add_metric((merchant_id, terminal_id), max((now - seen).total_seconds(), 0.0))
            for provider, n in conn.execute(
                select(recon_runs.c.provider, func.count()).group_by(recon_runs.c.provider)
            ):
                runs.add_metric((provider,), n)
            for provider, cls, status, n in conn.execute(
                select(
                    recon_discrepancies.c.provider,
                    recon_discrepancies.c.disc_class,
                    recon_discrepancies.c.status,
                    func.count(),
                ).group_by(
                    recon_discrepancies.c.provider,
                    recon_discrepancies.c.disc_class,
                    recon_discrepancies.c.status,
                )
            ):
                diffs.add_metric((provider, cls, status), n)
            for status, n in conn.execute(
                select(alerts.c.status, func.count())
                .where(alerts.c.status != "resolved")
                .group_by(alerts.c.status)
            ):
                open_alerts.add_metric((status,), n)
        yield from (pays, due, late, sync_age, backlog, reported, runs, diffs, open_alerts)


class _Process(Collector):
    def collect(self) -> Iterator[Metric]:
        yield from PROCESS.collect()


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def scrape(db: Database, clock: Clock) -> bytes:
    """The exposition text: this process's (or every process's) instruments plus the database gauges."""
    registry = CollectorRegistry(auto_describe=False)
    if multiprocess_dir():
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry.register(_Process())
    registry.register(DatabaseCollector(db, clock))
    return generate_latest(registry)
