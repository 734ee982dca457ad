"""The monitoring area's ``not_credited`` alert rule reads the settlement area's days (wired in bootstrap):
a late, short or missing merchant-day counts, a settled one does not, another merchant's never does."""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import insert

from tests.support.world import Tenant
from tillit.adapters.db.schema import settlement_days
from tillit.bootstrap import Container
from tillit.monitoring import alerts
from tillit.settlement import service


def day(merchant_id: str, trade_day: date, status: str, checked_at: object) -> dict[str, object]:
    return {
        "merchant_id": merchant_id, "provider": "wechat", "trade_day": trade_day,
        "due_day": trade_day + timedelta(days=1), "payments": 3, "refund_count": 0, "gross": 9000,
        "refunds": 0, "fees": 34, "fee_returns": 0, "expected": 8966,
        "received": 0 if status != "settled" else 8966, "received_lines": 0, "status": status,
        "age_days": 2, "next_action": "check the fund-flow statement", "evidence": "[]",
        "checked_at": checked_at,
    }  # fmt: skip


def test_not_credited_days_feed_the_alert_rule(
    container: Container, tenant: Tenant, other_tenant: Tenant
) -> None:
    assert service.not_credited_days in alerts._NOT_CREDITED  # registered by bootstrap.wire_areas()
    now = container.deps.clock.now()
    start = date(2026, 11, 1)
    with container.db.transaction() as conn:
        for i, status in enumerate(("missing", "short", "late", "settled", "pending")):
            row = day(tenant.merchant_id, start + timedelta(i), status, now)
            conn.execute(insert(settlement_days).values(row))
        conn.execute(insert(settlement_days).values(day(other_tenant.merchant_id, start, "missing", now)))
    with container.db.read() as conn:
        assert service.not_credited_days(conn, tenant.merchant_id, now) == 3
        assert service.not_credited_days(conn, other_tenant.merchant_id, now) == 1
        assert service.not_credited_days(conn, tenant.merchant_id, now - timedelta(days=1)) == 0
