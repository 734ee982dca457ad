"""The back office through real HTTP to a real server: tenant isolation on every page with an id, and a
real browser (Playwright driving Debian's chromium, fonts-noto-cjk) for sign-in, CSRF refusal, the today
page after seeded sales, an order search and refund, a Z-report chain check and a CSV import with a bad
row. Screenshots in zh-CN and en go to test-artifacts/backoffice/."""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
from fastapi.routing import APIRoute
from sqlalchemy import select

from tests.e2e.test_till_browser import CHROMIUM_ARGS, chromium
from tests.support.api import new_order, pay_cash
from tests.support.backoffice import BO, Day, csrf_of, seed_day, signin
from tests.support.live import live_server
from tests.support.world import Tenant, make_tenant
from tillit.adapters.db import migrate
from tillit.adapters.db.schema import api_keys, merchant_webhooks, products
from tillit.adapters.webhook import SIGNATURE_HEADER, verify
from tillit.backoffice.app import PAGES
from tillit.bootstrap import Container, build
from tillit.config import Settings
from tillit.monitoring import alerts
from tillit.notifications import endpoints

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "backoffice"


@dataclass
class World:
    url: str
    container: Container
    shop: Tenant
    rival: Tenant
    shop_day: Day
    rival_day: Day


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    home = tmp_path_factory.mktemp("backoffice")
    container = build(Settings(home=home, database_url=f"sqlite:///{home / 'tillit.sqlite'}"))
    migrate.upgrade(container.db)
    shop, rival = make_tenant(container, "茶室 Tea Room"), make_tenant(container, "Rival")
    with live_server(container) as url, httpx.Client(base_url=url) as api:
        shop_day = seed_day(api, container, shop, sales=5)
        rival_day = seed_day(api, container, rival, sales=2)
        yield World(url, container, shop, rival, shop_day, rival_day)
    container.db.dispose()


@contextmanager
def browser_client(world: World, key: str) -> Iterator[httpx.Client]:
    """An HTTP client that keeps cookies like a browser, signed in with ``key``."""
    with httpx.Client(base_url=world.url, follow_redirects=True) as client:
        signin(client, key)
        yield client


def _rival_ids(world: World) -> dict[str, str]:
    with world.container.db.read() as conn:
        product_id = conn.execute(
            select(products.c.id).where(products.c.merchant_id == world.rival.merchant_id).limit(1)
        ).scalar_one()
        key_id = conn.execute(
            select(api_keys.c.id).where(api_keys.c.terminal_id == world.rival.terminal_id).limit(1)
        ).scalar_one()
    with world.container.db.transaction() as conn:  # bo13b: the rival's alert rule
        existing = alerts.list_rules(conn, world.rival.merchant_id)
        rule = (
            existing[0]
            if existing
            else alerts.create_rule(
                conn,
                world.container.deps,
                merchant_id=world.rival.merchant_id,
                name="rival rule",
                kind="failure_spike",
                threshold=300,
            )
        )
    with world.container.db.transaction() as conn:  # ful21: the rival's webhook endpoint
        hook = endpoints.get_endpoint(conn, world.rival.merchant_id)
        if hook["default"]:
            hook, _secret = endpoints.create_endpoint(
                conn, world.container.deps, world.rival.merchant_id, "https://rival.example/hook"
            )
    order = world.rival_day.orders[0]
    return {
        "endpoint_id": str(hook["id"]),
        "rule_id": rule.id,
        "order_id": order["id"],
        "payment_id": order["payment"]["id"],
        "shift_id": world.rival_day.shifts[0]["id"],
        "product_id": product_id,
        "terminal_id": world.rival.terminal_id,
        "key_id": key_id,
        "store_id": world.rival.store_id,
        "merchant_id": world.rival.merchant_id,  # settle12
    }


