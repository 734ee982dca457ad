"""A customer's contact on an order, and the order events announced to it.

The contact is optional and given at order creation (``customer`` in the API). ``opt_in`` records the
customer's consent per address (``outbox_consents``); without it nothing is ever sent to that address.
A later opt-out (``outbox.set_consent``) wins, also over messages already waiting.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypedDict

import structlog
from sqlalchemy import (
    Connection,
    Integer,
    String,
    Text,
    and_,
    bindparam,
    insert,
    literal,
    select,
    tuple_,
    union_all,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from tillit.adapters.db.schema import (
    TS,
    merchants,
    order_contacts,
    orders,
    outbox_consents,
    outbox_messages,
    stores,
)
from tillit.domain.errors import DomainError, invalid
from tillit.notifications import endpoints
from tillit.notifications.messages import (
    LOCALES,
    Channel,
    Locale,
    MessageParams,
    check_event,
    check_params,
    check_recipient,
)
from tillit.notifications.outbox import record_consents

log = structlog.get_logger("tillit.notifications")

_OUTBOX_COLUMNS = [
    "merchant_id",
    "event_id",
    "channel",
    "recipient",
    "template",
    "locale",
    "params",
    "status",
    "attempts",
    "next_attempt_at",
    "created_at",
    "updated_at",
]


def _to_channel(channel: Channel, address: Any) -> Any:
    """The outbox row for one of the order contact's addresses, when its owner gave us a word (opted in,
    or out since: then the sender records it as suppressed). No address or never asked: no row."""
    consent = outbox_consents.alias(f"{channel}_consent")
    return (
        select(
            order_contacts.c.merchant_id,
            bindparam("b_event", type_=String),
            literal(channel, String),
            address,
            bindparam("b_template", type_=String),
            order_contacts.c.locale,
            bindparam("b_params", type_=Text),
            literal("pending", String),
            literal(0, Integer),
            bindparam("b_now", type_=TS),
            bindparam("b_now", type_=TS),
            bindparam("b_now", type_=TS),
        )
        .select_from(
            order_contacts.join(
                consent,
                and_(
                    consent.c.merchant_id == order_contacts.c.merchant_id,
                    consent.c.channel == channel,
                    consent.c.recipient == address,
                ),
            )
        )
        .where(
            order_contacts.c.merchant_id == bindparam("b_merchant"),
            order_contacts.c.order_id == bindparam("b_order"),
        )
    )


def _announce(dialect_insert: Any) -> Any:
    """One prebuilt statement on the sale path: the order's customer's outbox rows (email first, then
    SMS), read from the contact and the consents and written in the same INSERT … SELECT, deduplicated
    per event and channel. Nothing is rendered or looked up here: the sender adds the shop's names and
    renders the template when it sends (sender.py)."""
    rows = union_all(_to_channel("email", order_contacts.c.email), _to_channel("sms", order_contacts.c.phone))
    return (
        dialect_insert(outbox_messages)
        .from_select(_OUTBOX_COLUMNS, rows)
        .on_conflict_do_nothing(index_elements=["merchant_id", "event_id", "channel"])
        .returning(outbox_messages.c.id)
    )


_ANNOUNCE_PG = _announce(pg_insert)
_ANNOUNCE_SQLITE = _announce(sqlite_insert)


@dataclass(frozen=True, slots=True)
class CustomerContact:
    email: str | None = None
    phone: str | None = None
    locale: Locale = "zh-CN"
    opt_in: bool = False


def check_contact(email: str | None, phone: str | None, locale: str | None, opt_in: bool) -> CustomerContact:
    """Validate a contact as given by a client; a DomainError names the bad field."""
    if not email and not phone:
        raise invalid("invalid_customer", "A customer contact needs an email or a phone.")
    lang = locale or "zh-CN"
    if lang not in LOCALES:
        raise invalid("invalid_locale", f"locale must be one of {list(LOCALES)}.", {"locale": locale})
    return CustomerContact(
        email=check_recipient("email", email) if email else None,
        phone=check_recipient("sms", phone) if phone else None,
        locale=lang,  # type: ignore[arg-type]  # checked against LOCALES just above
        opt_in=opt_in,
    )


_INSERT_CONTACT = insert(order_contacts)


def attach(
    conn: Connection, now: datetime, merchant_id: str, order_id: str, contact: CustomerContact
) -> None:
    """Store the contact of a new order (same transaction as the order) and the customer's consent: two
    prebuilt statements (the contact; one upsert for the addresses opted in), nothing rendered or sent."""
    conn.execute(
        _INSERT_CONTACT,
        {
            "merchant_id": merchant_id,
            "order_id": order_id,
            "email": contact.email,
            "phone": contact.phone,
            "locale": contact.locale,
            "created_at": now,
        },
    )
    if contact.opt_in:
        addresses: list[tuple[Channel, str]] = []
        if contact.email:
            addresses.append(("email", contact.email))
        if contact.phone:
            addresses.append(("sms", contact.phone))
        record_consents(
            conn, now, merchant_id=merchant_id, addresses=addresses, opted_in=True, source="order"
        )


class OrderFacts(TypedDict):
    """What a customer message says about its order besides the event's own parameters."""

    merchant_name: str
    store_name: str
    order_number: int
    currency: str


