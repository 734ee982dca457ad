"""Integrity-engine scenarios through the real API, the production adapters and the sandbox, on
SQLite and PostgreSQL. Provider time is moved by hand on both clocks; nothing sleeps for it."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.live import live_server
from tests.support.sandbox import START, Accounts, SandboxControl, running_sandbox
from tests.support.sandbox import provider_accounts as account_settings
from tests.support.world import Tenant, make_tenant
from tillit.adapters.db import migrate
from tillit.bootstrap import Container, build
from tillit.config import Settings
from tillit.domain.clock import ManualClock
from tillit.kernel.check import run_checks
from tillit.payments import accounts as provider_accounts
from tillit.worker import drain


@dataclass
class World:
    c: Container
    clock: ManualClock
    sbx: SandboxControl
    tenant: Tenant
    http: httpx.Client

    def advance(self, seconds: float) -> None:
        """Move provider time on both sides, then let the resolver do what is due."""
        self.clock.advance(seconds)
        self.sbx.advance(seconds)
        assert self.c.engine is not None
        drain(self.c.db, self.c.deps, self.c.engine, max_seconds=30)

    def eventually(self, check: Any, seconds: float = 10) -> Any:
        """Wait (bounded, real time) for an asynchronous delivery such as a notification to land."""
        deadline = time.monotonic() + seconds
        while True:
            self.advance(0)
            result = check()
            if result or time.monotonic() > deadline:
                return result
            time.sleep(0.05)

    def order(self, total_sku: str = "LATTE", qty: int = 1) -> dict[str, Any]:
        r = self.post("/v1/orders", {"lines": [{"sku": total_sku, "quantity": qty}]})
        assert r.status_code == 201, r.text
        return dict(r.json())

    def post(self, path: str, body: Any, key: str | None = None) -> httpx.Response:
        return self.http.post(path, json=body, headers={"Idempotency-Key": key or uuid.uuid4().hex})

    def scan(self, order_id: str, code: str, key: str | None = None, **extra: Any) -> httpx.Response:
        return self.post("/v1/payments", {"order_id": order_id, "payment_code": code, **extra}, key)

    def payment(self, payment_id: str) -> dict[str, Any]:
        return dict(self.http.get(f"/v1/payments/{payment_id}").json())

    def get_order(self, order_id: str) -> dict[str, Any]:
        return dict(self.http.get(f"/v1/orders/{order_id}").json())


@pytest.fixture
def world(backend: str, request: pytest.FixtureRequest, tmp_path: Path, sqlite_home: Path) -> Iterator[World]:
    clock = ManualClock(START.astimezone(UTC))
    url = (
        request.getfixturevalue("pg_url")
        if backend == "postgresql"
        else f"sqlite:///{sqlite_home / 'tillit.sqlite'}"
    )
    c = build(Settings(home=sqlite_home, database_url=url, provider_timeout_s=3.0), clock=clock)
    migrate.upgrade(c.db)
    accounts = Accounts.fresh()
    with running_sandbox(tmp_path / "sandbox", accounts) as sbx, live_server(c) as base:
        tenant = make_tenant(c, f"Engine {uuid.uuid4().hex[:8]}")
        with c.db.transaction() as conn:
            for provider, settings in account_settings(
                accounts, sbx.url, notify_url=f"{base}/v1/providers/alipay/notify"
            ).items():
                provider_accounts.set_account(conn, c.deps, tenant.merchant_id, provider, settings)
        with httpx.Client(base_url=base, headers=tenant.auth(), timeout=30) as http:
            yield World(c, clock, sbx, tenant, http)
        with c.db.read() as conn:
            assert all(r.ok for r in run_checks(conn)), [r.violations for r in run_checks(conn) if not r.ok]
    c.db.dispose()


PROVIDERS = ["wechat", "alipay"]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_paid_at_once(world: World, provider: str) -> None:
    wallet = world.sbx.wallet(provider)
    order = world.order()
    r = world.scan(order["id"], world.sbx.code(wallet))
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["status"] == "captured" and body["method"] == provider and body["provider_ref"]
    assert body["message"]["reason"] == "paid" and "*" in body["payment_code_masked"]
    assert world.get_order(order["id"])["status"] == "paid"
    assert world.sbx.net_debited(wallet) == order["total"]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_password_step_confirmed(world: World, provider: str) -> None:
    wallet = world.sbx.wallet(provider, always_password=True)
    order = world.order()
    r = world.scan(order["id"], world.sbx.code(wallet))
    assert r.status_code == 202, r.text
    first = r.json()
    assert first["status"] == "unknown" and first["message"]["reason"] == "customer_confirming"
    # A second scan while the first is unknown: "payment in progress", carrying the first attempt.
    again = world.scan(order["id"], world.sbx.code(wallet))
    assert again.status_code == 409
    assert again.json()["error"]["details"]["payment_id"] == first["id"]
    world.sbx.confirm(wallet)
    world.advance(5)
    assert world.payment(first["id"])["status"] == "captured"
    assert world.get_order(order["id"])["status"] == "paid"
    assert world.sbx.net_debited(wallet) == order["total"]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_customer_cancels_at_password(world: World, provider: str) -> None:
    wallet = world.sbx.wallet(provider, always_password=True)
    order = world.order()
    attempt = world.scan(order["id"], world.sbx.code(wallet)).json()
    world.sbx.cancel(wallet)
    for _ in range(5):
        world.advance(5)
    final = world.payment(attempt["id"])
    assert final["status"] in ("reversed", "failed"), final
    # WeChat says PAYERROR (reversed); Alipay closes the trade. Either way the cashier is told why.
    expected = "customer_cancelled" if provider == "wechat" else "payment_closed"
    assert final["message"]["reason"] == expected
    assert world.sbx.net_debited(wallet) == 0
    # The order is free again: the customer pays cash.
    r = world.post("/v1/payments", {"order_id": order["id"], "method": "cash"})
    assert r.status_code == 201 and world.get_order(order["id"])["status"] == "paid"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_customer_never_confirms_is_reversed_in_the_window(world: World, provider: str) -> None:
    wallet = world.sbx.wallet(provider, always_password=True)
    order = world.order()
    attempt = world.scan(order["id"], world.sbx.code(wallet)).json()
    for _ in range(16):
        world.advance(5)
    final = world.payment(attempt["id"])
    assert final["status"] in ("reversed", "failed") and world.sbx.net_debited(wallet) == 0
    events = world.http.get(f"/v1/orders/{order['id']}/events").json()["data"]
    assert [e["to_status"] for e in events if e["entity"] == "payment"][:2] == ["pending", "unknown"]


@pytest.mark.parametrize(
    ("provider", "balance", "reason"),
    [("wechat", 100, "insufficient_balance"), ("alipay", 100, "insufficient_balance")],
)
def test_definite_failures_carry_a_cashier_message(
    world: World, provider: str, balance: int, reason: str
) -> None:
    wallet = world.sbx.wallet(provider, balance_fen=balance)
    order = world.order()
    r = world.scan(order["id"], world.sbx.code(wallet))
    assert r.status_code == 201 and r.json()["status"] == "failed"
    msg = r.json()["message"]
    assert msg["reason"] == reason and msg["zh-CN"] and msg["en"]
    assert world.get_order(order["id"])["status"] == "open"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_expired_and_reused_codes_fail(world: World, provider: str) -> None:
    wallet = world.sbx.wallet(provider)
    code = world.sbx.code(wallet)
    first = world.order()
    assert world.scan(first["id"], code).json()["status"] == "captured"
    second = world.order()
    reused = world.scan(second["id"], code).json()
    assert reused["status"] == "failed" and reused["message"]["reason"] in ("code_invalid", "code_expired")
    stale = world.sbx.code(wallet)
    world.advance(120)
    expired = world.scan(second["id"], stale).json()
    assert expired["status"] == "failed" and expired["message"]["reason"] in ("code_expired", "code_invalid")
    assert world.sbx.net_debited(wallet) == first["total"]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_answer_lost_after_commit_is_found_by_query(world: World, provider: str) -> None:
    endpoint = "wechat.micropay" if provider == "wechat" else "alipay.trade.pay"
    wallet = world.sbx.wallet(provider)
    order = world.order()
    world.sbx.faults({endpoint: {"answer_lost": 1.0}})
    r = world.scan(order["id"], world.sbx.code(wallet), key="lost-1")
    world.sbx.faults({})
    assert r.status_code == 202 and r.json()["status"] == "unknown"
    assert r.json()["message"]["reason"] == "checking"
    world.advance(5)
    assert world.payment(r.json()["id"])["status"] == "captured"
    assert world.sbx.net_debited(wallet) == order["total"]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_system_error_without_charge_ends_closed(world: World, provider: str) -> None:
    endpoint = "wechat.micropay" if provider == "wechat" else "alipay.trade.pay"
    wallet = world.sbx.wallet(provider)
    order = world.order()
    world.sbx.faults({endpoint: {"system_error": 1.0}})
    r = world.scan(order["id"], world.sbx.code(wallet))
    world.sbx.faults({})
    assert r.status_code == 202
    for _ in range(16):
        world.advance(5)
    final = world.payment(r.json()["id"])
    assert final["status"] in ("failed", "reversed"), final
    assert world.sbx.net_debited(wallet) == 0


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_failed_query_is_asked_again_in_a_second(world: World, provider: str) -> None:
    """Issue 11.6: a lost answer is settled by the first query the rules allow; a query that itself got
    no verifiable answer is repeated at once (1 s), not at the 5 s polling pace."""
    pay_ep, query_ep = (
        ("wechat.micropay", "wechat.orderquery")
        if provider == "wechat"
        else ("alipay.trade.pay", "alipay.trade.query")
    )
    wallet = world.sbx.wallet(provider)
    order = world.order()
    # Notifications lost: only queries can settle it (Alipay would otherwise notify at once).
    world.sbx.faults({pay_ep: {"answer_lost": 1.0}}, notify={"loss": 1.0})
    r = world.scan(order["id"], world.sbx.code(wallet))
    assert r.status_code == 202 and r.json()["status"] == "unknown"
    world.sbx.faults({query_ep: {"system_error": 1.0}}, notify={"loss": 1.0})
    world.advance(5)  # the first query: SYSTEMERROR
    assert world.payment(r.json()["id"])["status"] == "unknown"
    world.sbx.faults({}, notify={"loss": 1.0})
    world.advance(1)  # asked again a second later, not five
    assert world.payment(r.json()["id"])["status"] == "captured"
    assert world.sbx.net_debited(wallet) == order["total"]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_pay_that_never_reached_the_provider_is_reversed_after_two_looks(
    world: World, provider: str
) -> None:
    """Two "trade not found" answers a poll apart, once a reverse is allowed (WeChat: 15 s after the
    pay; Alipay: at once), end the attempt then instead of after the 30 s window."""
    endpoint = "wechat.micropay" if provider == "wechat" else "alipay.trade.pay"
    wallet = world.sbx.wallet(provider)
    order = world.order()
    world.sbx.faults({endpoint: {"system_error": 1.0}})
    r = world.scan(order["id"], world.sbx.code(wallet))
    world.sbx.faults({})
    assert r.status_code == 202
    world.advance(5)  # not found
    world.advance(5)  # not found again: Alipay reverses now; WeChat waits for its 15 s
    if provider == "wechat":
        assert world.payment(r.json()["id"])["status"] == "unknown"
        world.advance(5)
    world.advance(1)  # the reverse job
    final = world.payment(r.json()["id"])
    assert final["status"] in ("failed", "reversed"), final
    assert world.sbx.net_debited(wallet) == 0


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_reverse_that_kept_failing_closes_its_warning_when_it_finishes(world: World, provider: str) -> None:
    """A reverse that failed often enough raises reverse_failing (单边账 risk); once it goes through, the
    engine resolves that warning itself instead of leaving an operator a stale one."""
    pay_ep, reverse_ep = (
        ("wechat.micropay", "wechat.reverse")
        if provider == "wechat"
        else ("alipay.trade.pay", "alipay.trade.cancel")
    )
    wallet = world.sbx.wallet(provider)
    order = world.order()
    world.sbx.faults({pay_ep: {"system_error": 1.0}, reverse_ep: {"system_error": 1.0}})
    r = world.scan(order["id"], world.sbx.code(wallet))
    assert r.status_code == 202
    for _ in range(40):  # not found twice, then the reverse fails 8 times and more
        world.advance(10)
    merchant = world.tenant.auth("merchant")
    listed = world.http.get("/v1/exceptions", params={"status": "open"}, headers=merchant).json()["data"]
    assert [e["kind"] for e in listed if e.get("payment_id") == r.json()["id"]] == ["reverse_failing"]
    world.sbx.faults({})
    world.advance(300)
    final = world.payment(r.json()["id"])
    assert final["status"] in ("reversed", "failed"), final
    listed = world.http.get("/v1/exceptions", params={"status": "open"}, headers=merchant).json()["data"]
    assert [e for e in listed if e.get("payment_id") == r.json()["id"]] == []
    done = world.http.get("/v1/exceptions", params={"status": "resolved"}, headers=merchant).json()["data"]
    mine = [e for e in done if e.get("payment_id") == r.json()["id"]]
    assert [e["kind"] for e in mine] == ["reverse_failing"]
    assert mine[0]["resolved_by"] == "system" and "reverse finished" in mine[0]["resolution"]
    assert world.sbx.net_debited(wallet) == 0


@pytest.mark.parametrize("provider", PROVIDERS)
def test_provider_refunds_partial_then_rest(world: World, provider: str) -> None:
    wallet = world.sbx.wallet(provider)
    order = world.order(qty=2)  # 5600
    pay = world.scan(order["id"], world.sbx.code(wallet)).json()
    r = world.post("/v1/refunds", {"payment_id": pay["id"], "amount": 1000, "reason": "one was cold"})
    assert r.status_code in (201, 202), r.text
    world.advance(61)
    assert world.http.get(f"/v1/refunds/{r.json()['id']}").json()["status"] == "succeeded"
    over = world.post("/v1/refunds", {"payment_id": pay["id"], "amount": 5000})
    assert over.status_code == 409 and over.json()["error"]["code"] == "refund_exceeds_captured"
    world.advance(61)
    rest = world.post("/v1/refunds", {"payment_id": pay["id"]})
    assert rest.status_code in (201, 202), rest.text
    world.advance(61)
    world.advance(61)
    final = world.get_order(order["id"])
    assert final["status"] == "refunded" and final["refunded_amount"] == 5600
    assert world.sbx.net_debited(wallet) == 0


@pytest.mark.parametrize("provider", PROVIDERS)
def test_refund_answer_lost_is_confirmed_once(world: World, provider: str) -> None:
    endpoint = "wechat.refund" if provider == "wechat" else "alipay.trade.refund"
    wallet = world.sbx.wallet(provider)
    order = world.order()
    pay = world.scan(order["id"], world.sbx.code(wallet)).json()
    world.sbx.faults({endpoint: {"answer_lost": 1.0}})
    r = world.post("/v1/refunds", {"payment_id": pay["id"], "amount": 800}, key="refund-lost")
    world.sbx.faults({})
    assert r.status_code == 202 and r.json()["status"] in ("pending", "processing")
    for _ in range(4):
        world.advance(61)
    assert world.http.get(f"/v1/refunds/{r.json()['id']}").json()["status"] == "succeeded"
    assert world.sbx.ledger(wallet)["total_refunded_fen"] == 800


@pytest.mark.parametrize("provider", PROVIDERS)
def test_failed_refund_queries_are_retried_in_seconds(world: World, provider: str) -> None:
    """Issue 16.2: the provider completed the refund, but its answer and then the first queries were lost.
    A failed query is tried again within seconds, so the refund is confirmed as soon as one gets through,
    not a whole back-off step (1 to 5 minutes) later."""
    refund_ep, query_ep = (
        ("wechat.refund", "wechat.refundquery")
        if provider == "wechat"
        else ("alipay.trade.refund", "alipay.trade.fastpay.refund.query")
    )
    wallet = world.sbx.wallet(provider)
    order = world.order()
    pay = world.scan(order["id"], world.sbx.code(wallet)).json()
    world.sbx.faults({refund_ep: {"answer_lost": 1.0}, query_ep: {"system_error": 1.0}})
    r = world.post("/v1/refunds", {"payment_id": pay["id"], "amount": 800}, key="refund-lost-fast")
    assert r.status_code == 202 and r.json()["status"] in ("pending", "processing")
    assert world.sbx.ledger(wallet)["total_refunded_fen"] == 800  # the provider has done it
    first_query = 10 if provider == "alipay" else 1  # Alipay: never before 10 s (providers.md §2.5)
    world.advance(first_query)
    world.advance(1)
    world.advance(1)  # three queries failed so far
    refund = world.http.get(f"/v1/refunds/{r.json()['id']}").json()
    assert refund["status"] == "processing"
    world.sbx.faults({})
    waited = 0
    while refund["status"] == "processing" and waited < 30:
        world.advance(1)
        waited += 1
        refund = world.http.get(f"/v1/refunds/{r.json()['id']}").json()
    assert refund["status"] == "succeeded"
    assert waited <= 5, f"confirmed {waited} s after the provider answered again"
    assert world.get_order(order["id"])["refunded_amount"] == 800
    assert world.sbx.ledger(wallet)["total_refunded_fen"] == 800  # never refunded twice


def test_alipay_notification_settles_before_the_next_query(world: World) -> None:
    wallet = world.sbx.wallet("alipay", always_password=True)
    order = world.order()
    attempt = world.scan(order["id"], world.sbx.code(wallet)).json()
    world.sbx.confirm(wallet)
    world.advance(0.5)  # the sandbox notifies; the notification makes the engine query at once
    assert world.eventually(lambda: world.payment(attempt["id"])["status"] == "captured")


def test_notification_for_unknown_payment_becomes_an_exception(world: World) -> None:
    assert world.c.engine is not None
    wallet = world.sbx.wallet("alipay", always_password=True)
    with world.c.db.read() as conn:
        adapter = world.c.engine.providers.get(conn, world.tenant.merchant_id, "alipay")
    stranger = uuid.uuid4().hex
    adapter.pay(
        out_trade_no=stranger,
        auth_code=world.sbx.code(wallet),
        amount=1234,
        currency="CNY",
        description="paid elsewhere",
    )
    world.sbx.confirm(wallet)
    world.advance(0.5)

    def mine_now() -> list[dict[str, Any]]:
        listed = world.http.get("/v1/exceptions", headers=world.tenant.auth("merchant")).json()["data"]
        return [e for e in listed if e["details"].get("out_trade_no") == stranger]

    mine = world.eventually(mine_now)
    assert mine and mine[0]["kind"] == "unknown_notification" and mine[0]["amount"] == 1234
    r = world.http.post(
        f"/v1/exceptions/{mine[0]['id']}/resolve",
        json={"resolution": "refunded at the portal"},
        headers=world.tenant.auth("merchant"),
    )
    assert r.status_code == 200 and r.json()["resolved_by"].startswith("merchant:")
    r = world.http.post(
        f"/v1/exceptions/{mine[0]['id']}/resolve",
        json={"resolution": "again"},
        headers=world.tenant.auth("merchant"),
    )
    assert r.status_code == 409 and r.json()["error"]["code"] == "exception_resolved"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_cancel_refunds_provider_money_through_the_provider(world: World, provider: str) -> None:
    wallet = world.sbx.wallet(provider)
    order = world.order(qty=2)
    pay = world.scan(order["id"], world.sbx.code(wallet), amount=2000).json()
    assert pay["status"] == "captured"
    r = world.post(f"/v1/orders/{order['id']}/cancel", {"reason": "customer_cancelled"})
    assert r.status_code == 200, r.text
    cancelled = r.json()
    assert cancelled["status"] == "cancelled" and cancelled["refunds"][0]["status"] == "pending"
    assert cancelled["refunds"][0]["reason"] == "order cancelled: customer_cancelled"
    for _ in range(3):
        world.advance(61)
    final = world.get_order(order["id"])
    assert final["refunds"][0]["status"] == "succeeded" and final["refunded_amount"] == 2000
    assert world.sbx.net_debited(wallet) == 0


def test_payment_taken_after_giving_up_is_refunded_automatically(world: World) -> None:
    """The provider took money for an attempt Tillit had already marked failed (say the customer paid
    after a reverse was refused and the cashier took cash): the engine refunds it by itself."""
    from sqlalchemy import insert

    from tillit.adapters.db.schema import payments
    from tillit.payments import engine

    assert world.c.engine is not None
    wallet = world.sbx.wallet("wechat")
    order = world.order()
    world.post("/v1/payments", {"order_id": order["id"], "method": "cash"})
    attempt = uuid.uuid4().hex
    with world.c.db.read() as conn:
        adapter = world.c.engine.providers.get(conn, world.tenant.merchant_id, "wechat")
    paid = adapter.pay(
        out_trade_no=attempt,
        auth_code=world.sbx.code(wallet),
        amount=order["total"],
        currency="CNY",
        description="late",
    )
    assert paid.outcome.value == "success"
    now = world.clock.now()
    with world.c.db.transaction() as conn:
        conn.execute(
            insert(payments).values(
                id=attempt,
                merchant_id=world.tenant.merchant_id,
                order_id=order["id"],
                method="wechat",
                provider="wechat",
                amount=order["total"],
                currency="CNY",
                status="failed",
                failure_code="TIMEOUT",
                created_at=now,
                updated_at=now,
            )
        )
        row = conn.execute(payments.select().where(payments.c.id == attempt)).one()
        engine.trigger_resolution(conn, world.c.deps, row)
    for _ in range(4):
        world.advance(61)
    assert world.sbx.net_debited(wallet) == 0
    resolved = world.http.get("/v1/exceptions?status=resolved", headers=world.tenant.auth("merchant")).json()[
        "data"
    ]
    late = [e for e in resolved if e["payment_id"] == attempt]
    assert late and late[0]["kind"] == "late_payment" and late[0]["resolved_by"] == "system"
    assert world.payment(attempt)["status"] == "failed"


def test_attempt_first_seen_after_its_window_is_reversed(world: World) -> None:
    """The API process died mid-pay: the safety-net job first looks at a *pending* attempt after the
    query window has passed. It must move it through unknown to reversing in one go, not loop."""
    from sqlalchemy import insert

    from tillit.adapters.db.schema import payments
    from tillit.kernel import jobs

    order = world.order()
    attempt = uuid.uuid4().hex
    now = world.clock.now()
    with world.c.db.transaction() as conn:
        conn.execute(
            insert(payments).values(
                id=attempt,
                merchant_id=world.tenant.merchant_id,
                order_id=order["id"],
                method="wechat",
                provider="wechat",
                amount=order["total"],
                currency="CNY",
                status="pending",
                created_at=now,
                updated_at=now,
            )
        )
        jobs.schedule(
            conn,
            world.c.deps,
            kind="resolve_payment",
            merchant_id=world.tenant.merchant_id,
            payment_id=attempt,
            due_at=now,
        )
    world.advance(40)  # past the 30 s window before the first look
    world.advance(20)
    assert world.payment(attempt)["status"] in ("reversed", "failed")
