"""The cashier station's pure rules: PIN hashes, the discount limit, 抹零, spreading, quick cash."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tillit.domain.tillrules import (
    hash_pin,
    hash_pin_pbkdf2,
    over_limit,
    pin_lock_until,
    quick_cash,
    rounding_off,
    spread,
    valid_pin,
    verify_pin,
)


def test_legacy_pbkdf2_pin_hash_still_verifies() -> None:
    legacy = hash_pin_pbkdf2("4321", "salt", iterations=1000)
    assert verify_pin("4321", legacy) and not verify_pin("1234", legacy)


def test_pin_lock_after_five_wrong_then_doubling() -> None:
    assert pin_lock_until(4, 1000.0) is None
    assert pin_lock_until(5, 1000.0) == 1000.0 + 300
    assert pin_lock_until(9, 1000.0) == 1000.0 + 300
    assert pin_lock_until(10, 1000.0) == 1000.0 + 600
    assert pin_lock_until(10**6, 1000.0) == 1000.0 + 24 * 3600


def test_scrypt_parameters_out_of_bounds_do_not_verify() -> None:
    assert not verify_pin("4321", "scrypt$1048576$8$1$salt$" + "0" * 64)  # 1 GiB: refused, not computed
    assert not verify_pin("4321", "scrypt$1000$8$1$salt$" + "0" * 64)  # not a power of two


def test_pin_hash_verifies_only_the_pin() -> None:
    encoded = hash_pin("4321", "salt")
    assert encoded.startswith("scrypt$32768$8$1$salt$") and "4321" not in encoded
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
