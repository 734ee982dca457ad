"""Fee arithmetic, 跳码 evidence, settlement due days and outcomes (domain/fees.py, domain/settlement.py),
and the DuckDB fee expression the matcher uses agreeing with the domain function."""

from __future__ import annotations

import random
from datetime import date

import duckdb
import pytest

from tillit.domain import fees
from tillit.domain.settlement import Expected, Received, classify, due_day
from tillit.settlement import matching


def test_fee_is_rounded_half_up_per_transaction() -> None:
    # operations.md §3.2: 0.01 yuan at 0.6 % -> 0.00; 1.00 yuan at 0.6 % -> 0.01.
    assert fees.fee_fen(1, 6000) == 0
    assert fees.fee_fen(100, 6000) == 1
    assert fees.fee_fen(3999, 3800) == 15  # 15.1962 fen
    assert fees.fee_fen(250, 6000) == 2  # 1.5 fen rounds half up
    assert fees.fee_fen(1_000_000, 3500, cap=1300) == 1300  # a debit-card style cap


def test_refund_returns_the_fee_pro_rata_and_never_more_than_kept() -> None:
    fee = fees.fee_fen(3999, 3800)
    assert fees.refund_fee_return(1999, 3800, original_fee=fee) == 8  # 7.596 fen
    assert fees.refund_fee_return(3999, 3800, original_fee=fee) == fee
    # Two halves of 250 fen at 0.6 %: each 0.75 -> 1, but only 2 fen were kept in all.
    assert fees.refund_fee_return(125, 6000, original_fee=2, returned_so_far=1) == 1
    assert fees.refund_fee_return(125, 6000, original_fee=2, returned_so_far=2) == 0


def test_bill_fee_agreement_allows_the_bills_precision_or_the_fen_rounding() -> None:
    assert fees.fee_matches(15196, 3999, 3800, None)  # the bill's 5 decimals
    assert fees.fee_matches(15000, 3999, 3800, None)  # rounded to fen
    assert not fees.fee_matches(23994, 3999, 3800, None)  # 0.60 % charged
    assert fees.fee_matches(1_300_000, 1_000_000, 3500, 1300)


def test_code_jump_evidence_names_each_differing_field() -> None:
    ours = fees.Identity(rate_ppm=3800, merchant_no="102440358121234", merchant_name="一号店", mcc="5812")
    billed = fees.Identity(
        rate_ppm=2000,
        merchant_no="102440353001234",
        merchant_name=" 一号店 ",
        mcc=fees.mcc_from_unionpay_merchant_no("102440353001234"),
    )
    found = {d.field: (d.contracted, d.billed) for d in fees.code_jump_evidence(ours, billed)}
    assert found == {
        "rate_ppm": ("3800", "2000"),
        "merchant_no": ("102440358121234", "102440353001234"),
        "mcc": ("5812", "5300"),
    }
    assert fees.code_jump_evidence(ours, fees.Identity()) == []  # a bill that states nothing proves nothing
    assert fees.mcc_from_unionpay_merchant_no("10000100") is None
    assert fees.rate_text(3800) == "0.38%" and fees.rate_text(60000) == "6%"


def test_due_day_calendar_and_working_days() -> None:
    friday = date(2026, 11, 20)
    assert due_day(friday) == date(2026, 11, 21)
    assert due_day(friday, 1, working_days=True) == date(2026, 11, 23)
    assert due_day(friday, 0) == friday
    with pytest.raises(ValueError):
        due_day(friday, 31)


DAY = date(2026, 11, 20)
EXP = Expected(trade_day=DAY, due=date(2026, 11, 21), gross=10_000, refunds=1000, fees=38, fee_returns=4)


@pytest.mark.parametrize(
    ("received", "today", "status", "age"),
    [
        (Received(), date(2026, 11, 20), "pending", 0),
        (Received(8966, 3, date(2026, 11, 21)), date(2026, 11, 25), "settled", 0),
        (Received(8966, 3, date(2026, 11, 23)), date(2026, 11, 25), "late", 2),
        (Received(), date(2026, 11, 22), "late", 1),  # past the cycle, grace running
        (Received(), date(2026, 11, 24), "missing", 3),
        (Received(8000, 2, date(2026, 11, 21)), date(2026, 11, 24), "short", 3),
        (Received(9966, 3, date(2026, 11, 21)), date(2026, 11, 24), "over", 3),
        (Received(17932, 6, date(2026, 11, 21), duplicated_trades=1), date(2026, 11, 24), "duplicate", 3),
    ],
)
def test_classify(received: Received, today: date, status: str, age: int) -> None:
    assert EXP.net == 8966
    outcome = classify(EXP, received, today, grace_days=2)
    assert (outcome.status, outcome.age_days) == (status, age)
    assert outcome.difference == received.total - 8966
    assert outcome.next_action and outcome.next_action_zh


def test_matcher_fee_sql_agrees_with_the_domain() -> None:
    rng = random.Random(12)
    cases = [(rng.randint(1, 10**7), rng.choice([0, 2000, 3800, 6000, 6500, 100_000])) for _ in range(2000)]
    cases += [(1, 6000), (100, 6000), (250, 6000), (125, 6000)]
    con = duckdb.connect()
    try:
        matching.create_tables(con)
        con.executemany(
            "INSERT INTO st_pay VALUES ('m', 'wechat', ?, DATE '2026-11-20', ?, TRUE)",
            [(str(i), a) for i, (a, _r) in enumerate(cases)],
        )
        con.executemany(
            "INSERT INTO st_contract VALUES ('m', 'wechat', ?, NULL, 1, FALSE, DATE '2026-11-20', NULL)",
            [(0,)],
        )
        for rate in sorted({r for _a, r in cases}):
            con.execute("UPDATE st_contract SET rate_ppm = ?", [rate])
            con.execute(matching.PAY)
            got = dict(con.execute("SELECT id, fee FROM st_pay_fee").fetchall())
            for i, (amount, r) in enumerate(cases):
                if r == rate:
                    assert got[str(i)] == fees.fee_fen(amount, rate), (amount, rate)
    finally:
        con.close()
