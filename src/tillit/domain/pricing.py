"""Order pricing. The server computes every total; a client total is only ever compared with it."""

from __future__ import annotations

from dataclasses import dataclass

from tillit.domain.errors import invalid
from tillit.domain.money import MAX_AMOUNT

MAX_LINES = 200
MAX_QUANTITY = 9999


@dataclass(frozen=True, slots=True)
class PricedLine:
    """One order line priced from the catalogue. ``discount`` is for the whole line, in minor units."""

    product_id: str
    sku: str
    name: str
    unit_price: int
    quantity: int
    discount: int = 0

    @property
    def gross(self) -> int:
        return self.unit_price * self.quantity

    @property
    def amount(self) -> int:
        return self.gross - self.discount


@dataclass(frozen=True, slots=True)
class OrderTotals:
    subtotal: int
    discount_total: int
    total: int


def price_order(lines: list[PricedLine], client_total: int | None = None) -> OrderTotals:
    """Validate lines and compute totals.

    Raises ``invalid_order`` for no/too many lines, ``invalid_quantity`` / ``invalid_discount`` for
    out-of-range values, and ``total_mismatch`` when ``client_total`` disagrees with the server.
    """
    if not lines:
        raise invalid("invalid_order", "An order needs at least one line.")
    if len(lines) > MAX_LINES:
        raise invalid("invalid_order", f"An order has at most {MAX_LINES} lines.", {"lines": len(lines)})
    for index, line in enumerate(lines):
        if not 1 <= line.quantity <= MAX_QUANTITY:
            raise invalid(
                "invalid_quantity",
                f"Line {index + 1}: quantity must be between 1 and {MAX_QUANTITY}.",
                {"line": index, "quantity": line.quantity},
            )
        if line.discount < 0 or line.discount > line.gross:
            raise invalid(
                "invalid_discount",
                f"Line {index + 1}: discount must be between 0 and the line amount {line.gross}.",
                {"line": index, "discount": line.discount, "line_amount": line.gross},
            )
    subtotal = sum(line.gross for line in lines)
    discount_total = sum(line.discount for line in lines)
    total = subtotal - discount_total
    if subtotal > MAX_AMOUNT:
        raise invalid("amount_too_large", f"An order total may not exceed {MAX_AMOUNT} minor units.")
    if client_total is not None and client_total != total:
        raise invalid(
            "total_mismatch",
            f"The order total is {total}, not {client_total}.",
            {"expected": total, "received": client_total},
        )
    return OrderTotals(subtotal=subtotal, discount_total=discount_total, total=total)
