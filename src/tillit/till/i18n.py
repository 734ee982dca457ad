"""Cashier-page messages in en and zh-CN, from Babel .po catalogues (read directly: no compile step)."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from babel.messages.pofile import read_po

LOCALES = {"en": "English", "zh_CN": "中文"}
DEFAULT = "zh_CN"
LOCALE_DIR = Path(__file__).parent / "locales"


@cache
def catalogue(locale: str) -> dict[str, str]:
    path = LOCALE_DIR / locale / "LC_MESSAGES" / "messages.po"
    if not path.exists():
        return {}
    with open(path, "rb") as fh:
        cat = read_po(fh, locale=locale)
    return {str(m.id): str(m.string) for m in cat if m.id and m.string}


def translator(locale: str) -> Any:
    table = catalogue(locale if locale in LOCALES else DEFAULT)

    def t(message: str, **params: Any) -> str:
        text = table.get(message, message)
        return text.format(**params) if params else text

    return t


# Tender methods as the cashier, the customer display and the printed receipt name them: one msgid each,
# so the page and the receipt say 微信支付 / 支付宝 / 现金 (zh-CN) or WeChat Pay / Alipay / Cash (en).
METHOD_MSGIDS = {"cash": "Cash", "wechat": "WeChat Pay", "alipay": "Alipay"}


def method_label(method: str, t: Any) -> str:
    """The translated name of a tender method (an unknown method is shown as its code)."""
    msgid = METHOD_MSGIDS.get(method)
    return str(t(msgid)) if msgid else method


def engine_message(message: dict[str, str] | None, locale: str) -> str | None:
    """The integrity engine's cashier messages come in both languages already."""
    if not message:
        return None
    return message.get("zh-CN" if locale == "zh_CN" else "en") or message.get("en")
