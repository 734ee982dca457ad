"""Each merchant's accounts at WeChat Pay and Alipay, and the adapters built from them.

Secrets (WeChat API key, Alipay app private key) are stored for the adapters' use only: they never
appear in an API answer, an event, an exception or a log line. At rest each one is sealed by the
``SecretBox`` (AES-256-GCM, bound to its merchant, provider and field); it is opened only in
``ProviderDirectory.get``, where the adapter is built. See docs/security.md.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any, Protocol

from sqlalchemy import Connection, insert, select, update

from tillit.adapters.db.schema import merchants, provider_accounts
from tillit.domain.errors import conflict, invalid, not_found
from tillit.domain.provider import PaymentProvider
from tillit.kernel.context import Deps, SecretBox, iso
from tillit.merchants.documents import sealed_key_ids
from tillit.merchants.onboarding import finished_sub_merchant
from tillit.notifications import endpoints
from tillit.payments.views import ProviderAccountView

AccountConnected = Callable[[Connection, Deps, str], object]
"""Told, in the same transaction, that a merchant's provider account was stored: (conn, deps, merchant id).
Registered at the composition root (reconciliation schedules the account's daily bill fetch)."""

_CONNECTED_HANDLERS: list[AccountConnected] = []


def on_account_connected(handler: AccountConnected) -> None:
    """Register ``handler`` once; registering the same handler again changes nothing."""
    if handler not in _CONNECTED_HANDLERS:
        _CONNECTED_HANDLERS.append(handler)


REQUIRED = {
    "wechat": ("appid", "mch_id", "api_key", "base_url"),
    "alipay": ("app_id", "app_private_key_pem", "alipay_public_key_pem", "gateway_url"),
}
SECRET_FIELDS = {"api_key", "app_private_key_pem"}
ACCOUNT_REF = {"wechat": "mch_id", "alipay": "app_id"}
#: Where the 进件 sub-merchant id lives in the account config: the adapters send it on their calls.
SUB_MERCHANT_FIELD = {"wechat": "sub_mch_id", "alipay": "smid"}


class ProviderFactory(Protocol):
    def __call__(self, provider: str, config: dict[str, Any]) -> PaymentProvider: ...


def _context(merchant_id: str, provider: str, field: str) -> str:
    return f"provider_accounts/{merchant_id}/{provider}/{field}"


def _box(deps: Deps) -> SecretBox:
    if deps.secrets is None:
        raise conflict("secret_key_missing", "No secret key is configured for provider secrets.")
    return deps.secrets


def seal_config(box: SecretBox, merchant_id: str, provider: str, config: dict[str, Any]) -> dict[str, Any]:
    """The config with every secret sealed (values already sealed are kept as they are)."""
    out = dict(config)
    for field in SECRET_FIELDS:
        value = out.get(field)
        if isinstance(value, str) and value and not box.is_sealed(value):
            out[field] = box.seal(value, _context(merchant_id, provider, field))
    return out


def open_config(box: SecretBox, merchant_id: str, provider: str, config: dict[str, Any]) -> dict[str, Any]:
    """The config with its secrets in clear: for building the adapter only, never to show or log."""
    out = dict(config)
    for field in SECRET_FIELDS:
        value = out.get(field)
        if isinstance(value, str) and value:
            out[field] = box.open(value, _context(merchant_id, provider, field))
    return out


def _ensure_key(conn: Connection, box: SecretBox) -> None:
    """A fresh install gets its key with its first secret; a lost key is never silently replaced."""
    if box.has_key():
        return
    if key_ids_in_use(conn, box):
        raise conflict(
            "secret_key_missing",
            "Stored provider secrets are sealed but no key is available: restore the keyring file "
            "or TILLIT_SECRET_KEY.",
        )
    box.create_key()


def public_view(provider: str, config: dict[str, Any], row: Any = None) -> ProviderAccountView:
    shown = {k: v for k, v in config.items() if k not in SECRET_FIELDS}
    return {
        "provider": provider,
        "config": shown,
        "secrets_set": sorted(k for k in SECRET_FIELDS if config.get(k)),
        "updated_at": iso(row.updated_at) if row is not None else None,
    }


def set_account(
    conn: Connection, deps: Deps, merchant_id: str, provider: str, config: dict[str, Any]
) -> ProviderAccountView:
    if provider not in REQUIRED:
        raise invalid("invalid_provider", "provider must be wechat or alipay.", {"provider": provider})
    missing = [k for k in REQUIRED[provider] if not config.get(k)]
    if missing:
        raise invalid("provider_config_incomplete", f"Missing: {', '.join(missing)}.", {"missing": missing})
    if conn.execute(select(merchants.c.id).where(merchants.c.id == merchant_id)).first() is None:
        raise not_found("merchant", merchant_id)
    if not config.get(SUB_MERCHANT_FIELD[provider]):
        issued = finished_sub_merchant(conn, merchant_id, provider)
        if issued:  # onboarded before the account was connected: payments name the sub-merchant
            config = {**config, SUB_MERCHANT_FIELD[provider]: issued}
    ref = str(config[ACCOUNT_REF[provider]])
    taken = conn.execute(
        select(provider_accounts.c.merchant_id).where(
            provider_accounts.c.provider == provider, provider_accounts.c.account_ref == ref
        )
    ).first()
    if taken is not None and taken.merchant_id != merchant_id:
        raise conflict("provider_account_taken", "This provider account belongs to another merchant.")
    box = _box(deps)
    _ensure_key(conn, box)
    now = deps.clock.now()
    payload = json.dumps(seal_config(box, merchant_id, provider, config), sort_keys=True)
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
    for handler in _CONNECTED_HANDLERS:
        handler(conn, deps, merchant_id)
    return public_view(provider, config)


def list_accounts(conn: Connection, merchant_id: str) -> list[ProviderAccountView]:
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

    def __init__(self, factory: ProviderFactory, secrets: SecretBox | None = None) -> None:
        self._factory = factory
        self._secrets = secrets
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
                config = json.loads(row.config)
                if self._secrets is not None:  # the one place a stored secret is opened
                    config = open_config(self._secrets, merchant_id, provider, config)
                adapter = self._factory(provider, config)
                self._cache[key] = adapter
        return adapter


def _secret_rows(conn: Connection) -> list[Any]:
    return list(
        conn.execute(
            select(provider_accounts.c.merchant_id, provider_accounts.c.provider, provider_accounts.c.config)
        )
    )


def key_ids_in_use(conn: Connection, box: SecretBox) -> set[str]:
    """The ids of the keys that sealed a stored secret (a key in this set must not be retired)."""
    used: set[str] = set()
    for row in _secret_rows(conn):
        config = json.loads(row.config)
        for field in SECRET_FIELDS:
            value = config.get(field)
            kid = box.key_id(value) if isinstance(value, str) else None
            if kid is not None:
                used.add(kid)
    # merchants area: sealed document numbers; notifications: merchants' webhook secrets
    return used | sealed_key_ids(conn, box) | endpoints.sealed_key_ids(conn, box)


def _rewrite(conn: Connection, box: SecretBox, reseal: bool) -> int:
    changed = 0
    for row in _secret_rows(conn):
        config = json.loads(row.config)
        if reseal:
            fresh = seal_config(
                box, row.merchant_id, row.provider, open_config(box, row.merchant_id, row.provider, config)
            )
        else:
            fresh = seal_config(box, row.merchant_id, row.provider, config)
        if fresh != config:
            conn.execute(
                update(provider_accounts)
                .where(
                    provider_accounts.c.merchant_id == row.merchant_id,
                    provider_accounts.c.provider == row.provider,
                )
                .values(config=json.dumps(fresh, sort_keys=True))
            )
            changed += 1
    return changed


def seal_legacy(conn: Connection, box: SecretBox) -> int:
    """Seal the secrets of accounts stored before encryption (plain text). Returns the rows changed.

    Run by `tillit migrate`, `tillit init` and `tillit serve` at start; a no-op when nothing is plain.
    """
    plain = any(
        isinstance(v := json.loads(r.config).get(f), str) and v and not box.is_sealed(v)
        for r in _secret_rows(conn)
        for f in SECRET_FIELDS
    )
    if not plain:
        return 0
    _ensure_key(conn, box)
    return _rewrite(conn, box, reseal=False)


def check_openable(conn: Connection, box: SecretBox) -> None:
    """Raise the DomainError of the first stored secret this keyring cannot open (else return)."""
    for row in _secret_rows(conn):
        open_config(box, row.merchant_id, row.provider, json.loads(row.config))


def reseal_all(conn: Connection, box: SecretBox) -> int:
    """Open every stored secret and seal it again under the current key (one transaction: the caller's)."""
    return _rewrite(conn, box, reseal=True) + endpoints.reseal(conn, box)


# --- merchants area (issue 12): a provider-issued sub-merchant id configures the account -----------
def record_sub_merchant(
    conn: Connection, deps: Deps, merchant_id: str, provider: str, sub_merchant_id: str
) -> None:
    """Store the sub-merchant id (WeChat ``sub_mch_id``, Alipay ``smid``) in the merchant's provider
    account; registered with merchants/onboarding.py ``on_sub_merchant`` at the composition root. A
    merchant without an account of that provider yet keeps the id on its onboarding application only."""
    row = conn.execute(
        select(provider_accounts.c.config).where(
            provider_accounts.c.merchant_id == merchant_id, provider_accounts.c.provider == provider
        )
    ).first()
    if row is None:
        return
    config = json.loads(row.config)
    config[SUB_MERCHANT_FIELD[provider]] = sub_merchant_id
    conn.execute(
        update(provider_accounts)
        .where(provider_accounts.c.merchant_id == merchant_id, provider_accounts.c.provider == provider)
        .values(config=json.dumps(config, sort_keys=True), updated_at=deps.clock.now())
    )


def sub_merchant_of(conn: Connection, merchant_id: str, provider: str) -> str | None:
    """The sub-merchant id the merchant's provider account takes payments for (None: a direct
    merchant). Reconciliation checks each bill row's 特约商户号 against it (跳码)."""
    row = conn.execute(
        select(provider_accounts.c.config).where(
            provider_accounts.c.merchant_id == merchant_id, provider_accounts.c.provider == provider
        )
    ).first()
    if row is None or provider not in SUB_MERCHANT_FIELD:
        return None
    value = json.loads(row.config).get(SUB_MERCHANT_FIELD[provider])
    return str(value) if value else None
