"""The QR on the paper receipt, on SQLite and PostgreSQL: the till signs the link with its receipt-link
key without the server (domain/links.py), the server verifies it at ``/r/...`` and sends the customer on
to the e-receipt (or the customer page of a delivery order). Forged, altered, another terminal's and
revoked links answer 404; another merchant can neither revoke a terminal's key nor reach its orders."""

from __future__ import annotations

import base64
import uuid
from pathlib import Path

import httpx
from fastapi.testclient import TestClient

from tests.integration.test_till import drain, make_till
from tests.support.api import new_order, pay_cash, post
from tests.support.live import live_server
from tests.support.world import Tenant
from tillit.bootstrap import Container
from tillit.domain.links import till_receipt_path
from tillit.till.printer import SpooledPrinter, decode_escpos, parse_printer


def _key(client: TestClient, tenant: Tenant) -> tuple[str, bytes, str]:
    r = client.get("/v1/till/receipt-key", headers=tenant.auth())
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["terminal_id"] == tenant.terminal_id and len(body["key_id"]) == 32
    key = base64.urlsafe_b64decode(body["key"] + "=" * (-len(body["key"]) % 4))
    assert len(key) == 32
    return body["key_id"], key, body["base_url"]


def _link(key_id: str, key: bytes, order_id: str) -> str:
    return till_receipt_path(key_id, key, order_id)


def test_till_signed_receipt_link_offline_then_verified(
    client: TestClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    key_id, key, base_url = _key(client, tenant)
    assert _key(client, tenant)[0] == key_id  # one active key per terminal, the same at every refresh
    assert base_url.startswith("http")
    # The till numbers the order itself and prints the link before the server has heard of it.
    order_id = uuid.uuid4().hex
    path = _link(key_id, key, order_id)
    early = client.get(path, follow_redirects=False)
    assert early.status_code == 404 and "still on its way" in early.text  # genuine, not synced yet

    order = new_order(client, tenant, id=order_id)
    assert order["id"] == order_id
    pay_cash(client, tenant, order_id)
    r = client.get(path, follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"].startswith(f"/receipts/{tenant.merchant_id}/{order_id}/")
    page = client.get(r.headers["location"])
    assert page.status_code == 200 and "Latte" in page.text

    # Forged and altered links answer exactly like an unknown order.
    mac = path.rsplit("/", 1)[1]
    flipped = mac[:-1] + ("0" if mac[-1] != "0" else "1")
    forged = [
        path.rsplit("/", 1)[0] + "/" + flipped,
        _link(key_id, b"\x00" * 32, order_id),  # signed with a key the server never issued
        _link(uuid.uuid4().hex, key, order_id),  # an unknown key id
        f"/r/{key_id}/{order_id}/not-hex",
        f"/r/{key_id}/{order_id[:-1]}/{mac}",
    ]
    answers = [client.get(p, follow_redirects=False) for p in forged]
    assert {a.status_code for a in answers} == {404}
    assert len({a.text for a in answers}) == 1 and "still on its way" not in answers[0].text

    # Another terminal (another merchant's) cannot sign links to this till's orders.
    rival_id, rival_key, _ = _key(client, other_tenant)
    assert rival_id != key_id
    theirs = client.get(_link(rival_id, rival_key, order_id), follow_redirects=False)
    unknown = client.get(_link(rival_id, rival_key, uuid.uuid4().hex), follow_redirects=False)
    # 404, and the same answer as for an order that exists nowhere: it tells nothing about this order.
    assert theirs.status_code == unknown.status_code == 404 and theirs.text == unknown.text


def test_revoked_key_and_tenant_isolation(client: TestClient, tenant: Tenant, other_tenant: Tenant) -> None:
    key_id, key, _ = _key(client, tenant)
    order = new_order(client, tenant)
    pay_cash(client, tenant, order["id"])
    path = _link(key_id, key, order["id"])
    assert client.get(path, follow_redirects=False).status_code == 303

    revoke = f"/v1/terminals/{tenant.terminal_id}/receipt-key/revoke"
    # Another merchant's manager: the terminal answers like an unknown one, and nothing changes.
    assert post(client, revoke, {}, other_tenant, role="merchant").status_code == 404
    assert (
        post(
            client, f"/v1/terminals/{uuid.uuid4().hex}/receipt-key/revoke", {}, tenant, role="merchant"
        ).status_code
        == 404
    )
    assert post(client, revoke, {}, tenant).status_code == 403  # a cashier cannot revoke
    assert client.get(path, follow_redirects=False).status_code == 303
    # A merchant key has no terminal: it has no receipt key.
    assert client.get("/v1/till/receipt-key", headers=tenant.auth("merchant")).status_code == 403

    r = post(client, revoke, {}, tenant, role="merchant")
    assert r.status_code == 200 and r.json() == {"terminal_id": tenant.terminal_id, "revoked": 1}
    assert client.get(path, follow_redirects=False).status_code == 404  # every link it printed
    assert post(client, revoke, {}, tenant, role="merchant").json()["revoked"] == 0

    new_id, new_key, _ = _key(client, tenant)  # the till's next refresh gets a fresh key
    assert new_id != key_id and new_key != key
    assert client.get(_link(new_id, new_key, order["id"]), follow_redirects=False).status_code == 303


def test_delivery_order_link_goes_to_the_customer_page(client: TestClient, tenant: Tenant) -> None:
    key_id, key, _ = _key(client, tenant)
    order = new_order(client, tenant)
    pay_cash(client, tenant, order["id"])
    body = {"kind": "delivery", "address": "上海市 1 号", "contact_phone": "+86 138 0000 0000"}
    f = post(client, f"/v1/orders/{order['id']}/fulfilment", body, tenant, role="merchant")
    assert f.status_code == 201, f.text
    r = client.get(_link(key_id, key, order["id"]), follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f.json()["customer_path"]


def test_till_prints_the_link_before_it_syncs(container: Container, tenant: Tenant, tmp_path: Path) -> None:
    """The real till: it fetches its key with the catalogue, sells while its sale is not yet on the
    server, prints the receipt with the QR as ESC/POS to a file, and the printed link works once synced."""
    with live_server(container) as base:
        till = make_till(tmp_path / "j.sqlite", base, tenant)
        till.refresh_catalogue()
        till.open_shift(0)
        till.add_item("LATTE", 1)
        sale_id = till.pay_cash(5000)["sale_id"]
        link = till.receipt_link(sale_id)
        assert link is not None and "/r/" in link and sale_id in link
        printer = SpooledPrinter(tmp_path / "print.sqlite", parse_printer(f"file:{tmp_path / 'lp0'}"))
        try:
            printer.print("receipt-1", "小票\n", qr=link)
        finally:
            printer.stop()
        printed = decode_escpos((tmp_path / "lp0").read_bytes())
        assert printed.qr == [link]
        path = "/r/" + link.split("/r/", 1)[1]
        assert httpx.get(base + path, follow_redirects=False).status_code == 404  # not synced yet
        drain(till)
        r = httpx.get(base + path, follow_redirects=False)
        assert r.status_code == 303 and f"/receipts/{tenant.merchant_id}/{sale_id}/" in r.headers["location"]
