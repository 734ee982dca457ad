"""The cashier station's pure rules: PIN hashes, the discount limit, 抹零, spreading, quick cash."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tillit.domain.tillrules import (
    hash_pin,
    over_limit,
    quick_cash,
    rounding_off,
    spread,
    valid_pin,
    verify_pin,
)


def test_pin_hash_verifies_only_the_pin() -> None:
    encoded = hash_pin("4321", "salt", iterations=1000)
    assert "4321" not in encoded
    assert verify_pin("4321", encoded)
    assert not verify_pin("1234", encoded)
    assert not verify_pin("4321", "garbage")
    assert valid_pin("0000") and not valid_pin("12") and not valid_pin("12a4")


def test_limit_and_rounding() -> None:
    assert not over_limit(1000, 200, 20) and over_limit(1000, 201, 20)
    assert over_limit(1000, 1, 0)
    assert rounding_off(4387, "jiao") == 7 and rounding_off(4387, "yuan") == 87
    assert rounding_off(4387, "none") == 0


def test_quick_cash() -> None:
    assert quick_cash(3750) == [3750, 5000, 10000]
    assert quick_cash(800) == [800, 1000, 2000, 5000]
    assert quick_cash(12345) == [12345, 20000]
    assert quick_cash(0) == []


@given(st.lists(st.integers(0, 10**6), min_size=1, max_size=20), st.data())
def test_spread_is_exact_and_capped(capacities: list[int], data: st.DataObject) -> None:
    amount = data.draw(st.integers(0, sum(capacities)))
    shares = spread(amount, capacities)
    assert sum(shares) == amount
    assert all(0 <= s <= c for s, c in zip(shares, capacities, strict=True))
