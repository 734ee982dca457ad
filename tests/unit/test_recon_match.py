"""Matching in DuckDB: a planted-discrepancy corpus in both provider formats finds exactly what was
planted; every class; the provider-id fallback; duplicates; the fee rule."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest

from tests.support import recon
from tillit.reconciliation import formats, match, service


def _reconcile(
    corpus: recon.Corpus,
    tmp_path: Path,
    rate: int | None = recon.RATE_PPM,
    alter: Callable[[bytes], bytes] | None = None,
) -> list[dict]:
    path = tmp_path / ("bill.zip" if corpus.provider == "alipay" else "bill.csv")
    data = corpus.bill_bytes()
    path.write_bytes(alter(data) if alter else data)
    con = service.connect()
    try:
        bill = formats.parse(con, path, corpus.provider)
        assert bill.bill_date == recon.DAY
        match.create_local_tables(con)
        service._append(
            con,
            "lp",
            service.PAY_COLS,
            [
                (p.id, p.provider_ref, p.amount, p.status, recon.utc_naive(p.created), "order")
                for p in corpus.local_payments
            ],
        )
        service._append(
            con,
            "lr",
            service.REF_COLS,
            [
                (r.id, r.payment_id, r.amount, r.status, recon.utc_naive(r.created), r.provider_ref)
                for r in corpus.local_refunds
            ],
        )
        start, end = formats.china_day_bounds(recon.DAY)
        result = match.classify(
            con,
            bill.table,
            match.Window(start, end),
            match.FeeRule(rate, bill.fee_unit),
            lines=bill.rows,
            bill_type=bill.bill_type,
        )
        rows = match.rows(con)
        assert result.discrepancies == len(rows)
        assert result.matched == bill.rows - len({r["line"] for r in rows if r["line"] is not None})
        return rows
    finally:
        con.close()


@pytest.mark.parametrize("provider", ["wechat", "alipay"])
def test_planted_corpus_finds_exactly_what_was_planted(provider: str, tmp_path: Path) -> None:
    corpus = recon.build(provider)
    rows = _reconcile(corpus, tmp_path)
    assert {recon.key(r) for r in rows} == corpus.planted
    assert len(rows) == len(corpus.planted)
    assert {r["class"] for r in rows} == set(match.CLASSES)


@pytest.mark.parametrize("provider", ["wechat", "alipay"])
def test_clean_day_matches_everything(provider: str, tmp_path: Path) -> None:
    corpus = recon.build(provider)
    corpus.trades = [
        t for t in corpus.trades if t.amount_fen < 5000 and t.amount_fen not in (1200, 880, 990, 7777)
    ]
    corpus.trades = [t for t in corpus.trades if t.out_trade_no not in {p for _, _, p in corpus.planted}]
    corpus.refunds = [(t, r) for t, r in corpus.refunds if t in corpus.trades and r.kind == "refund"]
    corpus.duplicated = []
    ids = {t.out_trade_no for t in corpus.trades}
    corpus.local_payments = [p for p in corpus.local_payments if p.id in ids]
    refund_ids = {r.out_refund_no for _, r in corpus.refunds}
    corpus.local_refunds = [r for r in corpus.local_refunds if r.id in refund_ids]
    assert _reconcile(corpus, tmp_path) == []


def test_fee_check_off_without_a_contracted_rate(tmp_path: Path) -> None:
    corpus = recon.build("wechat")
    rows = _reconcile(corpus, tmp_path, rate=None)
    assert not [r for r in rows if r["class"] == "fee_mismatch"]


def test_fee_mismatch_details(tmp_path: Path) -> None:
    rows = _reconcile(recon.build("wechat"), tmp_path)
    (fee,) = [r for r in rows if r["class"] == "fee_mismatch"]
    assert fee["provider_fee"] == 46662  # 77.77 yuan at 0.60% = 0.46662
    assert fee["expected_fee"] == 29553  # at the contracted 0.38%


def test_provider_id_fallback_matches_when_out_trade_no_differs(tmp_path: Path) -> None:
    corpus = recon.build("wechat", matched=3)
    first = corpus.local_payments[0]
    first.id = recon.uid()  # our id got lost, the provider's transaction id still ties them
    rows = _reconcile(corpus, tmp_path)
    assert {recon.key(r) for r in rows} == corpus.planted


def test_missing_locally_everything_on_an_empty_database(tmp_path: Path) -> None:
    corpus = recon.build("alipay", matched=5)
    corpus.local_payments, corpus.local_refunds = [], []
    rows = _reconcile(corpus, tmp_path)
    assert {r["class"] for r in rows} == {"missing_locally", "duplicate"}


def test_late_local_payment_is_timing_not_missing(tmp_path: Path) -> None:
    corpus = recon.build("wechat", matched=2)
    corpus.local_payments.append(
        recon.LocalPayment(
            recon.uid(), 100, "captured", recon.china(recon.DAY, 23, 50) + timedelta(minutes=5), None
        )
    )
    rows = _reconcile(corpus, tmp_path)
    assert len([r for r in rows if r["reason"] == "expected_next_bill"]) == 2


def test_duplicate_detection_uses_the_counts_only_when_needed() -> None:
    con = duckdb.connect()
    formats.prepare(con)
    con.execute(f"CREATE TABLE b ({formats.CANONICAL})")
    at = "TIMESTAMP '2026-11-20 02:00:00'"
    values = [(2, "A", "T1"), (3, "A", "T1"), (4, "B", "T2"), (5, "B", "T2")]
    con.execute(
        "INSERT INTO b VALUES "
        + ", ".join(
            f"({n}, 'payment', '{k}', '{t}', NULL, NULL, 100, NULL, NULL, {at}, 'SUCCESS', NULL, NULL, NULL)"
            for n, k, t in values
        )
    )
    match.create_local_tables(con)
    con.execute("INSERT INTO lp VALUES ('A', 'T1', 100, 'captured', TIMESTAMP '2026-11-20 02:00:00', 'o')")
    start, end = formats.china_day_bounds(recon.DAY)
    result = match.classify(con, "b", match.Window(start, end), match.FeeRule(None), lines=4)
    got = sorted((r["class"], r["line"]) for r in match.rows(con))
    assert got == [("duplicate", 3), ("duplicate", 5), ("missing_locally", 4)]
    assert result.matched == 1


# --- Issue #9 defects 12–15: bill states, bill types, reversed unknown payments -----------------------


def _small(provider: str = "wechat", bill_type: str = "ALL") -> recon.Corpus:
    corpus = recon.build(provider, matched=6)
    corpus.bill_type = bill_type
    # keep only the clean trades (and their clean refunds): every test plants its own difference
    keep = corpus.trades[:6]
    corpus.trades, corpus.duplicated = keep, []
    corpus.refunds = [(t, r) for t, r in corpus.refunds if t in keep and r.kind == "refund"]
    ids = {t.out_trade_no for t in keep}
    refund_ids = {r.out_refund_no for _, r in corpus.refunds}
    corpus.local_payments = [p for p in corpus.local_payments if p.id in ids]
    corpus.local_refunds = [r for r in corpus.local_refunds if r.id in refund_ids]
    corpus.planted = set()
    return corpus


def _restate(out_trade_no: str, state: str) -> Callable[[bytes], bytes]:
    """The bill with the 交易状态 of ``out_trade_no``'s payment row changed to ``state``."""

    def alter(data: bytes) -> bytes:
        lines = data.decode("utf-8").split("\r\n")
        hit = [i for i, line in enumerate(lines) if f"`{out_trade_no}," in line]
        assert len(hit) == 1
        lines[hit[0]] = lines[hit[0]].replace(",`SUCCESS,", f",`{state},", 1)
        return "\r\n".join(lines).encode("utf-8")

    return alter


