"""Idempotency-Key semantics, including concurrent requests against a real server."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from tests.support.api import new_order, post
from tests.support.live import live_server
from tests.support.world import Tenant
from tillit.access import idempotency
from tillit.adapters.db.schema import idempotency_keys, ledger_postings, orders, payments
from tillit.bootstrap import Container

LINES = {"lines": [{"sku": "LATTE", "quantity": 1}]}


def test_same_key_same_body_replays_identically(client: TestClient, tenant: Tenant) -> None:
    first = post(client, "/v1/orders", LINES, tenant, key="k-1")
    second = post(client, "/v1/orders", LINES, tenant, key="k-1")
    assert first.status_code == second.status_code == 201
    assert first.content == second.content
    assert second.headers["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first.headers


def test_same_key_other_body_is_422(client: TestClient, tenant: Tenant) -> None:
    post(client, "/v1/orders", LINES, tenant, key="k-2")
    r = post(client, "/v1/orders", {"lines": [{"sku": "LATTE", "quantity": 2}]}, tenant, key="k-2")
    assert r.status_code == 422 and r.json()["error"]["code"] == "idempotency_key_reused"
    order = new_order(client, tenant)
    r = post(client, "/v1/payments", {"order_id": order["id"]}, tenant, key="k-2")
    assert r.status_code == 422 and r.json()["error"]["code"] == "idempotency_key_reused"


def test_missing_or_bad_key_is_400_and_writes_nothing(
    client: TestClient, container: Container, tenant: Tenant
) -> None:
    with container.db.read() as conn:
        before = conn.execute(select(func.count()).select_from(orders)).scalar_one()
    r = client.post("/v1/orders", json=LINES, headers=tenant.auth())
    assert r.status_code == 400 and r.json()["error"]["code"] == "idempotency_key_missing"
    r = post(client, "/v1/orders", LINES, tenant, key="x" * 256)
    assert r.status_code == 400 and r.json()["error"]["code"] == "idempotency_key_invalid"
    with container.db.read() as conn:
        assert conn.execute(select(func.count()).select_from(orders)).scalar_one() == before


def test_keys_are_scoped_per_merchant(client: TestClient, tenant: Tenant, other_tenant: Tenant) -> None:
    a = post(client, "/v1/orders", LINES, tenant, key="shared")
    b = post(client, "/v1/orders", LINES, other_tenant, key="shared")
    assert a.status_code == b.status_code == 201 and a.json()["id"] != b.json()["id"]


def test_failed_request_leaves_key_free(client: TestClient, tenant: Tenant) -> None:
    order = new_order(client, tenant)
    r = post(client, "/v1/payments", {"order_id": order["id"], "amount": 999999}, tenant, key="retry-me")
    assert r.status_code == 409
    r = post(client, "/v1/payments", {"order_id": order["id"], "amount": 999999}, tenant, key="retry-me")
    assert r.status_code == 409 and r.json()["error"]["code"] == "amount_exceeds_balance"


def test_prune_keeps_keys_for_24_hours(container: Container, client: TestClient, tenant: Tenant) -> None:
    post(client, "/v1/orders", LINES, tenant, key="old-key")
    now = container.deps.clock.now()
    mine = (idempotency_keys.c.key == "old-key") & (idempotency_keys.c.scope == tenant.merchant_id)

    def kept() -> int:
        with container.db.read() as conn:
            return int(
                conn.execute(select(func.count()).select_from(idempotency_keys).where(mine)).scalar_one()
            )

    with container.db.transaction() as conn:  # asking for 1 h still keeps 24 h
        idempotency.prune(conn, now + timedelta(hours=23), timedelta(hours=1))
    assert kept() == 1
    with container.db.transaction() as conn:
        assert idempotency.prune(conn, now + timedelta(hours=25)) >= 1
    assert kept() == 0


def test_fifty_threads_same_key_make_one_order_and_one_capture(container: Container, tenant: Tenant) -> None:
    oid = uuid.uuid4().hex
    with live_server(container) as base, httpx.Client(base_url=base, timeout=30) as http:

        def create(_: int) -> httpx.Response:
            return http.post(
                "/v1/orders",
                json={"id": oid, **LINES},
                headers={**tenant.auth(), "Idempotency-Key": "same-order"},
            )

        def pay(_: int) -> httpx.Response:
            return http.post(
                "/v1/payments",
                json={"order_id": oid, "tendered": 5000},
                headers={**tenant.auth(), "Idempotency-Key": "same-payment"},
            )

        with ThreadPoolExecutor(50) as pool:
            created = list(pool.map(create, range(50)))
            paid = list(pool.map(pay, range(50)))
    for batch in (created, paid):
        statuses = {r.status_code for r in batch}
        assert statuses <= {201, 409}, statuses
        good = [r for r in batch if r.status_code == 201]
        assert good and all(r.content == good[0].content for r in good)
        assert all(
            r.json()["error"]["code"] == "idempotency_key_in_flight" for r in batch if r.status_code == 409
        )
    with container.db.read() as conn:
        assert (
            conn.execute(select(func.count()).select_from(orders).where(orders.c.id == oid)).scalar_one() == 1
        )
        assert (
            conn.execute(
                select(func.count()).select_from(payments).where(payments.c.order_id == oid)
            ).scalar_one()
            == 1
        )
        captures = conn.execute(
            select(func.count())
            .select_from(ledger_postings)
            .where(ledger_postings.c.order_id == oid, ledger_postings.c.kind == "capture")
        ).scalar_one()
    assert captures == 2  # one capture transaction: two postings


def test_fifty_keys_paying_one_order_never_overcapture(container: Container, tenant: Tenant) -> None:
    with TestClient(__import__("tillit.api.app", fromlist=["create_app"]).create_app(container)) as tc:
        order = new_order(tc, tenant, [{"sku": "LATTE", "quantity": 1}])  # total 2800
    with live_server(container) as base, httpx.Client(base_url=base, timeout=30) as http:

        def pay(i: int) -> httpx.Response:
            return http.post(
                "/v1/payments",
                json={"order_id": order["id"], "amount": 700},
                headers={**tenant.auth(), "Idempotency-Key": f"pay-{i}"},
            )

        with ThreadPoolExecutor(50) as pool:
            results = list(pool.map(pay, range(50)))
    assert sum(r.status_code == 201 for r in results) == 4
    assert {r.json()["error"]["code"] for r in results if r.status_code != 201} <= {"order_not_open"}
    with container.db.read() as conn:
        row = conn.execute(
            select(orders.c.paid_amount, orders.c.status).where(orders.c.id == order["id"])
        ).one()
        captured = conn.execute(
            select(func.sum(payments.c.amount)).where(payments.c.order_id == order["id"])
        ).scalar_one()
    assert (row.paid_amount, row.status, captured) == (2800, "paid", 2800)
