"""``tillit check``: prove the books are consistent. Each check is one SQL aggregate over all rows.

Checks:
- ``order_ledger``: for every order, paid - refunded equals minus the balance of ``order:<id>``;
- ``order_payments``: paid_amount equals the sum of its captured (or since refunded) payments;
- ``refunds_within_captures``: no payment refunded beyond its amount, and its refunded_amount equals
  the sum of its succeeded refunds;
- ``ledger_balanced``: every ledger transaction, and so the whole ledger, sums to zero;
- ``paid_orders_settled``: a paid order has paid_amount = total and no payment in flight.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, text


@dataclass
class CheckResult:
    name: str
    description: str
    examined: int
    violations: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations


MAX_REPORTED = 50

CHECKS: list[tuple[str, str, str, str]] = [
    (
        "order_ledger",
        "order paid - refunded = ledger balance",
        "SELECT COUNT(*) FROM orders",
        """
        SELECT o.merchant_id, o.id AS order_id, o.paid_amount - o.refunded_amount AS expected,
               COALESCE(-SUM(l.amount), 0) AS ledger
        FROM orders o LEFT JOIN ledger_postings l ON l.merchant_id = o.merchant_id AND l.order_id = o.id
             AND l.account = 'order:' || o.id
        GROUP BY o.merchant_id, o.id, o.paid_amount, o.refunded_amount
        HAVING o.paid_amount - o.refunded_amount <> COALESCE(-SUM(l.amount), 0)
        """,
    ),
    (
        "order_payments",
        "order paid_amount = sum of captured payments",
        "SELECT COUNT(*) FROM orders",
        """
        SELECT o.merchant_id, o.id AS order_id, o.paid_amount AS expected,
               COALESCE(SUM(p.amount), 0) AS payments
        FROM orders o LEFT JOIN payments p ON p.merchant_id = o.merchant_id AND p.order_id = o.id
             AND p.status IN ('captured', 'refunded')
        GROUP BY o.merchant_id, o.id, o.paid_amount
        HAVING o.paid_amount <> COALESCE(SUM(p.amount), 0)
        """,
    ),
    (
        "refunds_within_captures",
        "refunds <= captured amount, refunded_amount = succeeded refunds",
        "SELECT COUNT(*) FROM payments",
        """
        SELECT p.merchant_id, p.id AS payment_id, p.amount AS captured, p.refunded_amount AS recorded,
               COALESCE(SUM(r.amount), 0) AS refunds
        FROM payments p LEFT JOIN refunds r ON r.merchant_id = p.merchant_id AND r.payment_id = p.id
             AND r.status = 'succeeded'
        GROUP BY p.merchant_id, p.id, p.amount, p.refunded_amount
        HAVING COALESCE(SUM(r.amount), 0) > p.amount OR COALESCE(SUM(r.amount), 0) <> p.refunded_amount
        """,
    ),
    (
        "ledger_balanced",
        "every ledger transaction sums to zero",
        "SELECT COUNT(DISTINCT txn_id) FROM ledger_postings",
        """
        SELECT txn_id, SUM(amount) AS total FROM ledger_postings
        GROUP BY txn_id HAVING SUM(amount) <> 0
        """,
    ),
    (
        "paid_orders_settled",
        "paid orders are fully paid with nothing in flight",
        "SELECT COUNT(*) FROM orders WHERE status IN ('paid', 'refunded')",
        """
        SELECT o.merchant_id, o.id AS order_id, o.status, o.total, o.paid_amount,
               (SELECT COUNT(*) FROM payments p WHERE p.merchant_id = o.merchant_id AND p.order_id = o.id
                AND p.status IN ('pending', 'unknown', 'reversing')) AS in_flight
        FROM orders o
        WHERE o.status IN ('paid', 'refunded') AND (o.paid_amount <> o.total OR EXISTS (
            SELECT 1 FROM payments p WHERE p.merchant_id = o.merchant_id AND p.order_id = o.id
            AND p.status IN ('pending', 'unknown', 'reversing')))
        """,
    ),
]


def run_checks(conn: Connection) -> list[CheckResult]:
    results: list[CheckResult] = []
    for name, description, count_sql, violation_sql in CHECKS:
        examined = int(conn.execute(text(count_sql)).scalar_one())
        rows = [dict(r._mapping) for r in conn.execute(text(violation_sql + f" LIMIT {MAX_REPORTED}"))]
        results.append(CheckResult(name, description, examined, rows))
    total = conn.execute(text("SELECT COALESCE(SUM(amount), 0) FROM ledger_postings")).scalar_one()
    if total != 0:
        results[3].violations.append({"txn_id": "(whole ledger)", "total": int(total)})
    return results
