"""The customer's order page in a real browser (Playwright driving Debian's chromium, CJK fonts) against a
real server: confirm receipt in zh-CN, open a dispute with a photo in English, at phone width; a forged
link is a 404. Screenshots go to test-artifacts/customer/."""

from __future__ import annotations

import struct
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.test_till_browser import CHROMIUM_ARGS, chromium
from tests.support.live import live_server
from tests.support.world import Tenant, make_tenant
from tillit.adapters.db import migrate
from tillit.bootstrap import Container, build
from tillit.config import Settings
from tillit.tools.demo import demo_delivery

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "customer"
PHONE = {"width": 390, "height": 844}


def png(width: int = 8, height: int = 8) -> bytes:
    """A real (tiny, grey) PNG, as a phone would upload."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


class Shop:
    def __init__(self, c: Container, base: str, tenant: Tenant) -> None:
        self.c, self.base, self.tenant = c, base, tenant
        self.http = httpx.Client(base_url=base, timeout=30)

    def post(self, path: str, body: Any, role: str = "terminal") -> dict[str, Any]:
        r = self.http.post(
            path, json=body, headers={**self.tenant.auth(role), "Idempotency-Key": uuid.uuid4().hex}
        )
        assert r.status_code in (200, 201), r.text
        return dict(r.json())

    def shipped_order(self, language: str) -> dict[str, Any]:
        order = self.post(
            "/v1/orders", {"lines": [{"sku": "LATTE", "quantity": 1}, {"sku": "WATER", "quantity": 2}]}
        )
        self.post("/v1/payments", {"order_id": order["id"], "method": "cash"})
        f = self.post(
            f"/v1/orders/{order['id']}/fulfilment",
            {
                "kind": "delivery",
                "address": "上海市 静安区 3 号",
                "contact_phone": "13800000000",
                "language": language,
            },
        )
        return self.post(
            f"/v1/fulfilments/{f['id']}/ship", {"carrier": "顺丰", "tracking_number": "SF2026120301"}
        )

    def fulfilment(self, fid: str) -> dict[str, Any]:
        return dict(self.http.get(f"/v1/fulfilments/{fid}", headers=self.tenant.auth()).json())


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    home = tmp_path_factory.mktemp("customer-page")
    c = build(Settings(home=home, database_url=f"sqlite:///{home / 'tillit.sqlite'}"))
    migrate.upgrade(c.db)
    with live_server(c) as base:
        s = Shop(c, base, make_tenant(c, "街角咖啡"))
        yield s
        s.http.close()
    c.db.dispose()


@pytest.fixture(scope="module")
def page(shop: Shop) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    executable = chromium()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True, locale="zh-CN")
        pg = context.new_page()
        pg.set_default_timeout(30_000)
        yield pg
        browser.close()


def fits_phone(page: Any) -> bool:
    return bool(page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth"))


def test_customer_confirms_receipt_in_chinese(page: Any, shop: Shop) -> None:
    """The demo's delivery order (`make run` prints its link), confirmed by the customer."""
    url = demo_delivery(shop.base, shop.tenant.manager_key, shop.tenant.cashier_key, sku="LATTE")
    page.goto(url)
    assert page.inner_text("#status") == "已发货"
    assert page.inner_text("#tracking") == "SF1000000001"
    assert "街角咖啡" in page.inner_text("h1") and fits_phone(page)
    receipt = page.get_attribute("#receipt", "href")  # the e-receipt of the paid order (customer/receipt.py)
    assert receipt and shop.http.get(receipt).status_code == 200
    page.screenshot(path=str(ARTIFACTS / "01-shipped-zh.png"), full_page=True)
    with page.expect_navigation():
        page.click("#confirm")
    assert page.get_attribute("#status", "data-status") == "confirmed"
    assert page.inner_text("#status") == "已确认收货"
    assert page.locator("#confirm").count() == 0 and page.locator("#dispute").count() == 0
    assert page.locator("#timeline li[data-status=confirmed]").count() == 1
    page.screenshot(path=str(ARTIFACTS / "02-confirmed-zh.png"), full_page=True)
    listed = shop.http.get("/v1/fulfilments", headers=shop.tenant.auth()).json()["data"]
    after = next(x for x in listed if url.endswith(x["customer_path"]))
    assert after["status"] == "confirmed" and after["confirmed_by"] == "customer"


def test_customer_opens_a_dispute_with_a_photo_in_english(page: Any, shop: Shop, tmp_path: Path) -> None:
    f = shop.shipped_order("en")
    photo = tmp_path / "damaged.png"
    photo.write_bytes(png())
    page.goto(shop.base + f["customer_path"])
    assert page.inner_text("#status") == "On its way"
    page.select_option("#reason", "damaged_items")
    page.fill("#note", "The cup arrived cracked.")
    page.set_input_files("#photo", str(photo))
    with page.expect_navigation():
        page.click("#dispute")
    assert page.get_attribute("#status", "data-status") == "disputed"
    assert page.inner_text("#status") == "Problem reported" and fits_phone(page)
    page.screenshot(path=str(ARTIFACTS / "03-disputed-en.png"), full_page=True)
    after = shop.fulfilment(f["id"])
    assert after["status"] == "disputed" and after["dispute_reason"] == "damaged_items"
    assert after["dispute_photos"] == 1 and after["dispute_note"] == "The cup arrived cracked."
    page.click("#language")
    assert page.inner_text("#status") == "售后处理中"


def test_a_forged_link_is_not_found(page: Any, shop: Shop) -> None:
    f = shop.shipped_order("zh-CN")
    token = f["customer_path"].rsplit("/", 1)[-1]
    forged = token[:10] + ("B" if token[10] != "B" else "C") + token[11:]
    response = page.goto(shop.base + "/c/" + forged)
    assert response is not None and response.status == 404
    assert page.inner_text("#message") == "此链接没有对应的订单。"
