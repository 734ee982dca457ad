"""Tenant isolation and role checks, generated from the route table.

Every /v1 route must have a probe here (the first test fails otherwise), so a new endpoint cannot
ship without being checked: merchant A's keys can neither read nor act on merchant B's objects, and a
key whose role the route does not allow is refused with 403.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import insert

from tests.support.api import new_order, pay_cash, post
from tests.support.world import Tenant
from tillit.adapters.db.schema import alerts as alerts_table
from tillit.api.routes import catalog, engine, merchants, operator, reconciliation, sales, station, till
from tillit.api.routes import fulfilment as fulfilment_routes
from tillit.api.routes import monitoring as monitoring_routes
from tillit.api.routes import settlement as settlement_routes
from tillit.api.routes import webhooks as webhook_routes
from tillit.bootstrap import Container
from tillit.domain.shifts import ShiftTotals, chain_hash
from tillit.exceptions import cases as exc_svc
from tillit.merchants import documents as merchant_documents
from tillit.monitoring import alerts as alert_rules
from tillit.sales import tiles

# A PNG's signature is all the till's image check reads; the victim's tile has its own bytes.
EVIL_PNG = b"\x89PNG\r\n\x1a\n" + b"evil" * 8
VICTIM_PNG = b"\x89PNG\r\n\x1a\n" + b"mine" * 8

WECHAT_BILL = (Path(__file__).resolve().parents[1] / "data" / "wechat_all_20261120.csv").read_bytes()
BANK_STATEMENT = (
    "value_date,amount,currency,counterparty,bank_ref,memo\n2026-11-21,1.00,CNY,财付通,B1,结算 20261120\n"
).encode()


def _victim_report(terminal_id: str) -> dict[str, Any]:
    """A well-formed Z report naming the victim's terminal (so only the terminal mismatch refuses it)."""
    return ShiftTotals(opening_float=0).report(
        number=1,
        terminal_id=terminal_id,
        opened_at="2026-01-31T08:00:00+00:00",
        closed_at="2026-01-31T18:00:00+00:00",
        counted_cash=0,
    )


