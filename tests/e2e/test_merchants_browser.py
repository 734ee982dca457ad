"""The operator's review flow in a real browser (Playwright driving Debian's chromium) against a real
server: the review queue, a document rejected with its reason, the blacklist refusal and its override,
approval to active, a limit set with its audit line. Screenshots go to test-artifacts/merchants/."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_till_browser import CHROMIUM_ARGS, chromium
from tests.support.backoffice import BO
from tests.support.live import live_server
from tests.support.world import make_admin_key
from tillit.adapters.db import migrate
from tillit.bootstrap import Container, build
from tillit.config import Settings
from tillit.merchants import blacklist, documents, review
from tillit.merchants.documents import DocumentInput

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "merchants"
LICENCE = "91440300708461136T"


@dataclass
class World:
    url: str
    container: Container
    admin_key: str
    merchant_id: str


def _application(c: Container) -> str:
    """An application submitted by its merchant (so the operator may approve it: four-eyes)."""
    assert c.merchants is not None
    cfg = c.merchants
    with c.db.transaction() as conn:
        mid = review.apply(
            conn,
            c.deps,
            cfg,
            name="面馆 Noodle Bar",
            currency="CNY",
            timezone="Asia/Shanghai",
            contact_phone=None,
            actor="merchant:owner",
        )["merchant_id"]
        for doc in (
            DocumentInput("business_licence", LICENCE, "面馆", expires_on=_day("2030-01-01")),
            DocumentInput("legal_rep_id", "11010519491231002X", "张三", expires_on=_day("2035-01-01")),
            DocumentInput("bank_account", "6222021234567890128", "面馆", bank_name="招商银行"),
            DocumentInput("category", "5814"),
        ):
            documents.add_document(conn, c.deps, cfg, mid, doc, "merchant:owner")
        review.submit(c.db, conn, c.deps, mid, "merchant:owner")
        blacklist.add_entry(
            c.db,
            conn,
            c.deps,
            cfg,
            kind="credit_code",
            value=LICENCE,
            source="CPCA",
            reason="shared licence",
            actor="admin:seed",
        )
    return str(mid)


def _day(text: str) -> date:
    return date.fromisoformat(text)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    home = tmp_path_factory.mktemp("merchants-bo")
    c = build(Settings(home=home, database_url=f"sqlite:///{home / 'tillit.sqlite'}"))
    migrate.upgrade(c.db)
    mid = _application(c)
    with live_server(c) as url:
        yield World(url, c, make_admin_key(c), mid)
    c.db.dispose()


@pytest.fixture(scope="module")
def page(world: World) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1280, "height": 1000}, locale="zh-CN")
        pg = context.new_page()
        pg.set_default_timeout(30_000)
        pg.goto(f"{world.url}{BO}/lang/zh_CN?next=/signin")
        pg.wait_for_selector("#signin-form")
        pg.fill("#api_key", world.admin_key)
        pg.click("#signin")
        pg.wait_for_selector("#signout")
        yield pg
        browser.close()


def test_review_flow_in_the_browser(page: Any, world: World) -> None:
    page.goto(f"{world.url}{BO}/merchants")
    row = page.locator(f"tr[data-merchant='{world.merchant_id}']")
    assert row.count() == 1 and "审核中" in row.inner_text()
    row.locator("a").click()
    page.wait_for_selector("#documents")
    assert "命中黑名单" in page.inner_text("#blacklist-hits")
    page.screenshot(path=str(ARTIFACTS / "review-zh.png"), full_page=True)

    # reject the bank account with a reason, then see it stay rejected with that reason
    bank = page.locator("tr[data-kind='bank_account']")
    bank.locator(".doc-reason").fill("开户名与营业执照不一致")
    bank.locator(".doc-reject").click()
    page.wait_for_selector("#message")
    assert "开户名与营业执照不一致" in page.inner_text("tr[data-kind='bank_account']")
    # approving now is refused: a document is not approved (stable code shown, nothing changed)
    page.click("#act-approve")
    page.wait_for_selector("#message")
    assert "documents_not_approved" in page.inner_text("#message")
    assert "审核中" in page.inner_text("#merchant-status")

    # the merchant resubmits a corrected account (outside the browser), the operator approves all
    c = world.container
    assert c.merchants is not None
    with c.db.transaction() as conn:
        review.reject(
            c.db, conn, c.deps, c.merchants, world.merchant_id, actor="admin:x", reason="fix account"
        )
        documents.add_document(
            conn,
            c.deps,
            c.merchants,
            world.merchant_id,
            DocumentInput("bank_account", "6222021234567890128", "面馆", bank_name="招商银行"),
            "merchant:owner",
        )
        review.submit(c.db, conn, c.deps, world.merchant_id, "merchant:owner")
    page.reload()
    while page.locator(".doc-approve").count():
        page.locator(".doc-approve").first.click()
        page.wait_for_selector("#message")
    page.click("#act-approve")
    page.wait_for_selector("#message")
    assert "blacklist_override_required" in page.inner_text("#message")
    page.fill("#override-reason", "CPCA 条目为同名企业")
    page.click("#act-approve")
    page.wait_for_selector("#message")
    assert "生效" in page.inner_text("#merchant-status")
    assert "CPCA 条目为同名企业" in page.inner_text("#events")

    # a daily limit, with its audit line
    page.fill("#limit-daily", "50000")
    page.fill("#limit-reason", "C 档")
    page.click("#act-limit")
    page.wait_for_selector("#message")
    assert "C 档" in page.inner_text("#limit-changes")
    assert "500.00" in page.inner_text("#limits")
    page.screenshot(path=str(ARTIFACTS / "active-zh.png"), full_page=True)


def test_blacklist_page_adds_and_masks(page: Any, world: World) -> None:
    page.goto(f"{world.url}{BO}/blacklist")
    page.select_option("#bl-kind", "id_number")
    page.fill("#bl-value", "11010519491231002X")
    page.fill("#bl-source", "bank")
    page.fill("#bl-reason", "盗刷团伙")
    page.click("#bl-add")
    page.wait_for_selector("#message")
    text = page.inner_text("#entries")
    assert "110***********002X" in text and "11010519491231002X" not in page.content()
    # the approved merchant's legal person matches: it is suspended
    page.goto(f"{world.url}{BO}/merchants/view?id={world.merchant_id}")
    assert "已暂停" in page.inner_text("#merchant-status")
