"""Request and response shapes. Strict: no unknown fields, no floats or strings where ints belong."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tillit.domain.money import MAX_AMOUNT
from tillit.notifications.messages import EMAIL

# 32 hex digits, hyphenated 8-4-4-4-12 or not: every string this matches domain/ids.normalise_id accepts.
UUIDStr = Annotated[
    str,
    Field(
        min_length=32,
        max_length=36,
        pattern=r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$",
    ),
]
Amount = Annotated[int, Field(ge=1, le=MAX_AMOUNT, description="Integer minor units (fen for CNY).")]
Name = Annotated[str, Field(min_length=1, max_length=200)]
Currency = Annotated[str, Field(min_length=3, max_length=3, description="ISO 4217 code, e.g. CNY.")]
CancelReason = Literal["customer_cancelled", "cashier_cancelled", "payment_failed", "timeout", "other"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class MerchantCreate(Strict):
    name: Name
    currency: Currency = "CNY"


class StoreCreate(Strict):
    merchant_id: UUIDStr
    name: Name


class TerminalCreate(Strict):
    store_id: UUIDStr
    name: Name


class KeyCreate(Strict):
    role: Literal["admin", "merchant", "terminal"]
    name: Name
    merchant_id: UUIDStr | None = None
    terminal_id: UUIDStr | None = None


class ProductCreate(Strict):
    sku: Annotated[str, Field(min_length=1, max_length=64)]
    name: Name
    price: Annotated[int, Field(ge=0, le=MAX_AMOUNT)]
    barcode: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    currency: Currency | None = None
    stock: Annotated[int, Field(ge=-(10**9), le=10**9)] | None = None
    category: Annotated[str, Field(min_length=1, max_length=60)] | None = None
    tile_colour: Annotated[str, Field(pattern=r"^#[0-9a-fA-F]{6}$")] | None = Field(
        default=None, description="The till tile's colour, #rrggbb."
    )
    favourite: bool | None = Field(default=None, description="Shown first on the till's grid.")
    sort_order: Annotated[int, Field(ge=-1000000, le=1000000)] | None = None


class ProductUpdate(Strict):
    name: Name | None = None
    price: Annotated[int, Field(ge=0, le=MAX_AMOUNT)] | None = None
    barcode: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    stock: Annotated[int, Field(ge=-(10**9), le=10**9)] | None = None
    active: bool | None = None
    category: Annotated[str, Field(min_length=1, max_length=60)] | None = None
    tile_colour: Annotated[str, Field(pattern=r"^#[0-9a-fA-F]{6}$")] | None = Field(
        default=None, description="The till tile's colour, #rrggbb."
    )
    favourite: bool | None = Field(default=None, description="Shown first on the till's grid.")
    sort_order: Annotated[int, Field(ge=-1000000, le=1000000)] | None = None


class OrderLineIn(Strict):
    # The document says what _one_reference enforces: exactly one of the two references, non-null.
    model_config = {
        **Strict.model_config,
        "json_schema_extra": {
            "oneOf": [
                {"required": ["product_id"], "properties": {"product_id": {"type": "string"}}},
                {"required": ["sku"], "properties": {"sku": {"type": "string"}}},
            ]
        },
    }

    product_id: UUIDStr | None = None
    sku: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    quantity: Annotated[int, Field(ge=1, le=9999)]
    discount: Annotated[int, Field(ge=0, le=MAX_AMOUNT)] = 0

    @model_validator(mode="after")
    def _one_reference(self) -> OrderLineIn:
        if (self.product_id is None) == (self.sku is None):
            raise ValueError("give exactly one of product_id or sku")
        return self


class CustomerIn(Strict):
    """Who to tell about the order (issue 14): nothing is sent unless ``opt_in`` is true."""

    email: Annotated[str, Field(max_length=254, pattern=EMAIL.pattern)] | None = None
    phone: Annotated[str, Field(pattern=r"^\+?[0-9]{6,15}$")] | None = None
    locale: Literal["zh-CN", "en"] = "zh-CN"
    opt_in: bool = Field(default=False, description="The customer agreed to receive messages.")


class ApprovalIn(Strict):
    """A manager's approval at the till, recorded in the order's events (who and why)."""

    kind: Literal["line_discount", "price_change", "order_discount"]
    line_no: Annotated[int, Field(ge=1, le=200)] | None = None
    amount: Annotated[int, Field(ge=0, le=MAX_AMOUNT)]
    approved_by: Annotated[str, Field(min_length=1, max_length=60)]
    reason: Annotated[str, Field(min_length=1, max_length=200)]


class OrderCreate(Strict):
    id: UUIDStr | None = Field(default=None, description="Client-generated UUID (UUIDv7 recommended).")
    store_id: UUIDStr | None = Field(default=None, description="Required for merchant keys.")
    currency: Currency | None = None
    lines: Annotated[list[OrderLineIn], Field(min_length=1, max_length=200)]
    total: Annotated[int, Field(ge=0, le=MAX_AMOUNT)] | None = Field(
        default=None, description="The client's total; rejected with total_mismatch if it differs."
    )
    note: Annotated[str, Field(max_length=500)] | None = None
    customer: CustomerIn | None = Field(
        default=None, description="Optional contact for payment, refund and delivery messages (e-mail/phone)."
    )
    approvals: Annotated[list[ApprovalIn], Field(max_length=200)] | None = Field(
        default=None, description="Manager approvals given at the till (over-limit discounts, price cuts)."
    )


class OrderCancel(Strict):
    reason: CancelReason
    note: Annotated[str, Field(max_length=500)] | None = None


class PaymentCreate(Strict):
    id: UUIDStr | None = Field(default=None, description="Client-generated attempt id (the out_trade_no).")
    order_id: UUIDStr
    method: Literal["cash", "wechat", "alipay"] | None = Field(
        default=None,
        description="Omit with payment_code: the provider is detected from the code. Default cash.",
    )
    payment_code: Annotated[str, Field(min_length=10, max_length=128, pattern=r"^[0-9]+$")] | None = Field(
        default=None, description="The customer's scanned payment code (never stored; masked on the payment)."
    )
    amount: Amount | None = Field(default=None, description="Defaults to the balance due.")
    currency: Currency | None = None
    tendered: Amount | None = Field(default=None, description="Cash handed over; change = tendered - amount.")


class RefundCreate(Strict):
    id: UUIDStr | None = None
    payment_id: UUIDStr
    amount: Amount | None = Field(default=None, description="Defaults to everything still refundable.")
    reason: Annotated[str, Field(max_length=500)] | None = None


class ErrorBody(BaseModel):
    code: str
    message: str
    details: object | None = None


class ErrorOut(BaseModel):
    error: ErrorBody


class LineOut(BaseModel):
    line_no: int
    product_id: str
    sku: str
    name: str
    unit_price: int
    quantity: int
    discount: int
    amount: int


class PaymentOut(BaseModel):
    id: str
    order_id: str
    method: str
    provider: str | None
    amount: int
    currency: str
    status: str
    tendered: int | None
    change_due: int | None
    refunded_amount: int
    provider_ref: str | None
    payment_code_masked: str | None
    failure_code: str | None
    failure_message: str | None
    message: dict[str, str] | None = Field(description="Cashier message in en and zh-CN, with the next step")
    created_at: str
    updated_at: str


class RefundOut(BaseModel):
    id: str
    order_id: str
    payment_id: str
    amount: int
    currency: str
    status: str
    reason: str | None
    provider_ref: str | None
    created_at: str
    updated_at: str


class OrderOut(BaseModel):
    id: str
    number: int
    store_id: str
    terminal_id: str | None
    status: str
    currency: str
    subtotal: int
    discount_total: int
    total: int
    paid_amount: int
    refunded_amount: int
    balance_due: int
    cancel_reason: str | None
    note: str | None
    version: int
    created_at: str
    updated_at: str
    lines: list[LineOut]
    payments: list[PaymentOut]
    refunds: list[RefundOut]
    receipt_url: str | None = Field(
        default=None, description="The signed e-receipt link once the order is paid (GET /v1/orders/{id})."
    )


class EventOut(BaseModel):
    id: int
    entity: str
    entity_id: str
    from_status: str | None
    to_status: str
    actor: str
    reason: str | None
    provider_ref: str | None
    at: str


class ProductOut(BaseModel):
    id: str
    sku: str
    barcode: str | None
    name: str
    price: int
    currency: str
    stock: int | None
    active: bool
    created_at: str
    updated_at: str
    category: str | None
    tile_colour: str | None
    favourite: bool
    sort_order: int
    image: str | None


# --- till station (issue 17) ------------------------------------------------------------------------------


class TillManagerIn(Strict):
    name: Annotated[str, Field(min_length=1, max_length=60)]
    pin: Annotated[str, Field(pattern=r"^[0-9]{4,12}$", description="4 to 12 digits; stored hashed only.")]


class TillSettingsIn(Strict):
    discount_limit_pct: Annotated[int, Field(ge=0, le=100)] = Field(
        description="Discounts and price cuts above this percentage of a line or order need a manager PIN."
    )
    rounding: Literal["none", "jiao", "yuan"] = Field(description="What 抹零 rounds the total down to.")
    managers: Annotated[list[TillManagerIn], Field(max_length=20)] | None = Field(
        default=None, description="Replaces the store's managers and PINs when given."
    )


class TillSettingsOut(BaseModel):
    store_id: str
    discount_limit_pct: int
    rounding: str
    managers: list[str]


class TillManagerOut(BaseModel):
    name: str
    pin_hash: str


class TerminalTillSettingsOut(TillSettingsOut):
    manager_pins: list[TillManagerOut]


class ReceiptKeyOut(BaseModel):
    key_id: str = Field(description="The key's id; it is part of every link the till prints.")
    key: str = Field(description="base64url, 32 bytes: the till signs its receipt links with it (keep it).")
    terminal_id: str
    base_url: str = Field(description="Where customers reach the server (TILLIT_PUBLIC_URL).")
    link: str = Field(
        description="The link's shape: {base_url}/r/{key_id}/{order_id}/{mac}, mac = first 16 bytes, hex, "
        'of HMAC-SHA256(key, "till-receipt:" + order_id).'
    )


class ReceiptKeyRevokedOut(BaseModel):
    terminal_id: str
    revoked: int = Field(description="How many active keys were revoked (0 or 1).")
