"""What the server gives the cashier station (issue 17): product tiles and images, a store's till rules
and managers' PINs (hashed), and manager approvals recorded in the order's events."""

from __future__ import annotations

import uuid

from fastapi.testclient import TestClient

from tests.support.api import post
from tests.support.world import Tenant
from tillit.domain.tillrules import verify_pin

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def test_tiles_images_and_scoping(client: TestClient, tenant: Tenant, other_tenant: Tenant) -> None:
    m = tenant.auth("merchant")
    body = {
        "sku": "MOCHA",
        "name": "Mocha",
        "price": 3200,
        "category": "Coffee",
        "tile_colour": "#AA3300",
        "favourite": True,
    }
    r = post(client, "/v1/products", body, tenant, role="merchant")
    assert r.status_code == 201, r.text
    product = r.json()
    assert (product["category"], product["tile_colour"], product["favourite"], product["image"]) == (
        "Coffee",
        "#aa3300",
        True,
        None,
    )
    pid = product["id"]
    r = client.patch(f"/v1/products/{pid}", json={"sort_order": 5, "favourite": False}, headers=m)
    assert r.status_code == 200 and r.json()["sort_order"] == 5 and r.json()["favourite"] is False
    assert client.patch(f"/v1/products/{pid}", json={"tile_colour": "red"}, headers=m).status_code == 422

    r = client.put(f"/v1/products/{pid}/image", content=PNG, headers={**m, "Content-Type": "image/png"})
    assert r.status_code == 200, r.text
    image = r.json()["image"]
    assert image.startswith(f"/v1/products/{pid}/image?v=")
    got = client.get(image, headers=tenant.auth())
    assert got.status_code == 200 and got.content == PNG and got.headers["content-type"] == "image/png"
    again = client.get(image, headers={**tenant.auth(), "If-None-Match": got.headers["etag"]})
    assert again.status_code == 304
    bad = client.put(
        f"/v1/products/{pid}/image", content=b"notapng", headers={**m, "Content-Type": "image/png"}
    )
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_image"
    bad = client.put(f"/v1/products/{pid}/image", content=PNG, headers={**m, "Content-Type": "text/plain"})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "unsupported_image_type"
    listed = client.get("/v1/products", params={"q": "MOCHA"}, headers=tenant.auth()).json()["data"]
    assert listed[0]["image"] == image and listed[0]["category"] == "Coffee"

    # Another merchant's product answers exactly like an unused id.
    rival = other_tenant.auth("merchant")
    unused = uuid.uuid4().hex
    for target in (pid, unused):
        assert client.get(f"/v1/products/{target}/image", headers=other_tenant.auth()).status_code == 404
        r = client.put(
            f"/v1/products/{target}/image", content=PNG, headers={**rival, "Content-Type": "image/png"}
        )
        assert r.status_code == 404


def test_store_till_settings_and_pins(client: TestClient, tenant: Tenant, other_tenant: Tenant) -> None:
    m = tenant.auth("merchant")
    path = f"/v1/stores/{tenant.store_id}/till-settings"
    default = client.get("/v1/till/settings", headers=tenant.auth()).json()
    assert (default["discount_limit_pct"], default["rounding"], default["manager_pins"]) == (20, "jiao", [])
    body = {"discount_limit_pct": 10, "rounding": "yuan", "managers": [{"name": "Li", "pin": "4321"}]}
    r = client.put(path, json=body, headers=m)
    assert r.status_code == 200 and r.json() == {
        "store_id": tenant.store_id,
        "discount_limit_pct": 10,
        "rounding": "yuan",
        "managers": ["Li"],
    }
    assert "4321" not in r.text and "pin_hash" not in r.text
    till = client.get("/v1/till/settings", headers=tenant.auth()).json()
    assert till["rounding"] == "yuan" and verify_pin("4321", till["manager_pins"][0]["pin_hash"])
    assert "4321" not in str(till)
    bad = {**body, "managers": [{"name": "Li", "pin": "12"}]}
    assert client.put(path, json=bad, headers=m).status_code == 422
    assert client.put(path, json={**body, "rounding": "fen"}, headers=m).status_code == 422
    assert client.put(path, json=body, headers=tenant.auth()).status_code == 403
    assert client.put(path, json=body, headers=other_tenant.auth("merchant")).status_code == 404
    assert client.get(path, headers=other_tenant.auth("merchant")).status_code == 404


def test_manager_approval_is_an_order_event(client: TestClient, tenant: Tenant) -> None:
    approval = {
        "kind": "line_discount",
        "line_no": 1,
        "amount": 1400,
        "approved_by": "Li",
        "reason": "damaged",
    }
    r = post(
        client,
        "/v1/orders",
        {"lines": [{"sku": "LATTE", "quantity": 1, "discount": 1400}], "approvals": [approval]},
        tenant,
    )
    assert r.status_code == 201, r.text
    events = client.get(f"/v1/orders/{r.json()['id']}/events", headers=tenant.auth()).json()["data"]
    noted = [e for e in events if e["reason"] and e["reason"].startswith("approval")]
    assert len(noted) == 1
    assert noted[0]["actor"].startswith("manager:Li via terminal:")
    assert "line_discount line 1 amount 1400: damaged" in noted[0]["reason"]
