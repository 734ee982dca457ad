"""A merchant's own webhook endpoint: where its system receives Tillit's events (payment captured,
refund done, the fulfilment moves), signed with a secret the merchant sets.

- The secret is sealed at rest by the secret box (adapters/secrets.py, like provider secrets, context
  ``merchant_webhook:<merchant>``) and never answered, logged or put in an event: the API says only
  whether one is set. Rotating it is setting a new one; removing the endpoint stops new messages and
  suppresses the ones still waiting.
- ful21: each endpoint has a public ``id`` (the back office's pages address it by id; another merchant's
  id is not found) and an ``enabled`` flag. A disabled endpoint keeps its URL and secret but receives
  nothing: no new messages are written for it and those still waiting are suppressed, as on removal.
  The back office makes the secret itself (``create_endpoint``, ``rotate_secret``) and shows it once.
- Messages to it are outbox rows on the ``webhook`` channel with the recipient ``MERCHANT``: the sender
  resolves the endpoint when it sends, so a message waiting across a rotation goes to the current URL
  with the current secret.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any, TypedDict
from urllib.parse import urlsplit

import structlog
from sqlalchemy import Connection, and_, delete, func, insert, select, update

from tillit.adapters.db.schema import merchant_webhooks, merchants, outbox_messages, provider_accounts
from tillit.domain.errors import DomainError, conflict, invalid, not_found
from tillit.kernel.context import Deps, SecretBox, iso
from tillit.notifications.messages import MERCHANT_ENDPOINT, Message, MessageParams
from tillit.notifications.outbox import enqueue_at

log = structlog.get_logger("tillit.notifications")
MERCHANT = MERCHANT_ENDPOINT
MAX_URL = 320
SECRET_LENGTH = (24, 200)
SECRET_PREFIX = "whsec_"
RECENT_DELIVERIES = 20  # how many of the latest webhook messages the back office lists


class EndpointView(TypedDict):
    id: str | None
    enabled: bool
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
        return {
            "id": None,
            "enabled": False,
            "url": None,
            "secret_set": False,
            "default": True,
            "created_at": None,
            "updated_at": None,
        }
    return {
        "id": row.id,
        "enabled": bool(row.enabled),
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
    # Two first sets at once: the merchant's row serialises them (PostgreSQL; SQLite has a single
    # writer), so the second updates the first's row instead of failing on the primary key (as
    # create_endpoint does). FOR NO KEY UPDATE: the merchant's sales are not held up.
    conn.execute(select(merchants.c.id).where(merchants.c.id == merchant_id).with_for_update(key_share=True))
    now = deps.clock.now()
    values = {"url": url, "secret_sealed": sealed, "updated_at": now}
    done = conn.execute(
        update(merchant_webhooks).where(merchant_webhooks.c.merchant_id == merchant_id).values(**values)
    )
    if done.rowcount == 0:
        conn.execute(
            insert(merchant_webhooks).values(
                merchant_id=merchant_id, id=deps.ids.new(), enabled=1, created_at=now, **values
            )
        )
    return get_endpoint(conn, merchant_id)


def remove_endpoint(conn: Connection, merchant_id: str) -> bool:
    done = conn.execute(delete(merchant_webhooks).where(merchant_webhooks.c.merchant_id == merchant_id))
    return bool(done.rowcount)


def has_endpoint(conn: Connection, merchant_id: str) -> bool:
    """Does the merchant have an enabled webhook endpoint (one primary-key lookup)?"""
    found = conn.execute(
        select(merchant_webhooks.c.merchant_id).where(
            merchant_webhooks.c.merchant_id == merchant_id, merchant_webhooks.c.enabled == 1
        )
    ).first()
    return found is not None


def enqueue_event(
    conn: Connection, now: datetime, merchant_id: str, event_id: str, template: str, params: MessageParams
) -> bool:
    """One webhook message to the merchant's endpoint, when it has one (one primary-key lookup when it
    has none). In the caller's transaction; a message the outbox refuses is logged and skipped."""
    has = conn.execute(
        select(merchant_webhooks.c.merchant_id).where(
            merchant_webhooks.c.merchant_id == merchant_id, merchant_webhooks.c.enabled == 1
        )
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
    """merchant -> (url, sealed secret) of its enabled endpoint, for the sender (read in its claim
    transaction): a merchant missing here has no endpoint or has disabled it."""
    if not merchant_ids:
        return {}
    rows = conn.execute(
        select(
            merchant_webhooks.c.merchant_id, merchant_webhooks.c.url, merchant_webhooks.c.secret_sealed
        ).where(merchant_webhooks.c.merchant_id.in_(sorted(merchant_ids)), merchant_webhooks.c.enabled == 1)
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


# --- the back office's management (ful21): addressed by the endpoint's id, the secret made here -------


class DeliveryState(TypedDict):
    """The merchant's webhook messages at a glance (outbox rows on its endpoint)."""

    last_attempt_at: str | None
    last_status: str | None  # of the message tried last: sent | pending (failed, to retry) | dead ...
    last_error: str | None
    failing: int  # waiting for a retry after a failed try
    dead: int  # given up on after the last retry, or refused for good
    pending: int  # waiting to be sent (first try or retry)
    next_retry_at: str | None  # the earliest retry of a failed message


class DeliveryView(TypedDict):
    id: int
    event_id: str
    template: str
    status: str
    attempts: int
    last_error: str | None
    created_at: str | None
    sent_at: str | None
    next_attempt_at: str | None


def new_secret() -> str:
    """A fresh signing secret (256 random bits), shown to the merchant once and then only sealed."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def _own(conn: Connection, merchant_id: str, endpoint_id: str) -> Any:
    """The merchant's endpoint with this id; another merchant's id is not found, like an unused one."""
    row = conn.execute(
        select(merchant_webhooks).where(
            merchant_webhooks.c.merchant_id == merchant_id, merchant_webhooks.c.id == endpoint_id
        )
    ).first()
    if row is None:
        raise not_found("webhook_endpoint", endpoint_id)
    return row


def find_endpoint(conn: Connection, merchant_id: str, endpoint_id: str) -> EndpointView:
    """The merchant's endpoint ``endpoint_id``; raises not_found for another merchant's or an unused id."""
    return _view(_own(conn, merchant_id, endpoint_id))


def list_endpoints(conn: Connection, merchant_id: str) -> list[EndpointView]:
    """The merchant's endpoints (at most one: the outbox keeps one webhook message per event)."""
    view = get_endpoint(conn, merchant_id)
    return [] if view["default"] else [view]


def create_endpoint(conn: Connection, deps: Deps, merchant_id: str, url: Any) -> tuple[EndpointView, str]:
    """Add the merchant's endpoint with a secret made here; answers it with the secret in clear, the
    only time it is ever shown. A merchant that already has one is refused (rotate or delete it)."""
    checked = check_url(url)
    # Two adds at once: the merchant's row serialises them (PostgreSQL; SQLite has a single writer), so
    # the second sees the first's endpoint and is refused rather than failing on the primary key. FOR NO
    # KEY UPDATE: the merchant's sales (foreign keys take KEY SHARE) are not held up.
    conn.execute(select(merchants.c.id).where(merchants.c.id == merchant_id).with_for_update(key_share=True))
    if not get_endpoint(conn, merchant_id)["default"]:
        raise conflict(
            "webhook_endpoint_exists",
            "This merchant already has a webhook endpoint: rotate its secret or delete it first.",
        )
    secret = new_secret()
    return set_endpoint(conn, deps, merchant_id, {"url": checked, "secret": secret}), secret


def rotate_secret(
    conn: Connection, deps: Deps, merchant_id: str, endpoint_id: str
) -> tuple[EndpointView, str]:
    """A new secret for the endpoint, answered once; messages still waiting are signed with it."""
    row = _own(conn, merchant_id, endpoint_id)
    secret = new_secret()
    sealed = _box(conn, deps).seal(secret, _context(merchant_id))
    conn.execute(
        update(merchant_webhooks)
        .where(merchant_webhooks.c.merchant_id == merchant_id, merchant_webhooks.c.id == row.id)
        .values(secret_sealed=sealed, updated_at=deps.clock.now())
    )
    return get_endpoint(conn, merchant_id), secret


def set_enabled(
    conn: Connection, deps: Deps, merchant_id: str, endpoint_id: str, enabled: bool
) -> EndpointView:
    row = _own(conn, merchant_id, endpoint_id)
    conn.execute(
        update(merchant_webhooks)
        .where(merchant_webhooks.c.merchant_id == merchant_id, merchant_webhooks.c.id == row.id)
        .values(enabled=1 if enabled else 0, updated_at=deps.clock.now())
    )
    return get_endpoint(conn, merchant_id)


def delete_endpoint(conn: Connection, merchant_id: str, endpoint_id: str) -> EndpointView:
    """Remove the endpoint (messages still waiting are suppressed); answers what it was."""
    view = _view(_own(conn, merchant_id, endpoint_id))
    remove_endpoint(conn, merchant_id)
    return view


def _hooks(merchant_id: str) -> Any:
    m = outbox_messages
    return and_(m.c.merchant_id == merchant_id, m.c.channel == "webhook", m.c.recipient == MERCHANT)


def delivery_state(conn: Connection, merchant_id: str) -> DeliveryState:
    m = outbox_messages
    mine = _hooks(merchant_id)
    tried = and_(mine, m.c.attempts > 0)
    failing = and_(tried, m.c.status == "pending", m.c.last_error.is_not(None))
    last = conn.execute(
        select(m.c.updated_at, m.c.status, m.c.last_error)
        .where(tried)
        .order_by(m.c.updated_at.desc(), m.c.id.desc())
        .limit(1)
    ).first()
    counts = conn.execute(
        select(
            func.count().filter(failing),
            func.count().filter(and_(mine, m.c.status == "dead")),
            func.count().filter(and_(mine, m.c.status == "pending")),
            func.min(m.c.next_attempt_at).filter(failing),
        ).where(mine)
    ).one()
    return {
        "last_attempt_at": iso(last.updated_at) if last is not None else None,
        "last_status": last.status if last is not None else None,
        "last_error": last.last_error if last is not None else None,
        "failing": int(counts[0] or 0),
        "dead": int(counts[1] or 0),
        "pending": int(counts[2] or 0),
        "next_retry_at": iso(counts[3]) if counts[3] is not None else None,
    }


def recent_deliveries(
    conn: Connection, merchant_id: str, limit: int = RECENT_DELIVERIES
) -> list[DeliveryView]:
    """The latest webhook messages of the merchant, newest first (their params are not shown)."""
    m = outbox_messages
    rows = conn.execute(
        select(
            m.c.id,
            m.c.event_id,
            m.c.template,
            m.c.status,
            m.c.attempts,
            m.c.last_error,
            m.c.created_at,
            m.c.sent_at,
            m.c.next_attempt_at,
        )
        .where(_hooks(merchant_id))
        .order_by(m.c.id.desc())
        .limit(min(max(limit, 1), 100))
    )
    return [
        {
            "id": int(r.id),
            "event_id": r.event_id,
            "template": r.template,
            "status": r.status,
            "attempts": int(r.attempts),
            "last_error": r.last_error,
            "created_at": iso(r.created_at),
            "sent_at": iso(r.sent_at),
            "next_attempt_at": iso(r.next_attempt_at) if r.status == "pending" else None,
        }
        for r in rows
    ]
