"""Every string the cashier page shows has a zh_CN translation (and the en catalogue covers them)."""

from __future__ import annotations

import re
from pathlib import Path

from tillit.till.i18n import catalogue, translator
from tillit.till.web import REASONS

TILL = Path(__file__).resolve().parents[2] / "src/tillit/till"


def page_strings() -> set[str]:
    found: set[str] = set(REASONS.values())
    for path in [*TILL.glob("templates/*.html"), TILL / "web.py", TILL / "printer.py"]:
        found |= set(re.findall(r"""\bt\(\s*["']([^"']+)["']""", path.read_text()))
    return {s for s in found if not s.startswith("/")}


def test_every_page_string_is_translated() -> None:
    zh, en = catalogue("zh_CN"), catalogue("en")
    missing = sorted(s for s in page_strings() if s not in zh)
    assert not missing, f"add to tools/make_catalogues.py ZH and rerun it: {missing}"
    assert not sorted(s for s in page_strings() if s not in en)


def test_translation_with_parameters() -> None:
    assert translator("zh_CN")("{n} sales waiting to sync", n=3) == "3 笔销售等待同步"
    assert translator("en")("{n} sales waiting to sync", n=3) == "3 sales waiting to sync"
    assert translator("en")("unknown") == "checking…"