# Every back-office route that takes an id, with the request that tries another merchant's id. The test
# below fails when a route with an id is added without a line here.
ISOLATION: dict[tuple[str, str], tuple[str, dict[str, str]]] = {
    ("GET", "/orders/{order_id}"): ("/orders/{order_id}", {}),
    ("POST", "/orders/{order_id}/refund"): ("/orders/{order_id}/refund", {"payment_id": "{payment_id}"}),
    ("GET", "/shifts/{shift_id}"): ("/shifts/{shift_id}", {}),
    ("GET", "/products/{product_id}"): ("/products/{product_id}", {}),
    ("POST", "/products/{product_id}"): (
        "/products/{product_id}",
        {"sku": "LATTE", "name": "x", "price": "1"},
    ),
    ("POST", "/products/{product_id}/active"): ("/products/{product_id}/active", {"active": "0"}),
    ("POST", "/terminals/{terminal_id}/keys"): ("/terminals/{terminal_id}/keys", {"name": "stolen"}),
    ("POST", "/keys/{key_id}/revoke"): ("/keys/{key_id}/revoke", {}),
    # bo13b: an alert rule's edit page and form
    ("GET", "/alerts/rules/{rule_id}"): ("/alerts/rules/{rule_id}", {}),
    ("POST", "/alerts/rules/{rule_id}"): (
        "/alerts/rules/{rule_id}",
        {"name": "stolen", "threshold": "1", "window_minutes": "1", "min_attempts": "0", "channels": ""},
    ),
    # settle12: a settlement day is addressed by its merchant
    ("GET", "/settlement/{merchant_id}/{provider}/{trade_day}"): (
        "/settlement/{merchant_id}/wechat/2026-11-20",
        {},
    ),
    # ful21: the merchant's webhook endpoint
    ("POST", "/webhooks/{endpoint_id}/rotate"): ("/webhooks/{endpoint_id}/rotate", {}),
    ("POST", "/webhooks/{endpoint_id}/enabled"): ("/webhooks/{endpoint_id}/enabled", {"enabled": "0"}),
    ("POST", "/webhooks/{endpoint_id}/delete"): ("/webhooks/{endpoint_id}/delete", {}),
}
# Routes whose id arrives in the form or query rather than the path.
ISOLATION_BODY = [
    ("POST", "/terminals", {"store_id": "{store_id}", "name": "Stolen till"}),
    ("GET", "/shifts/verify?terminal_id={terminal_id}", {}),
]


# Routes with a path parameter covered by another test, or whose parameter is not an id.
COVERED_ELSEWHERE = {
    # another merchant's alert answers 404 on both: tests/integration/test_monitoring.py
    ("POST", "/alerts/{alert_id}/acknowledge"),
    ("POST", "/alerts/{alert_id}/resolve"),
    ("GET", "/analytics/{table}.csv"),  # the table's name, not an id: the export holds the caller's rows
}


def test_every_id_route_is_covered() -> None:
    with_ids = {
        (method, route.path)
        for page in PAGES
        for route in page.router.routes
        if isinstance(route, APIRoute) and "{" in route.path
        for method in route.methods - {"HEAD"}
    } - COVERED_ELSEWHERE
    assert with_ids <= set(ISOLATION), f"add tenant-isolation cases for {sorted(with_ids - set(ISOLATION))}"


def test_another_merchants_ids_answer_404_like_unused_ids(world: World) -> None:
    ids = _rival_ids(world)
    unused = {name: uuid.uuid4().hex for name in ids}
    with browser_client(world, world.shop.manager_key) as client:
        token = csrf_of(client.get(f"{BO}/today").text)

        def ask(method: str, path: str, form: dict[str, str], values: dict[str, str]) -> httpx.Response:
            url = BO + path.format(**values)
            if method == "GET":
                return client.get(url)
            data = {k: v.format(**values) for k, v in form.items()} | {"csrf_token": token}
            data.setdefault("idempotency_key", uuid.uuid4().hex)
            return client.post(url, data=data)

        cases = [(m, p, f) for (m, _), (p, f) in ISOLATION.items()] + ISOLATION_BODY
        for method, path, form in cases:
            theirs, nobodys = ask(method, path, form, ids), ask(method, path, form, unused)
            assert theirs.status_code == 404, (method, path, theirs.status_code, theirs.text[:300])
            assert nobodys.status_code == 404, (method, path, nobodys.status_code)
            assert 'id="nav-today"' in theirs.text  # the refusal is shown inside the signed-in layout
            code = re.search(r'class="code">([a-z_]+)<', theirs.text)
            assert code is not None and code.group(1) == re.search(
                r'class="code">([a-z_]+)<', nobodys.text
            ).group(1)  # type: ignore[union-attr]
        # Lists show only the caller's own rows.
        listing = client.get(f"{BO}/orders", params={"since": "2000-01-01T00:00"}).text
        assert ids["order_id"] not in listing and world.shop_day.orders[0]["id"] in listing
        assert world.rival.terminal_id not in client.get(f"{BO}/today").text
        assert world.rival.terminal_id not in client.get(f"{BO}/terminals").text
        assert ids["shift_id"] not in client.get(f"{BO}/shifts").text
        assert ids["product_id"] not in client.get(f"{BO}/products").text
        assert ids["product_id"] not in client.get(f"{BO}/products/export.csv").text
        assert ids["endpoint_id"] not in client.get(f"{BO}/webhooks").text
    with world.container.db.read() as conn:  # and nothing of theirs changed
        revoked = conn.execute(
            select(api_keys.c.revoked_at).where(api_keys.c.id == ids["key_id"])
        ).scalar_one()
        active = conn.execute(
            select(products.c.active).where(products.c.id == ids["product_id"])
        ).scalar_one()
    assert revoked is None and active == 1
    with world.container.db.read() as conn:
        hook = endpoints.get_endpoint(conn, world.rival.merchant_id)
    assert hook["id"] == ids["endpoint_id"] and hook["enabled"] is True
    with world.container.db.read() as conn:
        rule = alerts.get_rule(conn, world.rival.merchant_id, ids["rule_id"])
        assert alerts.rule_changes(conn, world.rival.merchant_id, rule.id) == []
    assert (rule.name, rule.threshold) == ("rival rule", 300)