def order_facts(conn: Connection, keys: set[tuple[str, str]]) -> dict[tuple[str, str], OrderFacts]:
    """(merchant, order) -> the shop's names, the order's number and currency: read by the sender, once
    per batch, for the messages it is about to render (not by the sale that wrote them)."""
    if not keys:
        return {}
    rows = conn.execute(
        select(
            orders.c.merchant_id,
            orders.c.id,
            orders.c.number,
            orders.c.currency,
            merchants.c.name.label("merchant_name"),
            stores.c.name.label("store_name"),
        )
        .select_from(orders)
        .join(merchants, merchants.c.id == orders.c.merchant_id)
        .join(stores, stores.c.id == orders.c.store_id)
        .where(tuple_(orders.c.merchant_id, orders.c.id).in_(sorted(keys)))
    )
    return {
        (r.merchant_id, r.id): {
            "merchant_name": r.merchant_name,
            "store_name": r.store_name,
            "order_number": int(r.number),
            "currency": r.currency,
        }
        for r in rows
    }


def get_contact(conn: Connection, merchant_id: str, order_id: str) -> CustomerContact | None:
    row = conn.execute(
        select(order_contacts).where(
            order_contacts.c.merchant_id == merchant_id, order_contacts.c.order_id == order_id
        )
    ).first()
    if row is None:
        return None
    return CustomerContact(email=row.email, phone=row.phone, locale=row.locale)


def notify_order(
    conn: Connection,
    now: datetime,
    *,
    merchant_id: str,
    order_id: str,
    event_id: str,
    template: str,
    params: MessageParams,
) -> int:
    """Enqueue ``template`` to every address of the order's customer who opted in; returns how many
    messages are new. No contact, or no consent: nothing. The order's number, currency, merchant and
    store names are added by the sender when it sends (it checks them like the rest), so callers pass
    only what their event knows and the sale writes one small row per address. A message the outbox
    refuses (a parameter that looks like a payment code) is logged and skipped: it never fails the
    state change it announces."""
    # The merchant's own system hears every order event when it has an endpoint (no consent needed).
    endpoints.enqueue_event(conn, now, merchant_id, event_id, template, {"order_id": order_id, **params})
    full: MessageParams = {"order_id": order_id, **params}
    try:
        check_event(event_id, template)
        check_params(full)
    except DomainError as exc:  # a message that cannot be built never blocks the sale it announces
        log.warning("notification_refused", event=event_id, code=exc.code)
        return 0
    # One statement on the sale path, contact or not: an order without a contact inserts nothing.
    values = {
        "b_merchant": merchant_id,
        "b_order": order_id,
        "b_event": event_id,
        "b_template": template,
        "b_params": json.dumps(full, ensure_ascii=False, sort_keys=True),
        "b_now": now,
    }
    stmt = _ANNOUNCE_PG if conn.dialect.name == "postgresql" else _ANNOUNCE_SQLITE
    return len(conn.execute(stmt, values).fetchall())


def notify_paid(conn: Connection, now: datetime, *, merchant_id: str, order_id: str, amount: int) -> int:
    """The order is paid: ``payment_captured`` with the e-receipt link, once per order."""
    return notify_order(
        conn,
        now,
        merchant_id=merchant_id,
        order_id=order_id,
        event_id=f"paid:{order_id}",
        template="payment_captured",
        params={"amount": amount},
    )


def notify_paid_contactless(
    conn: Connection, now: datetime, merchant_id: str, paid: list[tuple[str, int]]
) -> int:
    """``notify_paid`` for orders known to have no customer contact (a till's bulk-synced cash sales,
    created in this transaction without one): only the merchant's endpoint can hear of them, so one
    lookup answers for all ``(order id, amount)`` pairs. Returns how many messages are new."""
    if not paid or not endpoints.has_endpoint(conn, merchant_id):
        return 0
    return sum(
        endpoints.enqueue_event(
            conn,
            now,
            merchant_id,
            f"paid:{order_id}",
            "payment_captured",
            {"order_id": order_id, "amount": amount},
        )
        for order_id, amount in paid
    )


def notify_refunded(
    conn: Connection, now: datetime, *, merchant_id: str, order_id: str, refund_id: str, amount: int
) -> int:
    """A refund succeeded: ``refund_done``, once per refund."""
    return notify_order(
        conn,
        now,
        merchant_id=merchant_id,
        order_id=order_id,
        event_id=f"refund:{refund_id}",
        template="refund_done",
        params={"refund_amount": amount},
    )
