"""The daily fetch against the sandbox, on SQLite and PostgreSQL: real trades through the API, provider
time moved past 10:00 the next day, the resolver runs the ``reconcile_daily`` job: everything Tillit
sold matches; a payment made at the sandbox behind Tillit's back is found (长款) and, after the
merchant's waiting rule, refunded through the engine."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import select

from tests.integration.test_engine import World, world  # noqa: F401  (the fixture)
from tillit.adapters.db.schema import jobs
from tillit.payments import accounts as provider_accounts
from tillit.reconciliation import service
from tillit.reconciliation.daily import KIND, next_due


def _rules(world: World, **extra: object) -> None:  # noqa: F811
    with world.c.db.transaction() as conn:
        for account in provider_accounts.list_accounts(conn, world.tenant.merchant_id):
            from tillit.adapters.db.schema import provider_accounts as table

            row = conn.execute(
                select(table.c.config).where(
                    table.c.merchant_id == world.tenant.merchant_id, table.c.provider == account["provider"]
                )
            ).one()
            import json

            config = json.loads(row.config) | {"fee_rate_ppm": 3800, **extra}
            provider_accounts.set_account(
                conn, world.c.deps, world.tenant.merchant_id, account["provider"], config
            )


def test_daily_fetch_matches_real_trades_and_finds_a_stranger(world: World) -> None:  # noqa: F811
    _rules(world, orphan_refund_after_hours=1)
    with world.c.db.read() as conn:
        daily = conn.execute(
            select(jobs).where(jobs.c.kind == KIND, jobs.c.merchant_id == world.tenant.merchant_id)
        ).one()
    assert daily.state == "pending"
    sold = {}
    for provider in ("wechat", "alipay"):
        wallet = world.sbx.wallet(provider)
        order = world.order(qty=2)
        pay = world.scan(order["id"], world.sbx.code(wallet)).json()
        assert pay["status"] == "captured"
        r = world.post("/v1/refunds", {"payment_id": pay["id"], "amount": 700, "reason": "cold"})
        assert r.status_code in (201, 202), r.text
        sold[provider] = pay["id"]
    world.advance(61)
    # A payment made at the provider that Tillit never saw (the unrecognised payment, 长款).
    assert world.c.engine is not None
    stranger_wallet = world.sbx.wallet("wechat")
    with world.c.db.read() as conn:
        adapter = world.c.engine.providers.get(conn, world.tenant.merchant_id, "wechat")
    stranger = uuid.uuid4().hex
    paid = adapter.pay(
        out_trade_no=stranger,
        auth_code=world.sbx.code(stranger_wallet),
        amount=1234,
        currency="CNY",
        description="behind Tillit's back",
    )
    assert paid.outcome.value == "success"
    # Past 10:05 China time the next day: bills are ready; the resolver runs the daily job.
    now = world.clock.now()
    world.advance((next_due(now + timedelta(days=1)) - now).total_seconds() + 60)
    world.advance(1)
    with world.c.db.read() as conn:
        runs = service.list_runs(conn, world.tenant.merchant_id)
    day = {r["provider"]: r for r in runs if r["bill_date"] == "2026-11-20"}
    assert set(day) == {"wechat", "alipay"}, runs
    assert all(r["source"] == "fetch" for r in day.values())
    alipay, wechat = day["alipay"], day["wechat"]
    assert alipay["discrepancies"] == 0 and alipay["matched"] == alipay["lines"] == 2
    assert wechat["lines"] == 3 and wechat["matched"] == 2
    assert wechat["counts"]["missing_locally"] == 1 and wechat["discrepancies"] == 1
    with world.c.db.read() as conn:
        (found,) = service.list_discrepancies(conn, world.tenant.merchant_id, run_id=wechat["id"])
    assert found["class"] == "missing_locally" and found["out_trade_no"] == stranger
    assert found["provider_amount"] == 1234 and found["action"] == "refund_after_wait"
    # The waiting rule (1 h after the payment) has passed: the engine refunded it, which settled both
    # the exception and the discrepancy.
    assert world.sbx.net_debited(stranger_wallet) == 0
    assert found["status"] == "resolved" and found["resolved_by"] == "system"
    exc = world.http.get(
        f"/v1/exceptions/{found['exception_id']}", headers=world.tenant.auth("merchant")
    ).json()
    assert exc["kind"] == "bill_unrecognised_payment" and exc["status"] == "resolved"
    # The daily job is scheduled again for tomorrow 10:05.
    with world.c.db.read() as conn:
        pending = conn.execute(
            select(jobs).where(
                jobs.c.kind == KIND, jobs.c.merchant_id == world.tenant.merchant_id, jobs.c.state == "pending"
            )
        ).one()
    due = pending.due_at if pending.due_at.tzinfo else pending.due_at.replace(tzinfo=now.tzinfo)
    assert due == next_due(world.clock.now())
