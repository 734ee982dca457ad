"""The cashier station by touch (issue 17), in a real browser (Playwright + Debian chromium) against real
processes (the demo stack: sandbox, server, till): a touch sale by category, numpad discounts with and
without the manager's PIN, 抹零, hold → new sale → recall, quick cash with change, split tender, a
return by receipt and the customer display following a sale. Each walk leaves screenshots in en and
zh-CN under test-artifacts/till/ (the till's state is in its journal, so a reload in the other language
shows the same screen)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.stack import Stack
from tests.e2e.test_till_browser import ARTIFACTS, CHROMIUM_ARGS, chromium, click, htmx
from tests.support.backoffice import BO

VIEWPORT = {"width": 1024, "height": 768}  # the smallest screen the issue names


@pytest.fixture(scope="module")
def stack(till_demo_stack: Stack) -> Stack:
    """The session's demo stack (tests/e2e/conftest.py), shared with the other till walks."""
    return till_demo_stack


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    executable = chromium()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def page(browser: Any, stack: Stack) -> Iterator[Any]:
    context = browser.new_context(viewport=VIEWPORT, has_touch=True)
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(stack.url("till") + "/lang/en")
    if page.locator("#open-shift").count():
        page.fill("#shift-float", "100.00")
        click(page, "#open-shift")
    page.wait_for_selector("#scan")
    yield page
    context.close()


def both(page: Any, stack: Stack, name: str) -> None:
    """Screenshots of the current screen in en and zh-CN (reloading in zh-CN, then back to en)."""
    page.screenshot(path=str(ARTIFACTS / f"station-{name}-en.png"), full_page=True)
    page.goto(stack.url("till") + "/lang/zh_CN")
    page.wait_for_selector("#app")
    page.screenshot(path=str(ARTIFACTS / f"station-{name}-zh-CN.png"), full_page=True)
    page.goto(stack.url("till") + "/lang/en")
    page.wait_for_selector("#app")


def tap(page: Any, name: str) -> None:
    htmx(page, lambda: page.locator("#grid .tile", has_text=name).tap())


def start(page: Any) -> None:
    if page.locator("#new-sale").count():
        click(page, "#new-sale")
    page.wait_for_selector("#scan")


def numpad(page: Any, mode: str, keys: str) -> None:
    page.click(f"#mode-{mode}")
    page.click("#numpad-form .key[data-key=clear]")
    for key in keys:
        page.click(f"#numpad-form .key[data-key='{key}']")
    click(page, "#numpad-enter")


def lines(page: Any) -> list[tuple[str, str]]:
    return [
        (row.locator(".line-name").inner_text(), row.locator(".line-qty").inner_text())
        for row in page.locator("#cart .line").all()
    ]


def test_touch_sale_by_category_and_quick_cash_with_change(page: Any, stack: Stack) -> None:
    start(page)
    # Every control is a touch target of at least 44 px and has an accessible name.
    small = page.evaluate(
        """() => [...document.querySelectorAll('button, input:not([type=hidden]), select')]
             .filter(e => e.offsetParent !== null)
             .filter(e => { const r = e.getBoundingClientRect(); return r.height < 44 || r.width < 44; })
             .map(e => e.id || e.outerHTML.slice(0, 60))"""
    )
    assert small == []
    unnamed = page.evaluate(
        """() => [...document.querySelectorAll('button, input:not([type=hidden]), select')]
             .filter(e => !(e.getAttribute('aria-label') || e.labels?.length || e.innerText.trim()))
             .map(e => e.id || e.outerHTML.slice(0, 60))"""
    )
    assert unnamed == []
    page.locator("#tabs .tab", has_text="Bakery").tap()
    assert page.locator("#grid .tile", has_text="Latte").is_hidden()
    assert page.locator("#grid .tile", has_text="Croissant").is_visible()
    # The croissant's image is served by the till from its cache.
    assert (
        page.locator("#grid .tile", has_text="Croissant").locator("img").evaluate("i => i.naturalWidth") > 0
    )
    tap(page, "Croissant")
    tap(page, "Croissant")
    page.locator("#tabs .tab", has_text="All").tap()
    page.fill("#scan", "lat")  # search as you type filters the grid
    assert page.locator("#grid .tile:visible").count() == 1
    tap(page, "Latte")
    assert lines(page) == [("Croissant 可颂", "2"), ("Latte 拿铁", "1")]
    assert page.inner_text("#total") == "58.00"
    # Favourites first: the two starred tiles lead the grid.
    assert page.locator("#grid .tile").nth(0).get_attribute("data-fav") == "1"
    quick = page.locator(".quick-cash").evaluate_all("els => els.map(e => e.dataset.amount)")
    assert quick == ["58.00", "100.00"]
    both(page, stack, "01-touch-sale")
    click(page, ".quick-cash[data-amount='100.00']")
    page.wait_for_selector("#change-due")
    assert "42.00" in page.inner_text("#change-due")
    assert page.inner_text("#sale-status") == "completed"
    both(page, stack, "02-quick-cash-change")


