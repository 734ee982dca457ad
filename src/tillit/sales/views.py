"""What sales hands other areas and the entry points: views of its records, named for what they are.

They are TypedDicts, so at run time they are the same plain dicts the API has always serialised: key order
is the order the producing function writes them in (orders.py, catalog.py, shifts.py, sync.py), and the JSON
answers stay byte-identical. api/schemas.py holds the pydantic models that document the same shapes in
OpenAPI; a field added here is added there too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, NotRequired, TypedDict

from tillit.access import idempotency

# "zh-CN" is not an identifier, hence the functional form.
CashierMessageView = TypedDict("CashierMessageView", {"reason": str, "en": str, "zh-CN": str})
"""The cashier's next step for a provider payment, in both languages (domain/messages.py)."""


class LineView(TypedDict):
    line_no: int
    product_id: str
    sku: str
    name: str
    unit_price: int
    quantity: int
    discount: int
    amount: int


class PaymentView(TypedDict):
    """A payment attempt, cash or provider. ``message`` is None for cash."""

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
    message: CashierMessageView | None
    created_at: str
    updated_at: str


class RefundView(TypedDict):
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


class OrderView(TypedDict):
    """An order with its lines, payments and refunds; ``balance_due`` is 0 unless the order is open."""

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
    lines: list[LineView]
    payments: list[PaymentView]
    refunds: list[RefundView]


class EventView(TypedDict):
    """One state change on an order's timeline."""

    id: int
    entity: str
    entity_id: str
    from_status: str | None
    to_status: str
    actor: str
    reason: str | None
    provider_ref: str | None
    at: str


class ProductView(TypedDict):
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
    # The till's touch grid (product_tiles): category tab, tile colour, favourite first, then sort order;
    # ``image`` is the server path of the tile image (its digest in the query, so a cached copy is exact).
    category: str | None
    tile_colour: str | None
    favourite: bool
    sort_order: int
    image: str | None


class TillSettingsView(TypedDict):
    """A store's till rules; the till's copy also carries the managers' PIN hashes (never the PINs)."""

    store_id: str
    discount_limit_pct: int
    rounding: str
    managers: list[str]


class TillManagerView(TypedDict):
    name: str
    pin_hash: str


class TerminalTillSettingsView(TillSettingsView):
    manager_pins: list[TillManagerView]


class ShiftView(TypedDict):
    """A till shift; ``report`` is the closing report the till sent (its JSON, decoded), None while open."""

    id: str
    terminal_id: str
    number: int
    status: str
    opened_at: str
    closed_at: str | None
    opening_float: int
    counted_cash: int | None
    expected_cash: int | None
    report: Any
    report_hash: str | None
    prev_hash: str | None


class BatchError(TypedDict):
    code: str
    message: str
    details: Any


class BatchResult(TypedDict):
    """One entry of a till sync batch: ``replayed`` and ``body`` when it was applied, ``error`` when not."""

    key: str
    status: int
    replayed: NotRequired[bool]
    body: NotRequired[Any]
    error: NotRequired[BatchError]


@dataclass(frozen=True, slots=True)
class SyncAnswer:
    """One entry's answer in a sync batch, its body kept as the JSON bytes stored with its
    Idempotency-Key (what a replay of the single route answers), so it is never decoded to be encoded
    again. ``payload`` when it was applied, ``error`` when not."""

    key: str
    status: int
    replayed: bool = False
    payload: bytes | None = None
    error: BatchError | None = None

    def as_result(self) -> BatchResult:
        """The answer as the API shows it (decoded)."""
        if self.error is not None:
            return {"key": self.key, "status": self.status, "error": self.error}
        assert self.payload is not None
        return {
            "key": self.key,
            "status": self.status,
            "replayed": self.replayed,
            "body": json.loads(self.payload),
        }

    def encode(self) -> bytes:
        """The answer as compact JSON (the same bytes json.dumps of ``as_result`` gives)."""
        if self.error is not None:
            return idempotency.encode({"key": self.key, "status": self.status, "error": self.error})
        assert self.payload is not None
        head = idempotency.encode({"key": self.key, "status": self.status, "replayed": self.replayed})
        return head[:-1] + b',"body":' + self.payload + b"}"


def encode_answers(answers: list[SyncAnswer]) -> bytes:
    """``{"results": [...]}`` of a sync batch, each answer's stored body spliced in as it is."""
    return b'{"results":[' + b",".join(a.encode() for a in answers) + b"]}"
