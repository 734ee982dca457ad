"""The notification outbox against a real local SMTP server (aiosmtpd), a local SMS gateway and a
local webhook receiver: retries, backoff, dead letters, deduplication, crash recovery, consent."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from sqlalchemy import func, select, update

from tests.support.mailbox import Mailbox, free_port, start_smtp
from tests.support.world import Tenant
from tillit.adapters.db.schema import outbox_messages
from tillit.adapters.mail import SmtpConfig, SmtpMailer
from tillit.adapters.sms import HttpSmsGateway, SmsGatewayConfig
from tillit.adapters.webhook import SIGNATURE_HEADER, HttpWebhookSender, WebhookConfig, verify
from tillit.bootstrap import Container
from tillit.domain.clock import ManualClock
from tillit.domain.errors import DomainError
from tillit.kernel.context import Deps
from tillit.notifications import outbox
from tillit.notifications.messages import Message
from tillit.notifications.sender import Channels, OutboxSender, SenderConfig
from tillit.tools.mailbox import start_mailbox

SECRET = b"k" * 32
# An id that is all digits by chance: ids are checked for their shape, not as payment codes.
ORDER_7 = "0" * 31 + "7"
CONFIG = SenderConfig(max_attempts=3, backoff_s=30, backoff_max_s=600)


@pytest.fixture(scope="module")
def smtp() -> Iterator[tuple[int, Mailbox]]:
    controller, box = start_smtp()
    yield int(controller.port), box
    controller.stop()


@pytest.fixture
def deps(container: Container) -> Deps:
    """A clock of the test's own; messages other tests left waiting in the shared database are put
    aside first, so each test's sender sees only its own."""
    with container.db.transaction() as conn:
        conn.execute(
            update(outbox_messages).where(outbox_messages.c.status == "pending").values(status="dead")
        )
    return Deps(clock=ManualClock(datetime.now(UTC)), ids=container.deps.ids)


def sender(port: int, **channels: Any) -> OutboxSender:
    mail = SmtpMailer(SmtpConfig(host="127.0.0.1", port=port, timeout_s=2))
    return OutboxSender(
        Channels(email=mail, **channels),
        CONFIG,
        receipt_url=lambda m, o: f"http://shop.test/receipts/{m}/{o}/sig",
        webhook_secret=lambda m: SECRET,
    )


def mail(tenant: Tenant, event: str, to: str, **params: Any) -> Message:
    return Message(tenant.merchant_id, event, "email", to, "payment_captured", "en", params)  # type: ignore[arg-type]


def put(c: Container, deps: Deps, message: Message) -> bool:
    with c.db.transaction() as conn:
        return outbox.enqueue(conn, deps, message)


def rows(c: Container, merchant_id: str) -> list[Any]:
    with c.db.read() as conn:
        m = outbox_messages
        return list(conn.execute(select(m).where(m.c.merchant_id == merchant_id).order_by(m.c.id)))


def test_smtp_down_then_up_sends_once(container: Container, tenant: Tenant, deps: Deps) -> None:
    port = free_port()
    to = f"down-{tenant.merchant_id}@example.com"
    put(
        container,
        deps,
        mail(tenant, "pay-1", to, order_id=ORDER_7, order_number=7, amount=1234, currency="CNY"),
    )
    s = sender(port)
    assert s.send_due(container.db, deps, "w1") == 1  # nobody listens: a transient failure
    (row,) = rows(container, tenant.merchant_id)
    assert (row.status, row.attempts) == ("pending", 1)
    assert "smtp unavailable" in row.last_error
    assert s.send_due(container.db, deps, "w1") == 0  # backing off: not due yet
    controller, box = start_smtp(port)
    try:
        deps.clock.advance(31)  # type: ignore[attr-defined]
        assert s.send_due(container.db, deps, "w1") == 1
        deps.clock.advance(3600)  # type: ignore[attr-defined]
        assert s.send_due(container.db, deps, "w1") == 0
        s.close()
    finally:
        controller.stop()
    (row,) = rows(container, tenant.merchant_id)
    assert row.status == "sent" and row.sent_at is not None
    (got,) = box.to(to)
    assert "12.34 CNY" in got.get_content() and "order 7" in got["Subject"]
    assert "http://shop.test/receipts/" in got.get_content()