# (method, path) -> function(victim objects) -> request kwargs. Path params are filled from `objects`.
Probe = dict[str, Any]
PROBES: dict[tuple[str, str], Any] = {
    ("GET", "/v1/me"): lambda o: {},
    ("POST", "/v1/merchants"): lambda o: {"json": {"name": "Evil"}},
    ("GET", "/v1/merchants"): lambda o: {},
    ("GET", "/v1/merchants/{merchant_id}"): lambda o: {},
    ("POST", "/v1/stores"): lambda o: {"json": {"merchant_id": o["merchant_id"], "name": "Evil"}},
    ("GET", "/v1/stores"): lambda o: {"params": {"merchant_id": o["merchant_id"]}},
    ("GET", "/v1/stores/{store_id}"): lambda o: {},
    ("POST", "/v1/terminals"): lambda o: {"json": {"store_id": o["store_id"], "name": "Evil"}},
    ("GET", "/v1/terminals"): lambda o: {"params": {"merchant_id": o["merchant_id"]}},
    ("GET", "/v1/terminals/{terminal_id}"): lambda o: {},
    ("POST", "/v1/api-keys"): lambda o: {
        "json": {"role": "terminal", "name": "x", "terminal_id": o["terminal_id"]}
    },
    ("GET", "/v1/api-keys"): lambda o: {"params": {"merchant_id": o["merchant_id"]}},
    ("POST", "/v1/api-keys/{key_id}/revoke"): lambda o: {},
    ("POST", "/v1/products"): lambda o: {"json": {"sku": "EVIL", "name": "x", "price": 1}},
    ("GET", "/v1/products"): lambda o: {},
    ("GET", "/v1/products/{product_id}"): lambda o: {},
    ("PATCH", "/v1/products/{product_id}"): lambda o: {"json": {"price": 1}},
    ("POST", "/v1/orders"): lambda o: {
        "json": {"store_id": o["store_id"], "lines": [{"product_id": o["product_id"], "quantity": 1}]}
    },
    ("GET", "/v1/orders"): lambda o: {},
    ("GET", "/v1/orders/{order_id}"): lambda o: {},
    ("GET", "/v1/orders/{order_id}/events"): lambda o: {},
    ("POST", "/v1/orders/{order_id}/cancel"): lambda o: {"json": {"reason": "other"}},
    ("POST", "/v1/payments"): lambda o: {"json": {"order_id": o["open_order_id"], "amount": 1}},
    ("GET", "/v1/payments/{payment_id}"): lambda o: {},
    ("POST", "/v1/refunds"): lambda o: {"json": {"payment_id": o["payment_id"], "amount": 1}},
    ("GET", "/v1/refunds/{refund_id}"): lambda o: {},
    ("PUT", "/v1/merchants/{merchant_id}/providers/{provider}"): lambda o: {"json": {"appid": "x"}},
    ("GET", "/v1/merchants/{merchant_id}/providers"): lambda o: {},
    ("GET", "/v1/exceptions"): lambda o: {"params": {"status": "open"}},
    ("GET", "/v1/exceptions/{exception_id}"): lambda o: {},
    ("POST", "/v1/exceptions/{exception_id}/resolve"): lambda o: {"json": {"resolution": "mine now"}},
    ("POST", "/v1/sync"): lambda o: {
        "json": {
            "entries": [
                {
                    "op": "payment",
                    "key": uuid.uuid4().hex,
                    "body": {"order_id": o["open_order_id"], "amount": 1},
                },
                {
                    "op": "refund",
                    "key": uuid.uuid4().hex,
                    "body": {"payment_id": o["payment_id"], "amount": 1},
                },
                {
                    "op": "cancel",
                    "key": uuid.uuid4().hex,
                    "order_id": o["open_order_id"],
                    "body": {"reason": "other"},
                },
            ]
        }
    },
    ("POST", "/v1/shifts"): lambda o: {
        "json": {
            "id": uuid.uuid4().hex,
            "number": 1,
            "prev_hash": "0" * 64,
            "report_hash": chain_hash("0" * 64, _victim_report(o["terminal_id"])),
            "report": _victim_report(o["terminal_id"]),
        }
    },
    ("GET", "/v1/shifts"): lambda o: {"params": {"terminal_id": o["terminal_id"]}},
    ("POST", "/v1/reconciliation/bills"): lambda o: {
        "params": {"provider": "wechat"},
        "content": WECHAT_BILL,
        "headers": {"Content-Type": "application/octet-stream"},
    },
    ("GET", "/v1/reconciliation/bills/{bill_id}"): lambda o: {},
    ("GET", "/v1/reconciliation/runs"): lambda o: {"params": {"merchant_id": o["merchant_id"]}},
    ("GET", "/v1/reconciliation/runs/{run_id}"): lambda o: {},
    ("GET", "/v1/reconciliation/runs/{run_id}/discrepancies"): lambda o: {},
    ("GET", "/v1/reconciliation/runs/{run_id}/export"): lambda o: {"params": {"format": "json"}},
    ("GET", "/v1/reconciliation/discrepancies"): lambda o: {"params": {"merchant_id": o["merchant_id"]}},
    ("GET", "/v1/reconciliation/discrepancies/{discrepancy_id}"): lambda o: {},
    ("POST", "/v1/reconciliation/discrepancies/{discrepancy_id}/resolve"): lambda o: {
        "json": {"resolution": "mine now"}
    },
    ("GET", "/v1/reconciliation/report"): lambda o: {"params": {"merchant_id": o["merchant_id"]}},
    # settle12: fee contracts, fee findings and settlement
    ("POST", "/v1/fee-contracts"): lambda o: {
        "json": {
            "merchant_id": o["merchant_id"],
            "provider": "wechat",
            "rate_ppm": 1,
            "effective_from": "2027-01-01",
        }
    },
    ("GET", "/v1/fee-contracts"): lambda o: {"params": {"merchant_id": o["merchant_id"]}},
    ("GET", "/v1/fee-contracts/{contract_id}"): lambda o: {},
    ("POST", "/v1/fee-contracts/{contract_id}/end"): lambda o: {
        "json": {"end_day": "2030-01-01", "reason": "mine now"}
    },
    ("GET", "/v1/fees/findings"): lambda o: {"params": {"merchant_id": o["merchant_id"]}},
    ("GET", "/v1/fees/leakage"): lambda o: {"params": {"merchant_id": o["merchant_id"]}},
    ("POST", "/v1/settlement/statements"): lambda o: {
        "params": {"source": "bank"},
        "content": BANK_STATEMENT,
        "headers": {"Content-Type": "text/csv"},
    },
    ("GET", "/v1/settlement/statements"): lambda o: {"params": {"merchant_id": o["merchant_id"]}},
    ("GET", "/v1/settlement/statements/{statement_id}"): lambda o: {},
    ("POST", "/v1/settlement/fetch"): lambda o: {  # merch12b: statements fetched from the providers
        "json": {"merchant_id": o["merchant_id"], "day": "2026-11-20"}
    },
    ("POST", "/v1/settlement/runs"): lambda o: {
        "json": {"merchant_id": o["merchant_id"], "since": "2026-11-01", "until": "2026-11-30"}
    },
    ("GET", "/v1/settlement/days"): lambda o: {"params": {"merchant_id": o["merchant_id"]}},
    ("GET", "/v1/settlement/days/{provider}/{trade_day}"): lambda o: {
        "params": {"merchant_id": o["merchant_id"]}
    },
    ("GET", "/v1/settlement/statement.csv"): lambda o: {"params": {"merchant_id": o["merchant_id"]}},
    # fulfilment (docs/fulfilment.md)
    ("POST", "/v1/orders/{order_id}/fulfilment"): lambda o: {
        "json": {"kind": "pickup", "contact_email": "a@b.cn"}
    },
    ("GET", "/v1/fulfilments"): lambda o: {},
    ("GET", "/v1/fulfilments/{fulfilment_id}"): lambda o: {},
    ("GET", "/v1/fulfilments/{fulfilment_id}/photo"): lambda o: {},
    ("POST", "/v1/fulfilments/{fulfilment_id}/ready"): lambda o: {},
    ("POST", "/v1/fulfilments/{fulfilment_id}/ship"): lambda o: {
        "json": {"carrier": "SF", "tracking_number": "1"}
    },
    ("POST", "/v1/fulfilments/{fulfilment_id}/deliver"): lambda o: {},
    ("POST", "/v1/fulfilments/pickup"): lambda o: {"json": {"code": o["customer_path"]}},
    ("POST", "/v1/fulfilments/{fulfilment_id}/resolve"): lambda o: {
        "json": {"action": "refund", "amount": 1}
    },
    ("POST", "/v1/fulfilments/{fulfilment_id}/cancel"): lambda o: {},
    ("GET", "/v1/fulfilment/settings"): lambda o: {},
    ("PUT", "/v1/fulfilment/settings"): lambda o: {
        "json": {"auto_confirm_days": 1, "reminder_hours": 1, "ship_sla_hours": 1}
    },
    # a merchant's own webhook endpoint (issue 14, docs/notifications.md)
    ("GET", "/v1/webhook-endpoint"): lambda o: {},
    ("PUT", "/v1/webhook-endpoint"): lambda o: {
        "json": {"url": "https://evil.example/hook", "secret": "evil-secret-evil-secret-evil"}
    },
    ("DELETE", "/v1/webhook-endpoint"): lambda o: {},
    # merchants area (issue 12)
    ("POST", "/v1/merchant-applications"): lambda o: {"json": {"name": "Evil"}},
    ("GET", "/v1/merchant-profiles"): lambda o: {},
    ("GET", "/v1/merchants/{merchant_id}/profile"): lambda o: {},
    ("GET", "/v1/merchants/{merchant_id}/events"): lambda o: {},
    ("GET", "/v1/merchants/{merchant_id}/documents"): lambda o: {},
    ("POST", "/v1/merchants/{merchant_id}/documents"): lambda o: {
        "json": {"kind": "category", "number": "5814"}
    },
    ("POST", "/v1/merchant-documents/files"): lambda o: {
        "params": {"merchant_id": o["merchant_id"], "kind": "store_photo"},
        "content": b"\x89PNG\r\n\x1a\n" + b"\x00" * 16,
        "headers": {"Content-Type": "application/octet-stream"},
    },
    ("GET", "/v1/merchants/{merchant_id}/documents/{document_id}/file"): lambda o: {},
    ("POST", "/v1/merchants/{merchant_id}/submit"): lambda o: {},
    ("GET", "/v1/review-queue"): lambda o: {},
    ("POST", "/v1/merchants/{merchant_id}/documents/{document_id}/review"): lambda o: {
        "json": {"decision": "reject", "reason": "evil"}
    },
    ("POST", "/v1/merchants/{merchant_id}/approve"): lambda o: {"json": {}},
    ("POST", "/v1/merchants/{merchant_id}/reject"): lambda o: {"json": {"reason": "evil"}},
    ("POST", "/v1/merchants/{merchant_id}/suspend"): lambda o: {"json": {"reason": "evil"}},
    ("POST", "/v1/merchants/{merchant_id}/resume"): lambda o: {"json": {"reason": "evil"}},
    ("POST", "/v1/merchants/{merchant_id}/terminate"): lambda o: {"json": {"reason": "evil"}},
    ("POST", "/v1/merchants/{merchant_id}/rereview"): lambda o: {"json": {"note": "evil"}},
    ("PATCH", "/v1/merchants/{merchant_id}/settings"): lambda o: {"json": {"cash_when_suspended": False}},
    ("GET", "/v1/blacklist"): lambda o: {},
    ("POST", "/v1/blacklist"): lambda o: {
        "json": {"kind": "phone", "value": "13900000000", "source": "x", "reason": "evil"}
    },
    ("POST", "/v1/blacklist/{entry_id}/remove"): lambda o: {},
    ("GET", "/v1/limit-tiers"): lambda o: {},
    ("GET", "/v1/merchants/{merchant_id}/limits"): lambda o: {},
    ("PUT", "/v1/merchants/{merchant_id}/limits"): lambda o: {
        "json": {"scope": "merchant", "method": "wechat", "daily_max": 1, "reason": "evil"}
    },
    ("GET", "/v1/merchants/{merchant_id}/limits/changes"): lambda o: {},
    ("GET", "/v1/merchants/{merchant_id}/onboarding"): lambda o: {},
    ("POST", "/v1/merchants/{merchant_id}/onboarding"): lambda o: {"json": {"provider": "wechat"}},
    # the till station (issue 17): tile images and the store's till rules
    ("PUT", "/v1/products/{product_id}/image"): lambda o: {
        "content": EVIL_PNG,
        "headers": {"Content-Type": "image/png"},
    },
    ("GET", "/v1/products/{product_id}/image"): lambda o: {},
    ("PUT", "/v1/stores/{store_id}/till-settings"): lambda o: {
        "json": {"discount_limit_pct": 100, "rounding": "yuan"}
    },
    ("GET", "/v1/stores/{store_id}/till-settings"): lambda o: {},
    ("GET", "/v1/till/settings"): lambda o: {},
    # receipt links signed by the till (issue 14): the calling terminal's own key, another's revoke
    ("GET", "/v1/till/receipt-key"): lambda o: {},
    ("POST", "/v1/terminals/{terminal_id}/receipt-key/revoke"): lambda o: {},
    # monitoring (issue 13): a manager naming another merchant, or another merchant's rule or alert
    ("GET", "/v1/monitoring/analytics"): lambda o: {"params": {"merchant_id": o["merchant_id"]}},
    ("GET", "/v1/monitoring/analytics/{table}.csv"): lambda o: {"params": {"merchant_id": o["merchant_id"]}},
    ("GET", "/v1/monitoring/charts/{chart}.svg"): lambda o: {"params": {"merchant_id": o["merchant_id"]}},
    ("GET", "/v1/monitoring/health"): lambda o: {"params": {"merchant_id": o["merchant_id"]}},
    ("POST", "/v1/monitoring/alert-rules"): lambda o: {
        "json": {"name": "evil", "kind": "failure_rate", "threshold": 1, "merchant_id": o["merchant_id"]}
    },
    ("GET", "/v1/monitoring/alert-rules"): lambda o: {"params": {"merchant_id": o["merchant_id"]}},
    ("PATCH", "/v1/monitoring/alert-rules/{rule_id}"): lambda o: {
        "json": {"threshold": 1, "channels": ["email:evil@example.com"]}
    },
    ("POST", "/v1/monitoring/alert-rules/{rule_id}/active"): lambda o: {"json": {"active": False}},
    ("GET", "/v1/monitoring/alert-rules/{rule_id}/changes"): lambda o: {},
    ("GET", "/v1/monitoring/alerts"): lambda o: {"params": {"merchant_id": o["merchant_id"]}},
    ("GET", "/v1/monitoring/alerts/{alert_id}"): lambda o: {},
    ("POST", "/v1/monitoring/alerts/{alert_id}/acknowledge"): lambda o: {"json": {"reason": "evil"}},
    ("POST", "/v1/monitoring/alerts/{alert_id}/resolve"): lambda o: {"json": {"reason": "evil"}},
}
# Routes whose answer is a list: they answer 200 but must hold none of the victim's objects.
LISTS = {
    "/v1/me",
    "/v1/stores",
    "/v1/terminals",
    "/v1/products",
    "/v1/orders",
    "/v1/exceptions",
    "/v1/shifts",
    "/v1/fulfilments",
    "/v1/fulfilment/settings",
    "/v1/till/settings",  # the calling terminal's own store
    "/v1/till/receipt-key",  # the calling terminal's own receipt-link key
    "/v1/webhook-endpoint",
}
# Routes that set the caller's own merchant's settings: 200, and the victim's stay as they were.
OWN_SETTINGS = {
    ("PUT", "/v1/fulfilment/settings"),
    ("PUT", "/v1/webhook-endpoint"),
    ("DELETE", "/v1/webhook-endpoint"),
}
# Batch routes answer 200 with one result per entry: every entry must fail as not found.
BATCHES = {("POST", "/v1/sync")}
# Routes whose victim reference is inside the request and is refused as a mismatch.
MISMATCH = {("POST", "/v1/shifts"): "shift_report_mismatch"}
# Routes that reference no existing object: they create inside the caller's own merchant only.
OWN_SCOPE = {
    ("POST", "/v1/products"),
    ("POST", "/v1/reconciliation/bills"),
    ("POST", "/v1/settlement/statements"),  # settle12
}


