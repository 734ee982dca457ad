"""The fulfilment lifecycle of an order not handed over at the counter (pickup or delivery), as data.

Statuses and moves are declared once in ``FULFILMENT`` (a ``StateMachine``: a DAG, so nothing ever
regresses). The default periods come from shared/reference/operations.md §8: a physical express order
auto-confirms 10 days after it was shipped (Taobao/1688), the customer is reminded before that (WeChat's
``notify_confirm_receive`` reminds once), and an order is to be shipped within 48 hours (WeChat's rule
for mini-program orders). Each merchant may set its own figures within ``LIMITS``.

Re-delivery after a dispute is its own branch (``redelivering -> redelivered``) rather than a move back
to ``shipped``: going back would be a cycle, and a status never moves backwards. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from tillit.domain.states import StateMachine

KINDS = frozenset({"pickup", "delivery"})

FULFILMENT = StateMachine(
    name="fulfilment",
    initial=frozenset({"awaiting_fulfilment"}),
    moves={
        "awaiting_fulfilment": frozenset({"ready", "shipped", "cancelled"}),
        # pickup: the cashier scans the order's code; the customer may also confirm on the page
        "ready": frozenset({"confirmed", "cancelled"}),
        # delivery: the customer may confirm before the carrier reports delivery
        "shipped": frozenset({"delivered", "confirmed", "disputed"}),
        "delivered": frozenset({"confirmed", "disputed"}),
        "disputed": frozenset({"redelivering", "refunded"}),
        "redelivering": frozenset({"redelivered", "confirmed"}),
        "redelivered": frozenset({"confirmed"}),
        "confirmed": frozenset(),
        "cancelled": frozenset(),
        "refunded": frozenset(),
    },
    terminal=frozenset({"confirmed", "cancelled", "refunded"}),
)

# Which kind of order may take which move (a pickup order is never shipped, a delivery never "ready").
KIND_ONLY = {"ready": "pickup", "shipped": "delivery", "delivered": "delivery"}

# Where the auto-confirm timer runs: from shipping (operations.md §8.1: the timer starts at 卖家已发货)
# until a confirmation, a dispute (a refund request pauses the timer) or a terminal status.
AUTO_CONFIRM_FROM = frozenset({"shipped", "delivered", "redelivering", "redelivered"})
# Before shipping/ready, the shipping SLA runs.
SLA_RUNS_IN = frozenset({"awaiting_fulfilment"})
# The customer may open a dispute from these statuses (not received, wrong or damaged items).
DISPUTABLE = frozenset({"shipped", "delivered"})
CUSTOMER_CONFIRMABLE = frozenset({"ready", "shipped", "delivered", "redelivering", "redelivered"})

DISPUTE_REASONS = frozenset({"not_received", "wrong_items", "damaged_items"})
CONFIRMED_BY = frozenset({"customer", "cashier", "auto"})
RESOLUTIONS = frozenset({"redeliver", "refund"})

MAX_ADDRESS = 300
MAX_CONTACT = 120
MAX_NOTE = 500
MAX_CARRIER = 40
MAX_TRACKING = 64
MAX_PHOTO_BYTES = 2 * 1024 * 1024  # a phone photo, downscaled by the page before upload


@dataclass(frozen=True, slots=True)
class Periods:
    """A merchant's fulfilment periods (operations.md §8 defaults)."""

    auto_confirm_days: int = 10
    reminder_hours: int = 24  # how long before the auto-confirm the customer is reminded
    ship_sla_hours: int = 48


DEFAULT_PERIODS = Periods()
LIMITS = {"auto_confirm_days": (1, 90), "reminder_hours": (1, 7 * 24), "ship_sla_hours": (1, 30 * 24)}


def confirm_due(shipped_at: datetime, periods: Periods) -> datetime:
    return shipped_at + timedelta(days=periods.auto_confirm_days)


def remind_due(confirm_at: datetime, periods: Periods, now: datetime) -> datetime | None:
    """When to remind the customer: ``reminder_hours`` before the auto-confirm, or None when that moment
    is already past at shipping (a period shorter than the reminder lead: no reminder, the page says it)."""
    at = confirm_at - timedelta(hours=periods.reminder_hours)
    return at if at > now else None


# The buyer's extension (operations.md §8.1, Taobao physical goods): once, +3 days, when at most 3 days of
# the auto-confirm period remain. Only while the timer runs; the event reason below marks it.
BUYER_EXTENSION = timedelta(days=3)
EXTEND_WHEN_LEFT = timedelta(days=3)
EXTENDED_REASON = "buyer_extended"


def extension_refusal(status: str, confirm_at: datetime | None, extended: bool, now: datetime) -> str | None:
    """Why the customer may not extend the auto-confirm now (a stable error code), or None when they may."""
    if status not in AUTO_CONFIRM_FROM or confirm_at is None:
        return "fulfilment_not_extendable"
    if extended:
        return "already_extended"
    if confirm_at - now > EXTEND_WHEN_LEFT:
        return "extension_too_early"
    return None


def ship_due(created_at: datetime, periods: Periods) -> datetime:
    return created_at + timedelta(hours=periods.ship_sla_hours)


# Photo types accepted for a dispute, recognised by their first bytes (never by the client's claim).
_MAGIC: tuple[tuple[bytes, int, str], ...] = (
    (b"\xff\xd8\xff", 0, "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", 0, "image/png"),
    (b"WEBP", 8, "image/webp"),
)


def sniff_photo(data: bytes) -> str | None:
    """The image type of ``data`` from its magic bytes, or None when it is not a JPEG, PNG or WebP."""
    for magic, offset, media in _MAGIC:
        if data[offset : offset + len(magic)] == magic:
            if media == "image/webp" and not data.startswith(b"RIFF"):
                continue
            return media
    return None
