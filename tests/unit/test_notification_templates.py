"""Every template renders in every language from a full set of parameters, with no unknown names."""

from __future__ import annotations

import pytest

from tillit.notifications.messages import LOCALES, TEMPLATES
from tillit.notifications.render import render

FULL = {
    "order_id": "o1",
    "order_number": 42,
    "merchant_name": "小店",
    "store_name": "Main",
    "amount": 2800,
    "refund_amount": 1500,
    "currency": "CNY",
    "tracking_number": "SF123",
    "carrier": "SF",
    "confirm_by": "2026-12-10",
    "dispute_reason": "damaged",
    "dispute_status": "resolved",
    "alert_title": "Channel down",
    "alert_detail": "wechat 5xx",
    "severity": "critical",
    "receipt_url": "http://x/r",
}


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("template", TEMPLATES)
def test_template_renders(template: str, locale: str) -> None:
    text = render(template, locale, FULL)
    assert text.subject and text.body
    assert "42" in text.subject + text.body or template == "alert"
    assert "None" not in text.body


def test_money_and_missing_optional_parameters() -> None:
    text = render(
        "payment_captured", "en", {"order_number": 3, "amount": 5, "currency": "CNY", "merchant_name": "M"}
    )
    assert "0.05 CNY" in text.body and "receipt" not in text.body and "()" not in text.body
