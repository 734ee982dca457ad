"""Shift close (Z) reports: computed from the shift's sales, numbered, and hash-chained.

Each report's hash covers the previous report's hash and the report's canonical JSON, so a missing,
reordered or edited report breaks the chain and shows. The parked (held) sales still open at close are
part of the report (``held_sales``: count, total and each one's number, time, total and note), so the
chain covers them too; reports made before that field existed have none and still verify.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, NotRequired, TypedDict

GENESIS = "0" * 64


def canonical(report: dict[str, Any]) -> str:
    return json.dumps(report, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def chain_hash(prev_hash: str, report: dict[str, Any]) -> str:
    return hashlib.sha256((prev_hash + "\n" + canonical(report)).encode()).hexdigest()


class HeldSale(TypedDict):
    """A parked sale still open at close, as the Z report lists it."""

    number: int
    held_at: str
    total: int
    note: NotRequired[str]


class HeldSales(TypedDict):
    count: int
    total: int
    sales: list[HeldSale]


def held_summary(held: list[HeldSale]) -> HeldSales:
    """The Z report's ``held_sales``: oldest first, as given."""
    return {"count": len(held), "total": sum(h["total"] for h in held), "sales": list(held)}


@dataclass
class ShiftTotals:
    """What a shift took, by method, and what left it; cash figures drive the drawer count."""

    opening_float: int
    sales_count: int = 0
    sales_by_method: dict[str, int] = field(default_factory=dict)
    refunds_by_method: dict[str, int] = field(default_factory=dict)
    cancels_by_reason: dict[str, int] = field(default_factory=dict)
    held: list[HeldSale] = field(default_factory=list)

    def add_tender(self, method: str, amount: int) -> None:
        self.sales_by_method[method] = self.sales_by_method.get(method, 0) + amount

    def add_refund(self, method: str, amount: int) -> None:
        self.refunds_by_method[method] = self.refunds_by_method.get(method, 0) + amount

    def add_cancel(self, reason: str) -> None:
        self.cancels_by_reason[reason] = self.cancels_by_reason.get(reason, 0) + 1

    @property
    def expected_cash(self) -> int:
        return (
            self.opening_float + self.sales_by_method.get("cash", 0) - self.refunds_by_method.get("cash", 0)
        )

    def report(
        self, *, number: int, terminal_id: str, opened_at: str, closed_at: str, counted_cash: int
    ) -> dict[str, Any]:
        return {
            "number": number,
            "terminal_id": terminal_id,
            "opened_at": opened_at,
            "closed_at": closed_at,
            "opening_float": self.opening_float,
            "sales_count": self.sales_count,
            "sales_by_method": dict(sorted(self.sales_by_method.items())),
            "refunds_by_method": dict(sorted(self.refunds_by_method.items())),
            "cancels_by_reason": dict(sorted(self.cancels_by_reason.items())),
            "expected_cash": self.expected_cash,
            "counted_cash": counted_cash,
            "difference": counted_cash - self.expected_cash,
            "held_sales": held_summary(self.held),
        }
