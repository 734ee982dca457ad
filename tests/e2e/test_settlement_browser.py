"""The operator's settlement and fees pages in a real browser (Playwright + Debian chromium) over real
HTTP: a "not credited" (未到账) day found by the settlement check and explained with its trades and next
action, and a 跳码 bill's evidence on the fees page. Screenshots go to test-artifacts/settlement/."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.test_till_browser import CHROMIUM_ARGS, chromium
from tests.integration.test_settlement import plant_days, provider_lines
from tests.support.backoffice import BO
from tests.support.live import live_server
from tests.support.statements import wechat_fundflow
from tests.support.world import Tenant, make_admin_key, make_tenant
from tillit.adapters.db import migrate
from tillit.bootstrap import Container, build
from tillit.config import Settings
from tillit.domain.clock import ManualClock
from tillit.payments import accounts as provider_accounts
from tillit.settlement.statements import CHINA

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "settlement"
SAMPLE_BILL = (Path(__file__).resolve().parents[1] / "data" / "wechat_all_20261120.csv").read_bytes()


@dataclass
class World:
    url: str
    container: Container
    shop: Tenant
    admin_key: str
    missing: list[str]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    home = tmp_path_factory.mktemp("settlement-browser")
    container = build(
        Settings(home=home, database_url=f"sqlite:///{home / 'tillit.sqlite'}"),
        clock=ManualClock(datetime(2026, 12, 3, 12, 0, tzinfo=CHINA)),
    )
    migrate.upgrade(container.db)
    shop = make_tenant(container, "茶室 Tea Room")
    admin_key = make_admin_key(container)
    with live_server(container) as url, httpx.Client(base_url=url) as api:
        admin = {"Authorization": f"Bearer {admin_key}"}
        # Signed: 0.38 %, UnionPay-style merchant number 102440358121234 (MCC 5812). The sample bill is
        # for mch_id 10000100: every row of it is 跳码 evidence.
        terms = {"rate_ppm": 3800, "merchant_no": "102440358121234", "mcc": "5812"}
        r = api.post(
            "/v1/fee-contracts",
            json={"merchant_id": shop.merchant_id, "provider": "wechat", "effective_from": "2026-01-01"}
            | terms,
            headers=admin | {"Idempotency-Key": uuid.uuid4().hex},
        )
        assert r.status_code == 201, r.text
        with container.db.transaction() as conn:
            provider_accounts.set_account(
                conn,
                container.deps,
                shop.merchant_id,
                "wechat",
                {
                    "appid": "wx2421b1c4370ec43b",
                    "mch_id": "10000100",
                    "api_key": "k" * 32,
                    "base_url": "http://127.0.0.1:9",
                },
            )
        ids = plant_days(container, api, shop, "wechat")  # type: ignore[arg-type]  # an httpx client
        lines = provider_lines(ids, "wechat")
        r = api.post(
            "/v1/settlement/statements",
            params={"source": "wechat_fundflow"},
            content=wechat_fundflow(lines),
            headers=shop.auth("merchant"),
        )
        assert r.status_code == 201, r.text
        assert (
            api.post(
                "/v1/reconciliation/bills",
                params={"provider": "wechat"},
                content=SAMPLE_BILL,
                headers=shop.auth("merchant") | {"Content-Type": "application/octet-stream"},
            ).status_code
            == 201
        )
        r = api.post(
            "/v1/settlement/runs",
            json={"merchant_id": shop.merchant_id, "since": "2026-11-16", "until": "2026-11-20"},
            headers=admin,
        )
        assert r.status_code == 200, r.text
        missing = [ids["pay"][(3, 0)][0], ids["pay"][(3, 1)][0]]
        yield World(url, container, shop, admin_key, missing)
    container.db.dispose()


@pytest.fixture(scope="module")
def browser(world: World) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS, headless=True)
        yield launched
        launched.close()


def _signed_in(browser: Any, world: World, locale: str) -> Any:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale=locale)
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(f"{world.url}{BO}/lang/{'en' if locale == 'en' else 'zh_CN'}?next=/signin")
    page.wait_for_selector("#signin-form")
    page.fill("#api_key", world.admin_key)
    page.click("#signin")
    page.wait_for_selector("#signout")
    return page


@pytest.mark.parametrize("locale", ["zh-CN"])  # the en catalogue is checked by test_backoffice_i18n
def test_a_not_credited_day_on_the_operator_page(browser: Any, world: World, locale: str) -> None:
    page = _signed_in(browser, world, locale)
    page.click("#nav-settlement")
    page.wait_for_selector("#settlement-days")
    statuses = page.eval_on_selector_all("tr.day", "rows => rows.map(r => r.dataset.status)")
    assert sorted(statuses) == sorted(["settled", "short", "late", "missing", "duplicate"])
    page.click('tr.day[data-status="missing"] a')
    page.wait_for_selector("#day-summary")
    assert page.inner_text("#day-status").startswith("未到账" if locale == "zh-CN" else "Not credited")
    assert page.inner_text("#day-received") == "¥0.00" or "0.00" in page.inner_text("#day-received")
    shown = page.inner_text("#uncredited")
    assert all(pid in shown for pid in world.missing)
    assert ("支付机构" if locale == "zh-CN" else "provider") in page.inner_text("#next-action")
    page.screenshot(path=str(ARTIFACTS / f"not-credited-{locale}.png"), full_page=True)
    page.context.close()


def test_code_jump_evidence_on_the_fees_page(browser: Any, world: World) -> None:
    page = _signed_in(browser, world, "zh-CN")
    page.click("#nav-fees")
    page.wait_for_selector("#code-jumps")
    assert page.locator("#code-jumps tr.jump").count() >= 12  # every row of the sample bill: 0.38 % billed
    first = page.inner_text("#code-jumps tr.jump")
    assert "merchant_no" in first and "102440358121234" in first and "10000100" in first
    assert page.locator("#leakage tr").count() == 2  # the header and November
    page.screenshot(path=str(ARTIFACTS / "code-jump-zh-CN.png"), full_page=True)
    page.context.close()
