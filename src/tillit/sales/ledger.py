"""Writes ledger postings; always called inside the transaction that moves the money's state."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert

from tillit.adapters.db.schema import ledger_postings
from tillit.domain.ledger import Posting, is_balanced

_INSERT_POSTINGS = insert(ledger_postings)  # built once: every capture and refund runs it


def posting_rows(
    *,
    txn_id: str,
    merchant_id: str,
    order_id: str,
    currency: str,
    kind: str,
    postings: list[Posting],
    now: datetime,
    payment_id: str | None = None,
    refund_id: str | None = None,
) -> list[dict[str, Any]]:
    """The ledger_postings rows of one balanced transaction (``post`` writes them; the bulk sync
    gathers many before one write)."""
    assert is_balanced(postings), "ledger transaction must sum to zero"
    return [
        {
            "txn_id": txn_id,
            "merchant_id": merchant_id,
            "order_id": order_id,
            "payment_id": payment_id,
            "refund_id": refund_id,
            "account": p.account,
            "amount": p.amount,
            "currency": currency,
            "kind": kind,
            "created_at": now,
        }
        for p in postings
    ]


def post(
    conn: Connection,
    *,
    txn_id: str,
    merchant_id: str,
    order_id: str,
    currency: str,
    kind: str,
    postings: list[Posting],
    now: datetime,
    payment_id: str | None = None,
    refund_id: str | None = None,
) -> None:
    conn.execute(
        _INSERT_POSTINGS,
        posting_rows(
            txn_id=txn_id,
            merchant_id=merchant_id,
            order_id=order_id,
            currency=currency,
            kind=kind,
            postings=postings,
            now=now,
            payment_id=payment_id,
            refund_id=refund_id,
        ),
    )
