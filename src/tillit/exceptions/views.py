"""What the exceptions area hands the entry points and reconciliation: a case for a person, as the API shows
it. A TypedDict, so at run time it is the plain dict the API has always serialised (keys in this order)."""

from __future__ import annotations

from typing import Any, TypedDict


class ExceptionView(TypedDict):
    """``details`` is the kind's own JSON object (free-form by kind); the ids name what the case is about
    and are None where it concerns no such object. ``resolved_*`` are None while the case is open."""

    id: str
    kind: str
    status: str
    order_id: str | None
    payment_id: str | None
    refund_id: str | None
    provider: str | None
    provider_ref: str | None
    amount: int | None
    recommended_action: str
    details: dict[str, Any]
    created_at: str
    resolved_at: str | None
    resolved_by: str | None
    resolution: str | None
