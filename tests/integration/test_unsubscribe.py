"""Unsubscribe, on SQLite and PostgreSQL, through real HTTP (a live server) and a real local SMTP server
(aiosmtpd): every customer e-mail carries a signed link in its body and in List-Unsubscribe (with
One-Click); opening it changes nothing, posting it records the opt-out, and later messages to that
address are recorded as suppressed and never reach the mailbox. Forged links answer 404."""

from __future__ import annotations

import dataclasses
import re
import uuid

import httpx
from sqlalchemy import select

from tests.support.live import free_port, live_server
from tests.support.mailbox import start_smtp
from tests.support.world import Tenant
from tillit.adapters.db.schema import outbox_messages
from tillit.bootstrap import Container, build_outbox
from tillit.notifications.outbox import consent


def _post(http: httpx.Client, path: str, body: dict[str, object], key: str) -> dict[str, object]:
    headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": uuid.uuid4().hex}
    r = http.post(path, json=body, headers=headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


def test_unsubscribe_link_records_the_opt_out_and_later_mail_is_suppressed(
    container: Container, tenant: Tenant
) -> None:
    email = f"li-{uuid.uuid4().hex[:8]}@example.com"
    controller, box = start_smtp()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    settings = dataclasses.replace(
        container.settings, smtp_host="127.0.0.1", smtp_port=controller.port, public_url=base
    )
    assert container.signing_key is not None
    sender = build_outbox(settings, container.signing_key, container.deps.secrets)
    try:
        with live_server(container, port) as served, httpx.Client(base_url=served, timeout=10) as http:
            customer = {"email": email, "locale": "en", "opt_in": True}
            order = _post(
                http,
                "/v1/orders",
                {"lines": [{"sku": "LATTE", "quantity": 1}], "customer": customer},
                tenant.cashier_key,
            )
            payment = _post(
                http, "/v1/payments", {"order_id": order["id"], "method": "cash"}, tenant.cashier_key
            )
            sender.send_due(container.db, container.deps, "t")
            [mail] = box.to(email)
            header = str(mail["List-Unsubscribe"])
            link = header.strip("<>")
            assert link.startswith(f"{base}/u/{tenant.merchant_id}/")
            assert str(mail["List-Unsubscribe-Post"]) == "List-Unsubscribe=One-Click"
            body = mail.get_body(("plain",))
            assert body is not None and f"Unsubscribe: {link}" in body.get_content()
            path = link.removeprefix(base)

            page = http.get(path)  # opening the link (a prefetcher, a scanner) unsubscribes nobody
            assert page.status_code == 200 and "id=unsubscribe" in page.text
            with container.db.read() as conn:
                assert consent(conn, tenant.merchant_id, "email", email) is True

            # Forged and altered links: 404, and nothing recorded.
            sig = path.rsplit("/", 1)[1]
            other = re.sub(
                r"/u/([0-9a-f]+)/[^/]+/", r"/u/\1/b3RoZXJAZXhhbXBsZS5jb20/", path
            )  # other@example.com
            for bad in (
                path[:-1] + ("0" if sig[-1] != "0" else "1"),
                other,
                f"/u/{uuid.uuid4().hex}/" + path.split("/", 3)[3],
                "/u/nothex/x/" + sig,
            ):
                assert http.get(bad).status_code == 404, bad
                assert http.post(bad).status_code == 404, bad
            with container.db.read() as conn:
                assert consent(conn, tenant.merchant_id, "email", "other@example.com") is None

            # The mail client's one-click POST (RFC 8058) records the opt-out.
            done = http.post(path, content=b"List-Unsubscribe=One-Click")
            assert done.status_code == 200 and "Unsubscribed" in done.text
            with container.db.read() as conn:
                assert consent(conn, tenant.merchant_id, "email", email) is False

            # A later event for that address: written, recorded as suppressed, never mailed.
            _post(http, "/v1/refunds", {"payment_id": payment["id"], "amount": 100}, tenant.cashier_key)
            sender.send_due(container.db, container.deps, "t")
        with container.db.read() as conn:
            rows = {
                r.template: r.status
                for r in conn.execute(
                    select(outbox_messages.c.template, outbox_messages.c.status).where(
                        outbox_messages.c.merchant_id == tenant.merchant_id,
                        outbox_messages.c.recipient == email,
                    )
                )
            }
        assert rows == {"payment_captured": "sent", "refund_done": "suppressed"}
        assert len(box.to(email)) == 1
    finally:
        sender.close()
        controller.stop()
