"""Routes the till uses: batched journal sync and shift close reports."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import AfterValidator, BaseModel, Field, ValidationError, model_validator

from tillit.api.deps import CASHIER, IDEMPOTENCY_HEADER, STAFF, container, idempotent, ok
from tillit.api.errors import status_for
from tillit.api.schemas import ErrorOut, OrderCancel, OrderCreate, PaymentCreate, RefundCreate, Strict
from tillit.domain.errors import DomainError, ErrorKind
from tillit.domain.ids import normalise_id
from tillit.domain.money import MAX_AMOUNT
from tillit.domain.tillrules import SYNC_MAX_BYTES, SYNC_MAX_ENTRIES
from tillit.kernel.context import Actor
from tillit.sales import shifts, sync
from tillit.sales.views import encode_answers

router = APIRouter(prefix="/v1", tags=["till"], responses={"4XX": {"model": ErrorOut}})

MAX_BATCH = SYNC_MAX_ENTRIES
SYNC_PATH = "/v1/sync"
MODELS: dict[str, type[BaseModel]] = {
    "order": OrderCreate,
    "payment": PaymentCreate,
    "refund": RefundCreate,
    "cancel": OrderCancel,
}


class SyncEntry(Strict):
    op: Literal["order", "payment", "refund", "cancel"]
    key: Annotated[str, Field(min_length=1, max_length=255)]
    body: dict[str, Any]
    order_id: Annotated[str, Field(min_length=32, max_length=36)] | None = Field(
        default=None, description="For op=cancel: the order to cancel"
    )


class SyncBatch(Strict):
    entries: Annotated[list[SyncEntry], Field(min_length=1, max_length=MAX_BATCH)]
    queued: Annotated[
        int | None,
        Field(
            ge=0,
            le=10_000_000,
            description="How many entries the till's journal holds waiting, this batch included; what is "
            "left after the entries applied here is the till's sync backlog (tillit_till_sync_backlog)",
        ),
    ] = None


MAX_SHIFT_NUMBER = 10**9
MAX_REPORT_ENTRIES = 32
MIN_YEAR, MAX_YEAR = 1970, 9998


def _iso_timestamp(value: str) -> str:
    """An ISO 8601 timestamp with its UTC offset; returned unchanged, because the report is hashed as sent."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("must be an ISO 8601 timestamp, e.g. 2026-01-31T18:00:00+00:00") from None
    if parsed.tzinfo is None:
        raise ValueError("must carry its UTC offset (e.g. +00:00 or Z)")
    if not MIN_YEAR <= parsed.year <= MAX_YEAR:  # so it converts to UTC and into every database
        raise ValueError(f"must lie between the years {MIN_YEAR} and {MAX_YEAR}")
    return value


# The document states what _iso_timestamp accepts: an RFC 3339 date-time within MIN_YEAR..MAX_YEAR.
YEARS_PATTERN = r"^(19[7-9][0-9]|[2-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9]|999[0-8])-"
Timestamp = Annotated[
    str,
    Field(min_length=10, max_length=40, pattern=YEARS_PATTERN, json_schema_extra={"format": "date-time"}),
    AfterValidator(_iso_timestamp),
]
Cash = Annotated[int, Field(ge=0, le=MAX_AMOUNT)]
SignedCash = Annotated[int, Field(ge=-2 * MAX_AMOUNT, le=2 * MAX_AMOUNT)]
Label = Annotated[str, Field(min_length=1, max_length=64)]
Totals = Annotated[dict[Label, Cash], Field(max_length=MAX_REPORT_ENTRIES)]
Count = Annotated[int, Field(ge=0, le=MAX_SHIFT_NUMBER)]
Counts = Annotated[dict[Label, Count], Field(max_length=MAX_REPORT_ENTRIES)]


MAX_HELD_IN_REPORT = 50  # the till parks at most 50 sales (till/counter.MAX_HELD)


class HeldSaleOut(Strict):
    """A parked sale still open at close: its receipt number on the till, when it was parked, its total."""

    number: Annotated[int, Field(ge=1, le=MAX_SHIFT_NUMBER)]
    held_at: Timestamp
    total: Cash
    note: Annotated[str, Field(min_length=1, max_length=100)] | None = None


