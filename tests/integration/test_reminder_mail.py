"""ful21: the confirm-receipt reminder reaches the customer through a real local SMTP server (aiosmtpd)
with the link to the customer's order page in its text and HTML parts, in both languages; the link is
followed to the page, which offers to confirm, and confirming there closes the order. The delivered
mail carries it too; the merchant's webhook never does (the link confirms on the customer's behalf)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tests.support.api import new_order, pay_cash, post
from tests.support.mailbox import Mailbox, start_smtp
from tests.support.world import Tenant, make_tenant
from tillit.adapters.db import migrate
from tillit.adapters.db.schema import outbox_messages
from tillit.api.app import create_app
from tillit.bootstrap import Container, build
from tillit.config import Settings
from tillit.domain.clock import ManualClock
from tillit.worker import drain

T0 = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
PUBLIC = "http://shop.test"
LINK = re.compile(re.escape(PUBLIC) + r"(/c/[A-Za-z0-9_-]{64})")
CSRF = re.compile(
    r'action="(/c/[^"?]+/confirm)[^"]*"[^>]*>\s*<input type="hidden" name="csrf" value="([^"]+)"'
)


@pytest.fixture(scope="module")
def smtp() -> Iterator[tuple[int, Mailbox]]:
    controller, box = start_smtp()
    yield int(controller.port), box
    controller.stop()


@dataclass
class World:
    c: Container
    clock: ManualClock
    client: TestClient
    tenant: Tenant
    box: Mailbox

    def advance(self, **delta: float) -> None:
        self.clock.advance(timedelta(**delta).total_seconds())
        assert self.c.engine is not None
        drain(self.c.db, self.c.deps, self.c.engine, max_seconds=20, outbox=self.c.outbox)

    def send(self) -> None:
        assert self.c.outbox is not None
        while self.c.outbox.send_due(self.c.db, self.c.deps, "test"):
            pass


@pytest.fixture
def world(
    backend: str, request: pytest.FixtureRequest, sqlite_home: Path, smtp: tuple[int, Mailbox]
) -> Iterator[World]:
    port, box = smtp
    clock = ManualClock(T0)
    url = (
        request.getfixturevalue("pg_url")
        if backend == "postgresql"
        else f"sqlite:///{sqlite_home / f'reminder-{uuid.uuid4().hex[:8]}.sqlite'}"
    )
    settings = Settings(
        home=sqlite_home, database_url=url, smtp_host="127.0.0.1", smtp_port=port, public_url=PUBLIC
    )
    c = build(settings, clock=clock)
    migrate.upgrade(c.db)
    with TestClient(create_app(c), raise_server_exceptions=False) as client:
        yield World(c, clock, client, make_tenant(c, f"Ful {uuid.uuid4().hex[:8]}"), box)
    assert c.outbox is not None
    c.outbox.close()
    c.db.dispose()


def _parts(mail: EmailMessage) -> tuple[str, str]:
    plain, html = mail.get_body(("plain",)), mail.get_body(("html",))
    assert plain is not None and html is not None, "the mail has a text and an HTML part"
    return plain.get_content(), html.get_content()  # type: ignore[attr-defined]


@pytest.mark.parametrize("language", ["zh-CN", "en"])
def test_the_reminder_links_to_the_customer_page(world: World, language: str) -> None:
    email = f"kehu-{uuid.uuid4().hex[:8]}@example.cn"
    order = new_order(world.client, world.tenant, [{"sku": "WATER", "quantity": 1}])
    pay_cash(world.client, world.tenant, order["id"])
    body = {"kind": "delivery", "address": "上海市 徐汇区 1 号", "contact_email": email, "opt_in": True}
    r = post(
        world.client, f"/v1/orders/{order['id']}/fulfilment", {**body, "language": language}, world.tenant
    )
    assert r.status_code == 201, r.text
    f = r.json()
    r = post(
        world.client,
        f"/v1/fulfilments/{f['id']}/ship",
        {"carrier": "SF", "tracking_number": "SF1"},
        world.tenant,
    )
    assert r.status_code == 200, r.text
    world.advance(days=9, seconds=1)  # 24 h before the auto-confirm (10 days): the reminder
    world.send()

    mails = world.box.to(email)
    subject = "请确认收货" if language == "zh-CN" else "Please confirm receipt"
    reminders = [m for m in mails if m["Subject"].startswith(subject)]
    assert len(reminders) == 1, [m["Subject"] for m in mails]
    text, html = _parts(reminders[0])
    in_text, in_html = LINK.findall(text), LINK.findall(html)
    assert in_text == [f["customer_path"]], text  # the link the confirmation flow uses
    assert f'href="{PUBLIC}{f["customer_path"]}"' in html and set(in_html) == {f["customer_path"]}
    label = "确认收货或反馈问题" if language == "zh-CN" else "Confirm receipt or report a problem"
    assert label in text and label in html
    assert f"订单 {order['number']}" in text if language == "zh-CN" else f"order {order['number']}" in text
    assert "/u/" in text and "/u/" in html  # the unsubscribe link stays in both parts
    # The shipped mail (no HTML template) carries the link in its text.
    shipped = [m for m in mails if m not in reminders]
    assert shipped and all(
        LINK.findall(m.get_body(("plain",)).get_content()) == [f["customer_path"]] for m in shipped
    )  # type: ignore[union-attr]

    # Follow the link from the mail: the customer's page, which offers to confirm; confirm there.
    page = world.client.get(in_text[0])
    assert page.status_code == 200 and f"#{order['number']}" in page.text
    found = CSRF.search(page.text)
    assert found is not None, page.text[:800]
    done = world.client.post(found.group(1), data={"csrf": found.group(2)}, follow_redirects=False)
    assert done.status_code == 303, done.text
    got = world.client.get(f"/v1/fulfilments/{f['id']}", headers=world.tenant.auth()).json()
    assert got["status"] == "confirmed" and got["confirmed_by"] == "customer"
    # A forged link (one character changed) answers 404.
    token = in_text[0].rsplit("/", 1)[1]
    forged = token[:-1] + ("A" if token[-1] != "A" else "B")
    assert world.client.get(f"/c/{forged}").status_code == 404


def test_the_delivered_mail_links_too_and_the_webhook_never(world: World) -> None:
    hook = world.client.put(
        "/v1/webhook-endpoint",
        json={"url": "http://127.0.0.1:9/unreachable", "secret": "whsec-test-secret-000000001"},
        headers=world.tenant.auth("merchant"),
    )
    assert hook.status_code == 200, hook.text
    email = f"buyer-{uuid.uuid4().hex[:8]}@example.com"
    order = new_order(world.client, world.tenant, [{"sku": "WATER", "quantity": 1}])
    pay_cash(world.client, world.tenant, order["id"])
    body: dict[str, Any] = {"kind": "delivery", "address": "1 Road", "contact_email": email, "opt_in": True}
    f = post(
        world.client, f"/v1/orders/{order['id']}/fulfilment", {**body, "language": "en"}, world.tenant
    ).json()
    post(
        world.client,
        f"/v1/fulfilments/{f['id']}/ship",
        {"carrier": "SF", "tracking_number": "SF2"},
        world.tenant,
    )
    assert post(world.client, f"/v1/fulfilments/{f['id']}/deliver", {}, world.tenant).status_code == 200
    assert world.c.outbox is not None
    params = world.c.outbox._params  # what each channel's message is built from
    with world.c.db.read() as conn:
        rows = list(
            conn.execute(
                select(outbox_messages).where(
                    outbox_messages.c.merchant_id == world.tenant.merchant_id,
                    outbox_messages.c.template == "order_delivered",
                )
            )
        )
    by_channel = {row.channel: params(row) for row in rows}
    assert set(by_channel) == {"email", "webhook"}
    assert by_channel["email"]["order_url"] == PUBLIC + f["customer_path"]
    assert "order_url" not in by_channel["webhook"] and f["customer_path"] not in str(by_channel["webhook"])
    world.send()
    (delivered,) = [m for m in world.box.to(email) if m["Subject"].startswith("Delivered")]
    text, html = _parts(delivered)
    assert LINK.findall(text) == [f["customer_path"]] and f'href="{PUBLIC}{f["customer_path"]}"' in html
