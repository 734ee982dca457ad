"""AlipayProvider against a real sandbox: every answer and state of providers.md §2.1-§2.6."""

from __future__ import annotations

import io
import time
import zipfile
from datetime import date, datetime

import pytest

from tests.integration.providers.conftest import (
    ALIPAY_APP_ID,
    ALIPAY_PID,
    KEYS,
    Sandbox,
    alipay_provider,
)
from tillit.adapters.providers import AlipayNotification, AlipayProvider, BillDownloadError
from tillit.domain.provider import Outcome, PayResult, RefundResult, RefundState, ReverseState, TradeState
from tillit.sandbox.clock import CHINA_TZ

BILL_DAY = date(2026, 11, 20)


def _pay(alipay: AlipayProvider, out_trade_no: str, code: str, amount: int = 1234) -> PayResult:
    return alipay.pay(
        out_trade_no=out_trade_no, auth_code=code, amount=amount, currency="CNY", description="商品"
    )


def test_pay_without_password_succeeds_and_query_shows_paid(sandbox: Sandbox, alipay: AlipayProvider) -> None:
    wallet = sandbox.wallet("alipay")
    result = _pay(alipay, "TLA1", sandbox.code(wallet), 1205)
    assert result.outcome is Outcome.SUCCESS and result.code is None and not result.user_paying
    assert result.provider_ref and result.provider_ref.startswith("20261120")
    query = alipay.query("TLA1")
    assert query.state is TradeState.PAID and query.raw_state == "TRADE_SUCCESS"
    assert query.amount == 1205 and query.provider_ref == result.provider_ref
    assert sandbox.debited(wallet) == 1205


def test_password_step_confirmed(sandbox: Sandbox, alipay: AlipayProvider) -> None:
    wallet = sandbox.wallet("alipay", always_password=True)
    result = _pay(alipay, "TLA1", sandbox.code(wallet))
    assert result.outcome is Outcome.UNKNOWN and result.user_paying and result.code == "10003"
    assert result.provider_ref  # the trade exists once pay is accepted
    waiting = alipay.query("TLA1")
    assert waiting.state is TradeState.WAITING and waiting.raw_state == "WAIT_BUYER_PAY"
    sandbox.confirm(wallet)
    paid = alipay.query("TLA1")
    assert paid.state is TradeState.PAID and paid.amount == 1234
    assert sandbox.debited(wallet) == 1234


def test_password_step_cancelled_then_cancel_closes(sandbox: Sandbox, alipay: AlipayProvider) -> None:
    wallet = sandbox.wallet("alipay", always_password=True)
    assert _pay(alipay, "TLA1", sandbox.code(wallet)).user_paying
    sandbox.cancel(wallet)
    closed = alipay.query("TLA1")
    assert closed.state is TradeState.CLOSED and closed.raw_state == "TRADE_CLOSED"
    cancel = alipay.reverse("TLA1")
    assert cancel.state is ReverseState.DONE and cancel.action == "close"
    assert sandbox.debited(wallet) == 0


def test_cancel_while_waiting_for_the_password_closes(sandbox: Sandbox, alipay: AlipayProvider) -> None:
    wallet = sandbox.wallet("alipay", always_password=True)
    assert _pay(alipay, "TLA1", sandbox.code(wallet)).user_paying
    cancel = alipay.reverse("TLA1")  # "cancel immediately after the last query"
    assert cancel.state is ReverseState.DONE and cancel.action == "close"
    assert alipay.query("TLA1").state is TradeState.CLOSED
    r = sandbox.http.post(f"/sandbox/wallets/{wallet}/confirm", json={"password": "123456"})
    assert r.status_code == 409  # nothing left to pay
    assert sandbox.debited(wallet) == 0


def test_insufficient_balance_fails(sandbox: Sandbox, alipay: AlipayProvider) -> None:
    wallet = sandbox.wallet("alipay", balance_fen=1000)
    result = _pay(alipay, "TLA1", sandbox.code(wallet), 1001)
    assert result.outcome is Outcome.FAILED and result.code == "ACQ.BUYER_BALANCE_NOT_ENOUGH"
    assert sandbox.debited(wallet) == 0


def test_expired_code_fails(sandbox: Sandbox, alipay: AlipayProvider) -> None:
    wallet = sandbox.wallet("alipay")
    code = sandbox.code(wallet)
    sandbox.advance(61)
    result = _pay(alipay, "TLA1", code)
    assert result.outcome is Outcome.FAILED and result.code == "ACQ.PAYMENT_AUTH_CODE_INVALID"
    assert alipay.query("TLA1").state is TradeState.NOT_FOUND


