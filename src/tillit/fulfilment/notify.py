"""What fulfilment tells the customer, as a protocol: the notifications outbox (a separate area) plugs
its ``enqueue`` in at the composition root (``bootstrap.wire_areas``). Handlers run inside the
transaction of the move, so a message row commits with the move or not at all.

Wired: fulfilment/outbox.py ``enqueue_message`` (the notifications outbox). Without a handler, messages go
nowhere (the page and the API still show every move)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection

from tillit.kernel.context import Deps

EVENTS = frozenset({"ready", "shipped", "delivered", "reminder", "disputed", "resolved", "confirmed"})


@dataclass(frozen=True, slots=True)
class FulfilmentMessage:
    """One customer-facing event of a fulfilment. ``dedupe_key`` is unique per event and order, so an
    outbox can drop a repeat. No payment codes or secrets: only what the customer page shows."""

    event: str
    merchant_id: str
    order_id: str
    fulfilment_id: str
    order_number: int
    language: str
    contact_email: str | None
    contact_phone: str | None
    customer_path: str
    status: str = ""  # the fulfilment's status after the move
    dispute_reason: str | None = None
    carrier: str | None = None
    tracking_number: str | None = None
    confirm_due_at: str | None = None

    @property
    def dedupe_key(self) -> str:
        return f"ful:{self.fulfilment_id}:{self.event}:{self.status}"


MessageHandler = Callable[[Connection, Deps, FulfilmentMessage], None]
_HANDLERS: list[MessageHandler] = []


def on_message(handler: MessageHandler) -> None:
    """Register ``handler`` (idempotent: the same handler is registered once)."""
    if handler not in _HANDLERS:
        _HANDLERS.append(handler)


def send(conn: Connection, deps: Deps, message: FulfilmentMessage) -> None:
    assert message.event in EVENTS, message.event
    for handler in _HANDLERS:
        handler(conn, deps, message)