@pytest.mark.parametrize("state", ["REVOKED", "PAYERROR", "CLOSED", "NOTPAY"])
@pytest.mark.parametrize("bill_type", ["ALL", "SUCCESS"])
def test_a_captured_sale_whose_bill_row_is_not_paid_is_a_status_mismatch(
    state: str, bill_type: str, tmp_path: Path
) -> None:
    corpus = _small(bill_type=bill_type)
    target = corpus.trades[2].out_trade_no
    rows = _reconcile(corpus, tmp_path, alter=_restate(target, state))
    reason = "reversed_at_provider" if state == "REVOKED" else "not_paid_at_provider"
    assert [(r["class"], r["reason"], r["out_trade_no"], r["provider_status"]) for r in rows] == [
        ("status_mismatch", reason, target, state)
    ]
    assert match.BILL_CONTENTS and service  # the service passes bill_type (see test_recon_states_api)


@pytest.mark.parametrize("local", ["failed", "reversed", None])
def test_an_unpaid_bill_row_agrees_with_an_unpaid_sale(local: str | None, tmp_path: Path) -> None:
    corpus = _small()
    target = corpus.trades[1].out_trade_no
    for p in list(corpus.local_payments):
        if p.id == target:
            if local is None:
                corpus.local_payments.remove(p)
            else:
                p.status = local
    assert _reconcile(corpus, tmp_path, alter=_restate(target, "CLOSED")) == []