def test_numpad_discount_without_and_with_manager_pin(page: Any, stack: Stack) -> None:
    start(page)
    tap(page, "Latte")
    tap(page, "Americano")
    htmx(page, lambda: page.locator("#cart .line", has_text="Latte").click())
    numpad(page, "disc_pct", "10")  # within the store's 20 %: no PIN
    assert page.locator("#cart .line", has_text="Latte").locator(".line-discount").inner_text() == "2.80"
    assert page.locator("#approval").count() == 0
    htmx(page, lambda: page.locator("#cart .line", has_text="Americano").click())
    numpad(page, "price", "12")  # 22.00 → 12.00: over the limit
    page.wait_for_selector("#approval")
    assert "PIN" in page.inner_text("#message")
    both(page, stack, "03-manager-pin")
    page.fill("#manager-pin", "1111")
    page.fill("#approval-reason", "regular customer")
    click(page, "#approve")
    assert "Wrong manager PIN" in page.inner_text("#message")
    page.fill("#manager-pin", "8888")  # the demo store's manager
    page.fill("#approval-reason", "regular customer")
    click(page, "#approve")
    page.wait_for_selector("#approval", state="detached")
    assert page.locator("#cart .line", has_text="Americano").locator(".line-discount").inner_text() == "10.00"
    assert page.inner_text("#total") == "37.20"
    both(page, stack, "04-numpad-discounts")
    click(page, ".quick-cash[data-amount='37.20']")
    page.wait_for_selector("#receipt")


def test_rounding_down_is_a_visible_discount_line(page: Any, stack: Stack) -> None:
    start(page)
    tap(page, "Latte")
    htmx(page, lambda: page.locator("#cart .line", has_text="Latte").click())
    numpad(page, "disc_amt", "0.35")
    assert page.inner_text("#total") == "27.65"
    click(page, "#round")
    assert page.locator("#cart .adjustment[data-kind=rounding]").count() == 1
    assert page.inner_text("#cart .adjustment[data-kind=rounding] .adjustment-amount") == "-0.05"
    assert page.inner_text("#total") == "27.60"
    both(page, stack, "05-rounding")
    click(page, ".quick-cash[data-amount='27.60']")
    page.wait_for_selector("#receipt")
    assert "Rounding" in page.inner_text("#receipt")


def test_hold_new_sale_recall(page: Any, stack: Stack) -> None:
    start(page)
    tap(page, "Oolong")
    page.fill("#hold-note", "table 4")
    click(page, "#hold")
    assert "parked" in page.inner_text("#message")
    assert page.locator("#cart").count() == 0 and page.inner_text("#held-count") == "1"
    tap(page, "Mineral water")
    assert lines(page) == [("Mineral water 500ml 矿泉水", "1")]
    click(page, "#hold")
    click(page, "#held-toggle")
    assert page.locator("#held-list .held").count() == 2
    both(page, stack, "06-parked-sales")
    page.goto(stack.url("till") + "/")  # a reload (and a restart) shows the same parked sales: journal
    click(page, "#held-toggle") if page.locator("#held-list").count() == 0 else None
    htmx(page, lambda: page.locator("#held-list .held", has_text="table 4").locator("button").click())
    assert lines(page) == [("Oolong tea 乌龙茶", "1")]
    assert page.inner_text("#held-count") == "1"
    both(page, stack, "07-recalled")
    click(page, ".quick-cash >> nth=0")
    page.wait_for_selector("#receipt")
    start(page)
    click(page, "#held-toggle") if page.locator("#held-list").count() == 0 else None
    htmx(page, lambda: page.locator("#held-list .held").first.locator("button").click())
    click(page, ".quick-cash >> nth=0")
    page.wait_for_selector("#receipt")