def test_reused_code_fails_but_the_same_request_replays(sandbox: Sandbox, alipay: AlipayProvider) -> None:
    wallet = sandbox.wallet("alipay")
    code = sandbox.code(wallet)
    first = _pay(alipay, "TLA1", code)
    assert first.outcome is Outcome.SUCCESS
    reused = _pay(alipay, "TLA2", code)
    assert reused.outcome is Outcome.FAILED and reused.code == "ACQ.PAYMENT_AUTH_CODE_INVALID"
    again = _pay(alipay, "TLA1", code)
    assert again.outcome is Outcome.SUCCESS and again.provider_ref == first.provider_ref
    assert sandbox.debited(wallet) == 1234


def test_same_out_trade_no_with_other_parameters_fails(sandbox: Sandbox, alipay: AlipayProvider) -> None:
    wallet = sandbox.wallet("alipay")
    assert _pay(alipay, "TLA1", sandbox.code(wallet), 1234).outcome is Outcome.SUCCESS
    other = _pay(alipay, "TLA1", sandbox.code(wallet), 999)
    assert other.outcome is Outcome.FAILED and other.code == "ACQ.CONTEXT_INCONSISTENT"
    original = alipay.query("TLA1")
    assert original.state is TradeState.PAID and original.amount == 1234
    assert sandbox.debited(wallet) == 1234


def test_cancel_of_a_trade_that_never_reached_alipay(sandbox: Sandbox, alipay: AlipayProvider) -> None:
    wallet = sandbox.wallet("alipay")
    cancel = alipay.reverse("TLA1")
    assert cancel.state is ReverseState.DONE and cancel.action is None
    late = _pay(alipay, "TLA1", sandbox.code(wallet))
    assert late.outcome is Outcome.FAILED and late.code == "ACQ.TRADE_HAS_CLOSE"
    assert sandbox.debited(wallet) == 0


def test_cancel_of_a_paid_trade_refunds_it(sandbox: Sandbox, alipay: AlipayProvider) -> None:
    wallet = sandbox.wallet("alipay")
    assert _pay(alipay, "TLA1", sandbox.code(wallet), 1250).outcome is Outcome.SUCCESS
    cancel = alipay.reverse("TLA1")
    assert cancel.state is ReverseState.DONE and cancel.action == "refund"
    again = alipay.reverse("TLA1")  # idempotent
    assert again.state is ReverseState.DONE and again.action == "refund"
    assert alipay.query("TLA1").state is TradeState.CLOSED
    assert sandbox.debited(wallet) == 1250 and sandbox.refunded(wallet) == 1250


def test_cancel_retry_flag_y_is_retried(sandbox: Sandbox, alipay: AlipayProvider) -> None:
    wallet = sandbox.wallet("alipay")
    assert _pay(alipay, "TLA1", sandbox.code(wallet)).outcome is Outcome.SUCCESS
    sandbox.faults({"alipay.trade.cancel": {"system_error": 1}})
    retry = alipay.reverse("TLA1")
    assert retry.state is ReverseState.RETRY and retry.code == "ACQ.SYSTEM_ERROR"
    assert sandbox.refunded(wallet) == 0
    sandbox.faults()
    assert alipay.reverse("TLA1").state is ReverseState.DONE
    assert sandbox.refunded(wallet) == 1234


def test_partial_refunds_replay_over_refund_and_refund_query(
    sandbox: Sandbox, alipay: AlipayProvider
) -> None:
    wallet = sandbox.wallet("alipay")
    assert _pay(alipay, "TLA1", sandbox.code(wallet), 10_000).outcome is Outcome.SUCCESS

    def refund(no: str, amount: int) -> RefundResult:
        return alipay.refund(
            out_trade_no="TLA1", out_refund_no=no, total_amount=10_000, refund_amount=amount, reason="退货"
        )

    assert refund("RTLA1", 3005).state is RefundState.SUCCESS  # fund_change=Y
    replay = refund("RTLA1", 3005)  # same out_request_no: fund_change=N, no second debit
    assert replay.state is RefundState.PROCESSING and replay.code == "FUND_CHANGE_N"
    assert alipay.refund_query(out_trade_no="TLA1", out_refund_no="RTLA1").state is RefundState.SUCCESS
    assert sandbox.refunded(wallet) == 3005
    changed = refund("RTLA1", 3000)  # the same number with another amount
    assert changed.state is RefundState.FAILED and changed.code == "ACQ.CONTEXT_INCONSISTENT"

    assert refund("RTLA2", 4000).state is RefundState.SUCCESS
    over = refund("RTLA3", 2996)  # 2995 left
    assert over.state is RefundState.FAILED and over.code == "ACQ.REASON_TRADE_REFUND_FEE_ERR"
    assert alipay.refund_query(out_trade_no="TLA1", out_refund_no="RTLA3").state is RefundState.NOT_FOUND
    assert sandbox.refunded(wallet) == 7005
    partly = alipay.query("TLA1")
    assert partly.state is TradeState.PAID and partly.raw_state == "TRADE_SUCCESS"  # still refundable

    assert refund("RTLA3", 2995).state is RefundState.SUCCESS
    assert alipay.query("TLA1").state is TradeState.CLOSED  # fully refunded
    assert sandbox.refunded(wallet) == 10_000


