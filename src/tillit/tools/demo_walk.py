"""The scripted part of `tillit demo` (issue 14's "done when"): one delivery order from paid to confirmed
by the customer's page, with the reminder and the receipt arriving in the demo's local mailbox and the
paper receipt printed as ESC/POS bytes to a file printer.

Nine days must pass between shipping and the auto-confirm reminder (the default periods,
domain/fulfilment.py). The demo does not wait for them and does not touch any row by hand: the first
half of the story runs through the real API routes in this process (``create_app`` over the demo's
database) on an injected ``ManualClock`` that starts nine days ago — sold, paid in cash, declared for
delivery, shipped, delivered — exactly as a shop did it then. The running server (real clock) then finds
the reminder due, its resolver writes and mails it, and the customer confirms through the same HTTP
route the page's button posts to (``POST /c/{token}/confirm``, with the page's form token).

Everything is bounded: each wait ends after ``wait_s`` seconds with a clear error.
"""

from __future__ import annotations

import dataclasses
import re
import time
import uuid
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import httpx

from tillit.api.app import create_app
from tillit.bootstrap import build
from tillit.config import Settings
from tillit.domain.clock import ManualClock
from tillit.domain.receipt import paper_lines
from tillit.sales.receipts import receipt
from tillit.till.printer import EscposPrinter, PrinterConfig, escpos_bytes

with warnings.catch_warnings():  # starlette's note on its httpx transport, irrelevant to a demo
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

CUSTOMER_EMAIL = "wang.customer@example.com"
CUSTOMER_PHONE = "+8613800000000"
# The story starts this long before now: shipping 9 days ago puts the reminder (24 h before the 10-day
# auto-confirm) just behind the server's clock, so the server's resolver sends it at once.
STORY_START = timedelta(days=9, minutes=10)
_CSRF = re.compile(
    r'action="/c/[^"?]+/confirm[^"]*"[^>]*>\s*<input type="hidden" name="csrf" value="([^"]+)"'
)


class WalkFailed(RuntimeError):
    """A step of the scripted walk did not happen in time (the message says which, and where to look)."""


@dataclass(frozen=True)
class WalkResult:
    order_id: str
    order_number: int
    fulfilment_id: str
    customer_url: str
    receipt_url: str
    status: str
    mails: dict[str, Path]  # "receipt" (payment_captured) and "reminder" -> the .eml in the mailbox
    escpos: Path
    receipt_text: str


def _call(client: TestClient, method: str, path: str, key: str, body: Any = None) -> Any:
    headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": uuid.uuid4().hex}
    r = client.request(method, path, json=body, headers=headers)
    if r.status_code >= 300:
        raise WalkFailed(f"{method} {path} answered {r.status_code}: {r.text[:300]}")
    return r.json()


def _story(settings: Settings, api_url: str, seeded: dict[str, str], sku: str) -> dict[str, Any]:
    """Sold, paid, declared, shipped and delivered on a clock that starts ``STORY_START`` ago."""
    clock = ManualClock(datetime.now(UTC) - STORY_START)
    c = build(dataclasses.replace(settings, public_url=api_url), clock=clock)
    try:
        client = TestClient(create_app(c), base_url=api_url)
        terminal, merchant = seeded["terminal_key"], seeded["merchant_key"]
        customer = {"email": CUSTOMER_EMAIL, "phone": CUSTOMER_PHONE, "locale": "zh-CN", "opt_in": True}
        order = _call(
            client,
            "POST",
            "/v1/orders",
            terminal,
            {"lines": [{"sku": sku, "quantity": 2}], "customer": customer},
        )
        clock.advance(30)
        _call(client, "POST", "/v1/payments", terminal, {"order_id": order["id"], "method": "cash"})
        clock.advance(30)
        declared = {
            "kind": "delivery",
            "address": "上海市徐汇区漕溪北路 1 号",
            "contact_name": "王女士",
            "contact_email": CUSTOMER_EMAIL,
            "contact_phone": CUSTOMER_PHONE,
            "language": "zh-CN",
            "opt_in": True,
        }
        f = _call(client, "POST", f"/v1/orders/{order['id']}/fulfilment", merchant, declared)
        clock.advance(60)
        shipping = {"carrier": "顺丰速运", "tracking_number": "SF1000000014"}
        _call(client, "POST", f"/v1/fulfilments/{f['id']}/ship", merchant, shipping)
        clock.advance(timedelta(days=1).total_seconds())
        f = _call(client, "POST", f"/v1/fulfilments/{f['id']}/deliver", merchant, {})
        paid = _call(client, "GET", f"/v1/orders/{order['id']}", terminal)
        with c.db.read() as conn:
            r = receipt(conn, seeded["merchant_id"], order["id"], url=paid["receipt_url"])
        text = "\n".join(paper_lines(r, 32, "zh-CN")) + "\n"
        return {"order": paid, "fulfilment": f, "receipt_text": text}
    finally:
        c.db.dispose()