def test_split_tender_cash_then_cash(page: Any, stack: Stack) -> None:
    start(page)
    tap(page, "Muffin")
    tap(page, "Latte")
    page.fill("#cash-amount", "20.00")
    page.fill("#cash-tendered", "20.00")
    click(page, "#pay-cash")
    page.wait_for_selector("#due:text('24.00')")
    assert page.locator(".quick-cash").evaluate_all("els => els.map(e => e.dataset.amount)")[0] == "24.00"
    both(page, stack, "08-split-tender")
    click(page, ".quick-cash[data-amount='50.00']")
    page.wait_for_selector("#receipt")
    assert page.locator(".tender[data-status=captured]").count() == 2
    assert "26.00" in page.inner_text("#change-due")


def test_return_by_receipt(page: Any, stack: Stack) -> None:
    start(page)
    tap(page, "Croissant")
    tap(page, "Croissant")
    tap(page, "Latte")
    click(page, ".quick-cash >> nth=0")
    number = page.inner_text("#sale-number")
    start(page)
    page.fill("#lookup-number", f"R{number}")  # as a receipt's code scans
    click(page, "#lookup")
    page.wait_for_selector("#return-form")
    page.locator(".return-line", has_text="Croissant").locator(".return-qty").fill("1")
    page.fill("#return-reason", "stale")
    click(page, "#return-submit")
    assert "15.00" in page.inner_text("#message")
    assert page.locator(".return-line", has_text="Croissant").locator("td").nth(2).inner_text() == "1"
    page.locator(".return-line", has_text="Croissant").locator(".return-qty").fill("2")
    click(page, "#return-submit")
    assert "Only 1 of that line" in page.inner_text("#message")
    both(page, stack, "09-return-by-receipt")
    click(page, "#reprint")
    assert "Printed to" in page.inner_text("#message")


def test_customer_display_follows_the_sale(page: Any, browser: Any, stack: Stack) -> None:
    start(page)
    context = browser.new_context(viewport={"width": 1024, "height": 600})
    display = context.new_page()
    try:
        display.goto(stack.url("till") + "/display")
        display.wait_for_selector("#display-state[data-state=idle]")
        tap(page, "Latte")
        display.wait_for_selector(".display-line:has-text('Latte')")
        display.wait_for_selector("#display-state[data-state=items]")
        click(page, "#ask-code")
        display.wait_for_selector("#display-state[data-state=scan_to_pay]")
        assert page.evaluate("document.activeElement.id") == "pay-code"  # the scanner's input lands there
        display.screenshot(path=str(ARTIFACTS / "station-10-display-scan-en.png"))
        display.goto(stack.url("till") + "/lang/zh_CN?to=/display")
        display.wait_for_selector("#display-state[data-state=scan_to_pay]")
        assert "付款码" in display.inner_text("#display-state")
        display.screenshot(path=str(ARTIFACTS / "station-10-display-scan-zh-CN.png"))
        page.fill("#cash-tendered", "30.00")
        click(page, "#pay-cash")
        display.wait_for_selector("#display-state[data-state=paid]")
        assert "2.00" in display.inner_text("#display-change")
        # The e-receipt QR: the link the till signs with its receipt-link key, shown once paid.
        display.wait_for_selector("#receipt-qr svg")
        assert display.get_attribute("#receipt-qr", "aria-label")
        display.screenshot(path=str(ARTIFACTS / "station-11-display-paid-zh-CN.png"))
        display.goto(stack.url("till") + "/lang/en?to=/display")
        display.wait_for_selector("#display-state[data-state=paid]")
        display.screenshot(path=str(ARTIFACTS / "station-11-display-paid-en.png"))
    finally:
        context.close()


def test_page_weight_and_no_outside_assets(page: Any, stack: Stack) -> None:
    sizes: list[int] = []
    outside: list[str] = []
    base = stack.url("till")

    def seen(response: Any) -> None:
        if not response.url.startswith(base):
            outside.append(response.url)
        body = response.body() if response.status == 200 else b""
        sizes.append(len(body))

    page.on("response", seen)
    page.goto(base + "/")
    page.wait_for_load_state("networkidle")
    page.remove_listener("response", seen)
    assert outside == []
    assert sum(sizes) <= 300_000, sum(sizes)
    assert httpx.get(base + "/display").status_code == 200


def no_sideways_scroll(page: Any) -> bool:
    return bool(
        page.evaluate("() => document.documentElement.scrollWidth <= document.documentElement.clientWidth")
    )