def test_refund_query_of_unknown_trade(sandbox: Sandbox, alipay: AlipayProvider) -> None:
    result = alipay.refund_query(out_trade_no="NOPE", out_refund_no="R1")
    assert result.state is RefundState.NOT_FOUND and result.code == "ACQ.TRADE_NOT_EXIST"
    refund = alipay.refund(
        out_trade_no="NOPE", out_refund_no="R1", total_amount=100, refund_amount=100, reason=None
    )
    assert refund.state is RefundState.FAILED and refund.code == "ACQ.TRADE_NOT_EXIST"


def test_system_error_is_unknown_and_nothing_happened(sandbox: Sandbox, alipay: AlipayProvider) -> None:
    wallet = sandbox.wallet("alipay")
    sandbox.faults({"alipay.trade.pay": {"system_error": 1}, "alipay.trade.query": {"system_error": 1}})
    result = _pay(alipay, "TLA1", sandbox.code(wallet))
    assert result.outcome is Outcome.UNKNOWN and result.code == "ACQ.SYSTEM_ERROR"  # code 20000
    assert alipay.query("TLA1").state is TradeState.ERROR
    sandbox.faults({"alipay.trade.refund": {"system_error": 1}})
    assert alipay.query("TLA1").state is TradeState.NOT_FOUND
    refund = alipay.refund(
        out_trade_no="TLA1", out_refund_no="R1", total_amount=1234, refund_amount=1, reason=None
    )
    assert refund.state is RefundState.UNKNOWN
    assert sandbox.debited(wallet) == 0


def test_committed_but_answer_lost_is_unknown_and_query_shows_paid(
    sandbox: Sandbox, alipay: AlipayProvider
) -> None:
    wallet = sandbox.wallet("alipay")
    sandbox.faults({"alipay.trade.pay": {"answer_lost": 1}})
    result = _pay(alipay, "TLA1", sandbox.code(wallet))
    assert result.outcome is Outcome.UNKNOWN and result.code == "HTTP_502"
    query = alipay.query("TLA1")
    assert query.state is TradeState.PAID and query.amount == 1234
    assert sandbox.debited(wallet) == 1234


def test_bad_response_signature_is_never_believed(sandbox: Sandbox, alipay: AlipayProvider) -> None:
    wallet = sandbox.wallet("alipay")
    sandbox.faults({"*": {"bad_signature": 1}})
    paid = _pay(alipay, "TLA1", sandbox.code(wallet))
    assert paid.outcome is Outcome.UNKNOWN and paid.code == "BAD_SIGNATURE"
    declined = _pay(alipay, "TLA2", "289999999999999999")
    assert declined.outcome is Outcome.UNKNOWN and declined.code == "BAD_SIGNATURE"
    assert alipay.query("TLA1").state is TradeState.ERROR
    refund = alipay.refund(
        out_trade_no="TLA1", out_refund_no="R1", total_amount=1234, refund_amount=1, reason=None
    )
    assert refund.state is RefundState.UNKNOWN and refund.code == "BAD_SIGNATURE"
    assert alipay.refund_query(out_trade_no="TLA1", out_refund_no="R1").state is RefundState.UNKNOWN
    assert alipay.reverse("TLA1").state is ReverseState.UNKNOWN
    sandbox.faults()
    assert alipay.query("TLA1").state is TradeState.CLOSED  # every call took effect
    assert sandbox.debited(wallet) == 1234 and sandbox.refunded(wallet) == 1234


def test_hanging_provider_times_out_as_unknown(sandbox: Sandbox) -> None:
    wallet = sandbox.wallet("alipay")
    sandbox.faults({"alipay.trade.pay": {"hang": 1}}, hang_seconds=1.5)
    with alipay_provider(sandbox.url, timeout_s=0.25) as alipay:
        started = time.monotonic()
        result = _pay(alipay, "TLA1", sandbox.code(wallet))
        elapsed = time.monotonic() - started
        assert result.outcome is Outcome.UNKNOWN and result.code == "TIMEOUT"
        assert elapsed < 1.2  # gave up at its own read timeout, not when the provider answered
        sandbox.faults()
        state = alipay.query("TLA1").state
    assert state in (TradeState.NOT_FOUND, TradeState.PAID)
    assert sandbox.debited(wallet) == (1234 if state is TradeState.PAID else 0)


