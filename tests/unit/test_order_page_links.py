"""ful21: every fulfilment message shows the customer's order page link in both languages (text; and the
HTML part where the template has one, as an escaped href); a message without the link shows no stub."""

from __future__ import annotations

import pytest

from tillit.notifications.messages import LOCALES, TEMPLATES
from tillit.notifications.render import render
from tillit.notifications.sender import ORDER_PAGE_TEMPLATES

URL = "http://shop.test/c/AbC-_123?x=1&y=2"
BASE = {"order_number": 42, "merchant_name": "小店", "confirm_by": "2026-12-10", "dispute_status": "open"}


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("template", sorted(ORDER_PAGE_TEMPLATES))
def test_order_page_link_in_every_part(template: str, locale: str) -> None:
    text = render(template, locale, {**BASE, "order_url": URL})
    assert URL in text.body
    if text.html is not None:
        assert 'href="http://shop.test/c/AbC-_123?x=1&amp;y=2"' in text.html and "&y=" not in text.html
    without = render(template, locale, BASE)
    assert "http" not in without.body and "：\n" not in without.body and not without.body.endswith(":")


def test_the_reminder_has_an_html_part_in_both_languages() -> None:
    assert set(TEMPLATES) >= ORDER_PAGE_TEMPLATES
    for locale in LOCALES:
        assert render("confirm_reminder", locale, {**BASE, "order_url": URL}).html is not None
        assert render("payment_captured", locale, {**BASE, "amount": 1, "currency": "CNY"}).html is None