ROUTE_MODULES = (
    operator,
    catalog,
    sales,
    engine,
    till,
    reconciliation,
    merchants,
    settlement_routes,
    fulfilment_routes,
    station,
    monitoring_routes,
    webhook_routes,
)


def api_routes() -> list[APIRoute]:
    return [r for mod in ROUTE_MODULES for r in mod.router.routes if isinstance(r, APIRoute)]


def allowed_roles(route: APIRoute) -> set[str]:
    for dep in route.dependant.dependencies:
        roles = getattr(dep.call, "roles", None)
        if roles:
            return set(roles)
    return {"admin", "merchant", "terminal"}


def test_every_route_has_a_probe() -> None:
    seen = {(m, r.path) for r in api_routes() for m in r.methods}
    assert seen == set(PROBES), f"missing probes: {seen - set(PROBES)}; stale: {set(PROBES) - seen}"


@pytest.fixture
def victim(client: TestClient, other_tenant: Tenant, admin_key: str, container: Container) -> dict[str, str]:
    order = new_order(client, other_tenant)
    payment = pay_cash(client, other_tenant, order["id"])
    refund = post(client, "/v1/refunds", {"payment_id": payment["id"], "amount": 100}, other_tenant).json()
    open_order = new_order(client, other_tenant)
    with container.db.transaction() as conn:
        exception_id = exc_svc.open_exception(
            conn,
            container.deps,
            kind="unknown_notification",
            merchant_id=other_tenant.merchant_id,
            provider="alipay",
            provider_ref=uuid.uuid4().hex,
            amount=100,
        )
    assert container.merchants is not None
    with container.db.transaction() as conn:
        document_id = merchant_documents.add_document(
            conn,
            container.deps,
            container.merchants,
            other_tenant.merchant_id,
            merchant_documents.DocumentInput(kind="category", number="5814"),
            "test",
        )["id"]
        # The victim's tile has an image and its store has till rules, so a 404 proves isolation.
        tiles.set_image(
            conn,
            container.deps,
            other_tenant.merchant_id,
            other_tenant.products["LATTE"]["id"],
            "image/png",
            VICTIM_PNG,
        )
        tiles.put_settings(
            conn,
            container.deps,
            other_tenant.merchant_id,
            other_tenant.store_id,
            discount_limit_pct=5,
            rounding="jiao",
            managers=None,
        )
    bill = client.post(
        "/v1/reconciliation/bills",
        params={"provider": "wechat"},
        content=WECHAT_BILL,
        headers=other_tenant.auth("merchant"),
    ).json()
    discrepancy_id = client.get(
        f"/v1/reconciliation/runs/{bill['run']['id']}/discrepancies", headers=other_tenant.auth("merchant")
    ).json()["data"][0]["id"]
    contract = client.post(  # settle12
        "/v1/fee-contracts",
        json={
            "merchant_id": other_tenant.merchant_id,
            "provider": "wechat",
            "rate_ppm": 3800,
            "effective_from": "2026-01-01",
        },
        headers={"Authorization": f"Bearer {admin_key}", "Idempotency-Key": uuid.uuid4().hex},
    ).json()
    statement = client.post(
        "/v1/settlement/statements",
        params={"source": "bank"},
        content=BANK_STATEMENT,
        headers=other_tenant.auth("merchant"),
    ).json()
    fulfilment = post(
        client,
        f"/v1/orders/{order['id']}/fulfilment",
        {"kind": "delivery", "address": "1 Victim Road", "contact_phone": "13800000000"},
        other_tenant,
    ).json()
    with container.db.transaction() as conn:  # issue 13: a rule with an open alert
        rule = alert_rules.create_rule(
            conn,
            container.deps,
            merchant_id=other_tenant.merchant_id,
            name="victim rule",
            kind="failure_rate",
            threshold=1,
            channels=("email:victim@example.com",),
        )
        alert_id = uuid.uuid4().hex
        now = container.deps.clock.now()
        conn.execute(
            insert(alerts_table).values(
                id=alert_id,
                merchant_id=other_tenant.merchant_id,
                rule_id=rule.id,
                dedup_key=f"{rule.id}:wechat",
                status="firing",
                value=1000,
                threshold=1,
                message="victim alert",
                occurrences=1,
                opened_at=now,
                last_seen_at=now,
                updated_at=now,
            )
        )
    keys = client.get(
        "/v1/api-keys",
        params={"merchant_id": other_tenant.merchant_id},
        headers={"Authorization": f"Bearer {admin_key}"},
    ).json()["data"]
    return {
        "merchant_id": other_tenant.merchant_id,
        "store_id": other_tenant.store_id,
        "terminal_id": other_tenant.terminal_id,
        "key_id": keys[0]["id"],
        "product_id": other_tenant.products["LATTE"]["id"],
        "order_id": order["id"],
        "open_order_id": open_order["id"],
        "payment_id": payment["id"],
        "refund_id": refund["id"],
        "provider": "wechat",
        "exception_id": exception_id,
        "bill_id": bill["id"],
        "run_id": bill["run"]["id"],
        "discrepancy_id": discrepancy_id,
        "contract_id": contract["id"],
        "statement_id": statement["id"],
        "trade_day": "2026-11-20",
        "fulfilment_id": fulfilment["id"],
        "customer_path": fulfilment["customer_path"],
        "document_id": document_id,
        "entry_id": uuid.uuid4().hex,
        "rule_id": rule.id,
        "alert_id": alert_id,
        "table": "summary",
        "chart": "heatmap",
    }


