"""Double-entry postings for money movements.

Every movement is a transaction of postings whose signed amounts sum to zero. The account
``order:<id>`` carries the order's paid balance with a credit sign: ``-balance(order)`` is what the
customer has paid net of refunds. ``tender:<method>`` accounts hold where the money sits (the cash
drawer, a provider's clearing account).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Posting:
    account: str
    amount: int  # signed minor units; a transaction's postings sum to zero


def order_account(order_id: str) -> str:
    return f"order:{order_id}"


def tender_account(method: str) -> str:
    return f"tender:{method}"


def capture_postings(order_id: str, method: str, amount: int) -> list[Posting]:
    """Money received for an order: debit the tender, credit the order."""
    assert amount > 0
    return [Posting(tender_account(method), amount), Posting(order_account(order_id), -amount)]


def refund_postings(order_id: str, method: str, amount: int) -> list[Posting]:
    """Money returned to the customer: the reverse of a capture."""
    assert amount > 0
    return [Posting(order_account(order_id), amount), Posting(tender_account(method), -amount)]


def is_balanced(postings: list[Posting]) -> bool:
    return sum(p.amount for p in postings) == 0


def fee_account(provider: str) -> str:
    return f"expense:fees:{provider}"


def fee_postings(provider: str, fee: int) -> list[Posting]:
    """A provider fee the bill confirms: an expense, paid out of the provider's clearing account."""
    assert fee > 0
    return [Posting(fee_account(provider), fee), Posting(tender_account(provider), -fee)]


def fee_return_postings(provider: str, fee: int) -> list[Posting]:
    """A fee the provider gives back on a refund: the reverse of a fee."""
    assert fee > 0
    return [Posting(tender_account(provider), fee), Posting(fee_account(provider), -fee)]
