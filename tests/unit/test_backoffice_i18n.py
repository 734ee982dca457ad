"""Every text the back office shows has a Chinese translation, and every page is registered soundly."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi import APIRouter

from tillit.backoffice import app, i18n, registry

ROOT = Path(app.__file__).parent
MSGID = re.compile(r'\bt\("((?:[^"\\]|\\.)*)"')


def _used_msgids() -> set[str]:
    found: set[str] = set()
    for path in [*ROOT.rglob("*.html"), *ROOT.rglob("*.py")]:
        found |= {m for m in MSGID.findall(path.read_text(encoding="utf-8")) if not m.endswith("_")}
    found |= {page.label for page in app.PAGES}
    return found


def test_every_msgid_has_a_chinese_translation() -> None:
    zh = i18n.catalogue("zh_CN")
    missing = sorted(m for m in _used_msgids() if m not in zh)
    assert not missing, f"add these to locales/zh_CN/LC_MESSAGES/messages.po: {missing}"


def test_translations_keep_their_placeholders() -> None:
    for msgid, text in i18n.catalogue("zh_CN").items():
        assert set(re.findall(r"{(\w+)}", msgid)) == set(re.findall(r"{(\w+)}", text)), msgid


def test_registry_refuses_duplicates_and_unknown_roles() -> None:
    router = APIRouter()
    page = registry.Page(key="a", label="A", path="/a", roles=registry.MANAGER, router=router)
    with pytest.raises(ValueError):
        registry.check(
            (page, registry.Page(key="a", label="B", path="/b", roles=registry.MANAGER, router=router))
        )
    with pytest.raises(ValueError):
        registry.check(
            (registry.Page(key="c", label="C", path="/c", roles=frozenset({"root"}), router=router),)
        )
    assert next(p.key for p in registry.visible(app.PAGES, "merchant")) == "today"
