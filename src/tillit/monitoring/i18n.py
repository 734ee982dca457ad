"""The alert texts (mail subject and body, the webhook's title and detail) in zh-CN and en, from the Babel
catalogues under ``monitoring/locales/<locale>/LC_MESSAGES/alerts.po`` (read directly: no compile step).

The back office keeps its page catalogue in ``backoffice/locales``; the alert texts live here because
the monitoring area sits below the back office and may not read its files. A msgid missing from a
catalogue reads in English.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from pathlib import Path

from babel.messages.pofile import read_po

LOCALE_DIR = Path(__file__).parent / "locales"
#: The message locales (notifications.messages.Locale) and their catalogue directory.
CATALOGUES = {"zh-CN": "zh_CN", "en": "en"}
DEFAULT = "zh-CN"

Translate = Callable[..., str]


@cache
def catalogue(locale: str) -> dict[str, str]:
    path = LOCALE_DIR / CATALOGUES.get(locale, CATALOGUES[DEFAULT]) / "LC_MESSAGES" / "alerts.po"
    with open(path, "rb") as fh:
        cat = read_po(fh, locale=CATALOGUES.get(locale, CATALOGUES[DEFAULT]))
    return {str(m.id): str(m.string) for m in cat if m.id and m.string}


def translator(locale: str) -> Translate:
    table = catalogue(locale if locale in CATALOGUES else DEFAULT)

    def t(msgid: str, /, **params: object) -> str:
        text = table.get(msgid, msgid)
        return text.format(**params) if params else text

    return t