def _mail_with(mail_dir: Path, marker: str) -> Path | None:
    for path in sorted(mail_dir.glob("*.eml")):
        msg = message_from_bytes(path.read_bytes(), policy=policy.default)
        if marker in str(msg.get("Message-ID", "")):
            return path
    return None


def _wait_for(what: str, probe: Any, wait_s: float) -> Any:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.2)
    raise WalkFailed(f"{what} did not happen within {wait_s:.0f} s (see TILLIT_HOME/logs/server.log)")


def confirm_on_page(http: httpx.Client, customer_url: str) -> None:
    """What the page's 确认收货 button does: the page's form token, posted from the page's origin."""
    page = http.get(customer_url)
    page.raise_for_status()
    found = _CSRF.search(page.text)
    if found is None:
        raise WalkFailed(f"{customer_url} shows no confirm button")
    origin = str(httpx.URL(customer_url).copy_with(path="/", query=None)).rstrip("/")
    r = http.post(customer_url + "/confirm", data={"csrf": found.group(1)}, headers={"Origin": origin})
    if r.status_code != 303:
        raise WalkFailed(f"confirming on the page answered {r.status_code}")


def walk_delivery(
    settings: Settings,
    api_url: str,
    seeded: dict[str, str],
    mail_dir: Path,
    print_dir: Path,
    *,
    sku: str = "COF-LATTE",
    wait_s: float = 30,
) -> WalkResult:
    """The whole walk; the server (with its resolver and SMTP settings) must be running at ``api_url``."""
    story = _story(settings, api_url, seeded, sku)
    order, f = story["order"], story["fulfilment"]
    auth = {"Authorization": f"Bearer {seeded['merchant_key']}"}
    with httpx.Client(base_url=api_url, timeout=10) as http:
        # The receipt mail (payment_captured, with the e-receipt link) and the reminder the server's
        # resolver writes when it finds the reminder due.
        receipt_mail = _wait_for(
            "the receipt mail", lambda: _mail_with(mail_dir, f".paid.{order['id']}."), wait_s
        )
        reminder = _wait_for(
            "the reminder mail", lambda: _mail_with(mail_dir, f".ful.{f['id']}.reminder."), wait_s
        )
        customer_url = api_url + f["customer_path"]
        confirm_on_page(http, customer_url)
        after = http.get(f"/v1/fulfilments/{f['id']}", headers=auth).json()
    # The paper receipt: ESC/POS bytes (GBK text, the printer's own QR command, a cut) to a file printer.
    print_dir.mkdir(parents=True, exist_ok=True)
    path = print_dir / f"receipt-{order['number']}.escpos"
    path.unlink(missing_ok=True)
    EscposPrinter(PrinterConfig("file", str(path))).send(
        escpos_bytes(story["receipt_text"], order["receipt_url"])
    )
    return WalkResult(
        order_id=order["id"],
        order_number=int(order["number"]),
        fulfilment_id=f["id"],
        customer_url=customer_url,
        receipt_url=order["receipt_url"],
        status=str(after["status"]),
        mails={"receipt": receipt_mail, "reminder": reminder},
        escpos=path,
        receipt_text=story["receipt_text"],
    )
