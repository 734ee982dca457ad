"""What fulfilment hands the entry points: typed views of its records (plain dicts at run time)."""

from __future__ import annotations

from typing import TypedDict


class FulfilmentRefundView(TypedDict):
    id: str
    amount: int
    status: str


class FulfilmentView(TypedDict):
    id: str
    order_id: str
    order_number: int
    kind: str
    status: str
    contact_name: str | None
    contact_phone: str | None
    contact_email: str | None
    language: str
    address: str | None
    note: str | None
    carrier: str | None
    tracking_number: str | None
    confirmed_by: str | None
    dispute_reason: str | None
    dispute_note: str | None
    dispute_photos: int
    resolution: str | None
    refund: FulfilmentRefundView | None
    ship_due_at: str | None
    confirm_due_at: str | None
    remind_at: str | None
    reminded_at: str | None
    extended_at: str | None  # the buyer extended the auto-confirm (once, +3 days)
    sla_exception_id: str | None
    customer_path: str
    version: int
    created_at: str
    updated_at: str


class TimelineEntry(TypedDict):
    """One step the customer sees: a fulfilment move, or the payment of the order."""

    status: str
    at: str


class PeriodsView(TypedDict):
    auto_confirm_days: int
    reminder_hours: int
    ship_sla_hours: int
    default: bool


class CustomerOrderView(TypedDict):
    """The customer page's data: no internal ids beyond the order number, no contact data of others."""

    merchant_name: str
    order_number: int
    kind: str
    status: str
    total: int
    currency: str
    paid: bool
    lines: list[CustomerLineView]
    carrier: str | None
    tracking_number: str | None
    confirm_due_at: str | None
    can_confirm: bool
    can_dispute: bool
    can_extend: bool  # the buyer may extend the auto-confirm by 3 days now
    dispute_reason: str | None
    timeline: list[TimelineEntry]
    language: str


class CustomerLineView(TypedDict):
    name: str
    quantity: int
    amount: int
