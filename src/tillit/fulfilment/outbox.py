"""Fulfilment messages into the notifications outbox (notifications/, a lower area): each customer-facing
move becomes one outbox row per opted-in address of the order's customer, in the move's transaction.
Registered with ``notify.on_message`` in ``bootstrap.wire_areas``.

Mapping to the outbox templates: ready -> order_ready, shipped -> order_shipped, delivered ->
order_delivered, reminder -> confirm_reminder, disputed / resolved -> dispute_update. The event id is
unique per fulfilment, event and status, so a replayed move is sent once and a re-delivery is a new
message. No payment codes: only order number, carrier, tracking number, dates and reasons.
"""

from __future__ import annotations

import re

from sqlalchemy import Connection

from tillit.fulfilment.notify import FulfilmentMessage
from tillit.kernel.context import Deps
from tillit.notifications import contacts
from tillit.notifications.messages import MessageParams

TEMPLATES = {
    "ready": "order_ready",
    "shipped": "order_shipped",
    "delivered": "order_delivered",
    "reminder": "confirm_reminder",
    "disputed": "dispute_update",
    "resolved": "dispute_update",
}
_SEPARATORS = re.compile(r"[ -]")
# The outbox refuses any parameter with 16+ digits in a row (it could be a payment code). Some carriers'
# tracking numbers are that long: such a number is left out of the message (the customer page shows it)
# rather than refusing the move.
_LONG_DIGITS = re.compile(r"[0-9]{16,}")


def contact_of(email: str | None, phone: str | None, language: str, opt_in: bool) -> contacts.CustomerContact:
    """The outbox's contact for a fulfilment's customer (phone without spaces or dashes)."""
    digits = _SEPARATORS.sub("", phone) if phone else None
    return contacts.check_contact(email, digits, language, opt_in)


def attach_contact(
    conn: Connection, deps: Deps, merchant_id: str, order_id: str, contact: contacts.CustomerContact
) -> bool:
    """Give the order this contact unless it already has one (given at order creation); True if set."""
    if contacts.get_contact(conn, merchant_id, order_id) is not None:
        return False
    contacts.attach(conn, deps.clock.now(), merchant_id, order_id, contact)
    return True


def enqueue_message(conn: Connection, deps: Deps, message: FulfilmentMessage) -> None:
    template = TEMPLATES.get(message.event)
    if template is None:
        return
    params: MessageParams = {}
    if message.carrier and not _LONG_DIGITS.search(message.carrier):
        params["carrier"] = message.carrier
    if message.tracking_number and not _LONG_DIGITS.search(message.tracking_number):
        params["tracking_number"] = message.tracking_number
    if message.confirm_due_at and message.event in ("delivered", "reminder"):
        params["confirm_by"] = message.confirm_due_at[:10]
    if template == "dispute_update":
        params["dispute_status"] = message.status
        if message.dispute_reason:
            params["dispute_reason"] = message.dispute_reason
    contacts.notify_order(
        conn,
        deps.clock.now(),
        merchant_id=message.merchant_id,
        order_id=message.order_id,
        event_id=f"ful:{message.fulfilment_id}:{message.event}:{message.status}",
        template=template,
        params=params,
    )
