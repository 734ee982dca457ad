"""Bad input gets a 4xx with the one error shape, and writes nothing."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from tests.support.api import new_order
from tests.support.world import Tenant
from tillit.adapters.db.schema import metadata
from tillit.bootstrap import Container


def row_counts(container: Container) -> dict[str, int]:
    with container.db.read() as conn:
        return {
            t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
            for t in metadata.sorted_tables
        }


def assert_error_shape(r: Any, status: int, code: str | None = None) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    assert isinstance(body["error"]["code"], str) and body["error"]["message"]
    if code:
        assert body["error"]["code"] == code, body


ORDER_BODIES = [
    ({"lines": []}, 422, "validation_error"),
    ({"lines": [{"sku": "LATTE", "quantity": 0}]}, 422, "validation_error"),
    ({"lines": [{"sku": "LATTE", "quantity": -1}]}, 422, "validation_error"),
    ({"lines": [{"sku": "LATTE", "quantity": 10**6}]}, 422, "validation_error"),
    ({"lines": [{"sku": "LATTE", "quantity": 1.5}]}, 422, "validation_error"),
    ({"lines": [{"sku": "LATTE", "quantity": "2"}]}, 422, "validation_error"),
    ({"lines": [{"sku": "LATTE", "quantity": 1, "discount": 2801}]}, 422, "invalid_discount"),
    ({"lines": [{"sku": "LATTE", "quantity": 1, "discount": -5}]}, 422, "validation_error"),
    ({"lines": [{"sku": "NOPE", "quantity": 1}]}, 422, "product_not_found"),
    ({"lines": [{"sku": "LATTE", "product_id": "0" * 32, "quantity": 1}]}, 422, "validation_error"),
    ({"lines": [{"sku": "LATTE", "quantity": 1}], "currency": "XXX"}, 422, "unknown_currency"),
    ({"lines": [{"sku": "LATTE", "quantity": 1}], "currency": "USD"}, 422, "currency_mismatch"),
    ({"lines": [{"sku": "LATTE", "quantity": 1}], "total": 1.0}, 422, "validation_error"),
    ({"lines": [{"sku": "LATTE", "quantity": 1}], "colour": "red"}, 422, "validation_error"),
    ({"lines": [{"sku": "LATTE", "quantity": 1}], "id": "not-a-uuid"}, 422, "validation_error"),
    ({"lines": [{"sku": "LATTE", "quantity": 9999}] * 200, "total": 1}, 422, None),
    ([1, 2, 3], 422, "validation_error"),
]


@pytest.mark.parametrize(("body", "status", "code"), ORDER_BODIES)
def test_bad_orders_write_nothing(
    client: TestClient, container: Container, tenant: Tenant, body: Any, status: int, code: str | None
) -> None:
    before = row_counts(container)
    r = client.post("/v1/orders", json=body, headers={**tenant.auth(), "Idempotency-Key": "bad"})
    assert_error_shape(r, status, code)
    assert row_counts(container) == before


PAYMENT_BODIES = [
    ({"amount": 0}, 422, "validation_error"),
    ({"amount": -100}, 422, "validation_error"),
    ({"amount": 10**13}, 422, "validation_error"),
    ({"amount": 100.5}, 422, "validation_error"),
    ({"amount": "100"}, 422, "validation_error"),
    ({"amount": True}, 422, "validation_error"),
    ({"currency": "ZZZ"}, 422, "currency_mismatch"),
    ({"method": "bitcoin"}, 422, "validation_error"),
    ({"method": "wechat"}, 422, "payment_code_required"),
    ({"payment_code": "134567890123456789"}, 422, "method_not_enabled"),
    ({"payment_code": "999999999999"}, 422, "unsupported_code"),
    ({"tendered": 10}, 422, "insufficient_tender"),
    ({"surprise": 1}, 422, "validation_error"),
]


@pytest.mark.parametrize(("extra", "status", "code"), PAYMENT_BODIES)
def test_bad_payments_write_nothing(
    client: TestClient, container: Container, tenant: Tenant, extra: dict[str, Any], status: int, code: str
) -> None:
    order = new_order(client, tenant)
    before = row_counts(container)
    r = client.post(
        "/v1/payments",
        json={"order_id": order["id"], **extra},
        headers={**tenant.auth(), "Idempotency-Key": "badpay"},
    )
    assert_error_shape(r, status, code)
    assert row_counts(container) == before


def test_malformed_json_and_wrong_content(client: TestClient, container: Container, tenant: Tenant) -> None:
    before = row_counts(container)
    headers = {**tenant.auth(), "Idempotency-Key": "m", "Content-Type": "application/json"}
    assert_error_shape(
        client.post("/v1/orders", content=b'{"lines": [', headers=headers), 400, "malformed_json"
    )
    assert_error_shape(client.post("/v1/orders", content=b"", headers=headers), 422, "validation_error")
    assert row_counts(container) == before


def test_oversized_body_is_413(client: TestClient, container: Container, tenant: Tenant) -> None:
    before = row_counts(container)
    big = b'{"lines": [' + b'{"sku": "LATTE", "quantity": 1},' * 4000 + b'{"sku": "LATTE", "quantity": 1}]}'
    headers = {**tenant.auth(), "Idempotency-Key": "big", "Content-Type": "application/json"}
    assert_error_shape(client.post("/v1/orders", content=big, headers=headers), 413, "body_too_large")
    assert row_counts(container) == before


def test_unknown_routes_and_methods_use_the_error_shape(client: TestClient, tenant: Tenant) -> None:
    assert_error_shape(client.get("/v1/nothing-here", headers=tenant.auth()), 404, "not_found")
    assert_error_shape(client.delete("/v1/orders", headers=tenant.auth()), 405, "method_not_allowed")
    assert_error_shape(client.get("/v1/orders/not-an-id", headers=tenant.auth()), 422, "invalid_id")