def test_request_signed_with_the_wrong_app_key_is_refused(sandbox: Sandbox) -> None:
    wallet = sandbox.wallet("alipay")
    with alipay_provider(sandbox.url, app_private_key_pem=KEYS.alipay_private) as alipay:
        result = _pay(alipay, "TLA1", sandbox.code(wallet))  # 40002, signed by the gateway
        assert result.outcome is Outcome.FAILED and result.code == "isv.invalid-signature"
    assert sandbox.debited(wallet) == 0


def test_answers_verified_with_the_wrong_alipay_key_are_unknown(sandbox: Sandbox) -> None:
    wallet = sandbox.wallet("alipay")
    with alipay_provider(sandbox.url, alipay_public_key_pem=KEYS.app_public) as alipay:
        result = _pay(alipay, "TLA1", sandbox.code(wallet))
        assert result.outcome is Outcome.UNKNOWN and result.code == "BAD_SIGNATURE"
    assert sandbox.debited(wallet) == 1234


def test_verify_notification(sandbox: Sandbox, alipay: AlipayProvider) -> None:
    wallet = sandbox.wallet("alipay", always_password=True)
    assert _pay(alipay, "TLA1", sandbox.code(wallet), 2000).user_paying
    sandbox.confirm(wallet)
    sandbox.advance(0)  # deliver what is due
    [form] = sandbox.receiver.posts
    note = alipay.verify_notification(form)
    assert note == AlipayNotification(
        out_trade_no="TLA1",
        trade_no=alipay.query("TLA1").provider_ref or "",
        trade_status="TRADE_SUCCESS",
        total_amount=2000,
        app_id=ALIPAY_APP_ID,
        seller_id=ALIPAY_PID,
        notify_id=form["notify_id"],
        gmt_payment=datetime(2026, 11, 20, 9, 0, 0, tzinfo=CHINA_TZ),
    )
    assert note.paid and alipay.matches_account(note)
    assert alipay.verify_notification({**form, "total_amount": "0.01"}) is None
    assert alipay.verify_notification({**form, "trade_status": "TRADE_FINISHED"}) is None
    assert alipay.verify_notification({**form, "extra": "injected"}) is None
    assert alipay.verify_notification({k: v for k, v in form.items() if k != "sign"}) is None
    assert alipay.verify_notification({**form, "sign_type": "RSA"}) is None
    with alipay_provider(sandbox.url, alipay_public_key_pem=KEYS.app_public) as other_key:
        assert other_key.verify_notification(form) is None
    # Genuine but for another seller: verified, and left for the caller to record as a mismatch.
    with alipay_provider(sandbox.url, seller_id="2088000000000000") as other_seller:
        mine = other_seller.verify_notification(form)
        assert mine == note and not other_seller.matches_account(mine)

    # A full refund is notified as TRADE_CLOSED with the refunded amount.
    assert (
        alipay.refund(
            out_trade_no="TLA1", out_refund_no="R1", total_amount=2000, refund_amount=2000, reason=None
        ).state
        is RefundState.SUCCESS
    )
    sandbox.advance(0)
    closed = alipay.verify_notification(sandbox.receiver.posts[-1])
    assert closed is not None and closed.trade_status == "TRADE_CLOSED" and not closed.paid
    assert closed.refund_amount == 2000


def test_download_bill(sandbox: Sandbox, alipay: AlipayProvider) -> None:
    wallet = sandbox.wallet("alipay")
    assert _pay(alipay, "TLA1", sandbox.code(wallet), 3999).outcome is Outcome.SUCCESS
    assert (
        alipay.refund(
            out_trade_no="TLA1", out_refund_no="RTLA1", total_amount=3999, refund_amount=1000, reason=None
        ).state
        is RefundState.SUCCESS
    )
    assert alipay.download_bill(BILL_DAY) is None  # not before 10:00 the next day
    sandbox.advance(25 * 3600 + 60)
    data = alipay.download_bill(BILL_DAY)
    assert data is not None
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        detail = next(n for n in archive.namelist() if n.endswith("_业务明细.csv"))
        text = archive.read(detail).decode("gbk")
    rows = [line for line in text.split("\r\n") if line.split(",")[1:2] == ["TLA1\t"]]
    assert [row.split(",")[2].strip() for row in rows] == ["交易", "退款"]
    assert alipay.download_bill(date(2026, 11, 21)) is None  # not ready yet
    sandbox.faults({"alipay.bill.file": {"answer_lost": 1}})
    with pytest.raises(BillDownloadError) as exc:
        alipay.download_bill(BILL_DAY)
    assert exc.value.code == "HTTP_502"
