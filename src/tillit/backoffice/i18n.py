"""Back-office messages in en and zh-CN, from Babel .po catalogues (read directly: no compile step).

Templates call ``t(msgid, **params)`` with an English msgid; one missing from a catalogue shows in English.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from pathlib import Path

from babel.messages.pofile import read_po

LOCALES = {"zh_CN": "中文", "en": "English"}
DEFAULT = "zh_CN"
LOCALE_DIR = Path(__file__).parent / "locales"

Translate = Callable[..., str]


@cache
def catalogue(locale: str) -> dict[str, str]:
    path = LOCALE_DIR / locale / "LC_MESSAGES" / "messages.po"
    if not path.exists():
        return {}
    with open(path, "rb") as fh:
        cat = read_po(fh, locale=locale)
    return {str(m.id): str(m.string) for m in cat if m.id and m.string}


def translator(locale: str) -> Translate:
    table = catalogue(locale if locale in LOCALES else DEFAULT)

    def t(msgid: str, /, **params: object) -> str:
        text = table.get(msgid, msgid)
        return text.format(**params) if params else text

    return t


def pick(locale: str | None) -> str:
    return locale if locale in LOCALES else DEFAULT
