"""The back office's page registry: one ``Page`` per page module, listed once in ``app.PAGES``.

A page module declares ``PAGE = Page(...)``: its nav entry (``key``, ``label`` as an English msgid
translated by i18n.py, ``section``, ``order``), the path its nav link opens, the roles that may see it and
the ``router`` holding its routes. The app mounts every registered router behind a role guard built from
``roles``, and the layout's navigation shows the pages the signed-in role may open. docs/backoffice.md
walks through adding one.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter

MANAGER = frozenset({"merchant"})
STAFF = frozenset({"merchant", "terminal"})
OPERATOR = frozenset({"admin"})

SECTIONS = ("manager", "operator", "analytics")


@dataclass(frozen=True)
class Page:
    key: str  # unique, e.g. "orders"; also the nav item's id in the HTML (nav-orders)
    label: str  # English msgid, translated in locales/
    path: str  # what the nav link opens, relative to the back office, e.g. "/orders"
    roles: frozenset[str]  # who may open it: "admin", "merchant", "terminal"
    router: APIRouter
    section: str = "manager"
    order: int = 100  # position in its section's navigation


def check(pages: tuple[Page, ...]) -> tuple[Page, ...]:
    """Refuse a registry with a duplicate key or path, an unknown role or section (at import time)."""
    keys = [p.key for p in pages]
    paths = [p.path for p in pages]
    if len(set(keys)) != len(keys) or len(set(paths)) != len(paths):
        raise ValueError(f"duplicate back-office page key or path: {keys} {paths}")
    for page in pages:
        if not page.roles <= {"admin", "merchant", "terminal"} or page.section not in SECTIONS:
            raise ValueError(f"page {page.key}: bad roles {set(page.roles)} or section {page.section}")
    return tuple(sorted(pages, key=lambda p: (SECTIONS.index(p.section), p.order, p.key)))


def visible(pages: tuple[Page, ...], role: str) -> list[Page]:
    return [p for p in pages if role in p.roles]
