"""Durable outbox rows, written in the caller's transaction.

``enqueue`` inserts the message with ON CONFLICT DO NOTHING on (merchant, event_id, channel): an event
enqueued twice (a replayed request, a retried job) is stored — and so sent — once, and the caller's
transaction is never aborted by the duplicate (PostgreSQL would abort it on a unique violation).
If the caller's transaction rolls back, so does the message: nothing is announced that did not happen.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from tillit.adapters.db.schema import outbox_consents, outbox_messages
from tillit.kernel.context import Deps
from tillit.notifications.messages import Channel, Message, check_message, check_recipient

# Built once (the sale path runs them): RETURNING tells a new row from a duplicate on both databases.
_DEDUP = ["merchant_id", "event_id", "channel"]
_INSERT_PG = (
    pg_insert(outbox_messages).on_conflict_do_nothing(index_elements=_DEDUP).returning(outbox_messages.c.id)
)
_INSERT_SQLITE = (
    sqlite_insert(outbox_messages)
    .on_conflict_do_nothing(index_elements=_DEDUP)
    .returning(outbox_messages.c.id)
)


def enqueue(conn: Connection, deps: Deps, message: Message) -> bool:
    """Store ``message`` for sending; True if it is new, False if this event was already enqueued on
    this channel. Raises a DomainError (and writes nothing) for a malformed message."""
    return enqueue_at(conn, deps.clock.now(), message)


def enqueue_at(conn: Connection, now: datetime, message: Message) -> bool:
    """``enqueue`` for callers that hold the transaction's time rather than ``Deps``."""
    msg = check_message(message)
    values = {
        "merchant_id": msg.merchant_id,
        "event_id": msg.event_id,
        "channel": msg.channel,
        "recipient": msg.recipient,
        "template": msg.template,
        "locale": msg.locale,
        "params": json.dumps(dict(msg.params), ensure_ascii=False, sort_keys=True),
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
        "updated_at": now,
    }
    stmt = _INSERT_PG if conn.dialect.name == "postgresql" else _INSERT_SQLITE
    return conn.execute(stmt, values).first() is not None


def _consent_upsert(stmt: Any) -> Any:
    latest = {
        "opted_in": stmt.excluded.opted_in,
        "source": stmt.excluded.source,
        "updated_at": stmt.excluded.updated_at,
    }
    return stmt.on_conflict_do_update(index_elements=["merchant_id", "channel", "recipient"], set_=latest)


_CONSENT_PG = _consent_upsert(pg_insert(outbox_consents))
_CONSENT_SQLITE = _consent_upsert(sqlite_insert(outbox_consents))


def set_consent(
    conn: Connection,
    now: datetime,
    *,
    merchant_id: str,
    channel: Channel,
    recipient: str,
    opted_in: bool,
    source: str,
) -> None:
    """Record a recipient's latest word (opt in or out) for ``merchant_id`` on ``channel``."""
    address = check_recipient(channel, recipient)
    values = {
        "merchant_id": merchant_id,
        "channel": channel,
        "recipient": address,
        "opted_in": 1 if opted_in else 0,
        "source": source[:32],
        "updated_at": now,
    }
    conn.execute(_CONSENT_PG if conn.dialect.name == "postgresql" else _CONSENT_SQLITE, values)


def record_consents(
    conn: Connection,
    now: datetime,
    *,
    merchant_id: str,
    addresses: list[tuple[Channel, str]],
    opted_in: bool,
    source: str,
) -> None:
    """``set_consent`` for addresses already checked (``check_recipient``), in one call."""
    if not addresses:
        return
    rows = [
        {
            "merchant_id": merchant_id,
            "channel": channel,
            "recipient": address,
            "opted_in": 1 if opted_in else 0,
            "source": source[:32],
            "updated_at": now,
        }
        for channel, address in addresses
    ]
    conn.execute(_CONSENT_PG if conn.dialect.name == "postgresql" else _CONSENT_SQLITE, rows)


def consent(conn: Connection, merchant_id: str, channel: str, recipient: str) -> bool | None:
    """True opted in, False opted out, None never asked."""
    value = conn.execute(
        select(outbox_consents.c.opted_in).where(
            outbox_consents.c.merchant_id == merchant_id,
            outbox_consents.c.channel == channel,
            outbox_consents.c.recipient == recipient,
        )
    ).scalar_one_or_none()
    return None if value is None else bool(value)
