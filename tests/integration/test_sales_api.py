"""Orders, cash payments, refunds and cancels through the API, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid

from fastapi.testclient import TestClient
from sqlalchemy import insert

from tests.support.api import new_order, pay_cash, post
from tests.support.world import Tenant
from tillit.adapters.db.schema import payments
from tillit.bootstrap import Container


def test_cash_sale_with_change_then_partial_and_full_refund(client: TestClient, tenant: Tenant) -> None:
    order = new_order(client, tenant)
    assert (order["subtotal"], order["discount_total"], order["total"]) == (7100, 500, 6600)
    assert order["status"] == "open" and order["balance_due"] == 6600 and order["number"] >= 1

    payment = pay_cash(client, tenant, order["id"], tendered=10000)
    assert payment["amount"] == 6600 and payment["change_due"] == 3400 and payment["status"] == "captured"
    paid = client.get(f"/v1/orders/{order['id']}", headers=tenant.auth()).json()
    assert paid["status"] == "paid" and paid["paid_amount"] == 6600 and paid["balance_due"] == 0

    r = post(client, "/v1/refunds", {"payment_id": payment["id"], "amount": 1000, "reason": "cold"}, tenant)
    assert r.status_code == 201 and r.json()["status"] == "succeeded"
    r = post(client, "/v1/refunds", {"payment_id": payment["id"], "amount": 6000}, tenant)
    assert r.status_code == 409 and r.json()["error"]["code"] == "refund_exceeds_captured"
    assert r.json()["error"]["details"]["refundable"] == 5600
    r = post(client, "/v1/refunds", {"payment_id": payment["id"]}, tenant)
    assert r.status_code == 201 and r.json()["amount"] == 5600

    final = client.get(f"/v1/orders/{order['id']}", headers=tenant.auth()).json()
    assert final["status"] == "refunded" and final["refunded_amount"] == 6600
    assert final["payments"][0]["status"] == "refunded"
    events = client.get(f"/v1/orders/{order['id']}/events", headers=tenant.auth()).json()["data"]
    moves = [(e["entity"], e["from_status"], e["to_status"]) for e in events]
    assert moves == [
        ("order", None, "open"),
        ("payment", None, "captured"),
        ("order", "open", "paid"),
        ("refund", None, "succeeded"),
        ("refund", None, "succeeded"),
        ("payment", "captured", "refunded"),
        ("order", "paid", "refunded"),
    ]
    assert all(e["actor"].startswith("terminal:") for e in events)


def test_split_cash_payments_and_overpayment_refused(client: TestClient, tenant: Tenant) -> None:
    order = new_order(client, tenant)
    pay_cash(client, tenant, order["id"], amount=1000)
    r = post(client, "/v1/payments", {"order_id": order["id"], "amount": 5601}, tenant)
    assert r.status_code == 409 and r.json()["error"]["code"] == "amount_exceeds_balance"
    pay_cash(client, tenant, order["id"], amount=5600)
    r = post(client, "/v1/payments", {"order_id": order["id"], "amount": 1}, tenant)
    assert r.status_code == 409 and r.json()["error"]["code"] == "order_not_open"


def test_client_total_must_agree_with_server(client: TestClient, tenant: Tenant) -> None:
    r = post(client, "/v1/orders", {"lines": [{"sku": "LATTE", "quantity": 1}], "total": 2700}, tenant)
    assert r.status_code == 422 and r.json()["error"]["code"] == "total_mismatch"
    assert r.json()["error"]["details"] == {"expected": 2800, "received": 2700}
    r = post(client, "/v1/orders", {"lines": [{"sku": "LATTE", "quantity": 1}], "total": 2800}, tenant)
    assert r.status_code == 201


def test_cancel_open_order_hands_back_cash(client: TestClient, tenant: Tenant) -> None:
    order = new_order(client, tenant)
    pay_cash(client, tenant, order["id"], amount=2000)
    r = post(client, f"/v1/orders/{order['id']}/cancel", {"reason": "customer_cancelled"}, tenant)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "cancelled" and body["cancel_reason"] == "customer_cancelled"
    assert body["refunded_amount"] == 2000 and body["refunds"][0]["amount"] == 2000
    r = post(client, f"/v1/orders/{order['id']}/cancel", {"reason": "other"}, tenant)
    assert r.status_code == 409 and r.json()["error"]["code"] == "order_not_open"
    r = post(client, f"/v1/orders/{order['id']}/cancel", {"reason": "bored"}, tenant)
    assert r.status_code == 422


def test_refund_of_partly_paid_order_is_refused(client: TestClient, tenant: Tenant) -> None:
    order = new_order(client, tenant)
    payment = pay_cash(client, tenant, order["id"], amount=2000)
    r = post(client, "/v1/refunds", {"payment_id": payment["id"]}, tenant)
    assert r.status_code == 409 and r.json()["error"]["code"] == "order_open"


def test_in_flight_payment_blocks_pay_and_cancel(
    client: TestClient, container: Container, tenant: Tenant
) -> None:
    order = new_order(client, tenant)
    now = container.deps.clock.now()
    attempt = uuid.uuid4().hex
    with container.db.transaction() as conn:
        conn.execute(
            insert(payments).values(
                id=attempt,
                merchant_id=tenant.merchant_id,
                order_id=order["id"],
                method="wechat",
                provider="wechat",
                amount=order["total"],
                currency="CNY",
                status="unknown",
                created_at=now,
                updated_at=now,
            )
        )
    r = post(client, "/v1/payments", {"order_id": order["id"]}, tenant)
    assert r.status_code == 409
    err = r.json()["error"]
    assert err["code"] == "payment_in_progress" and err["details"]["payment_id"] == attempt
    assert err["details"]["status"] == "unknown"
    r = post(client, f"/v1/orders/{order['id']}/cancel", {"reason": "timeout"}, tenant)
    assert r.status_code == 409 and r.json()["error"]["code"] == "payment_in_progress"


def test_client_generated_ids_deduplicate(client: TestClient, tenant: Tenant) -> None:
    oid = str(uuid.uuid4())
    first = post(client, "/v1/orders", {"id": oid, "lines": [{"sku": "WATER", "quantity": 2}]}, tenant)
    again = post(client, "/v1/orders", {"id": oid, "lines": [{"sku": "WATER", "quantity": 2}]}, tenant)
    assert first.status_code == 201 and again.status_code == 200
    assert first.json()["id"] == again.json()["id"] == uuid.UUID(oid).hex
    pid = uuid.uuid4().hex
    p1 = post(client, "/v1/payments", {"id": pid, "order_id": oid}, tenant)
    p2 = post(client, "/v1/payments", {"id": pid, "order_id": oid}, tenant)
    assert p1.status_code == 201 and p2.status_code == 200 and p2.json()["id"] == pid
    order = client.get(f"/v1/orders/{oid}", headers=tenant.auth()).json()
    assert order["paid_amount"] == 600 and len(order["payments"]) == 1


def test_stock_is_taken_when_paid_and_zero_total_orders_settle(client: TestClient, tenant: Tenant) -> None:
    latte = tenant.products["LATTE"]
    order = new_order(client, tenant, [{"sku": "LATTE", "quantity": 3}])
    before = client.get(f"/v1/products/{latte['id']}", headers=tenant.auth()).json()["stock"]
    pay_cash(client, tenant, order["id"])
    after = client.get(f"/v1/products/{latte['id']}", headers=tenant.auth()).json()["stock"]
    assert after == before - 3
    free = new_order(client, tenant, [{"sku": "WATER", "quantity": 1, "discount": 300}])
    assert free["total"] == 0 and free["status"] == "paid"


def test_list_orders_paginates_and_filters(client: TestClient, tenant: Tenant) -> None:
    made = [new_order(client, tenant, [{"sku": "WATER", "quantity": n}]) for n in range(1, 6)]
    page1 = client.get("/v1/orders?limit=2", headers=tenant.auth()).json()
    page2 = client.get(f"/v1/orders?limit=2&before={page1['next']}", headers=tenant.auth()).json()
    ids = [o["id"] for o in page1["data"] + page2["data"]]
    assert ids == [o["id"] for o in reversed(made)][:4]
    by_number = client.get(f"/v1/orders?number={made[0]['number']}", headers=tenant.auth()).json()["data"]
    assert [o["id"] for o in by_number] == [made[0]["id"]]
    assert client.get("/v1/orders?limit=500", headers=tenant.auth()).status_code == 422


def test_products_managed_by_manager_searched_by_cashier(client: TestClient, tenant: Tenant) -> None:
    r = post(
        client,
        "/v1/products",
        {"sku": "TEA", "name": "Oolong 乌龙", "price": 1800, "barcode": "6900000000017"},
        tenant,
        role="merchant",
    )
    assert r.status_code == 201, r.text
    pid = r.json()["id"]
    found = client.get("/v1/products?q=6900000000017", headers=tenant.auth()).json()["data"]
    assert [p["id"] for p in found] == [pid]
    assert client.get("/v1/products?q=乌龙", headers=tenant.auth()).json()["data"][0]["id"] == pid
    r = client.patch(f"/v1/products/{pid}", json={"price": 1900}, headers=tenant.auth("merchant"))
    assert r.status_code == 200 and r.json()["price"] == 1900
    dup = post(client, "/v1/products", {"sku": "TEA", "name": "x", "price": 1}, tenant, role="merchant")
    assert dup.status_code == 409 and dup.json()["error"]["code"] == "product_exists"
    r = client.patch(f"/v1/products/{pid}", json={"active": False}, headers=tenant.auth("merchant"))
    r = post(client, "/v1/orders", {"lines": [{"product_id": pid, "quantity": 1}]}, tenant)
    assert r.status_code == 422 and r.json()["error"]["code"] == "product_inactive"
