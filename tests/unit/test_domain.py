"""Pure domain rules: money, pricing, state machines, ids, ledger."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tillit.domain.clock import ManualClock
from tillit.domain.errors import DomainError
from tillit.domain.ids import IdGenerator, normalise_id
from tillit.domain.ledger import capture_postings, is_balanced, refund_postings
from tillit.domain.money import MAX_AMOUNT, Money, check_amount, check_currency
from tillit.domain.pricing import PricedLine, price_order
from tillit.domain.states import MACHINES, ORDER, PAYMENT, StateMachine


def test_money_refuses_floats_and_mixed_currencies() -> None:
    assert (Money(150) + Money(50)).amount == 200
    with pytest.raises(DomainError) as err:
        Money(100, "CNY") + Money(100, "USD")
    assert err.value.code == "currency_mismatch"
    with pytest.raises(DomainError):
        Money(1.5)  # type: ignore[arg-type]
    with pytest.raises(DomainError) as err:
        check_currency("XYZ")
    assert err.value.code == "unknown_currency"
    assert Money(12345, "CNY").format() == "CNY 123.45" and Money(500, "JPY").format() == "JPY 500"


@pytest.mark.parametrize("bad", [0, -1, MAX_AMOUNT + 1, True, 2.0, "5"])
def test_check_amount_rejects(bad: object) -> None:
    with pytest.raises(DomainError):
        check_amount(bad)  # type: ignore[arg-type]


def line(price: int, qty: int, discount: int = 0) -> PricedLine:
    return PricedLine("p", "sku", "name", price, qty, discount)


def test_pricing_totals_and_mismatch() -> None:
    totals = price_order([line(2800, 2), line(1500, 1, 500)])
    assert (totals.subtotal, totals.discount_total, totals.total) == (7100, 500, 6600)
    with pytest.raises(DomainError) as err:
        price_order([line(100, 1)], client_total=99)
    assert err.value.code == "total_mismatch"
    for bad, code in (
        ([], "invalid_order"),
        ([line(100, 0)], "invalid_quantity"),
        ([line(100, 1, 101)], "invalid_discount"),
    ):
        with pytest.raises(DomainError) as err:
            price_order(bad)
        assert err.value.code == code


@given(
    st.lists(
        st.tuples(st.integers(0, 10**6), st.integers(1, 9999), st.integers(0, 100)), min_size=1, max_size=50
    )
)
def test_pricing_total_is_sum_of_lines(raw: list[tuple[int, int, int]]) -> None:
    lines = [line(p, q, min(d, p * q)) for p, q, d in raw]
    totals = price_order(lines)
    assert totals.total == sum(ln.amount for ln in lines) >= 0


def test_state_machines_are_dags_with_absorbing_terminals() -> None:
    for machine in MACHINES.values():
        for status in machine.terminal:
            assert not machine.moves.get(status)
    assert ORDER.can("open", "paid") and not ORDER.can("paid", "open")
    assert not PAYMENT.can("unknown", "pending") and not PAYMENT.can("failed", "captured")
    with pytest.raises(DomainError) as err:
        PAYMENT.check("captured", "failed")
    assert err.value.code == "payment_invalid_transition"
    with pytest.raises(AssertionError):
        StateMachine("loop", frozenset({"a"}), {"a": frozenset({"b"}), "b": frozenset({"a"})}, frozenset())


@given(st.lists(st.sampled_from(sorted(PAYMENT.statuses)), max_size=30))
def test_no_walk_through_payment_machine_revisits_a_status(walk: list[str]) -> None:
    seen: list[str] = ["pending"]
    for target in walk:
        if PAYMENT.can(seen[-1], target):
            assert target not in seen
            seen.append(target)


def test_ids_are_uuidv7_ordered_and_seeded() -> None:
    clock = ManualClock(datetime(2026, 11, 20, tzinfo=UTC))
    a = IdGenerator(clock, random.Random(1))
    b = IdGenerator(clock, random.Random(1))
    first = [a.new() for _ in range(100)]
    assert first == [b.new() for _ in range(100)]
    assert first == sorted(first) and len(set(first)) == 100
    assert all(len(i) == 32 and i[12] == "7" for i in first)
    clock.advance(1)
    assert a.new() > first[-1]
    assert normalise_id("0190A6E0-0000-7000-8000-000000000000") == "0190a6e0000070008000000000000000"
    with pytest.raises(DomainError):
        normalise_id("nope")


def test_ledger_postings_balance() -> None:
    assert is_balanced(capture_postings("o", "cash", 500)) and is_balanced(refund_postings("o", "cash", 200))
    assert capture_postings("o", "cash", 500)[1].account == "order:o"
