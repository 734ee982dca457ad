"""Exceptions ("needs attention"): what the engine cannot settle itself, each with a recommended
action. Resolving one is an audited manager action (who, when, what was done)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, insert, select, update

from tillit.adapters.db.schema import exceptions
from tillit.domain.errors import conflict, not_found
from tillit.exceptions.views import ExceptionView
from tillit.kernel.context import Actor, Deps, iso

ResolvedHandler = Callable[[Connection, Deps, str, str, str], None]
"""Told, in the resolving transaction, that an exception was resolved: (conn, deps, exception id, who,
resolution). Registered by higher areas at the composition root (reconciliation closes its
discrepancies), so this area never imports them."""

_RESOLVED_HANDLERS: dict[str, ResolvedHandler] = {}


def on_resolved(kind_prefix: str, handler: ResolvedHandler) -> None:
    """Register ``handler`` for exceptions whose kind starts with ``kind_prefix`` (one per prefix)."""
    _RESOLVED_HANDLERS[kind_prefix] = handler


KINDS = {
    "reverse_failing": "Reverse/cancel keeps failing (单边账 risk): check the trade in the provider's "
    "merchant portal; refund it there if the customer was charged, then resolve.",
    "late_payment": "A payment the provider took after Tillit gave up on it, with no open order to attach it "
    "to: Tillit refunds it automatically; resolve once the refund shows.",
    "late_payment_refund_failed": "Refund of a late payment failed: refund it in the provider's portal or "
    "contact the customer, then resolve.",
    "refund_abnormal": "The provider reports the refund as abnormal (card frozen/closed): use the provider's "
    "abnormal-refund process, then resolve.",
    "refund_failed": "The provider refused the refund: check the reason, refund another way, then resolve.",
    "unknown_notification": "The provider notified a payment Tillit does not know (未识别支付): "
    "find the sale or refund the payment at the provider.",
    "notification_mismatch": "A notification's amount, app or seller disagrees with the payment: check for "
    "tampering or misconfiguration before trusting it.",
    "refunded_at_provider": "The provider shows this payment refunded though Tillit did not refund it: "
    "check who refunded it and record the refund.",
    # Found by reconciliation against the providers' daily bills (docs/reconciliation.md); each names
    # its discrepancy in details.discrepancy_id, and resolving one resolves the other.
    "bill_missing_at_provider": "短款: paid in Tillit but absent from the provider's bill: look the trade up "
    "in the provider's portal; collect again or cancel the sale if it was never paid, then resolve.",
    "bill_unrecognised_payment": "长款: the provider's bill has a payment Tillit has no sale for: find the "
    "sale and resolve to keep the money, else Tillit refunds it after the merchant's waiting rule.",
    "bill_unknown_refund": "The provider's bill has a refund Tillit did not make: find out who refunded it "
    "and record it, then resolve.",
    "bill_amount_mismatch": "The provider's bill has another amount than Tillit: collect or refund the "
    "difference, then resolve.",
    "bill_status_mismatch": "The provider's bill shows another outcome than Tillit (e.g. reversed there, "
    "paid here): check the trade in the portal, put it right, then resolve.",
    "bill_fee_mismatch": "The provider charged another fee than the contracted rate (跳码?): check the rate "
    "and MCC with the acquirer, then resolve.",
    "bill_duplicate": "The provider's bill lists the same payment or refund twice: check for a double "
    "charge and refund the extra, then resolve.",
    "bill_fetch_failing": "Tillit cannot fetch the provider's daily bill: check the provider account "
    "settings and the provider's status; import the bill by hand if needed.",
    # settle12: the daily settlement check (settlement/daily.py, docs/settlement.md)
    "settlement_short": "Less money arrived for this trade day than expected (captures - refunds - fees): "
    "compare the listed trades with the provider's fund-flow statement and claim the difference.",
    "settlement_missing": "Nothing arrived for this trade day past its settlement cycle and grace: check "
    "for a merchant restriction, frozen funds or a failed withdrawal, then open a case with the provider.",
    "settlement_duplicate": "A trade was credited twice by the provider's statement: keep the extra aside "
    "and ask the provider to reverse one line.",
    # fulfilment (docs/fulfilment.md): details.fulfilment_id names the order's fulfilment
    "fulfilment_sla_missed": "A pickup/delivery order was not ready or shipped within the merchant's SLA: "
    "ship it or mark it ready, or cancel it (refunded in full), then resolve.",
    # merchants area (issue 12): qualification, blacklist and provider onboarding
    "merchant_document_expired": "A qualification document expired and provider payments are suspended: "
    "collect the renewed document, review it, then resume the merchant.",
    "merchant_review_due": "The merchant's periodic re-review is due (or a document expires within 30 "
    "days): check its documents, complete the re-review, then resolve.",
    "merchant_blacklisted": "A new blacklist entry matches this active merchant, which was suspended: "
    "check the match; terminate the merchant, or resume it with a reason if the match is wrong.",
    "onboarding_rejected": "The provider rejected the merchant's onboarding (进件): correct the fields "
    "named in the details and submit again with the same business code.",
}


def open_exception(
    conn: Connection,
    deps: Deps,
    *,
    kind: str,
    merchant_id: str | None,
    order_id: str | None = None,
    payment_id: str | None = None,
    refund_id: str | None = None,
    provider: str | None = None,
    provider_ref: str | None = None,
    amount: int | None = None,
    details: dict[str, Any] | None = None,
    dedupe_by_order: bool = False,
) -> str:
    """Open an exception unless an open one of this kind already exists for the same object.

    ``dedupe_by_order``: the object is the order (no payment, refund or provider reference involved)."""
    assert kind in KINDS
    cond = [exceptions.c.kind == kind, exceptions.c.status == "open"]
    # Object ids are unique per merchant only: the same id of another merchant is another object.
    cond.append(
        exceptions.c.merchant_id == merchant_id if merchant_id else exceptions.c.merchant_id.is_(None)
    )
    for col, value in ((exceptions.c.payment_id, payment_id), (exceptions.c.refund_id, refund_id)):
        cond.append(col == value if value else col.is_(None))
    if payment_id is None and refund_id is None:
        cond.append(exceptions.c.provider_ref == provider_ref)
    if dedupe_by_order:
        cond.append(exceptions.c.order_id == order_id)
    existing = conn.execute(select(exceptions.c.id).where(*cond)).first()
    if existing is not None:
        return str(existing.id)
    exc_id = deps.ids.new()
    conn.execute(
        insert(exceptions).values(
            id=exc_id,
            merchant_id=merchant_id,
            kind=kind,
            status="open",
            order_id=order_id,
            payment_id=payment_id,
            refund_id=refund_id,
            provider=provider,
            provider_ref=provider_ref,
            amount=amount,
            recommended_action=KINDS[kind],
            details=json.dumps(details or {}, ensure_ascii=False, default=str),
            created_at=deps.clock.now(),
        )
    )
    return exc_id


def view(row: Any) -> ExceptionView:
    return {
        "id": row.id,
        "kind": row.kind,
        "status": row.status,
        "order_id": row.order_id,
        "payment_id": row.payment_id,
        "refund_id": row.refund_id,
        "provider": row.provider,
        "provider_ref": row.provider_ref,
        "amount": row.amount,
        "recommended_action": row.recommended_action,
        "details": json.loads(row.details or "{}"),
        "created_at": iso(row.created_at),
        "resolved_at": iso(row.resolved_at),
        "resolved_by": row.resolved_by,
        "resolution": row.resolution,
    }


def list_exceptions(
    conn: Connection, merchant_id: str | None, status: str | None, limit: int
) -> list[ExceptionView]:
    query = select(exceptions).order_by(exceptions.c.id.desc()).limit(limit)
    if merchant_id is not None:
        query = query.where(exceptions.c.merchant_id == merchant_id)
    if status:
        query = query.where(exceptions.c.status == status)
    return [view(r) for r in conn.execute(query)]


def get_exception(conn: Connection, merchant_id: str | None, exception_id: str) -> Any:
    row = conn.execute(select(exceptions).where(exceptions.c.id == exception_id)).first()
    if row is None or (merchant_id is not None and row.merchant_id != merchant_id):
        raise not_found("exception", exception_id)
    return row


def resolve_settled(
    conn: Connection, deps: Deps, *, merchant_id: str, payment_id: str, kind: str, resolution: str
) -> int:
    """Close, as the engine, the open exceptions of ``kind`` about one payment whose cause has gone (a
    reverse that kept failing and then finished); returns how many were closed."""
    rows = conn.execute(
        select(exceptions.c.id).where(
            exceptions.c.merchant_id == merchant_id,
            exceptions.c.payment_id == payment_id,
            exceptions.c.kind == kind,
            exceptions.c.status == "open",
        )
    ).all()
    for row in rows:
        resolve(conn, deps, None, str(row.id), resolution, merchant_id)
    return len(rows)


def resolve(
    conn: Connection,
    deps: Deps,
    actor: Actor | None,
    exception_id: str,
    resolution: str,
    merchant_id: str | None,
) -> ExceptionView:
    """Close an exception, recording who did it and why. ``actor`` None means the engine itself."""
    row = get_exception(conn, merchant_id, exception_id)
    if row.status != "open":
        raise conflict(
            "exception_resolved", "This exception is already resolved.", {"resolved_by": row.resolved_by}
        )
    conn.execute(
        update(exceptions)
        .where(exceptions.c.id == exception_id, exceptions.c.status == "open")
        .values(
            status="resolved",
            resolved_at=deps.clock.now(),
            resolved_by=actor.label if actor else "system",
            resolution=resolution[:500],
        )
    )
    for prefix, handler in _RESOLVED_HANDLERS.items():
        if row.kind.startswith(prefix):
            handler(conn, deps, exception_id, actor.label if actor else "system", resolution)
    return view(get_exception(conn, merchant_id, exception_id))
