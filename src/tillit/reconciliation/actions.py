"""What each discrepancy means and what happens next: the recommended action, whether Tillit acts by
itself, and which exception a manager gets otherwise (docs/reconciliation.md)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Action:
    #: ``attach`` (engine queries an in-flight attempt and captures it), ``refund_late`` (engine
    #: queries a given-up attempt and refunds it), ``refund_after_wait`` (an unrecognised payment is
    #: refunded after the merchant's waiting rule unless a manager resolves it first), ``wait`` (checked
    #: again by the next bill), ``none`` (informational, resolved at once), ``manager`` (an exception).
    kind: str
    text: str
    exception_kind: str | None = None


ACTIONS: dict[tuple[str, str], Action] = {
    ("missing_at_provider", "not_in_bill"): Action(
        "manager",
        "短款: paid in Tillit, absent from the provider's bill. Look the trade up in the provider's portal; "
        "if the customer never paid, collect again or cancel the sale, then resolve.",
        "bill_missing_at_provider",
    ),
    ("missing_at_provider", "refund_not_in_bill"): Action(
        "manager",
        "A refund Tillit recorded as done is absent from the provider's bill: check it in the portal and "
        "refund again if the customer did not get the money, then resolve.",
        "bill_missing_at_provider",
    ),
    ("missing_locally", "unknown_payment"): Action(
        "refund_after_wait",
        "长款 (unrecognised payment): the provider took money Tillit has no sale for. Find the sale and "
        "resolve the exception to keep it; otherwise Tillit refunds it after the waiting rule.",
        "bill_unrecognised_payment",
    ),
    ("missing_locally", "unknown_payment_reversed"): Action(
        "manager",
        "A payment Tillit has no sale for, reversed at the provider in the same bill: the customer has "
        "the money back, so nothing is refunded. Find out which till took it, then resolve.",
        "bill_unrecognised_payment",
    ),
    ("missing_locally", "reversal_of_unknown_payment"): Action(
        "none",
        "The reversal of an unrecognised payment in the same bill: it nets that payment to zero.",
    ),
    ("missing_locally", "unknown_reversal"): Action(
        "manager",
        "A reversal at the provider of a payment Tillit does not know: check it in the portal, then resolve.",
        "bill_unknown_refund",
    ),
    ("status_mismatch", "not_paid_at_provider"): Action(
        "manager",
        "Paid in Tillit, but the provider's bill shows the payment not paid (closed, failed or never "
        "paid): the money is not there. Collect again or cancel the sale, then resolve.",
        "bill_status_mismatch",
    ),
    ("status_mismatch", "in_flight_unpaid"): Action(
        "attach",
        "An attempt Tillit was still resolving is not paid at the provider: Tillit queries it and settles "
        "it (the sale stays unpaid).",
    ),
    ("missing_locally", "unknown_refund"): Action(
        "manager",
        "A refund at the provider that Tillit did not make: find out who refunded it in the portal and "
        "record it (cancel or refund the sale), then resolve.",
        "bill_unknown_refund",
    ),
    ("amount_mismatch", "amount_differs"): Action(
        "manager",
        "The provider's amount differs from Tillit's: check the trade in the portal; collect or refund "
        "the difference, then resolve.",
        "bill_amount_mismatch",
    ),
    ("status_mismatch", "reversed_at_provider"): Action(
        "manager",
        "Reversed or cancelled at the provider but paid in Tillit: the customer has the money back. "
        "Collect again or cancel the sale, then resolve.",
        "bill_status_mismatch",
    ),
    ("status_mismatch", "in_flight_paid"): Action(
        "attach",
        "An attempt Tillit was still resolving is paid at the provider: Tillit queries it and attaches "
        "the payment to its order.",
    ),
    ("status_mismatch", "failed_paid"): Action(
        "refund_late",
        "Paid at the provider after Tillit had given the attempt up: Tillit queries it and refunds it "
        "automatically (late payment).",
    ),
    ("status_mismatch", "reversing_paid"): Action(
        "wait",
        "Paid at the provider while Tillit is still reversing it: the engine keeps reversing (and opens "
        "an exception if it cannot); the next bill shows the reversal.",
    ),
    ("status_mismatch", "reversed_paid"): Action(
        "manager",
        "Tillit recorded the attempt as reversed, the provider shows it paid and not reversed: check the "
        "trade in the portal and refund it if the customer was charged, then resolve.",
        "bill_status_mismatch",
    ),
    ("status_mismatch", "refund_failed_here"): Action(
        "manager",
        "The provider shows a refund Tillit recorded as failed: record the refund (the customer has the "
        "money back), then resolve.",
        "bill_status_mismatch",
    ),
    ("fee_mismatch", "fee_differs"): Action(
        "manager",
        "The provider charged another fee than the contracted rate (how 跳码 shows): check the rate and "
        "MCC with the acquirer, then resolve.",
        "bill_fee_mismatch",
    ),
    ("duplicate", "repeated_out_trade_no"): Action(
        "manager",
        "The bill lists this payment twice: query it at the provider; if the customer was charged twice, "
        "refund the extra, then resolve.",
        "bill_duplicate",
    ),
    ("duplicate", "repeated_out_refund_no"): Action(
        "manager",
        "The bill lists this refund twice: check at the provider that it was paid out once, then resolve.",
        "bill_duplicate",
    ),
    ("timing", "expected_next_bill"): Action(
        "wait",
        "Made just before midnight: expected in the next day's bill, where it is checked automatically.",
    ),
    ("timing", "billed_other_day"): Action(
        "none",
        "Billed on another day than Tillit recorded it (around midnight): nothing to do.",
    ),
}

#: Actions that settle the discrepancy when the run records it; attach/refund_late resolve when the
#: engine tells their outcome (outcomes.py), the rest when a manager or a later bill does.
SETTLED_AT_ONCE = {"none"}


def action_for(cls: str, reason: str) -> Action:
    found = ACTIONS.get((cls, reason))
    if found is None:  # every (class, reason) the matcher produces is listed; keep a safe default
        return Action(
            "manager", "Check this difference in the provider's portal, then resolve.", "bill_amount_mismatch"
        )
    return found
