"""A customer's contact on an order, and the order events announced to it.

The contact is optional and given at order creation (``customer`` in the API). ``opt_in`` records the
customer's consent per address (``outbox_consents``); without it nothing is ever sent to that address.
A later opt-out (``outbox.set_consent``) wins, also over messages already waiting.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, insert, select

from tillit.adapters.db.schema import merchants, order_contacts, orders, stores
from tillit.domain.errors import invalid
from tillit.notifications.messages import LOCALES, Channel, Locale, Message, MessageParams, check_recipient
from tillit.notifications.outbox import consent, enqueue_at, set_consent


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


def attach(
    conn: Connection, now: datetime, merchant_id: str, order_id: str, contact: CustomerContact
) -> None:
    """Store the contact of a new order (same transaction as the order) and the customer's consent."""
    conn.execute(
        insert(order_contacts).values(
            merchant_id=merchant_id,
            order_id=order_id,
            email=contact.email,
            phone=contact.phone,
            locale=contact.locale,
            created_at=now,
        )
    )
    if contact.opt_in:
        for channel, address in (("email", contact.email), ("sms", contact.phone)):
            if address:
                set_consent(
                    conn,
                    now,
                    merchant_id=merchant_id,
                    channel=channel,  # type: ignore[arg-type]
                    recipient=address,
                    opted_in=True,
                    source="order",
                )


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
    store names are added to ``params`` here, so callers pass only what their event knows."""
    contact = get_contact(conn, merchant_id, order_id)
    if contact is None:
        return 0
    names = conn.execute(
        select(
            merchants.c.name.label("merchant_name"),
            stores.c.name.label("store_name"),
            orders.c.number,
            orders.c.currency,
        )
        .select_from(orders)
        .join(merchants, merchants.c.id == orders.c.merchant_id)
        .join(stores, stores.c.id == orders.c.store_id)
        .where(orders.c.merchant_id == merchant_id, orders.c.id == order_id)
    ).first()
    full: MessageParams = {"order_id": order_id, **params}
    if names is not None:
        full.setdefault("merchant_name", names.merchant_name)
        full.setdefault("store_name", names.store_name)
        full.setdefault("order_number", int(names.number))
        full.setdefault("currency", names.currency)
    sent = 0
    addresses: list[tuple[Channel, str | None]] = [("email", contact.email), ("sms", contact.phone)]
    for channel, address in addresses:
        if address and consent(conn, merchant_id, channel, address):
            message = Message(merchant_id, event_id, channel, address, template, contact.locale, full)
            sent += enqueue_at(conn, now, message)
    return sent