def test_an_in_flight_attempt_closed_at_the_provider_is_settled_by_the_engine(tmp_path: Path) -> None:
    corpus = _small()
    target = corpus.trades[0].out_trade_no
    corpus.local_payments[0].status = "unknown"
    rows = _reconcile(corpus, tmp_path, alter=_restate(target, "CLOSED"))
    assert [(r["class"], r["reason"]) for r in rows] == [("status_mismatch", "in_flight_unpaid")]
    assert match_action(rows[0]) == "attach"


def match_action(row: dict) -> str:
    from tillit.reconciliation import actions

    return actions.action_for(row["class"], row["reason"]).kind


def _reversed_by_tillit(corpus: recon.Corpus) -> str:
    """A sale Tillit reversed: paid at the provider, then a reversal row; locally ``reversed``."""
    t = corpus.trades[3]
    corpus.refunds.append((t, recon._refund(t, 900, t.amount_fen, t.paid + timedelta(seconds=20), "reverse")))
    for p in corpus.local_payments:
        if p.id == t.out_trade_no:
            p.status = "reversed"
    return t.out_trade_no


@pytest.mark.parametrize("bill_type", ["ALL", "SUCCESS", "REFUND"])
def test_a_sale_tillit_reversed_matches_every_wechat_bill_type(bill_type: str, tmp_path: Path) -> None:
    corpus = _small(bill_type=bill_type)
    _reversed_by_tillit(corpus)
    assert _reconcile(corpus, tmp_path) == []


def test_alipay_a_sale_tillit_reversed_matches(tmp_path: Path) -> None:
    corpus = _small("alipay")
    _reversed_by_tillit(corpus)
    assert _reconcile(corpus, tmp_path) == []


@pytest.mark.parametrize("bill_type", ["SUCCESS", "REFUND"])
def test_a_clean_wechat_bill_of_one_type_matches(bill_type: str, tmp_path: Path) -> None:
    corpus = _small(bill_type=bill_type)
    assert corpus.refunds  # the REFUND bill has rows that name paid payments
    assert _reconcile(corpus, tmp_path) == []


def test_a_refund_bill_still_finds_refund_differences(tmp_path: Path) -> None:
    corpus = _small(bill_type="REFUND")
    (_, first), *_ = corpus.refunds
    for r in corpus.local_refunds:
        if r.id == first.out_refund_no:
            r.amount -= 1
    rows = _reconcile(corpus, tmp_path)
    assert [(r["class"], r["kind"], r["out_refund_no"]) for r in rows] == [
        ("amount_mismatch", "refund", first.out_refund_no)
    ]


@pytest.mark.parametrize("provider", ["wechat", "alipay"])
def test_an_unknown_payment_and_its_reversal_net_to_nothing_to_refund(provider: str, tmp_path: Path) -> None:
    corpus = _small(provider)
    t = corpus.trades[4]
    corpus.refunds.append((t, recon._refund(t, 901, t.amount_fen, t.paid + timedelta(seconds=20), "reverse")))
    corpus.local_payments = [p for p in corpus.local_payments if p.id != t.out_trade_no]
    rows = _reconcile(corpus, tmp_path)
    got = sorted((r["class"], r["reason"], r["kind"], r["provider_amount"]) for r in rows)
    assert got == sorted(
        [
            ("missing_locally", "unknown_payment_reversed", "payment", t.amount_fen),
            ("missing_locally", "reversal_of_unknown_payment", "revoke", -t.amount_fen),
        ]
    )
    assert "refund_after_wait" not in {match_action(r) for r in rows}
