"""Provider notifications (Alipay async notify): verified, checked, deduplicated, then acted on.

A notification is a hint, never the truth: after the checks it only makes the engine query the
provider now (notifications arrive duplicated, late and out of order). Rules (providers.md §2.6):
verify the signature, check app_id, seller and amount, deduplicate under a row lock (the unique
``(provider, notify_id)`` key), answer ``success`` only after a durable commit. A notification for an
attempt Tillit does not know becomes an exception, never a silent 200.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, insert, select
from sqlalchemy.exc import IntegrityError

from tillit.adapters.db.schema import notifications, payments
from tillit.exceptions import cases as exc_svc
from tillit.kernel.context import Deps
from tillit.payments import engine

PAID_STATES = {"TRADE_SUCCESS", "TRADE_FINISHED"}


def record_alipay(
    conn: Connection, deps: Deps, merchant_id: str, account: dict[str, Any], note: Any, form: dict[str, str]
) -> str:
    """Handle one verified Alipay notification inside the caller's transaction; returns the outcome."""
    outcome = "accepted"
    pay = conn.execute(
        select(payments).where(payments.c.id == note.out_trade_no, payments.c.merchant_id == merchant_id)
    ).first()
    seller = account.get("seller_id")
    if pay is None:
        outcome = "unknown_attempt"
    elif note.app_id != account.get("app_id") or (seller and note.seller_id and note.seller_id != seller):
        outcome = "account_mismatch"
    elif note.total_amount is not None and note.total_amount != pay.amount:
        outcome = "amount_mismatch"
    safe_form = {k: v for k, v in form.items() if k not in {"sign"}}
    try:
        with conn.begin_nested():
            conn.execute(
                insert(notifications).values(
                    provider="alipay",
                    account_ref=note.app_id,
                    notify_id=note.notify_id,
                    merchant_id=merchant_id,
                    out_trade_no=note.out_trade_no,
                    trade_status=note.trade_status,
                    amount=note.total_amount,
                    outcome=outcome,
                    payload=json.dumps(safe_form, ensure_ascii=False),
                    received_at=deps.clock.now(),
                )
            )
    except IntegrityError:
        return "duplicate"  # already recorded and acted on: acknowledge again
    if outcome == "unknown_attempt":
        exc_svc.open_exception(
            conn,
            deps,
            kind="unknown_notification",
            merchant_id=merchant_id,
            provider="alipay",
            provider_ref=note.trade_no,
            amount=note.total_amount,
            details={"out_trade_no": note.out_trade_no, "trade_status": note.trade_status},
        )
    elif outcome != "accepted":
        assert pay is not None
        exc_svc.open_exception(
            conn,
            deps,
            kind="notification_mismatch",
            merchant_id=merchant_id,
            order_id=pay.order_id,
            payment_id=pay.id,
            provider="alipay",
            provider_ref=note.trade_no,
            amount=note.total_amount,
            details={"outcome": outcome, "expected_amount": pay.amount, "trade_status": note.trade_status},
        )
    else:
        assert pay is not None
        if note.trade_status in PAID_STATES or pay.status in ("pending", "unknown"):
            engine.trigger_resolution(conn, deps, pay)
    return outcome