def _call(client: TestClient, method: str, path: str, objects: dict[str, str], auth: dict[str, str]) -> Any:
    kwargs = PROBES[(method, path)](objects)
    url = path.format(**objects)
    headers = {**auth, "Idempotency-Key": uuid.uuid4().hex, **kwargs.pop("headers", {})}
    return client.request(method, url, headers=headers, **kwargs)


def test_merchant_a_cannot_touch_merchant_b(
    client: TestClient, tenant: Tenant, other_tenant: Tenant, victim: dict[str, str]
) -> None:
    victim_auth = other_tenant.auth("merchant")
    for route in api_routes():
        for method in route.methods:
            for role in ("merchant", "terminal"):
                r = _call(client, method, route.path, victim, tenant.auth(role))
                where = f"{method} {route.path} as {role}"
                if role not in allowed_roles(route):
                    assert r.status_code == 403, where
                    assert r.json()["error"]["code"] == "forbidden", where
                elif (method, route.path) in BATCHES:
                    assert r.status_code == 200, where
                    codes = [res["error"]["code"] for res in r.json()["results"]]
                    assert all(code.endswith("not_found") for code in codes), f"{where}: {codes}"
                elif (method, route.path) in MISMATCH:
                    assert (
                        r.status_code == 422 and r.json()["error"]["code"] == MISMATCH[(method, route.path)]
                    ), where
                elif (method, route.path) in OWN_SCOPE:
                    assert r.status_code == 201, where
                    created = r.json()["id"]
                    seen = client.get(f"{route.path}/{created}", headers=victim_auth)
                    assert seen.status_code == 404, where
                elif (method, route.path) in OWN_SETTINGS:
                    assert r.status_code == 200, where
                    theirs = client.get(route.path, headers=victim_auth).json()
                    assert theirs["default"] is True, where
                elif route.path in LISTS and method == "GET":
                    assert r.status_code == 200, where
                    assert not set(victim.values()) & _ids(r.json()), where
                else:
                    assert r.status_code in (404, 422), f"{where}: {r.status_code} {r.text}"
                    assert "error" in r.json(), where
                    assert r.json()["error"]["code"].endswith("not_found"), f"{where}: {r.text}"


