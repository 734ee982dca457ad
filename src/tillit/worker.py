"""The resolver loop: claims due recovery jobs and runs them. Runs inside `tillit serve` (a thread) and
as separate `tillit worker` processes; any number may run against PostgreSQL at once."""

from __future__ import annotations

import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from functools import partial

import structlog

from tillit.adapters.db.engine import Database
from tillit.kernel import jobs
from tillit.kernel.context import Deps
from tillit.monitoring import alerts
from tillit.notifications.sender import OutboxSender
from tillit.payments import engine
from tillit.reconciliation.daily import ensure_all
from tillit.settlement import daily as settlement_daily

log = structlog.get_logger("tillit.worker")
BATCH = 20
ERROR_RETRY = timedelta(seconds=10)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident() % 100000}"


def run_once(
    db: Database,
    deps: Deps,
    cfg: engine.EngineConfig,
    name: str,
    limit: int = BATCH,
    outbox: OutboxSender | None = None,
    pool: ThreadPoolExecutor | None = None,
) -> int:
    """Send the outbox messages due, then claim and run the jobs due now; returns how many of both
    ran. A job that raises is retried later. With ``pool`` the claimed jobs run side by side (each in
    its own transactions; the engine locks the payment and compares its status, as it does for several
    workers on PostgreSQL, and SQLite serialises the writes), so one hung provider call delays no other."""
    sent = _send_outbox(db, deps, outbox, name)
    claimed = jobs.claim(db, deps, name, limit)
    run = partial(_run_in_context, db, deps, cfg)
    if pool is None or len(claimed) < 2:
        for job in claimed:
            run(job)
    else:
        list(pool.map(run, claimed))  # waits for the whole batch: its leases were taken together
    return len(claimed) + sent


def _run_in_context(db: Database, deps: Deps, cfg: engine.EngineConfig, job: jobs.Job) -> None:
    # The job's log lines carry the request that scheduled it (or the job id when none did).
    with structlog.contextvars.bound_contextvars(
        request_id=job.request_id or f"job-{job.id}", job=job.id, job_kind=job.kind
    ):
        _run(db, deps, cfg, job)


def _send_outbox(db: Database, deps: Deps, outbox: OutboxSender | None, name: str) -> int:
    """The notification outbox (issue 14): never lets a mail server's trouble stop recovery jobs."""
    if outbox is None:
        return 0
    try:
        return outbox.send_due(db, deps, name)
    except Exception as exc:
        log.warning("outbox_round_failed", error=type(exc).__name__)
        return 0


def _run(db: Database, deps: Deps, cfg: engine.EngineConfig, job: jobs.Job) -> None:
    try:
        engine.run_job(db, deps, cfg, job)
    except Exception as exc:
        log.warning("job_failed", job=job.id, kind=job.kind, error=type(exc).__name__)
        with db.transaction() as conn:
            jobs.retry_later(
                conn, deps, job.id, deps.clock.now() + ERROR_RETRY, f"{type(exc).__name__}: {exc}"
            )


class Worker:
    """A background loop; ``stop()`` lets the current batch finish."""

    def __init__(
        self,
        db: Database,
        deps: Deps,
        cfg: engine.EngineConfig,
        poll_s: float = 0.25,
        outbox: OutboxSender | None = None,
        threads: int = 4,
    ) -> None:
        self.db, self.deps, self.cfg, self.poll_s = db, deps, cfg, poll_s
        self.outbox = outbox
        self.threads = max(1, threads)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.name = worker_name()

    def run_forever(self) -> None:
        log.info("worker_started", worker=self.name)
        try:  # every merchant with a provider account has its daily bill reconciliation scheduled
            ensure_all(self.db, self.deps)
            settlement_daily.ensure_all(self.db, self.deps)  # settle12
        except Exception as exc:
            log.warning("reconcile_schedule_failed", error=type(exc).__name__)
        try:  # every merchant with an active alert rule has its evaluation scheduled
            alerts.ensure_all(self.db, self.deps)
        except Exception as exc:
            log.warning("alerts_schedule_failed", error=type(exc).__name__)
        pool = ThreadPoolExecutor(self.threads, thread_name_prefix="tillit-job") if self.threads > 1 else None
        try:
            while not self._stop.is_set():
                try:
                    busy = run_once(self.db, self.deps, self.cfg, self.name, outbox=self.outbox, pool=pool)
                except Exception as exc:
                    log.warning("worker_error", error=type(exc).__name__)
                    busy = 0
                if not busy:
                    self._stop.wait(self.poll_s)
        finally:
            if pool is not None:
                pool.shutdown(wait=True)

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run_forever, name="tillit-worker", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)


def drain(
    db: Database,
    deps: Deps,
    cfg: engine.EngineConfig,
    max_seconds: float = 60,
    outbox: OutboxSender | None = None,
) -> None:
    """Run jobs (and the outbox) until none is due (tests and the chaos run). Bounded by ``max_seconds``
    of real time."""
    deadline = time.monotonic() + max_seconds
    while time.monotonic() < deadline and run_once(db, deps, cfg, "drain", outbox=outbox):
        pass