def test_keyboard_and_scanner_everywhere_and_tablet_landscape(page: Any, stack: Stack) -> None:
    """The F-keys and `/` work on the touch page; a scanner types a barcode and Enter into the scan box;
    the page fits a 10" tablet in landscape (1280×800) as well as 1024×768."""
    start(page)
    page.evaluate("document.activeElement.blur()")
    page.keyboard.press("/")  # outside a text field `/` goes to the scan box
    assert page.evaluate("document.activeElement.id") == "scan"
    htmx(page, lambda: (page.keyboard.type("6901234567922"), page.keyboard.press("Enter")))  # the croissant
    assert lines(page) == [("Croissant 可颂", "1")]
    page.keyboard.press("F9")
    assert page.evaluate("document.activeElement.id") == "numpad-value"
    page.keyboard.press("Escape")
    assert page.evaluate("document.activeElement.id") == "scan"
    htmx(page, lambda: page.keyboard.press("F6"))  # hold
    assert "parked" in page.inner_text("#message") and page.locator("#cart").count() == 0
    htmx(page, lambda: page.keyboard.press("F7"))  # the parked sales
    assert page.locator("#held-list .held").count() == 1
    htmx(page, lambda: page.locator("#held-list .held").first.locator("button").click())
    assert lines(page) == [("Croissant 可颂", "1")]
    page.keyboard.press("F2")
    assert page.evaluate("document.activeElement.id") == "cash-tendered"
    htmx(page, lambda: page.keyboard.press("F4"))  # no code field yet: asks the customer for the code
    assert page.evaluate("document.activeElement.id") == "pay-code"
    page.fill("#cash-tendered", "20.00")
    click(page, "#pay-cash")
    page.wait_for_selector("#receipt")
    assert "Cash" in page.inner_text("#receipt") and "5.00" in page.inner_text("#change-due")
    assert no_sideways_scroll(page)
    page.set_viewport_size({"width": 1280, "height": 800})
    try:
        assert no_sideways_scroll(page)
        both(page, stack, "12-tablet-landscape-receipt")
        page.goto(stack.url("till") + "/lang/zh_CN")
        page.wait_for_selector("#receipt")
        assert "现金" in page.inner_text("#receipt") and "Cash" not in page.inner_text("#receipt")
        page.goto(stack.url("till") + "/lang/en")
        page.wait_for_selector("#receipt")
    finally:
        page.set_viewport_size(VIEWPORT)
    htmx(page, lambda: page.keyboard.press("F8"))  # new sale
    assert page.locator("#receipt").count() == 0


def test_z_report_lists_parked_sales_on_the_till_and_in_the_back_office(
    page: Any, browser: Any, stack: Stack
) -> None:
    """Last walk of the module (it closes the shift): a sale parked at close is in the Z report on the
    till's screen, and in the report the server stored and the back office shows."""
    start(page)
    tap(page, "Muffin")
    page.fill("#hold-note", "z-check")
    click(page, "#hold")
    for _ in range(60):  # the close waits until every sale has synced (bounded: 60 × 0.5 s)
        page.fill("#counted", "0")
        click(page, "#close-shift")
        if page.locator("#z-report").count():
            break
        page.wait_for_timeout(500)
    assert page.locator("#z-report").count(), page.inner_text("#message")
    held = page.locator("#z-held .z-held")
    assert held.count() == 1 and "z-check" in held.inner_text()
    both(page, stack, "13-z-report-parked")
    merchant = stack.plan.seeded["merchant_key"]
    shift: dict[str, Any] = {}
    for _ in range(60):  # the report reaches the server with the next sync (bounded)
        listed = httpx.get(
            stack.url("server") + "/v1/shifts", headers={"Authorization": f"Bearer {merchant}"}
        ).json()["data"]
        shift = next((s for s in listed if (s["report"] or {}).get("held_sales", {}).get("count")), {})
        if shift:
            break
        page.wait_for_timeout(500)
    assert shift["report"]["held_sales"]["sales"][0]["note"] == "z-check"
    context = browser.new_context(viewport=VIEWPORT)
    office = context.new_page()
    try:
        office.goto(stack.url("server") + f"{BO}/shifts/{shift['id']}")
        office.wait_for_selector("#signin-form")
        office.fill("#api_key", merchant)
        office.click("#signin")
        office.wait_for_selector("#signout")
        office.goto(stack.url("server") + f"{BO}/shifts/{shift['id']}")
        office.wait_for_selector("#held-sales")
        for locale, lang in (("zh-CN", "zh_CN"), ("en", "en")):
            office.goto(stack.url("server") + f"{BO}/lang/{lang}?next=/shifts/{shift['id']}")
            office.wait_for_selector("#held-sales")
            assert "z-check" in office.inner_text("#held-sales") and "#" in office.inner_text("#held-sales")
            shot_path = ARTIFACTS / f"station-14-backoffice-z-parked-{locale}.png"
            office.screenshot(path=str(shot_path), full_page=True)
    finally:
        context.close()
