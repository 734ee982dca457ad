"""WeChatPayProvider against a real sandbox: every answer and state of providers.md §1.2-§1.5."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from datetime import date

import pytest

from tests.integration.providers.conftest import Sandbox, wechat_provider
from tillit.adapters.providers import BillDownloadError, WeChatPayProvider
from tillit.domain.provider import Outcome, RefundState, ReverseState, TradeState

BILL_DAY = date(2026, 11, 20)


def _pay(
    wechat: WeChatPayProvider, out_trade_no: str, code: str, amount: int = 1234, description: str = "商品"
):
    return wechat.pay(
        out_trade_no=out_trade_no, auth_code=code, amount=amount, currency="CNY", description=description
    )


@pytest.mark.parametrize("sign_type", ["MD5", "HMAC-SHA256"])
def test_pay_without_password_succeeds_and_query_shows_paid(sandbox: Sandbox, sign_type: str) -> None:
    wallet = sandbox.wallet("wechat")
    with wechat_provider(sandbox.url, sign_type=sign_type) as wechat:
        result = _pay(wechat, "TLW1", sandbox.code(wallet), 1234)
        assert result.outcome is Outcome.SUCCESS and result.code is None and not result.user_paying
        assert result.provider_ref and result.provider_ref.startswith("4200")
        query = wechat.query("TLW1")
    assert query.state is TradeState.PAID and query.raw_state == "SUCCESS"
    assert query.amount == 1234 and query.provider_ref == result.provider_ref
    assert sandbox.debited(wallet) == 1234


def test_password_step_confirmed(sandbox: Sandbox, wechat: WeChatPayProvider) -> None:
    wallet = sandbox.wallet("wechat", always_password=True)
    result = _pay(wechat, "TLW1", sandbox.code(wallet))
    assert result.outcome is Outcome.UNKNOWN and result.user_paying and result.code == "USERPAYING"
    waiting = wechat.query("TLW1")
    assert waiting.state is TradeState.WAITING and waiting.raw_state == "USERPAYING"
    sandbox.confirm(wallet)
    paid = wechat.query("TLW1")
    assert paid.state is TradeState.PAID and paid.amount == 1234
    assert sandbox.debited(wallet) == 1234


def test_password_step_cancelled_then_reversed(sandbox: Sandbox, wechat: WeChatPayProvider) -> None:
    wallet = sandbox.wallet("wechat", always_password=True)
    assert _pay(wechat, "TLW1", sandbox.code(wallet)).user_paying
    # Reversing while the customer is at the password box: USERPAYING, recall=Y.
    early = wechat.reverse("TLW1")
    assert early.state is ReverseState.RETRY and early.code == "USERPAYING"
    sandbox.cancel(wallet)
    failed = wechat.query("TLW1")
    assert failed.state is TradeState.PAY_ERROR and failed.raw_state == "PAYERROR"
    assert wechat.reverse("TLW1").state is ReverseState.DONE
    closed = wechat.query("TLW1")
    assert closed.state is TradeState.CLOSED and closed.raw_state == "REVOKED"
    assert sandbox.debited(wallet) == 0


def test_insufficient_balance_fails(sandbox: Sandbox, wechat: WeChatPayProvider) -> None:
    wallet = sandbox.wallet("wechat", balance_fen=1000)
    result = _pay(wechat, "TLW1", sandbox.code(wallet), 1001)
    assert result.outcome is Outcome.FAILED and result.code == "NOTENOUGH" and result.message
    assert sandbox.debited(wallet) == 0


def test_expired_code_fails(sandbox: Sandbox, wechat: WeChatPayProvider) -> None:
    wallet = sandbox.wallet("wechat")
    code = sandbox.code(wallet)
    sandbox.advance(61)  # codes live 60 s of provider time
    result = _pay(wechat, "TLW1", code)
    assert result.outcome is Outcome.FAILED and result.code == "AUTHCODEEXPIRE"
    assert wechat.query("TLW1").state is TradeState.NOT_FOUND


def test_reused_code_fails_but_the_same_request_replays(sandbox: Sandbox, wechat: WeChatPayProvider) -> None:
    wallet = sandbox.wallet("wechat")
    code = sandbox.code(wallet)
    first = _pay(wechat, "TLW1", code)
    assert first.outcome is Outcome.SUCCESS
    reused = _pay(wechat, "TLW2", code)
    assert reused.outcome is Outcome.FAILED and reused.code == "AUTH_CODE_INVALID"
    # Retrying the same out_trade_no with the same parameters is the same trade: no second debit.
    again = _pay(wechat, "TLW1", code)
    assert again.outcome is Outcome.SUCCESS and again.provider_ref == first.provider_ref
    assert sandbox.debited(wallet) == 1234


def test_same_out_trade_no_with_other_parameters_is_unknown(
    sandbox: Sandbox, wechat: WeChatPayProvider
) -> None:
    wallet = sandbox.wallet("wechat")
    assert _pay(wechat, "TLW1", sandbox.code(wallet), 1234).outcome is Outcome.SUCCESS
    other = _pay(wechat, "TLW1", sandbox.code(wallet), 999)
    assert other.outcome is Outcome.UNKNOWN and other.code == "OUT_TRADE_NO_USED"
    original = wechat.query("TLW1")  # "query the original"
    assert original.state is TradeState.PAID and original.amount == 1234
    assert sandbox.debited(wallet) == 1234


def test_reverse_of_a_trade_that_never_reached_wechat_closes_it(
    sandbox: Sandbox, wechat: WeChatPayProvider
) -> None:
    wallet = sandbox.wallet("wechat")
    assert wechat.reverse("TLW1").state is ReverseState.DONE
    # The request that was "lost" arrives late: it can no longer charge the customer.
    late = _pay(wechat, "TLW1", sandbox.code(wallet))
    assert late.outcome is Outcome.FAILED and late.code == "ORDERREVERSED"
    assert sandbox.debited(wallet) == 0


def test_reverse_of_a_paid_trade_refunds_it(sandbox: Sandbox, wechat: WeChatPayProvider) -> None:
    wallet = sandbox.wallet("wechat")
    assert _pay(wechat, "TLW1", sandbox.code(wallet), 1500).outcome is Outcome.SUCCESS
    sandbox.advance(15)  # "建议至少15秒后再调用"
    assert wechat.reverse("TLW1").state is ReverseState.DONE
    assert wechat.reverse("TLW1").state is ReverseState.DONE  # idempotent
    closed = wechat.query("TLW1")
    assert closed.state is TradeState.CLOSED and closed.raw_state == "REVOKED"
    assert sandbox.debited(wallet) == 1500 and sandbox.refunded(wallet) == 1500


def test_reverse_recall_y_is_retried(sandbox: Sandbox, wechat: WeChatPayProvider) -> None:
    wallet = sandbox.wallet("wechat")
    assert _pay(wechat, "TLW1", sandbox.code(wallet)).outcome is Outcome.SUCCESS
    sandbox.faults({"wechat.reverse": {"system_error": 1}})
    retry = wechat.reverse("TLW1")
    assert retry.state is ReverseState.RETRY and retry.code == "SYSTEMERROR"
    assert sandbox.refunded(wallet) == 0
    sandbox.faults()
    assert wechat.reverse("TLW1").state is ReverseState.DONE
    assert sandbox.refunded(wallet) == 1234


def test_partial_refunds_replay_over_refund_and_refund_query(
    sandbox: Sandbox, wechat: WeChatPayProvider
) -> None:
    wallet = sandbox.wallet("wechat")
    assert _pay(wechat, "TLW1", sandbox.code(wallet), 10_000).outcome is Outcome.SUCCESS

    def refund(no: str, amount: int):
        return wechat.refund(
            out_trade_no="TLW1", out_refund_no=no, total_amount=10_000, refund_amount=amount, reason="退货"
        )

    first = refund("RTLW1", 3000)
    assert first.state is RefundState.PROCESSING and first.provider_ref  # accepted; the query is the truth
    done = wechat.refund_query(out_trade_no="TLW1", out_refund_no="RTLW1")
    assert done.state is RefundState.SUCCESS and done.provider_ref == first.provider_ref
    replay = refund("RTLW1", 3000)  # the same refund number again: no second debit
    assert replay.state is RefundState.PROCESSING and replay.provider_ref == first.provider_ref
    assert sandbox.refunded(wallet) == 3000

    too_soon = refund("RTLW2", 4000)  # WeChat: refunds on one order >= 1 min apart
    assert too_soon.state is RefundState.UNKNOWN and too_soon.code == "FREQUENCY_LIMITED"
    sandbox.advance(61)
    assert refund("RTLW2", 4000).state is RefundState.PROCESSING
    assert wechat.refund_query(out_trade_no="TLW1", out_refund_no="RTLW2").state is RefundState.SUCCESS
    sandbox.advance(61)
    over = refund("RTLW3", 3001)  # 3000 left
    assert over.state is RefundState.FAILED and over.code == "ERROR" and over.message
    missing = wechat.refund_query(out_trade_no="TLW1", out_refund_no="RTLW3")
    assert missing.state is RefundState.NOT_FOUND
    assert sandbox.refunded(wallet) == 7000
    query = wechat.query("TLW1")
    assert query.state is TradeState.REFUNDED and query.raw_state == "REFUND"


def test_refund_still_processing(make_sandbox: Callable[..., Sandbox]) -> None:
    sandbox = make_sandbox(wechat_refund_processing_seconds=30)
    wallet = sandbox.wallet("wechat")
    with wechat_provider(sandbox.url) as wechat:
        assert _pay(wechat, "TLW1", sandbox.code(wallet)).outcome is Outcome.SUCCESS
        accepted = wechat.refund(
            out_trade_no="TLW1", out_refund_no="R1", total_amount=1234, refund_amount=1234, reason=None
        )
        assert accepted.state is RefundState.PROCESSING
        pending = wechat.refund_query(out_trade_no="TLW1", out_refund_no="R1")
        assert pending.state is RefundState.PROCESSING and pending.code == "PROCESSING"
        sandbox.advance(30)
        assert wechat.refund_query(out_trade_no="TLW1", out_refund_no="R1").state is RefundState.SUCCESS


def test_refund_of_unpaid_trade_is_refused(sandbox: Sandbox, wechat: WeChatPayProvider) -> None:
    result = wechat.refund(
        out_trade_no="NOPE", out_refund_no="R1", total_amount=100, refund_amount=100, reason=None
    )
    assert result.state is RefundState.FAILED and result.code == "ORDERNOTEXIST"


def test_system_error_is_unknown_and_nothing_happened(sandbox: Sandbox, wechat: WeChatPayProvider) -> None:
    wallet = sandbox.wallet("wechat")
    sandbox.faults({"wechat.micropay": {"system_error": 1}, "wechat.orderquery": {"system_error": 1}})
    result = _pay(wechat, "TLW1", sandbox.code(wallet))
    assert result.outcome is Outcome.UNKNOWN and result.code == "SYSTEMERROR" and not result.user_paying
    query = wechat.query("TLW1")
    assert query.state is TradeState.ERROR and query.code == "SYSTEMERROR"
    sandbox.faults()
    assert wechat.query("TLW1").state is TradeState.NOT_FOUND
    assert sandbox.debited(wallet) == 0


def test_committed_but_answer_lost_is_unknown_and_query_shows_paid(
    sandbox: Sandbox, wechat: WeChatPayProvider
) -> None:
    wallet = sandbox.wallet("wechat")
    sandbox.faults({"wechat.micropay": {"answer_lost": 1}})
    result = _pay(wechat, "TLW1", sandbox.code(wallet))
    assert result.outcome is Outcome.UNKNOWN and result.code == "HTTP_502"
    query = wechat.query("TLW1")
    assert query.state is TradeState.PAID and query.amount == 1234
    assert sandbox.debited(wallet) == 1234


def test_bad_response_signature_is_never_believed(sandbox: Sandbox, wechat: WeChatPayProvider) -> None:
    wallet = sandbox.wallet("wechat")
    sandbox.faults({"*": {"bad_signature": 1}})
    paid = _pay(wechat, "TLW1", sandbox.code(wallet))  # processed, but the answer cannot be trusted
    assert paid.outcome is Outcome.UNKNOWN and paid.code == "BAD_SIGNATURE"
    failed = _pay(wechat, "TLW2", "109999999999999999")  # a definite failure, equally unverifiable
    assert failed.outcome is Outcome.UNKNOWN and failed.code == "BAD_SIGNATURE"
    assert wechat.query("TLW1").state is TradeState.ERROR
    refund = wechat.refund(
        out_trade_no="TLW1", out_refund_no="R1", total_amount=1234, refund_amount=1, reason=None
    )
    assert refund.state is RefundState.UNKNOWN and refund.code == "BAD_SIGNATURE"
    assert wechat.refund_query(out_trade_no="TLW1", out_refund_no="R1").state is RefundState.UNKNOWN
    assert wechat.reverse("TLW1").state is ReverseState.UNKNOWN
    sandbox.faults()
    # Each call took effect; only the answers were unverifiable.
    assert wechat.query("TLW1").raw_state == "REVOKED"
    assert sandbox.debited(wallet) == 1234 and sandbox.refunded(wallet) == 1234


def test_hanging_provider_times_out_as_unknown(sandbox: Sandbox) -> None:
    wallet = sandbox.wallet("wechat")
    sandbox.faults({"wechat.micropay": {"hang": 1}}, hang_seconds=1.5)
    with wechat_provider(sandbox.url, timeout_s=0.25) as wechat:
        started = time.monotonic()
        result = _pay(wechat, "TLW1", sandbox.code(wallet))
        elapsed = time.monotonic() - started
        assert result.outcome is Outcome.UNKNOWN and result.code == "TIMEOUT"
        assert elapsed < 1.2  # gave up at its own read timeout, not when the provider answered
        # Whatever the provider did with it, the query and the ground truth agree.
        sandbox.faults()
        state = wechat.query("TLW1").state
    assert state in (TradeState.NOT_FOUND, TradeState.PAID)
    assert sandbox.debited(wallet) == (1234 if state is TradeState.PAID else 0)


def test_unreachable_provider_is_unknown() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connection refused
        with wechat_provider(f"http://127.0.0.1:{port}") as wechat:
            pay = _pay(wechat, "TLW1", "134567890123456789")
            assert pay.outcome is Outcome.UNKNOWN and pay.code == "CONNECT_ERROR"
            assert wechat.query("TLW1").state is TradeState.ERROR
            assert wechat.reverse("TLW1").state is ReverseState.UNKNOWN


def test_wrong_api_key_is_a_communication_failure_not_a_decline(sandbox: Sandbox) -> None:
    wallet = sandbox.wallet("wechat")
    with wechat_provider(sandbox.url, api_key="x" * 32) as wechat:
        result = _pay(wechat, "TLW1", sandbox.code(wallet))
        assert (
            result.outcome is Outcome.UNKNOWN
            and result.code == "RETURN_FAIL"
            and result.message == "签名错误"
        )
        assert wechat.query("TLW1").state is TradeState.ERROR
    assert sandbox.debited(wallet) == 0


def test_local_refusals_never_reach_wechat(sandbox: Sandbox, wechat: WeChatPayProvider) -> None:
    usd = wechat.pay(
        out_trade_no="TLW1", auth_code="134567890123456789", amount=100, currency="USD", description="x"
    )
    assert usd.outcome is Outcome.FAILED and usd.code == "CURRENCY_NOT_SUPPORTED"
    zero = wechat.pay(
        out_trade_no="TLW1", auth_code="134567890123456789", amount=0, currency="CNY", description="x"
    )
    assert zero.outcome is Outcome.FAILED and zero.code == "INVALID_AMOUNT"
    assert wechat.query("TLW1").state is TradeState.NOT_FOUND


def test_download_bill(sandbox: Sandbox, wechat: WeChatPayProvider) -> None:
    wallet = sandbox.wallet("wechat")
    assert _pay(wechat, "TLW1", sandbox.code(wallet), 3999).outcome is Outcome.SUCCESS
    refund = wechat.refund(
        out_trade_no="TLW1", out_refund_no="RTLW1", total_amount=3999, refund_amount=1999, reason=None
    )
    assert refund.state is RefundState.PROCESSING
    assert wechat.download_bill(BILL_DAY) is None  # not generated before 10:00 the next day
    sandbox.advance(25 * 3600 + 60)
    data = wechat.download_bill(BILL_DAY)
    assert data is not None
    lines = data.decode("utf-8").split("\r\n")
    assert lines[0].startswith("交易时间,公众账号ID,商户号")
    rows = [line for line in lines[1:] if "`TLW1" in line]
    assert len(rows) == 2 and any("`RTLW1" in row and "`19.99" in row for row in rows)
    assert wechat.download_bill(date(2026, 11, 21)) is None  # no trades that day
    sandbox.faults({"wechat.downloadbill": {"system_error": 1}})
    with pytest.raises(BillDownloadError) as exc:
        wechat.download_bill(BILL_DAY)
    assert exc.value.code == "20007"
