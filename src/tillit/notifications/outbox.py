"""Durable outbox rows, written in the caller's transaction.

``enqueue`` inserts the message with ON CONFLICT DO NOTHING on (merchant, event_id, channel): an event
enqueued twice (a replayed request, a retried job) is stored — and so sent — once, and the caller's
transaction is never aborted by the duplicate (PostgreSQL would abort it on a unique violation).
If the caller's transaction rolls back, so does the message: nothing is announced that did not happen.
"""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import Connection, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from tillit.adapters.db.schema import outbox_consents, outbox_messages
from tillit.kernel.context import Deps
from tillit.notifications.messages import Channel, Message, check_message, check_recipient


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
    keys = ["merchant_id", "event_id", "channel"]
    # RETURNING tells a new row from a duplicate on both databases (rowcount is not reliable here).
    if conn.dialect.name == "postgresql":
        pg = pg_insert(outbox_messages).values(**values).on_conflict_do_nothing(index_elements=keys)
        return conn.execute(pg.returning(outbox_messages.c.id)).first() is not None
    lite = sqlite_insert(outbox_messages).values(**values).on_conflict_do_nothing(index_elements=keys)
    return conn.execute(lite.returning(outbox_messages.c.id)).first() is not None


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
    keys = ["merchant_id", "channel", "recipient"]
    update = {"opted_in": values["opted_in"], "source": values["source"], "updated_at": now}
    if conn.dialect.name == "postgresql":
        stmt = pg_insert(outbox_consents).values(**values)
        conn.execute(stmt.on_conflict_do_update(index_elements=keys, set_=update))
    else:
        lite = sqlite_insert(outbox_consents).values(**values)
        conn.execute(lite.on_conflict_do_update(index_elements=keys, set_=update))


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