class HeldSales(Strict):
    """The Z report's parked sales (domain/shifts.held_summary): count and total agree with ``sales``."""

    count: Annotated[int, Field(ge=0, le=MAX_HELD_IN_REPORT)]
    total: Cash
    sales: Annotated[list[HeldSaleOut], Field(max_length=MAX_HELD_IN_REPORT)]

    @model_validator(mode="after")
    def _agrees(self) -> HeldSales:
        if self.count != len(self.sales) or self.total != sum(s.total for s in self.sales):
            raise ValueError("count and total must be those of sales")
        return self


class ShiftReport(Strict):
    """A till's Z report (domain/shifts.py ``ShiftTotals.report``), every field required and typed.

    It is validated before anything else, yet stored and hashed exactly as sent: the fields are only
    strings, integers and flat maps of them, so ``model_dump()`` gives back the very same object."""

    number: Annotated[int, Field(ge=1, le=MAX_SHIFT_NUMBER)]
    terminal_id: Annotated[str, Field(min_length=1, max_length=36)]
    opened_at: Timestamp
    closed_at: Timestamp
    opening_float: Cash
    sales_count: Count
    sales_by_method: Totals
    refunds_by_method: Totals
    cancels_by_reason: Counts
    expected_cash: SignedCash
    counted_cash: Cash
    difference: SignedCash
    held_sales: HeldSales | None = Field(
        default=None,
        description="The parked sales still open at close (hashed with the report). Reports made before"
        " tills sent it have none; a report without it is stored and hashed without it.",
    )


class ShiftClose(Strict):
    id: Annotated[str, Field(min_length=32, max_length=36)]
    number: Annotated[int, Field(ge=1, le=MAX_SHIFT_NUMBER)]
    report: ShiftReport
    report_hash: Annotated[str, Field(min_length=64, max_length=64)]
    prev_hash: Annotated[str, Field(min_length=64, max_length=64)]


@router.post(
    "/sync",
    summary="Apply a till's journal entries in one transaction (cash only)",
    description=(
        "Each entry is the same request as its single route (same path, body and Idempotency-Key), so an "
        "entry sent once through the batch and once through the single route is applied once. At most "
        f"{SYNC_MAX_ENTRIES} entries and a body of at most {SYNC_MAX_BYTES} bytes (413 beyond)."
    ),
)
def sync_batch(body: SyncBatch, request: Request, who: Actor = STAFF) -> Response:
    """Each entry is the same request as its single route (same path, body and Idempotency-Key), so an
    entry sent once through the batch and once through the single route is applied once."""
    c = container(request)
    entries: list[sync.BatchEntry] = []
    for entry in body.entries:
        try:
            data = MODELS[entry.op].model_validate(entry.body).model_dump()
            entries.append((entry.op, entry.key, data, entry.order_id, None))
        except ValidationError as exc:
            problem = DomainError(
                "validation_error",
                "The entry does not match its request shape.",
                ErrorKind.INVALID,
                [{"loc": [str(p) for p in e["loc"]], "msg": e["msg"]} for e in exc.errors()[:10]],
            )
            entries.append((entry.op, entry.key, None, entry.order_id, problem))
    answers = sync.apply_batch(c.db, c.deps, who, entries, status_for, c.gateway, queued=body.queued)
    # Each answer's body goes out as the bytes stored with its key, not decoded and encoded again.
    return Response(encode_answers(answers), media_type="application/json")


@router.post("/shifts", status_code=201, summary="Record a till's shift close (Z) report")
def close_shift(
    body: ShiftClose, request: Request, who: Actor = CASHIER, key: str | None = IDEMPOTENCY_HEADER
) -> Response:
    # exclude_unset: the report is hashed exactly as the till sent it, so an optional field the till
    # left out (an older till's report has no held_sales, a parked sale may have no note) stays out.
    data = body.model_dump(exclude_unset=True)
    return idempotent(request, who, key, data, lambda conn: shifts.record_close(conn, who, data))


@router.get("/shifts", summary="Closed shifts with their Z reports, newest first")
def list_shifts(
    request: Request,
    who: Actor = STAFF,
    terminal_id: str | None = Query(None, max_length=36),
    limit: int = Query(50, ge=1, le=200),
) -> JSONResponse:
    with container(request).db.read() as conn:
        tid = normalise_id(terminal_id) if terminal_id else None
        return ok({"data": shifts.list_shifts(conn, who.merchant(), tid, limit)})
