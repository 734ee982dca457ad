"""Request and response shapes of the fulfilment routes (api/routes/fulfilment.py), strict like
api/schemas.py. Limits are those domain/fulfilment.py enforces, declared so OpenAPI states them."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from tillit.api.schemas import Amount, Strict
from tillit.domain import fulfilment as rules

Phone = Annotated[str, Field(min_length=5, max_length=32, pattern=r"^\+?[0-9][0-9 -]{4,30}$")]
Email = Annotated[
    str, Field(min_length=3, max_length=254, pattern=r"^[^@\s]{1,64}@[^@\s]{1,189}\.[^@\s]{1,60}$")
]
Carrier = Annotated[str, Field(min_length=1, max_length=rules.MAX_CARRIER)]
Tracking = Annotated[str, Field(min_length=1, max_length=rules.MAX_TRACKING)]


class FulfilmentCreate(Strict):
    kind: Literal["pickup", "delivery"]
    contact_name: Annotated[str, Field(max_length=rules.MAX_CONTACT)] | None = None
    contact_phone: Phone | None = None
    contact_email: Email | None = None
    address: Annotated[str, Field(min_length=1, max_length=rules.MAX_ADDRESS)] | None = Field(
        default=None, description="Required for delivery."
    )
    note: Annotated[str, Field(max_length=rules.MAX_NOTE)] | None = None
    language: Literal["zh-CN", "en"] = "zh-CN"
    opt_in: bool = Field(default=False, description="The customer agrees to messages about this order")


class ShipBody(Strict):
    carrier: Carrier
    tracking_number: Tracking


class PickupBody(Strict):
    code: Annotated[
        str, Field(min_length=1, max_length=300, description="The scanned customer link or token")
    ]


class ResolveBody(Strict):
    action: Literal["redeliver", "refund"]
    amount: Amount | None = Field(default=None, description="refund: omit for a full refund.")
    restock: bool | None = Field(
        default=None,
        description="refund: put the goods back into stock (default: a full not_received refund).",
    )
    carrier: Carrier | None = Field(default=None, description="redeliver: required.")
    tracking_number: Tracking | None = Field(default=None, description="redeliver: required.")


class SettingsBody(Strict):
    auto_confirm_days: Annotated[int, Field(ge=1, le=90)]
    reminder_hours: Annotated[int, Field(ge=1, le=168)]
    ship_sla_hours: Annotated[int, Field(ge=1, le=720)]


class SettingsOut(BaseModel):
    auto_confirm_days: int
    reminder_hours: int
    ship_sla_hours: int
    default: bool


class FulfilmentRefundOut(BaseModel):
    id: str
    amount: int
    status: str


class FulfilmentOut(BaseModel):
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
    refund: FulfilmentRefundOut | None
    ship_due_at: str | None
    confirm_due_at: str | None
    remind_at: str | None
    reminded_at: str | None
    extended_at: str | None = None
    sla_exception_id: str | None
    customer_path: str = Field(
        description="The customer's page: prefix the public base URL; QR on the receipt"
    )
    version: int
    created_at: str
    updated_at: str


class FulfilmentList(BaseModel):
    data: list[FulfilmentOut]
    next: str | None
