"""Matching in DuckDB: a planted-discrepancy corpus in both provider formats finds exactly what was
planted; every class; the provider-id fallback; duplicates; the fee rule."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import duckdb
import pytest

from tests.support import recon
from tillit.services.reconciliation import formats, match, service


def _reconcile(corpus: recon.Corpus, tmp_path: Path, rate: int | None = recon.RATE_PPM) -> list[dict]:
    path = tmp_path / ("bill.zip" if corpus.provider == "alipay" else "bill.csv")
    path.write_bytes(corpus.bill_bytes())
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
            con, bill.table, match.Window(start, end), match.FeeRule(rate, bill.fee_unit), lines=bill.rows
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
            f"({n}, 'payment', '{k}', '{t}', NULL, NULL, 100, NULL, NULL, {at}, 'SUCCESS')"
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
