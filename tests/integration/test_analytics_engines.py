"""Analytics on PostgreSQL in plain SQL give the same tables as the DuckDB path over the same rows.

A merchant's day is made through the API (cash sales of several products, refunds, cancels with
different reasons), then spread over hours and days and given provider attempts the API cannot plant
here (failed and reversed attempts with provider codes, attempts that went through ``unknown``, one with
no till) by direct writes. ``analytics.compute`` runs with ``engine="duckdb"`` and ``engine="postgresql"``
on that data, for several time zones and ranges; every table must be equal. On SQLite the dispatch
chooses DuckDB (and the PostgreSQL engine is not available).
"""

from __future__ import annotations

import uuid
from dataclasses import asdict
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert, select, update

from tests.support.api import new_order, pay_cash, post
from tests.support.world import Tenant
from tillit.adapters.db.schema import events, orders, payments
from tillit.bootstrap import Container
from tillit.monitoring import analytics
from tillit.monitoring.frames import Range

CODES = ("NOTENOUGH", "PAYERROR", "AUTHCODEEXPIRE", "ACQ.BUYER_BALANCE_NOT_ENOUGH", "SYSTEMERROR", None)


def _plant(client: TestClient, container: Container, tenant: Tenant) -> None:
    lines = (
        [{"sku": "LATTE", "quantity": 2}, {"sku": "CROIS", "quantity": 1, "discount": 500}],
        [{"sku": "WATER", "quantity": 3}],
        [{"sku": "CROIS", "quantity": 2}],
    )
    made: list[tuple[str, str | None]] = []
    for i in range(18):
        order = new_order(client, tenant, list(lines[i % 3]))
        if i % 6 == 5:
            reason = ("customer_cancelled", "cashier_cancelled")[(i // 6) % 2]
            r = post(client, f"/v1/orders/{order['id']}/cancel", {"reason": reason}, tenant)
            assert r.status_code == 200, r.text
            made.append((order["id"], None))
            continue
        payment = pay_cash(client, tenant, order["id"])
        if i % 4 == 0:
            r = post(client, "/v1/refunds", {"payment_id": payment["id"], "amount": 100 + i}, tenant)
            assert r.status_code in (200, 201), r.text
        made.append((order["id"], payment["id"]))
    now = container.deps.clock.now()
    with container.db.transaction() as conn:
        for i, (order_id, payment_id) in enumerate(made):
            # Spread over 3 days and many hours (some across midnight in one zone, not the other).
            at = now - timedelta(hours=5 * i + 1, minutes=7 * i, microseconds=1234 * i + 999)
            conn.execute(
                update(orders)
                .where(orders.c.merchant_id == tenant.merchant_id, orders.c.id == order_id)
                .values(created_at=at)
            )
            if payment_id is not None:
                conn.execute(
                    update(payments)
                    .where(payments.c.merchant_id == tenant.merchant_id, payments.c.id == payment_id)
                    .values(created_at=at + timedelta(seconds=3), resolved_at=at + timedelta(seconds=4 + i))
                )
            # Provider attempts before the cash one: failed or reversed with a code, some through unknown.
            for k in range(i % 3):
                attempt = uuid.uuid4().hex
                provider = ("wechat", "alipay")[(i + k) % 2]
                created = at + timedelta(seconds=1, microseconds=k * 777)
                conn.execute(
                    insert(payments).values(
                        id=attempt,
                        merchant_id=tenant.merchant_id,
                        order_id=order_id,
                        terminal_id=None if i == 7 else tenant.terminal_id,
                        method=provider,
                        provider=provider,
                        amount=1000,
                        currency="CNY",
                        status="reversed" if (i + k) % 5 == 0 else "failed",
                        failure_code=CODES[(i + k) % len(CODES)],
                        refunded_amount=0,
                        version=1,
                        created_at=created,
                        updated_at=created,
                        resolved_at=created + timedelta(milliseconds=1500 + 333 * k + i),
                    )
                )
                if (i + k) % 2:
                    conn.execute(
                        insert(events).values(
                            merchant_id=tenant.merchant_id,
                            order_id=order_id,
                            entity="payment",
                            entity_id=attempt,
                            from_status="pending",
                            to_status="unknown",
                            actor="engine",
                            at=created,
                        )
                    )


@pytest.mark.parametrize("backend", ["postgresql"])
def test_postgresql_sql_matches_duckdb(client: TestClient, container: Container, tenant: Tenant) -> None:
    _plant(client, container, tenant)
    now = container.deps.clock.now()
    with container.db.read() as conn:
        assert conn.dialect.name == "postgresql"
        n = conn.execute(select(payments.c.id).where(payments.c.merchant_id == tenant.merchant_id)).all()
        assert len(n) > 30
        for offset in (480, 0, -300, 345):
            for days in (1, 2, 5):
                rng = Range(tenant.merchant_id, now - timedelta(days=days), now + timedelta(minutes=1))
                duck = analytics.compute(conn, rng, utc_offset_minutes=offset, engine="duckdb")
                sql = analytics.compute(conn, rng, utc_offset_minutes=offset, engine="postgresql")
                for table in analytics.TABLES:
                    assert sql.table(table) == duck.table(table), (offset, days, table)
                assert analytics.compute(conn, rng, utc_offset_minutes=offset) == sql  # the default on PG
                assert analytics.heat_map_cells(conn, rng, utc_offset_minutes=offset) == duck.failures
        # The data is varied enough to mean something: every table has rows, the summary every figure.
        rng = Range(tenant.merchant_id, now - timedelta(days=5), now + timedelta(minutes=1))
        full = analytics.compute(conn, rng, engine="postgresql")
        assert len(full.by_day) >= 3 and len(full.by_hour) >= 8 and len(full.by_product) == 3
        assert {f.reason for f in full.failures} >= {
            "insufficient_balance",
            "customer_cancelled",
            "declined",
            "order:customer_cancelled",
            "order:cashier_cancelled",
        }
        s = asdict(full.summary)
        assert s["refunds"] > 0 and s["unknown_attempts"] > 0 and s["avg_time_to_settle_ms"] is not None
        assert s["avg_time_to_pay_ms"] is not None and s["cancelled_orders"] == 3


@pytest.mark.parametrize("backend", ["sqlite"])
def test_sqlite_chooses_duckdb(client: TestClient, container: Container, tenant: Tenant) -> None:
    _plant(client, container, tenant)
    now = container.deps.clock.now()
    rng = Range(tenant.merchant_id, now - timedelta(days=5), now + timedelta(minutes=1))
    with container.db.read() as conn:
        chosen = analytics.compute(conn, rng)
        assert chosen == analytics.compute(conn, rng, engine="duckdb")
        assert chosen.summary.cancelled_orders == 3 and chosen.failures
        west = analytics.compute(conn, rng, utc_offset_minutes=-300)  # west of UTC: a negative interval
        for offset in (480, 0, -300, 345):  # the heat map's single SQLite query = the DuckDB path
            duck = analytics.compute(conn, rng, utc_offset_minutes=offset).failures
            assert analytics.heat_map_cells(conn, rng, utc_offset_minutes=offset) == duck, offset
            assert analytics.heat_map_cells(conn, rng, utc_offset_minutes=offset, engine="duckdb") == duck
        assert sum(b.orders for b in west.by_hour) == sum(b.orders for b in chosen.by_hour)
        assert {b.bucket for b in west.by_hour} != {b.bucket for b in chosen.by_hour}