# ---- the browser ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser(world: World) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    executable = chromium()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        yield launched
        launched.close()


def new_page(browser: Any, world: World, locale: str) -> Any:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale=locale)
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(f"{world.url}{BO}/lang/{'en' if locale == 'en' else 'zh_CN'}?next=/signin")
    return page


def shot(page: Any, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def sign_in(page: Any, key: str) -> None:
    page.wait_for_selector("#signin-form")
    page.fill("#api_key", key)
    page.click("#signin")
    page.wait_for_selector("#signout")


def settled(page: Any) -> None:
    page.wait_for_function("() => !document.querySelector('.htmx-request, .htmx-swapping, .htmx-settling')")


@pytest.mark.parametrize("locale", ["zh-CN", "en"])
def test_sign_in_and_the_today_page(browser: Any, world: World, locale: str) -> None:
    page = new_page(browser, world, locale)
    shot(page, f"signin-{locale}")
    page.fill("#api_key", "tk_mer_not_a_key")
    page.click("#signin")
    page.wait_for_selector("#signin-error")
    sign_in(page, world.shop.manager_key)
    page.wait_for_selector("#today-tiles")
    assert page.inner_text("#sales-count") == str(len(world.shop_day.orders))
    assert ("今日" if locale == "zh-CN" else "Today") in page.inner_text("h1")
    assert page.locator('#by-method tr[data-method="wechat"]').count() == 1
    shot(page, f"today-{locale}")
    page.click("#signout")
    page.wait_for_selector("#signin-form")
    page.goto(f"{world.url}{BO}/today")
    page.wait_for_selector("#signin-form")  # signed out: back to the sign-in page
    page.context.close()


def test_csrf_refusal(browser: Any, world: World) -> None:
    page = new_page(browser, world, "zh-CN")
    sign_in(page, world.shop.manager_key)
    page.goto(f"{world.url}{BO}/products")
    page.fill("#p-sku", "FORGED")
    page.fill("#p-name", "Forged")
    page.fill("#p-price", "1.00")
    page.eval_on_selector("#new-product input[name=csrf_token]", "el => el.value = 'forged'")
    page.click("#p-create")
    page.wait_for_selector("#refused")
    shot(page, "csrf-refused-zh-CN")
    with world.container.db.read() as conn:
        assert conn.execute(select(products.c.id).where(products.c.sku == "FORGED")).first() is None
    page.context.close()


def test_order_search_and_refund(browser: Any, world: World) -> None:
    page = new_page(browser, world, "en")
    sign_in(page, world.shop.manager_key)
    target = world.shop_day.orders[1]
    page.goto(f"{world.url}{BO}/orders")
    page.fill("#q-number", str(target["number"]))
    page.click("#search")
    settled(page)
    page.wait_for_function("n => document.querySelectorAll('#results tr.hit').length === n", arg=1)
    shot(page, "orders-search-en")
    page.click(f'tr[data-order="{target["id"]}"] a')
    page.wait_for_selector("#timeline")
    page.fill(".refund-amount", "2.00")
    page.fill(".refund-reason", "spilt")
    page.click(".refund-submit")
    page.wait_for_selector("#message.ok")
    assert page.inner_text("#order-refunded") == "¥2.00"
    shot(page, "order-refund-en")
    page.goto(f"{world.url}{BO}/lang/zh_CN?next=/orders/{target['id']}")
    page.wait_for_selector("#timeline")
    shot(page, "order-refund-zh-CN")
    page.context.close()


def test_z_report_chain_check(browser: Any, world: World) -> None:
    page = new_page(browser, world, "zh-CN")
    sign_in(page, world.shop.manager_key)
    page.goto(f"{world.url}{BO}/shifts")
    page.click("#verify-chain")
    page.wait_for_selector(".chain-ok")
    assert "2" in page.inner_text(".chain-ok")
    shot(page, "zreport-chain-zh-CN")
    page.context.close()


def test_product_csv_import_with_a_bad_row(browser: Any, world: World, tmp_path: Path) -> None:
    page = new_page(browser, world, "en")
    sign_in(page, world.shop.manager_key)
    page.goto(f"{world.url}{BO}/products")
    csv_file = tmp_path / "products.csv"
    csv_file.write_text(
        "sku,name,price,stock\nMOCHA,摩卡,32.00,20\nBROKEN,Broken,12.3.4,\n", encoding="utf-8"
    )
    page.set_input_files("#csv-file", str(csv_file))
    page.click("#import")
    page.wait_for_selector("#row-errors")
    assert page.locator('.row-error[data-line="3"]').count() == 1
    shot(page, "csv-import-bad-row-en")
    with world.container.db.read() as conn:
        assert conn.execute(select(products.c.id).where(products.c.sku == "MOCHA")).first() is None
    page.goto(f"{world.url}{BO}/lang/zh_CN?next=/products")
    page.set_input_files("#csv-file", str(csv_file))
    page.click("#import")
    page.wait_for_selector("#row-errors")
    shot(page, "csv-import-bad-row-zh-CN")
    page.context.close()


class _Receiver(BaseHTTPRequestHandler):
    """The merchant's own system: records what Tillit posts to it."""

    got: ClassVar[list[tuple[str, dict[str, str], bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).got.append((self.path, dict(self.headers), body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.mark.parametrize("locale", ["zh-CN", "en"])
def test_webhook_endpoint_added_and_a_delivery_seen(browser: Any, world: World, locale: str) -> None:
    """ful21: add the endpoint on the page, copy the secret shown once, make a sale, see the delivery on
    the page (htmx refresh), verify its signature with the copied secret; rotate, disable, delete."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    hook_url = f"http://127.0.0.1:{server.server_address[1]}/tillit-{locale}"
    page = new_page(browser, world, locale)
    try:
        sign_in(page, world.shop.manager_key)
        page.click("#nav-webhooks")
        page.wait_for_selector("#no-endpoint")
        page.fill("#w-url", "ftp://not-http.example/hook")
        page.eval_on_selector("#w-url", "el => el.type = 'text'")  # past the browser's own check
        page.click("#w-add")
        page.wait_for_selector("#message.error")
        assert "invalid_webhook_url" in page.inner_text("#message")
        page.fill("#w-url", hook_url)
        page.click("#w-add")
        page.wait_for_selector("#webhook-secret")
        secret = page.inner_text("#webhook-secret").strip()
        assert secret.startswith("whsec_")
        assert page.locator(f'tr.endpoint .endpoint-url:text-is("{hook_url}")').count() == 1
        shot(page, f"webhooks-added-{locale}")

        with httpx.Client(base_url=world.url) as api:
            order = new_order(api, world.shop)
            pay_cash(api, world.shop, order["id"])
        assert world.container.outbox is not None
        while world.container.outbox.send_due(world.container.db, world.container.deps, "browser-test"):
            pass
        page.click("#refresh-deliveries")
        row = f'tr.delivery[data-event="paid:{order["id"]}"][data-status="sent"]'
        page.wait_for_selector(row)
        assert page.get_attribute("#last-status", "data-status") == "sent"
        assert page.inner_text("#failing") == "0"
        shot(page, f"webhooks-delivery-{locale}")
        got = [(h, b) for p, h, b in _Receiver.got if p == f"/tillit-{locale}"]
        assert len(got) == 1
        headers, body = got[0]
        now = int(world.container.deps.clock.now().timestamp())
        assert verify(secret.encode(), headers[SIGNATURE_HEADER], body, now)  # the secret the page showed

        page.reload()
        assert page.locator("#webhook-secret").count() == 0  # shown once, never again
        page.click("tr.endpoint .rotate")
        page.wait_for_selector("#webhook-secret")
        assert page.inner_text("#webhook-secret").strip() != secret
        page.click("tr.endpoint .toggle")
        page.wait_for_selector("tr.endpoint .endpoint-status.bad")
        page.once("dialog", lambda dialog: dialog.accept())
        page.click("tr.endpoint .delete")
        page.wait_for_selector("#no-endpoint")
        with world.container.db.read() as conn:
            left = conn.execute(
                select(merchant_webhooks.c.id).where(
                    merchant_webhooks.c.merchant_id == world.shop.merchant_id
                )
            ).first()
        assert left is None
    finally:
        page.context.close()
        server.shutdown()
        server.server_close()
