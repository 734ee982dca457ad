"""A merchant's own webhook endpoint: where its system receives Tillit's events (payment captured,
refund done, the fulfilment moves), signed with a secret the merchant sets.

- The secret is sealed at rest by the secret box (adapters/secrets.py, like provider secrets, context
  ``merchant_webhook:<merchant>``) and never answered, logged or put in an event: the API says only
  whether one is set. Rotating it is setting a new one; removing the endpoint stops new messages and
  suppresses the ones still waiting.
- Messages to it are outbox rows on the ``webhook`` channel with the recipient ``MERCHANT``: the sender
  resolves the endpoint when it sends, so a message waiting across a rotation goes to the current URL
  with the current secret.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypedDict
from urllib.parse import urlsplit

import structlog
from sqlalchemy import Connection, delete, insert, select, update

from tillit.adapters.db.schema import merchant_webhooks, provider_accounts
from tillit.domain.errors import DomainError, conflict, invalid
from tillit.kernel.context import Deps, SecretBox, iso
from tillit.notifications.messages import MERCHANT_ENDPOINT, Message, MessageParams
from tillit.notifications.outbox import enqueue_at

log = structlog.get_logger("tillit.notifications")
MERCHANT = MERCHANT_ENDPOINT
MAX_URL = 320
SECRET_LENGTH = (24, 200)


class EndpointView(TypedDict):
    url: str | None
    secret_set: bool
    default: bool  # True when the merchant has no endpoint
    created_at: str | None
    updated_at: str | None


def _context(merchant_id: str) -> str:
    return f"merchant_webhook:{merchant_id}"


def _box(conn: Connection, deps: Deps) -> SecretBox:
    """The secret box, with its key made on a fresh install's first secret; a lost key is never silently
    replaced (secrets sealed before, here or as provider secrets, would no longer open)."""
    box = deps.secrets
    if box is None:
        raise conflict("secret_key_missing", "No secret key is configured for sealing webhook secrets.")
    if not box.has_key():
        sealed_before = conn.execute(select(merchant_webhooks.c.merchant_id).limit(1)).first()
        sealed_before = (
            sealed_before or conn.execute(select(provider_accounts.c.merchant_id).limit(1)).first()
        )
        if sealed_before is not None:
            raise conflict(
                "secret_key_missing",
                "Stored secrets are sealed but no key is available: restore the keyring file or "
                "TILLIT_SECRET_KEY.",
            )
        box.create_key()
    return box


def check_url(url: Any) -> str:
    """An http(s) URL with a host and no credentials in it, at most ``MAX_URL`` characters."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL:
        raise invalid("invalid_webhook_url", f"url must be an http(s) URL of at most {MAX_URL} characters.")
    parts = urlsplit(url.strip())
    if parts.scheme not in ("https", "http") or not parts.hostname or parts.username or parts.password:
        raise invalid("invalid_webhook_url", "url must be http(s)://host/... without a user or password.")
    return url.strip()


def check_secret(secret: Any) -> str:
    low, high = SECRET_LENGTH
    if not isinstance(secret, str) or not low <= len(secret) <= high or not secret.isprintable():
        raise invalid("invalid_webhook_secret", f"secret must be {low}-{high} printable characters.")
    return secret


def _view(row: Any) -> EndpointView:
    if row is None:
        return {"url": None, "secret_set": False, "default": True, "created_at": None, "updated_at": None}
    return {
        "url": row.url,
        "secret_set": True,
        "default": False,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
    }


def get_endpoint(conn: Connection, merchant_id: str) -> EndpointView:
    row = conn.execute(
        select(merchant_webhooks).where(merchant_webhooks.c.merchant_id == merchant_id)
    ).first()
    return _view(row)


def set_endpoint(conn: Connection, deps: Deps, merchant_id: str, body: dict[str, Any]) -> EndpointView:
    """Set (or rotate) the endpoint: ``url`` and ``secret`` both required; the secret is sealed."""
    url, secret = check_url(body.get("url")), check_secret(body.get("secret"))
    sealed = _box(conn, deps).seal(secret, _context(merchant_id))
    now = deps.clock.now()
    values = {"url": url, "secret_sealed": sealed, "updated_at": now}
    done = conn.execute(
        update(merchant_webhooks).where(merchant_webhooks.c.merchant_id == merchant_id).values(**values)
    )
    if done.rowcount == 0:
        conn.execute(insert(merchant_webhooks).values(merchant_id=merchant_id, created_at=now, **values))
    return get_endpoint(conn, merchant_id)


def remove_endpoint(conn: Connection, merchant_id: str) -> bool:
    done = conn.execute(delete(merchant_webhooks).where(merchant_webhooks.c.merchant_id == merchant_id))
    return bool(done.rowcount)


def has_endpoint(conn: Connection, merchant_id: str) -> bool:
    """Does the merchant have a webhook endpoint (one primary-key lookup)?"""
    found = conn.execute(
        select(merchant_webhooks.c.merchant_id).where(merchant_webhooks.c.merchant_id == merchant_id)
    ).first()
    return found is not None


def enqueue_event(
    conn: Connection, now: datetime, merchant_id: str, event_id: str, template: str, params: MessageParams
) -> bool:
    """One webhook message to the merchant's endpoint, when it has one (one primary-key lookup when it
    has none). In the caller's transaction; a message the outbox refuses is logged and skipped."""
    has = conn.execute(
        select(merchant_webhooks.c.merchant_id).where(merchant_webhooks.c.merchant_id == merchant_id)
    ).first()
    if has is None:
        return False
    try:
        return enqueue_at(
            conn, now, Message(merchant_id, event_id, "webhook", MERCHANT, template, "en", params)
        )
    except DomainError as exc:
        log.warning("notification_refused", event=event_id, channel="webhook", code=exc.code)
        return False


def endpoints_of(conn: Connection, merchant_ids: set[str]) -> dict[str, tuple[str, str]]:
    """merchant -> (url, sealed secret) for the sender (read in its claim transaction)."""
    if not merchant_ids:
        return {}
    rows = conn.execute(
        select(
            merchant_webhooks.c.merchant_id, merchant_webhooks.c.url, merchant_webhooks.c.secret_sealed
        ).where(merchant_webhooks.c.merchant_id.in_(sorted(merchant_ids)))
    )
    return {r.merchant_id: (r.url, r.secret_sealed) for r in rows}


def open_secret(box: SecretBox, merchant_id: str, sealed: str) -> bytes:
    """The secret in clear, for signing one message only (never shown or logged)."""
    return box.open(sealed, _context(merchant_id)).encode()


def sealed_key_ids(conn: Connection, box: SecretBox) -> set[str]:
    """The ids of the keys that sealed a webhook secret (a key in this set must not be retired)."""
    found = set()
    for (sealed,) in conn.execute(select(merchant_webhooks.c.secret_sealed)):
        kid = box.key_id(sealed)
        if kid:
            found.add(kid)
    return found


def reseal(conn: Connection, box: SecretBox) -> int:
    """Seal every webhook secret again under the current key (``tillit secrets rotate``)."""
    n = 0
    for row in list(conn.execute(select(merchant_webhooks.c.merchant_id, merchant_webhooks.c.secret_sealed))):
        context = _context(row.merchant_id)
        fresh = box.seal(box.open(row.secret_sealed, context), context)
        conn.execute(
            update(merchant_webhooks)
            .where(merchant_webhooks.c.merchant_id == row.merchant_id)
            .values(secret_sealed=fresh)
        )
        n += 1
    return n
