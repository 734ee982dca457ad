"""Each merchant's accounts at WeChat Pay and Alipay, and the adapters built from them.

Secrets (WeChat API key, Alipay app private key) are stored for the adapters' use only: they never
appear in an API answer, an event, an exception or a log line.
"""

from __future__ import annotations

import json
import threading
from typing import Any, Protocol

from sqlalchemy import Connection, insert, select, update

from tillit.adapters.db.schema import merchants, provider_accounts
from tillit.domain.errors import conflict, invalid, not_found
from tillit.domain.provider import PaymentProvider
from tillit.services.context import Deps, iso

REQUIRED = {
    "wechat": ("appid", "mch_id", "api_key", "base_url"),
    "alipay": ("app_id", "app_private_key_pem", "alipay_public_key_pem", "gateway_url"),
}
SECRET_FIELDS = {"api_key", "app_private_key_pem"}
ACCOUNT_REF = {"wechat": "mch_id", "alipay": "app_id"}


class ProviderFactory(Protocol):
    def __call__(self, provider: str, config: dict[str, Any]) -> PaymentProvider: ...


def public_view(provider: str, config: dict[str, Any], row: Any = None) -> dict[str, Any]:
    shown = {k: v for k, v in config.items() if k not in SECRET_FIELDS}
    return {
        "provider": provider,
        "config": shown,
        "secrets_set": sorted(k for k in SECRET_FIELDS if config.get(k)),
        "updated_at": iso(row.updated_at) if row is not None else None,
    }


def set_account(
    conn: Connection, deps: Deps, merchant_id: str, provider: str, config: dict[str, Any]
) -> dict[str, Any]:
    if provider not in REQUIRED:
        raise invalid("invalid_provider", "provider must be wechat or alipay.", {"provider": provider})
    missing = [k for k in REQUIRED[provider] if not config.get(k)]
    if missing:
        raise invalid("provider_config_incomplete", f"Missing: {', '.join(missing)}.", {"missing": missing})
    if conn.execute(select(merchants.c.id).where(merchants.c.id == merchant_id)).first() is None:
        raise not_found("merchant", merchant_id)
    ref = str(config[ACCOUNT_REF[provider]])
    taken = conn.execute(
        select(provider_accounts.c.merchant_id).where(
            provider_accounts.c.provider == provider, provider_accounts.c.account_ref == ref
        )
    ).first()
    if taken is not None and taken.merchant_id != merchant_id:
        raise conflict("provider_account_taken", "This provider account belongs to another merchant.")
    now = deps.clock.now()
    payload = json.dumps(config, sort_keys=True)
    exists = conn.execute(
        select(provider_accounts.c.merchant_id).where(
            provider_accounts.c.merchant_id == merchant_id, provider_accounts.c.provider == provider
        )
    ).first()
    if exists:
        conn.execute(
            update(provider_accounts)
            .where(provider_accounts.c.merchant_id == merchant_id, provider_accounts.c.provider == provider)
            .values(config=payload, account_ref=ref, updated_at=now)
        )
    else:
        conn.execute(
            insert(provider_accounts).values(
                merchant_id=merchant_id,
                provider=provider,
                account_ref=ref,
                config=payload,
                created_at=now,
                updated_at=now,
            )
        )
    from tillit.services.reconciliation.daily import ensure_scheduled

    ensure_scheduled(conn, deps, merchant_id)  # the account's bills are fetched and reconciled daily
    return public_view(provider, config)


def list_accounts(conn: Connection, merchant_id: str) -> list[dict[str, Any]]:
    rows = conn.execute(select(provider_accounts).where(provider_accounts.c.merchant_id == merchant_id))
    return [public_view(r.provider, json.loads(r.config), r) for r in rows]


def find_by_ref(conn: Connection, provider: str, ref: str) -> tuple[str, dict[str, Any]] | None:
    row = conn.execute(
        select(provider_accounts).where(
            provider_accounts.c.provider == provider, provider_accounts.c.account_ref == ref
        )
    ).first()
    return (row.merchant_id, json.loads(row.config)) if row is not None else None


class ProviderDirectory:
    """Builds (and caches) the adapter for a merchant's provider account."""

    def __init__(self, factory: ProviderFactory) -> None:
        self._factory = factory
        self._cache: dict[tuple[str, str, str], PaymentProvider] = {}
        self._lock = threading.Lock()

    def get(self, conn: Connection, merchant_id: str, provider: str) -> PaymentProvider:
        row = conn.execute(
            select(provider_accounts.c.config).where(
                provider_accounts.c.merchant_id == merchant_id, provider_accounts.c.provider == provider
            )
        ).first()
        if row is None:
            raise invalid(
                "method_not_enabled",
                f"{provider} payments need a provider account configured for this merchant.",
                {"method": provider},
            )
        key = (merchant_id, provider, row.config)
        with self._lock:
            adapter = self._cache.get(key)
            if adapter is None:
                adapter = self._factory(provider, json.loads(row.config))
                self._cache[key] = adapter
        return adapter
