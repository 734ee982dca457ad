"""A customer's contact on an order, and the order events announced to it.

The contact is optional and given at order creation (``customer`` in the API). ``opt_in`` records the
customer's consent per address (``outbox_consents``); without it nothing is ever sent to that address.
A later opt-out (``outbox.set_consent``) wins, also over messages already waiting.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import Connection, and_, bindparam, insert, select

from tillit.adapters.db.schema import merchants, order_contacts, orders, outbox_consents, stores
from tillit.domain.errors import DomainError, invalid
from tillit.notifications import endpoints
from tillit.notifications.messages import LOCALES, Channel, Locale, Message, MessageParams, check_recipient
from tillit.notifications.outbox import enqueue_at, set_consent

log = structlog.get_logger("tillit.notifications")

_EMAIL_CONSENT = outbox_consents.alias("email_consent")
_SMS_CONSENT = outbox_consents.alias("sms_consent")
_CONTACT_FOR_MESSAGE = (
    select(
        order_contacts.c.email,
        order_contacts.c.phone,
        order_contacts.c.locale,
        merchants.c.name.label("merchant_name"),
        stores.c.name.label("store_name"),
        orders.c.number,
        orders.c.currency,
        _EMAIL_CONSENT.c.opted_in.label("email_in"),
        _SMS_CONSENT.c.opted_in.label("sms_in"),
    )
    .select_from(order_contacts)
    .join(
        orders,
        and_(orders.c.merchant_id == order_contacts.c.merchant_id, orders.c.id == order_contacts.c.order_id),
    )
    .join(merchants, merchants.c.id == orders.c.merchant_id)
    .join(stores, stores.c.id == orders.c.store_id)
    .outerjoin(
        _EMAIL_CONSENT,
        and_(
            _EMAIL_CONSENT.c.merchant_id == order_contacts.c.merchant_id,
            _EMAIL_CONSENT.c.channel == "email",
            _EMAIL_CONSENT.c.recipient == order_contacts.c.email,
        ),
    )
    .outerjoin(
        _SMS_CONSENT,
        and_(
            _SMS_CONSENT.c.merchant_id == order_contacts.c.merchant_id,
            _SMS_CONSENT.c.channel == "sms",
            _SMS_CONSENT.c.recipient == order_contacts.c.phone,
        ),
    )
    .where(
        order_contacts.c.merchant_id == bindparam("b_merchant"),
        order_contacts.c.order_id == bindparam("b_order"),
    )
)


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
    store names are added to ``params`` here, so callers pass only what their event knows. A message
    the outbox refuses (a parameter that looks like a payment code) is logged and skipped: it never
    fails the state change it announces."""
    # The merchant's own system hears every order event when it has an endpoint (no consent needed).
    endpoints.enqueue_event(conn, now, merchant_id, event_id, template, {"order_id": order_id, **params})
    # One statement on the sale path: an order without a contact costs one primary-key lookup.
    row = conn.execute(_CONTACT_FOR_MESSAGE, {"b_merchant": merchant_id, "b_order": order_id}).first()
    if row is None:
        return 0
    full: MessageParams = {"order_id": order_id, **params}
    full.setdefault("merchant_name", row.merchant_name)
    full.setdefault("store_name", row.store_name)
    full.setdefault("order_number", int(row.number))
    full.setdefault("currency", row.currency)
    sent = 0
    addresses: list[tuple[Channel, str | None, Any]] = [
        ("email", row.email, row.email_in),
        ("sms", row.phone, row.sms_in),
    ]
    for channel, address, opted_in in addresses:
        # Opted in: sent. Opted out since (an unsubscribe link): written and then recorded as suppressed
        # by the sender, so the record shows what was not sent. Never asked: nothing at all.
        if address and opted_in is not None:
            message = Message(merchant_id, event_id, channel, address, template, row.locale, full)
            try:
                sent += enqueue_at(conn, now, message)
            except DomainError as exc:  # a message that cannot be built never blocks the sale it announces
                log.warning("notification_refused", event=event_id, channel=channel, code=exc.code)
    return sent


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
