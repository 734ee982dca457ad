"""Integers past 64 bits in query parameters get a 422 in the one error shape, never a 500 (real HTTP)."""

from __future__ import annotations

import httpx
import pytest

from tests.support.live import live_server
from tests.support.world import Tenant
from tillit.bootstrap import Container

HUGE = [str(2**63), str(10**30), str(-(2**63) - 1)]


@pytest.mark.parametrize("value", HUGE)
def test_huge_integers_in_queries_are_422(container: Container, tenant: Tenant, value: str) -> None:
    missing_run = "0" * 32
    with live_server(container) as base, httpx.Client(base_url=base, timeout=30) as http:
        paths = [
            ("/v1/orders", {"number": value}),
            (f"/v1/reconciliation/runs/{missing_run}/discrepancies", {"offset": value}),
            ("/v1/orders", {"limit": value}),
        ]
        for path, params in paths:
            r = http.get(path, params=params, headers=tenant.auth("merchant"))
            assert r.status_code == 422, (path, params, r.text)
            assert r.json()["error"]["code"] == "validation_error", r.text


def test_largest_receipt_number_is_accepted(container: Container, tenant: Tenant) -> None:
    with live_server(container) as base, httpx.Client(base_url=base, timeout=30) as http:
        r = http.get("/v1/orders", params={"number": str(2**63 - 1)}, headers=tenant.auth("merchant"))
        assert r.status_code == 200, r.text


def test_missing_or_bad_idempotency_key_keeps_its_codes_over_http(
    container: Container, tenant: Tenant
) -> None:
    body = {"lines": [{"sku": "LATTE", "quantity": 1}]}
    with live_server(container) as base, httpx.Client(base_url=base, timeout=30) as http:
        cases = [
            (None, "idempotency_key_missing"),
            ("", "idempotency_key_missing"),
            ("x" * 256, "idempotency_key_invalid"),
            ("tab\tkey", "idempotency_key_invalid"),
        ]
        for key, code in cases:
            headers = tenant.auth()
            if key is not None:
                headers["Idempotency-Key"] = key
            r = http.post("/v1/orders", json=body, headers=headers)
            assert r.status_code == 400, (key, r.text)
            assert set(r.json()) == {"error"} and r.json()["error"]["code"] == code, r.text
        r = http.post("/v1/orders", json={"lines": []}, headers=tenant.auth())
        assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error", r.text


def test_malformed_path_id_keeps_invalid_id_over_http(container: Container, tenant: Tenant) -> None:
    with live_server(container) as base, httpx.Client(base_url=base, timeout=30) as http:
        for bad in ["not-a-uuid", "0" * 31, "0" * 33]:
            r = http.get(f"/v1/orders/{bad}", headers=tenant.auth())
            assert r.status_code == 422, r.text
            assert r.json()["error"]["code"] == "invalid_id", r.text
        for good in ["0" * 32, "{" + "00000000-0000-0000-0000-000000000000" + "}"]:
            r = http.get(f"/v1/orders/{good}", headers=tenant.auth())
            assert r.status_code == 404, r.text
