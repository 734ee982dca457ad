"""Channel health per provider (and merchant) over sliding windows, from what the engine records per
attempt: its status, failure code, whether it went through ``unknown`` (an event), and the pay call's
wall-clock latency (``payments.pay_latency_ms``).

Windows are ``[end - minutes, end]``, ``end`` being ``now`` (the injected clock) unless given; by
default the last 5 minutes, hour and day.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pyarrow as pa
from sqlalchemy import Connection, and_, select

from tillit.adapters.db.schema import events, payments
from tillit.domain.alerts import rate_permille
from tillit.monitoring.frames import INT, TS, arrow_table, duck

WINDOWS = (5, 60, 24 * 60)  # minutes
MAX_WINDOW_MINUTES = 7 * 24 * 60
TOP_CODES = 10


@dataclass(frozen=True, slots=True)
class ErrorCount:
    code: str
    count: int


@dataclass(frozen=True, slots=True)
class ChannelHealth:
    merchant_id: str | None  # None: every merchant together (operators)
    provider: str
    window_minutes: int
    attempts: int
    captured: int
    success_rate_permille: int
    failure_rate_permille: int  # failed or reversed
    unknown: int
    unknown_rate_permille: int
    reversed: int
    reversal_rate_permille: int
    in_flight: int
    latency_p50_ms: int | None
    latency_p95_ms: int | None
    latency_p99_ms: int | None
    errors: tuple[ErrorCount, ...]


def _frame(conn: Connection, merchant_id: str | None, since: datetime, until: datetime) -> pa.Table:
    cond = [payments.c.method != "cash", payments.c.created_at >= since, payments.c.created_at <= until]
    if merchant_id is not None:
        cond.append(payments.c.merchant_id == merchant_id)
    went_unknown = (
        select(events.c.entity_id)
        .where(
            events.c.entity == "payment",
            events.c.to_status == "unknown",
            events.c.merchant_id == payments.c.merchant_id,
            events.c.entity_id == payments.c.id,
        )
        .exists()
    )
    query = select(
        payments.c.merchant_id,
        payments.c.provider,
        payments.c.status,
        payments.c.failure_code,
        payments.c.pay_latency_ms,
        payments.c.created_at.label("ts"),
        went_unknown.label("went_unknown"),
    ).where(and_(*cond))
    return arrow_table(conn, query, {"pay_latency_ms": INT, "ts": TS, "went_unknown": pa.bool_()})


def measure(
    conn: Connection,
    now: datetime,
    *,
    merchant_id: str | None,
    windows: tuple[int, ...] = WINDOWS,
    provider: str | None = None,
    end: datetime | None = None,
) -> list[ChannelHealth]:
    """Health of each provider channel for each window ending at ``end`` (default ``now``)."""
    until = end or now
    longest = max(windows)
    frame = _frame(conn, merchant_id, until - timedelta(minutes=longest), until)
    con = duck()
    out: list[ChannelHealth] = []
    try:
        con.register("a", frame)
        naive_until = _naive_utc(until)
        for minutes in sorted(windows):
            start = naive_until - timedelta(minutes=minutes)
            where = "ts >= $start" + (" AND provider = $provider" if provider else "")
            params: dict[str, object] = {"start": start}
            if provider:
                params["provider"] = provider
            rows = con.execute(
                f"""SELECT provider, count(*)::BIGINT,
                        count(*) FILTER (status IN ('captured', 'refunded'))::BIGINT,
                        count(*) FILTER (status IN ('failed', 'reversed'))::BIGINT,
                        count(*) FILTER (went_unknown)::BIGINT,
                        count(*) FILTER (status = 'reversed')::BIGINT,
                        count(*) FILTER (status IN ('pending', 'unknown', 'reversing'))::BIGINT,
                        quantile_disc(pay_latency_ms, 0.50), quantile_disc(pay_latency_ms, 0.95),
                        quantile_disc(pay_latency_ms, 0.99)
                    FROM a WHERE {where} GROUP BY provider ORDER BY provider""",
                params,
            ).fetchall()
            codes: dict[str, list[ErrorCount]] = {}
            for prov, code, n in con.execute(
                f"""SELECT provider, failure_code, count(*)::BIGINT FROM a
                    WHERE {where} AND failure_code IS NOT NULL GROUP BY ALL ORDER BY 3 DESC, 2""",
                params,
            ).fetchall():
                if len(codes.setdefault(prov, [])) < TOP_CODES:
                    codes[prov].append(ErrorCount(str(code), int(n)))
            for prov, n, ok, bad, unk, rev, flight, p50, p95, p99 in rows:
                out.append(
                    ChannelHealth(
                        merchant_id=merchant_id,
                        provider=str(prov),
                        window_minutes=minutes,
                        attempts=int(n),
                        captured=int(ok),
                        success_rate_permille=rate_permille(int(ok), int(n)),
                        failure_rate_permille=rate_permille(int(bad), int(n)),
                        unknown=int(unk),
                        unknown_rate_permille=rate_permille(int(unk), int(n)),
                        reversed=int(rev),
                        reversal_rate_permille=rate_permille(int(rev), int(n)),
                        in_flight=int(flight),
                        latency_p50_ms=None if p50 is None else int(p50),
                        latency_p95_ms=None if p95 is None else int(p95),
                        latency_p99_ms=None if p99 is None else int(p99),
                        errors=tuple(codes.get(prov, [])),
                    )
                )
    finally:
        con.close()
    return out


def _naive_utc(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
