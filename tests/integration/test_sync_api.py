"""The till's server side: batched journal sync and hash-chained shift reports."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi.testclient import TestClient

from tests.support.api import post
from tests.support.world import Tenant
from tillit.domain.shifts import GENESIS, chain_hash
from tillit.domain.tillrules import SYNC_MAX_ENTRIES


def sale_entries(order_id: str, pay_id: str, qty: int = 1) -> list[dict[str, Any]]:
    return [
        {
            "op": "order",
            "key": f"o-{order_id}",
            "body": {"id": order_id, "lines": [{"sku": "LATTE", "quantity": qty}]},
        },
        {
            "op": "payment",
            "key": f"p-{pay_id}",
            "body": {"id": pay_id, "order_id": order_id, "method": "cash", "tendered": 10000},
        },
    ]


def test_batch_applies_in_order_and_replays(client: TestClient, tenant: Tenant) -> None:
    oid, pid = uuid.uuid4().hex, uuid.uuid4().hex
    entries = sale_entries(oid, pid, 2)
    first = client.post("/v1/sync", json={"entries": entries}, headers=tenant.auth()).json()["results"]
    assert [r["status"] for r in first] == [201, 201] and not any(r["replayed"] for r in first)
    again = client.post("/v1/sync", json={"entries": entries}, headers=tenant.auth()).json()["results"]
    assert [r["replayed"] for r in again] == [True, True] and again[1]["body"] == first[1]["body"]
    # The same entry through the single route is the same request: replayed, not applied twice.
    single = post(client, "/v1/payments", entries[1]["body"], tenant, key=entries[1]["key"])
    assert single.status_code == 201 and single.headers["Idempotent-Replayed"] == "true"
    order = client.get(f"/v1/orders/{oid}", headers=tenant.auth()).json()
    assert order["status"] == "paid" and len(order["payments"]) == 1


def test_failing_entry_leaves_no_trace_and_others_apply(client: TestClient, tenant: Tenant) -> None:
    good_o, good_p, bad_o = uuid.uuid4().hex, uuid.uuid4().hex, uuid.uuid4().hex
    entries = [
        {"op": "order", "key": "bad-order", "body": {"id": bad_o, "lines": [{"sku": "NOPE", "quantity": 1}]}},
        {"op": "payment", "key": "bad-pay", "body": {"order_id": bad_o, "method": "cash"}},
        {
            "op": "payment",
            "key": "code-pay",
            "body": {"order_id": good_o, "payment_code": "134567890123456789"},
        },
        {"op": "order", "key": "shape", "body": {"lines": "nope"}},
        *sale_entries(good_o, good_p),
    ]
    results = client.post("/v1/sync", json={"entries": entries}, headers=tenant.auth()).json()["results"]
    codes = [r.get("error", {}).get("code") or r["status"] for r in results]
    assert codes == [
        "product_not_found",
        "order_not_found",
        "provider_payment_not_batchable",
        "validation_error",
        201,
        201,
    ]
    assert client.get(f"/v1/orders/{bad_o}", headers=tenant.auth()).status_code == 404
    assert client.get(f"/v1/orders/{good_o}", headers=tenant.auth()).json()["status"] == "paid"
    retry = client.post("/v1/sync", json={"entries": entries[:1]}, headers=tenant.auth()).json()["results"]
    assert retry[0]["error"]["code"] == "product_not_found"  # the key stayed free: nothing was stored


def _backlog(client: TestClient, admin: str, terminal_id: str) -> float | None:
    text = client.get("/metrics", headers={"Authorization": f"Bearer {admin}"}).text
    for line in text.splitlines():
        if line.startswith("tillit_till_sync_backlog{") and f'terminal_id="{terminal_id}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return None


def test_the_till_reports_its_queue_and_the_backlog_metric_is_exact(
    client: TestClient, tenant: Tenant, admin_key: str
) -> None:
    assert _backlog(client, admin_key, tenant.terminal_id) is None  # never reported: no figure
    o1, p1, o2, p2 = (uuid.uuid4().hex for _ in range(4))
    # The till holds 7 entries and sends 2 of them: 5 stay.
    r = client.post("/v1/sync", json={"entries": sale_entries(o1, p1), "queued": 7}, headers=tenant.auth())
    assert r.status_code == 200, r.text
    assert _backlog(client, admin_key, tenant.terminal_id) == 5
    # A refused entry leaves the till's queue too (rejected, shown to a person); the sale's two applied.
    bad = {
        "op": "order",
        "key": "bad",
        "body": {"id": uuid.uuid4().hex, "lines": [{"sku": "NOPE", "quantity": 1}]},
    }
    entries = [bad, *sale_entries(o2, p2)]
    r = client.post("/v1/sync", json={"entries": entries, "queued": 5}, headers=tenant.auth())
    assert [x["status"] for x in r.json()["results"]] == [422, 201, 201]
    assert _backlog(client, admin_key, tenant.terminal_id) == 2
    # A batch that does not say leaves the last report; a manager's key speaks for no till.
    client.post("/v1/sync", json={"entries": sale_entries(o2, p2)}, headers=tenant.auth())
    client.post(
        "/v1/sync", json={"entries": sale_entries(o2, p2), "queued": 99}, headers=tenant.auth("merchant")
    )
    assert _backlog(client, admin_key, tenant.terminal_id) == 2
    bad_count = client.post(
        "/v1/sync", json={"entries": sale_entries(o2, p2), "queued": -1}, headers=tenant.auth()
    )
    assert bad_count.status_code == 422 and bad_count.json()["error"]["code"] == "validation_error"
    assert _backlog(client, admin_key, tenant.terminal_id) == 2


def test_batch_limits(client: TestClient, tenant: Tenant) -> None:
    too_many = [{"op": "order", "key": str(i), "body": {}} for i in range(SYNC_MAX_ENTRIES + 1)]
    assert client.post("/v1/sync", json={"entries": too_many}, headers=tenant.auth()).status_code == 422
    assert client.post("/v1/sync", json={"entries": []}, headers=tenant.auth()).status_code == 422
    # The body bound is the sync route's own (larger than other routes'), and still a bound.
    big = [{"op": "order", "key": str(i), "body": {"note": "x" * 2500}} for i in range(SYNC_MAX_ENTRIES)]
    refused = client.post("/v1/sync", json={"entries": big}, headers=tenant.auth())
    assert refused.status_code == 413 and refused.json()["error"]["code"] == "body_too_large"
    fits = [{"op": "order", "key": str(i), "body": {"note": "x" * 1000}} for i in range(SYNC_MAX_ENTRIES)]
    answered = client.post("/v1/sync", json={"entries": fits}, headers=tenant.auth())
    assert answered.status_code == 200  # each entry answered on its own (here: no lines)
    assert {r["error"]["code"] for r in answered.json()["results"]} == {"validation_error"}


def shift(tenant: Tenant, number: int, prev: str, counted: int = 10000) -> dict[str, Any]:
    report = {
        "number": number,
        "terminal_id": tenant.terminal_id,
        "opened_at": "2026-11-20T08:00:00+00:00",
        "closed_at": "2026-11-20T16:00:00+00:00",
        "opening_float": 10000,
        "sales_count": 0,
        "sales_by_method": {},
        "refunds_by_method": {},
        "cancels_by_reason": {},
        "expected_cash": 10000,
        "counted_cash": counted,
        "difference": counted - 10000,
    }
    return {
        "id": uuid.uuid4().hex,
        "number": number,
        "report": report,
        "prev_hash": prev,
        "report_hash": chain_hash(prev, report),
    }


def test_shift_reports_form_a_chain(client: TestClient, tenant: Tenant) -> None:
    first = shift(tenant, 1, GENESIS)
    assert post(client, "/v1/shifts", first, tenant).status_code == 201
    assert post(client, "/v1/shifts", first, tenant).status_code in (200, 201)
    skipped = shift(tenant, 3, first["report_hash"])
    r = post(client, "/v1/shifts", skipped, tenant)
    assert r.status_code == 409 and r.json()["error"]["code"] == "shift_chain_broken"
    forged = shift(tenant, 2, GENESIS)
    assert post(client, "/v1/shifts", forged, tenant).json()["error"]["code"] == "shift_chain_broken"
    tampered = shift(tenant, 2, first["report_hash"])
    tampered["report"]["counted_cash"] = 1
    r = post(client, "/v1/shifts", tampered, tenant)
    assert r.status_code == 422 and r.json()["error"]["code"] == "shift_hash_mismatch"
    second = shift(tenant, 2, first["report_hash"], counted=9950)
    assert post(client, "/v1/shifts", second, tenant).status_code == 201
    listed = client.get("/v1/shifts", headers=tenant.auth("merchant")).json()["data"]
    assert [s["number"] for s in listed if s["terminal_id"] == tenant.terminal_id] == [2, 1]
    assert listed[0]["report"]["difference"] == -50