def test_duplicate_events_are_sent_once(
    container: Container, tenant: Tenant, other_tenant: Tenant, deps: Deps, smtp: tuple[int, Mailbox]
) -> None:
    port, box = smtp
    to = f"dup-{tenant.merchant_id}@example.com"
    assert put(container, deps, mail(tenant, "pay-dup", to, amount=100))
    assert not put(container, deps, mail(tenant, "pay-dup", to, amount=100))  # a replayed event
    # The key is per merchant: another merchant's event with the same id is its own message.
    assert put(container, deps, mail(other_tenant, "pay-dup", to, amount=100))
    s = sender(port)
    while s.send_due(container.db, deps, "w1"):
        pass
    s.close()
    assert len(box.to(to)) == 2
    assert [r.status for r in rows(container, tenant.merchant_id)] == ["sent"]


def test_crash_between_commit_and_send_is_sent_after_restart(
    container: Container, tenant: Tenant, deps: Deps, smtp: tuple[int, Mailbox]
) -> None:
    port, box = smtp
    to = f"crash-{tenant.merchant_id}@example.com"
    put(container, deps, mail(tenant, "pay-crash", to, amount=100))
    # A worker claims the message and dies before sending (its process is gone: nothing recorded).
    crashed = sender(port)
    assert len(crashed._claim(container.db, deps, "dead-worker")) == 1
    restarted = sender(port)
    assert restarted.send_due(container.db, deps, "w2") == 0  # the dead worker's lease still holds
    deps.clock.advance(CONFIG.lease.total_seconds() + 1)  # type: ignore[attr-defined]
    assert restarted.send_due(container.db, deps, "w2") == 1
    restarted.close()
    assert len(box.to(to)) == 1
    assert rows(container, tenant.merchant_id)[0].status == "sent"


