"""How a bill's ``attach`` / ``refund_late`` discrepancy ends: the engine tells the outcome of the attempt
it was asked to look at, and the discrepancy resolves with it or becomes a manager exception.

The engine defines the hook (``EngineConfig.on_late_payment_outcome``) and never imports this module;
the composition root (bootstrap.py) registers :func:`late_payment_handler`. The outcome is read
structurally (:class:`AttemptOutcome`), so reconciliation does not import the engine either.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from sqlalchemy import Connection, select, update

from tillit.adapters.db.schema import recon_discrepancies
from tillit.exceptions import cases as exc_svc
from tillit.kernel.context import Deps
from tillit.reconciliation.service import settle_discrepancy

SYSTEM = "system:reconciliation"


class AttemptOutcome(Protocol):
    """The engine's ``LatePaymentOutcome``: ``result`` is captured, not_paid, refunded, refund_failed or
    refund_skipped."""

    @property
    def merchant_id(self) -> str: ...
    @property
    def payment_id(self) -> str: ...
    @property
    def result(self) -> str: ...
    @property
    def detail(self) -> str: ...


#: (action, reason) -> the one engine result that settles what the bill showed.
EXPECTED = {
    ("attach", "in_flight_paid"): "captured",
    ("attach", "in_flight_unpaid"): "not_paid",
    ("refund_late", "failed_paid"): "refunded",
}

FAILED_TEXT = (
    "Tillit asked the engine to settle this attempt, but the provider's answer disagrees with the bill "
    "(or the refund failed): check the trade in the portal, collect or refund, then resolve."
)


def on_late_payment_outcome(conn: Connection, deps: Deps, outcome: AttemptOutcome) -> None:
    """Inside the engine's transaction: resolve each open attach/refund_late discrepancy of this attempt
    whose expected result arrived; any other final result opens a ``bill_status_mismatch`` exception."""
    rows = conn.execute(
        select(recon_discrepancies).where(
            recon_discrepancies.c.merchant_id == outcome.merchant_id,
            recon_discrepancies.c.payment_id == outcome.payment_id,
            recon_discrepancies.c.status == "open",
            recon_discrepancies.c.action.in_(("attach", "refund_late")),
        )
    ).all()
    for row in rows:
        if EXPECTED.get((row.action, row.reason)) == outcome.result:
            settle_discrepancy(
                conn, deps, row.id, SYSTEM, f"the engine confirmed it: {outcome.result} ({outcome.detail})"
            )
            continue
        exc_id = exc_svc.open_exception(
            conn,
            deps,
            kind="bill_status_mismatch",
            merchant_id=row.merchant_id,
            order_id=row.order_id,
            payment_id=row.payment_id,
            provider=row.provider,
            provider_ref=row.trade_no,
            amount=row.provider_amount if row.provider_amount is not None else row.local_amount,
            details={
                "discrepancy_id": row.id,
                "class": row.disc_class,
                "reason": row.reason,
                "bill_date": row.bill_date.isoformat(),
                "line": row.line,
                "out_trade_no": row.out_trade_no,
                "action": row.action,
                "engine_result": outcome.result,
                "engine_detail": outcome.detail,
            },
        )
        conn.execute(
            update(recon_discrepancies)
            .where(recon_discrepancies.c.id == row.id)
            .values(action="manager", exception_id=exc_id, recommended_action=FAILED_TEXT)
        )


def late_payment_handler(deps: Deps) -> Callable[[Connection, AttemptOutcome], None]:
    """The handler the composition root registers on the engine, bound to the container's deps."""

    def handle(conn: Connection, outcome: AttemptOutcome) -> None:
        on_late_payment_outcome(conn, deps, outcome)

    return handle
