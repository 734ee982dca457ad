"""What reconciliation hands the entry points (API, CLI, the HTML report): runs, bills, discrepancies and the
per-day history, named for what they are. TypedDicts, so at run time they are the plain dicts the API has
always serialised, keys in the order the producing functions in service.py write them; JSON is unchanged."""

from __future__ import annotations

from datetime import date
from typing import Any, NotRequired, TypedDict


class RunView(TypedDict):
    """One matching run. ``id`` and ``merchant_id`` are None in a dry run (nothing was stored)."""

    id: str | None
    merchant_id: str | None
    provider: str
    bill_id: str | None
    bill_date: str
    bill_type: str
    source: str
    lines: int
    matched: int
    discrepancies: int
    open: int
    counts: dict[str, int]
    amounts: dict[str, int]
    started_at: str
    finished_at: str
    created_by: str


class BillView(TypedDict):
    """A stored provider bill; ``run`` (its matching run, None if none) only in the answer to GET one bill.
    ``totals`` are the bill's own summary figures as parsed (by provider)."""

    id: str
    merchant_id: str
    provider: str
    format: str
    bill_type: str
    bill_date: str
    account: str | None
    filename: str
    sha256: str
    size_bytes: int
    rows: int
    totals: dict[str, Any]
    source: str
    imported_by: str
    imported_at: str
    run: NotRequired[RunView | None]


# "class" is a keyword, hence the functional form. Keys in service.DISC_FIELDS order.
DiscrepancyView = TypedDict(
    "DiscrepancyView",
    {
        "id": str | None,
        "run_id": str | None,
        "class": str,
        "reason": str,
        "status": str,
        "line": int | None,
        "kind": str,
        "out_trade_no": str | None,
        "out_refund_no": str | None,
        "trade_no": str | None,
        "refund_no": str | None,
        "payment_id": str | None,
        "refund_id": str | None,
        "order_id": str | None,
        "local_amount": int | None,
        "provider_amount": int | None,
        "local_status": str | None,
        "provider_status": str | None,
        "provider_fee": int | None,
        "expected_fee": int | None,
        "local_at": str | None,
        "provider_at": str | None,
        "matched_by": str | None,
        "action": str,
        "recommended_action": str,
        "exception_id": str | None,
        "bill_date": str,
        "provider": str,
        "created_at": str,
        "resolved_at": str | None,
        "resolved_by": str | None,
        "resolution": str | None,
    },
)
"""One difference between the bill and Tillit's records. ``id``/``run_id`` are None in a dry run."""

HistoryPoint = TypedDict("HistoryPoint", {"bill_date": date, "class": str, "count": int, "amount": int})
"""Discrepancies of one class found on one bill day, and their amount (for the report's charts)."""
