"""Money as integer minor units plus an ISO 4217 currency. Floats never appear."""

from __future__ import annotations

from dataclasses import dataclass

from tillit.domain.errors import invalid

# ISO 4217 codes Tillit accepts, with their number of minor-unit digits.
CURRENCY_EXPONENTS: dict[str, int] = {
    "CNY": 2,
    "HKD": 2,
    "MOP": 2,
    "TWD": 2,
    "USD": 2,
    "EUR": 2,
    "GBP": 2,
    "SGD": 2,
    "AUD": 2,
    "CAD": 2,
    "CHF": 2,
    "NZD": 2,
    "SEK": 2,
    "NOK": 2,
    "DKK": 2,
    "THB": 2,
    "MYR": 2,
    "JPY": 0,
    "KRW": 0,
    "VND": 0,
}
DEFAULT_CURRENCY = "CNY"

# Upper bound for any single amount: 10^12 minor units (10 billion yuan) keeps sums far inside int64.
MAX_AMOUNT = 10**12


def check_currency(code: str) -> str:
    """Return ``code`` if it is a supported ISO 4217 currency, else raise ``unknown_currency``."""
    if code not in CURRENCY_EXPONENTS:
        raise invalid(
            "unknown_currency",
            f"Unknown or unsupported currency {code!r}; use an ISO 4217 code such as CNY.",
            {"currency": code, "supported": sorted(CURRENCY_EXPONENTS)},
        )
    return code


def check_amount(amount: int, field: str = "amount", *, allow_zero: bool = False) -> int:
    """Validate an amount in minor units: an int (not bool), positive (or zero), at most MAX_AMOUNT."""
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise invalid(
            "invalid_amount", f"{field} must be an integer number of minor units.", {"field": field}
        )
    low = 0 if allow_zero else 1
    if amount < low or amount > MAX_AMOUNT:
        raise invalid(
            "invalid_amount",
            f"{field} must be between {low} and {MAX_AMOUNT} minor units.",
            {"field": field, "value": amount},
        )
    return amount


@dataclass(frozen=True, slots=True)
class Money:
    """An amount of one currency. Arithmetic across currencies raises ``currency_mismatch``."""

    amount: int
    currency: str = DEFAULT_CURRENCY

    def __post_init__(self) -> None:
        if isinstance(self.amount, bool) or not isinstance(self.amount, int):
            raise invalid("invalid_amount", "Money amounts are integers of minor units.")
        check_currency(self.currency)

    def _same(self, other: Money) -> None:
        if other.currency != self.currency:
            raise invalid(
                "currency_mismatch",
                f"Cannot combine {self.currency} with {other.currency}.",
                {"currencies": [self.currency, other.currency]},
            )

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount - other.amount, self.currency)

    def __mul__(self, factor: int) -> Money:
        if isinstance(factor, bool) or not isinstance(factor, int):
            raise invalid("invalid_quantity", "Money can only be multiplied by an integer.")
        return Money(self.amount * factor, self.currency)

    def __lt__(self, other: Money) -> bool:
        self._same(other)
        return self.amount < other.amount

    def __le__(self, other: Money) -> bool:
        self._same(other)
        return self.amount <= other.amount

    @classmethod
    def zero(cls, currency: str = DEFAULT_CURRENCY) -> Money:
        return cls(0, currency)

    def format(self) -> str:
        """Human form, e.g. ``CNY 12.30``; for display only, never parsed back."""
        exp = CURRENCY_EXPONENTS[self.currency]
        sign = "-" if self.amount < 0 else ""
        units, minor = divmod(abs(self.amount), 10**exp) if exp else (abs(self.amount), 0)
        return f"{self.currency} {sign}{units}" + (f".{minor:0{exp}d}" if exp else "")