def test_two_workers_never_send_one_message_twice(
    container: Container, tenant: Tenant, deps: Deps, smtp: tuple[int, Mailbox]
) -> None:
    port, box = smtp
    to = f"race-{tenant.merchant_id}@example.com"
    for n in range(30):
        put(container, deps, mail(tenant, f"race-{n}", to, amount=100 + n))
    senders = [sender(port) for _ in range(3)]
    for s in senders:
        s.config = SenderConfig(batch=4)

    def run(s: OutboxSender, name: str) -> None:
        while s.send_due(container.db, deps, name):
            pass

    threads = [threading.Thread(target=run, args=(s, f"w{n}")) for n, s in enumerate(senders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for s in senders:
        s.close()
    ids = [m["Message-ID"] for m in box.to(to)]
    assert len(ids) == 30 and len(set(ids)) == 30
    assert {r.status for r in rows(container, tenant.merchant_id)} == {"sent"}


def test_dead_letters_and_opt_out(
    container: Container, tenant: Tenant, deps: Deps, smtp: tuple[int, Mailbox]
) -> None:
    port, box = smtp
    refused = f"nobody-{tenant.merchant_id}@example.com"
    box.refuse.add(refused)
    quiet = f"quiet-{tenant.merchant_id}@example.com"
    put(container, deps, mail(tenant, "e-refused", refused, amount=1))
    put(container, deps, mail(tenant, "e-quiet", quiet, amount=1))
    with container.db.transaction() as conn:  # the customer opted out after the message was written
        outbox.set_consent(
            conn,
            deps.clock.now(),
            merchant_id=tenant.merchant_id,
            channel="email",
            recipient=quiet,
            opted_in=False,
            source="customer",
        )
    s = sender(port)
    s.send_due(container.db, deps, "w1")
    s.close()
    by_recipient = {r.recipient: r for r in rows(container, tenant.merchant_id)}
    assert by_recipient[refused].status == "dead"  # 550: trying again cannot help
    assert by_recipient[quiet].status == "suppressed"
    assert box.to(refused) == [] and box.to(quiet) == []

    # A transient failure that never clears ends dead after max_attempts, with the backoff doubling.
    down = sender(free_port())
    put(container, deps, mail(tenant, "e-down", f"later-{tenant.merchant_id}@example.com", amount=1))
    waits = []
    for _ in range(CONFIG.max_attempts):
        down.send_due(container.db, deps, "w1")
        row = next(r for r in rows(container, tenant.merchant_id) if r.event_id == "e-down")
        waits.append((row.next_attempt_at - deps.clock.now()).total_seconds())
        deps.clock.advance(10_000)  # type: ignore[attr-defined]
    assert row.status == "dead" and row.attempts == CONFIG.max_attempts
    assert waits[:2] == [30, 60]


def test_bad_messages_write_nothing(container: Container, tenant: Tenant, deps: Deps) -> None:
    bad = [
        mail(tenant, "e1", "not-an-address"),
        mail(tenant, "e2", "a@example.com", tracking_number="134567890123456789"),  # a WeChat code
        mail(tenant, "e3", "a@example.com", password="x"),
        mail(tenant, "e6", "a@example.com", order_id="1340 1234 5678 9012"),
        Message(tenant.merchant_id, "e4", "email", "a@example.com", "no_such", "en", {}),
        Message(tenant.merchant_id, "e5", "fax", "a@example.com", "alert", "en", {}),  # type: ignore[arg-type]
    ]
    codes = []
    for message in bad:
        with pytest.raises(DomainError) as err:
            put(container, deps, message)
        codes.append(err.value.code)
    assert codes == [
        "invalid_recipient",
        "payment_code_in_message",
        "invalid_params",
        "invalid_params",
        "invalid_template",
        "invalid_channel",
    ]
    assert rows(container, tenant.merchant_id) == []


class _Receiver(BaseHTTPRequestHandler):
    got: ClassVar[list[tuple[dict[str, str], bytes]]] = []
    status = 200

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).got.append((dict(self.headers), body))
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def receiver() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_signed_webhook_and_sms(container: Container, tenant: Tenant, deps: Deps, receiver: str) -> None:
    _Receiver.got.clear()
    hook = Message(
        tenant.merchant_id,
        "pay-hook",
        "webhook",
        f"{receiver}/hook",
        "payment_captured",
        "zh-CN",
        {"order_id": ORDER_7, "amount": 990},
    )
    sms = Message(
        tenant.merchant_id,
        "pay-sms",
        "sms",
        "+8613800138000",
        "payment_captured",
        "zh-CN",
        {"amount": 990, "currency": "CNY"},
    )
    put(container, deps, hook)
    put(container, deps, sms)
    s = OutboxSender(
        Channels(
            sms=HttpSmsGateway(SmsGatewayConfig(f"{receiver}/sms", token="tok")),
            webhook=HttpWebhookSender(WebhookConfig()),
        ),
        CONFIG,
        receipt_url=lambda m, o: f"http://shop.test/r/{o}",
        webhook_secret=lambda m: SECRET,
    )
    assert s.send_due(container.db, deps, "w1") == 2
    s.close()
    by_path = {json.loads(b).get("to", "webhook"): (h, b) for h, b in _Receiver.got}
    headers, body = by_path["webhook"]
    # An independent check of the signature: the documented recipe, not tillit's verify().
    t, v1 = (part.split("=", 1)[1] for part in headers[SIGNATURE_HEADER].split(","))
    assert hmac.new(SECRET, t.encode() + b"." + body, hashlib.sha256).hexdigest() == v1
    now = int(deps.clock.now().timestamp())
    assert verify(SECRET, headers[SIGNATURE_HEADER], body, now)
    assert not verify(SECRET, headers[SIGNATURE_HEADER], body + b" ", now)  # tampered body
    assert not verify(SECRET, headers[SIGNATURE_HEADER], body, now + 301)  # outside the replay window
    assert not verify(b"x" * 32, headers[SIGNATURE_HEADER], body, now)
    payload = json.loads(body)
    assert payload["params"]["receipt_url"] == f"http://shop.test/r/{ORDER_7}"
    assert headers["Tillit-Message-Id"] == f"{tenant.merchant_id}:pay-hook:webhook"
    sms_headers, sms_body = by_path["+8613800138000"]
    assert sms_headers["Authorization"] == "Bearer tok"
    assert "9.90 CNY" in json.loads(sms_body)["text"]


def test_outbox_rows_count_per_merchant(
    container: Container, tenant: Tenant, other_tenant: Tenant, deps: Deps
) -> None:
    put(container, deps, mail(tenant, "iso-1", "a@example.com"))
    with container.db.read() as conn:
        m = outbox_messages
        mine = conn.execute(select(func.count()).where(m.c.merchant_id == tenant.merchant_id)).scalar_one()
        theirs = conn.execute(
            select(func.count()).where(m.c.merchant_id == other_tenant.merchant_id)
        ).scalar_one()
    assert (mine, theirs) == (1, 0)


def test_demo_mailbox_keeps_each_message_as_a_file(tmp_path: Path) -> None:
    box = start_mailbox(tmp_path / "mail", port=free_port())
    try:
        mailer = SmtpMailer(SmtpConfig(host="127.0.0.1", port=int(box.port), timeout_s=2))
        mailer.send("li@example.com", "支付成功", "电子小票：http://x/r", "m:e:email")
        mailer.close()
    finally:
        box.stop()
    (eml,) = (tmp_path / "mail").glob("*.eml")
    parsed = message_from_bytes(eml.read_bytes(), policy=policy.default)
    assert parsed["Subject"] == "支付成功" and "电子小票" in parsed.get_content()  # type: ignore[union-attr]
