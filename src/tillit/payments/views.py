"""What the payments area hands the entry points: a merchant's provider account as the API shows it. A
TypedDict, so at run time it is the plain dict the API has always serialised (keys in this order)."""

from __future__ import annotations

from typing import Any, TypedDict


class ProviderAccountView(TypedDict):
    """``config`` is the account's settings without any secret (free-form by provider, see
    accounts.REQUIRED); ``secrets_set`` names the secret fields that hold a value, never the values.
    ``updated_at`` is None in the answer to the write itself."""

    provider: str
    config: dict[str, Any]
    secrets_set: list[str]
    updated_at: str | None