def _ids(body: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(body, dict):
        for k, v in body.items():
            if isinstance(v, str) and (k == "id" or k.endswith("_id")):
                found.add(v)
            else:
                found |= _ids(v)
    elif isinstance(body, list):
        for item in body:
            found |= _ids(item)
    return found


def test_victim_objects_unchanged(
    client: TestClient, tenant: Tenant, other_tenant: Tenant, victim: dict[str, str], container: Container
) -> None:
    before = client.get(f"/v1/orders/{victim['order_id']}", headers=other_tenant.auth()).json()
    open_before = client.get(f"/v1/orders/{victim['open_order_id']}", headers=other_tenant.auth()).json()
    for route in api_routes():
        for method in route.methods - {"GET"}:
            for role in ("merchant", "terminal"):
                _call(client, method, route.path, victim, tenant.auth(role))
    assert client.get(f"/v1/orders/{victim['order_id']}", headers=other_tenant.auth()).json() == before
    assert (
        client.get(f"/v1/orders/{victim['open_order_id']}", headers=other_tenant.auth()).json() == open_before
    )
    product = client.get(f"/v1/products/{victim['product_id']}", headers=other_tenant.auth()).json()
    assert product["price"] == 2800
    image = client.get(f"/v1/products/{victim['product_id']}/image", headers=other_tenant.auth())
    assert image.status_code == 200 and image.content == VICTIM_PNG
    rules = client.get(
        f"/v1/stores/{victim['store_id']}/till-settings", headers=other_tenant.auth("merchant")
    )
    assert rules.status_code == 200, rules.text
    assert (rules.json()["discount_limit_pct"], rules.json()["rounding"]) == (5, "jiao")
    with container.db.read() as conn:  # issue 13: the victim's rule and alert stay as they were
        rule = alert_rules.get_rule(conn, other_tenant.merchant_id, victim["rule_id"])
        alert = alert_rules.get_alert(conn, other_tenant.merchant_id, victim["alert_id"])
        assert alert_rules.rule_changes(conn, other_tenant.merchant_id, rule.id) == []
    assert (rule.threshold, rule.active, rule.channels) == (1, True, ("email:victim@example.com",))
    assert alert.status == "firing"


def test_roles_are_enforced_for_every_route(
    client: TestClient, tenant: Tenant, admin_key: str, container: Container
) -> None:
    keys = {
        "admin": {"Authorization": f"Bearer {admin_key}"},
        "merchant": tenant.auth("merchant"),
        "terminal": tenant.auth("terminal"),
    }
    own = {
        "merchant_id": tenant.merchant_id,
        "store_id": tenant.store_id,
        "terminal_id": tenant.terminal_id,
        "key_id": uuid.uuid4().hex,
        "product_id": tenant.products["LATTE"]["id"],
        "order_id": uuid.uuid4().hex,
        "open_order_id": uuid.uuid4().hex,
        "payment_id": uuid.uuid4().hex,
        "refund_id": uuid.uuid4().hex,
        "provider": "wechat",
        "exception_id": uuid.uuid4().hex,
        "bill_id": uuid.uuid4().hex,
        "run_id": uuid.uuid4().hex,
        "discrepancy_id": uuid.uuid4().hex,
        "contract_id": uuid.uuid4().hex,
        "statement_id": uuid.uuid4().hex,
        "trade_day": "2026-11-20",
        "fulfilment_id": uuid.uuid4().hex,
        "customer_path": "/c/" + "A" * 64,
        "document_id": uuid.uuid4().hex,
        "entry_id": uuid.uuid4().hex,
        "rule_id": uuid.uuid4().hex,
        "alert_id": uuid.uuid4().hex,
        "table": "summary",
        "chart": "heatmap",
    }
    for route in api_routes():
        roles = allowed_roles(route)
        for method in route.methods:
            for role, auth in keys.items():
                r = _call(client, method, route.path, own, auth)
                if role in roles:
                    assert r.status_code != 403, f"{method} {route.path} refused {role}: {r.text}"
                else:
                    assert r.status_code == 403, f"{method} {route.path} let {role} through: {r.status_code}"
    r = client.get("/v1/orders")
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthenticated"
    r = client.get("/v1/orders", headers={"Authorization": "Bearer tk_ter_not-a-key"})
    assert r.status_code == 401
