"""What access hands the entry points and other areas: merchants, stores, terminals and API keys as the API
shows them. TypedDicts, so at run time they are the plain dicts the API has always serialised, with keys in
the order written here (the tables' column order); the JSON answers are unchanged."""

from __future__ import annotations

from typing import TypedDict


class MerchantView(TypedDict):
    id: str
    name: str
    currency: str
    status: str
    created_at: str


class StoreView(TypedDict):
    id: str
    merchant_id: str
    name: str
    created_at: str


class TerminalView(TypedDict):
    id: str
    merchant_id: str
    store_id: str
    name: str
    created_at: str


class KeyView(TypedDict):
    """An API key's public record: never its secret or its hash. The scope ids are None where the role
    has none (an admin key has neither, a merchant key no terminal)."""

    id: str
    prefix: str
    role: str
    merchant_id: str | None
    terminal_id: str | None
    name: str
    created_at: str
    revoked_at: str | None
