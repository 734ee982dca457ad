"""Small helpers for calling the API in tests."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi.testclient import TestClient

from tests.support.world import Tenant


def post(
    client: TestClient,
    path: str,
    body: Any,
    tenant: Tenant | None = None,
    *,
    key: str | None = None,
    role: str = "terminal",
    headers: dict[str, str] | None = None,
) -> Any:
    h = dict(tenant.auth(role)) if tenant else {}
    h["Idempotency-Key"] = key or uuid.uuid4().hex
    h.update(headers or {})
    return client.post(path, json=body, headers=h)


def new_order(
    client: TestClient, tenant: Tenant, lines: list[dict[str, Any]] | None = None, **extra: Any
) -> dict[str, Any]:
    lines = lines or [{"sku": "LATTE", "quantity": 2}, {"sku": "CROIS", "quantity": 1, "discount": 500}]
    r = post(client, "/v1/orders", {"lines": lines, **extra}, tenant)
    assert r.status_code == 201, r.text
    return dict(r.json())


def pay_cash(client: TestClient, tenant: Tenant, order_id: str, **extra: Any) -> dict[str, Any]:
    r = post(client, "/v1/payments", {"order_id": order_id, "method": "cash", **extra}, tenant)
    assert r.status_code == 201, r.text
    return dict(r.json())
