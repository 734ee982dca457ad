"""Payment captured and refund done reach the customer who gave a contact and opted in: written in the
sale's own transaction, sent through a real local SMTP server, with the signed e-receipt link; and the
e-receipt page and PDF over real HTTP, where a forged or foreign link answers 404."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from tests.support.api import new_order, pay_cash, post
from tests.support.live import live_server
from tests.support.mailbox import Mailbox, start_smtp
from tests.support.world import Tenant
from tillit.adapters.db.schema import merchants, order_contacts, orders, outbox_messages
from tillit.adapters.mail import SmtpConfig, SmtpMailer
from tillit.bootstrap import Container
from tillit.notifications.sender import Channels, OutboxSender, SenderConfig


@pytest.fixture(scope="module")
def smtp() -> Iterator[tuple[int, Mailbox]]:
    controller, box = start_smtp()
    yield int(controller.port), box
    controller.stop()


def outbox_rows(c: Container, merchant_id: str) -> list[Any]:
    m = outbox_messages
    with c.db.read() as conn:
        return list(conn.execute(select(m).where(m.c.merchant_id == merchant_id).order_by(m.c.id)))


def send_all(c: Container, port: int) -> None:
    sender = OutboxSender(
        Channels(email=SmtpMailer(SmtpConfig(host="127.0.0.1", port=port, timeout_s=2))),
        SenderConfig(),
        receipt_url=c.receipt_url,
        webhook_secret=lambda m: b"unused",
    )
    while sender.send_due(c.db, c.deps, "test"):
        pass
    sender.close()


def test_paid_and_refunded_orders_tell_the_customer(
    container: Container, client: TestClient, tenant: Tenant, smtp: tuple[int, Mailbox]
) -> None:
    port, box = smtp
    email = f"Buyer-{tenant.merchant_id}@Example.com"
    customer = {"email": email, "phone": "+8613800138000", "locale": "en", "opt_in": True}
    order = new_order(client, tenant, customer=customer)
    assert order["receipt_url"] is None  # nothing paid yet
    pay = pay_cash(client, tenant, order["id"], tendered=10000)
    paid = client.get(f"/v1/orders/{order['id']}", headers=tenant.auth()).json()
    assert paid["receipt_url"] == container.receipt_url(tenant.merchant_id, order["id"])
    # Written in the payment's transaction: one row per channel the customer opted in to.
    rows = outbox_rows(container, tenant.merchant_id)
    assert [(r.channel, r.template, r.recipient) for r in rows] == [
        ("email", "payment_captured", email.lower()),
        ("sms", "payment_captured", "+8613800138000"),
    ]
    assert json.loads(rows[0].params)["amount"] == order["total"]
    r = post(client, "/v1/refunds", {"payment_id": pay["id"], "amount": 500, "reason": "cold"}, tenant)
    assert r.status_code == 201, r.text
    assert [r.template for r in outbox_rows(container, tenant.merchant_id)][2:] == ["refund_done"] * 2

    send_all(container, port)
    mails = box.to(email.lower())
    assert sorted(m["Subject"].split(" —")[0] for m in mails) == ["Payment received", "Refund done"]
    captured = next(m for m in mails if m["Subject"].startswith("Payment"))
    assert paid["receipt_url"] in captured.get_content()
    assert "5.00 CNY" in next(m for m in mails if m["Subject"].startswith("Refund")).get_content()
    # SMS is not configured here: those rows wait, untouched, for a gateway.
    assert {r.status for r in outbox_rows(container, tenant.merchant_id) if r.channel == "sms"} == {"pending"}


def test_no_consent_no_message_and_bad_contacts_write_nothing(
    container: Container, client: TestClient, tenant: Tenant
) -> None:
    order = new_order(client, tenant, customer={"email": "quiet@example.com"})  # opt_in defaults to false
    pay_cash(client, tenant, order["id"])
    assert outbox_rows(container, tenant.merchant_id) == []

    def count() -> tuple[int, int]:
        with container.db.read() as conn:
            n_orders = conn.execute(
                select(func.count()).where(orders.c.merchant_id == tenant.merchant_id)
            ).scalar_one()
            n_contacts = conn.execute(
                select(func.count()).where(order_contacts.c.merchant_id == tenant.merchant_id)
            ).scalar_one()
        return int(n_orders), int(n_contacts)

    before = count()
    lines = [{"sku": "LATTE", "quantity": 1}]
    for customer, code in [
        ({"email": "not an address", "opt_in": True}, "validation_error"),
        ({"opt_in": True}, "invalid_customer"),
        ({"phone": "12"}, "validation_error"),
        ({"email": "a@example.com", "locale": "fr"}, "validation_error"),
        ({"email": "a@example.com", "password": "x"}, "validation_error"),
    ]:
        r = post(client, "/v1/orders", {"lines": lines, "customer": customer}, tenant)
        assert (r.status_code, r.json()["error"]["code"]) == (422, code), r.text
    assert count() == before


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_receipt_page_and_pdf_over_http(
    container: Container, client: TestClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    order = new_order(client, tenant)
    pay_cash(client, tenant, order["id"], tendered=10000)
    url = client.get(f"/v1/orders/{order['id']}", headers=tenant.auth()).json()["receipt_url"]
    path = url.removeprefix(container.settings.public_url)
    open_order = new_order(client, tenant)  # a valid link, but nothing paid: no receipt
    theirs = new_order(client, other_tenant)
    pay_cash(client, other_tenant, theirs["id"])
    with live_server(container) as base, httpx.Client(base_url=base, timeout=30) as http:
        page = http.get(path)
        assert page.status_code == 200
        assert "Shop" in page.text and f"#{order['number']}" in page.text and "合计" in page.text
        assert "64.00" in page.text or f"{order['total'] // 100}.{order['total'] % 100:02d}" in page.text
        en = http.get(path, params={"lang": "en"})
        assert "Total CNY" in en.text and "Cash" in en.text
        pdf = http.get(f"{path}/pdf")
        assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
        assert pdf.content.startswith(b"%PDF") and b"NotoSansCJK" in pdf.content
        mid, oid, sig = path.split("/")[2:]
        forged = [
            f"/receipts/{mid}/{oid}/{'0' * 32}",  # wrong signature
            f"/receipts/{mid}/{oid}/{sig[:-1]}",  # truncated
            f"/receipts/{other_tenant.merchant_id}/{oid}/{sig}",  # another merchant with this order's mark
            f"/receipts/{other_tenant.merchant_id}/{theirs['id']}/{sig}",  # their order, our signature
            f"/receipts/{mid}/{open_order['id']}/{sig}",
            # a genuine link to an unpaid order
            container.receipt_url(mid, open_order["id"]).removeprefix(container.settings.public_url),
            f"/receipts/not-an-id/{oid}/{sig}",
        ]
        answers = {(r.status_code, r.text) for p in forged for r in (http.get(p), http.get(f"{p}/pdf"))}
        assert len(answers) == 1 and next(iter(answers))[0] == 404


def test_a_shop_name_that_looks_like_a_payment_code_never_leaves_in_a_message(
    container: Container, client: TestClient, tenant: Tenant, smtp: tuple[int, Mailbox]
) -> None:
    """The sale writes the event's own parameters only; the sender adds the shop's names when it sends
    and checks them like the rest: a name carrying a 16+ digit run is refused there (dead, never sent)."""
    port, box = smtp
    email = f"digits-{tenant.merchant_id}@example.com"
    with container.db.transaction() as conn:
        conn.execute(
            update(merchants).where(merchants.c.id == tenant.merchant_id).values(name="Shop 6222021234567890")
        )
    order = new_order(client, tenant, customer={"email": email, "opt_in": True})
    pay_cash(client, tenant, order["id"], tendered=10000)
    rows = outbox_rows(container, tenant.merchant_id)
    assert [r.channel for r in rows] == ["email"] and "merchant_name" not in json.loads(rows[0].params)
    send_all(container, port)
    assert box.to(email) == []
    (row,) = outbox_rows(container, tenant.merchant_id)
    assert row.status == "dead" and row.last_error.startswith("payment_code_in_message")
