"""Every code of providers.md §1.3-§1.5 and §2.2-§2.5, including those the sandbox never produces,
answered by a scripted provider (httpx MockTransport) that also checks our request signatures."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
import structlog

from tests.integration.providers.conftest import ALIPAY_APP_ID, APPID, KEYS, MCH_ID, WECHAT_KEY
from tillit.adapters.providers import (
    AlipayAccount,
    AlipayProvider,
    BillDownloadError,
    WeChatAccount,
    WeChatPayProvider,
)
from tillit.adapters.providers.signing import (
    alipay_string_to_sign,
    load_private_key,
    load_public_key,
    parse_wechat_xml,
    rsa2_sign,
    rsa2_verify,
    wechat_sign,
    wechat_verify,
)
from tillit.domain.provider import Outcome, RefundState, ReverseState, TradeState

AUTH_CODE = "134567890123456789"

# --------------------------------------------------------------------------- WeChat


def _wechat_xml(fields: dict[str, str], sign_type: str = "HMAC-SHA256", signed: bool = True) -> bytes:
    out = {
        "return_code": "SUCCESS",
        "return_msg": "OK",
        "appid": APPID,
        "mch_id": MCH_ID,
        "nonce_str": "n",
        **fields,
    }
    if signed:
        out["sign"] = wechat_sign(out, WECHAT_KEY, sign_type)
    return ("<xml>" + "".join(f"<{k}><![CDATA[{v}]]></{k}>" for k, v in out.items()) + "</xml>").encode()


def _wechat(
    answer: Callable[[dict[str, str]], httpx.Response], sign_type: str = "HMAC-SHA256"
) -> WeChatPayProvider:
    seen: list[dict[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        fields = parse_wechat_xml(request.content)
        # Our request: signed as declared, no empty fields, our account.
        assert fields.get("sign_type", "MD5") == sign_type
        assert wechat_verify(fields, WECHAT_KEY, sign_type)
        assert all(fields.values()) and fields["appid"] == APPID and fields["mch_id"] == MCH_ID
        seen.append({"path": request.url.path, **fields})
        return answer(fields)

    account = WeChatAccount(APPID, MCH_ID, WECHAT_KEY, "https://api.mch.weixin.qq.com", sign_type=sign_type)
    provider = WeChatPayProvider(account, client=httpx.Client(transport=httpx.MockTransport(handler)))
    provider.seen = seen  # type: ignore[attr-defined]
    return provider


def _fail(err_code: str, **extra: str) -> Callable[[dict[str, str]], httpx.Response]:
    """A signed business failure, signed with the algorithm the request declared."""
    fields = {"result_code": "FAIL", "err_code": err_code, "err_code_des": "说明", **extra}
    return lambda f: httpx.Response(200, content=_wechat_xml(fields, f.get("sign_type", "MD5")))


def _ok(**fields: str) -> Callable[[dict[str, str]], httpx.Response]:
    """A signed business success, signed with the algorithm the request declared."""
    return lambda f: httpx.Response(
        200, content=_wechat_xml({"result_code": "SUCCESS", **fields}, f.get("sign_type", "MD5"))
    )


def _pay(provider: Any, amount: int = 1234) -> Any:
    return provider.pay(
        out_trade_no="T1", auth_code=AUTH_CODE, amount=amount, currency="CNY", description="商品"
    )


WECHAT_PAY_FAILED = [
    "NOTENOUGH",
    "AUTHCODEEXPIRE",
    "AUTH_CODE_INVALID",
    "AUTH_CODE_ERROR",
    "ORDERREVERSED",
    "ORDERCLOSED",
    "NOTSUPORTCARD",
    "BUYER_MISMATCH",
    "TRADE_ERROR",
    "NOAUTH",
    "PARAM_ERROR",
    "SIGNERROR",
    "LACK_PARAMS",
]


@pytest.mark.parametrize("err_code", WECHAT_PAY_FAILED)
def test_wechat_pay_definite_failures(err_code: str) -> None:
    result = _pay(_wechat(_fail(err_code)))
    assert (result.outcome, result.code, result.message) == (Outcome.FAILED, err_code, "说明")


@pytest.mark.parametrize(
    "err_code", ["SYSTEMERROR", "BANKERROR", "USERPAYING", "ORDERPAID", "OUT_TRADE_NO_USED", "SOMETHING_NEW"]
)
def test_wechat_pay_unknowns(err_code: str) -> None:
    result = _pay(_wechat(_fail(err_code)))
    assert (result.outcome, result.code) == (Outcome.UNKNOWN, err_code)
    assert result.user_paying is (err_code == "USERPAYING")


def test_wechat_pay_success_and_request_fields() -> None:
    provider = _wechat(_ok(out_trade_no="T1", total_fee="1234", transaction_id="4200X"), sign_type="MD5")
    result = _pay(provider)
    assert (result.outcome, result.provider_ref) == (Outcome.SUCCESS, "4200X")
    [request] = provider.seen  # type: ignore[attr-defined]
    assert (
        request["path"] == "/pay/micropay"
        and request["total_fee"] == "1234"
        and request["auth_code"] == AUTH_CODE
    )
    assert request["fee_type"] == "CNY" and request["body"] == "商品" and len(request["nonce_str"]) == 32


@pytest.mark.parametrize(
    ("answer", "code"),
    [
        (
            lambda f: httpx.Response(200, content=_wechat_xml({"result_code": "SUCCESS"}, signed=False)),
            "BAD_SIGNATURE",
        ),
        (
            lambda f: httpx.Response(
                200, content=_wechat_xml({"result_code": "SUCCESS"}).replace(b"SUCCESS", b"FAIL")
            ),
            "RETURN_FAIL",
        ),
        (
            lambda f: httpx.Response(200, content=_wechat_xml({"result_code": "SUCCESS"}, sign_type="MD5")),
            "BAD_SIGNATURE",  # signed with the other algorithm than the request declared
        ),
        (lambda f: httpx.Response(200, content=b"<xml><return_code>FAIL</return_code></xml>"), "RETURN_FAIL"),
        (lambda f: httpx.Response(200, content=b""), "EMPTY_RESPONSE"),
        (lambda f: httpx.Response(200, content=b"<html>gateway</html>"), "MALFORMED_RESPONSE"),
        (
            lambda f: httpx.Response(
                200, content=b'<!DOCTYPE x [<!ENTITY a "SUCCESS">]><xml><return_code>&a;</return_code></xml>'
            ),
            "MALFORMED_RESPONSE",
        ),
        (lambda f: httpx.Response(503, content=b""), "HTTP_503"),
        (
            lambda f: httpx.Response(
                200, content=_wechat_xml({"result_code": "SUCCESS", "appid": "wxother"})
            ),
            "ACCOUNT_MISMATCH",
        ),
        (_ok(out_trade_no="T1", total_fee="1"), "ANSWER_MISMATCH"),
        (_ok(out_trade_no="T2", total_fee="1234"), "ANSWER_MISMATCH"),
    ],
)
def test_wechat_pay_unverifiable_or_odd_answers_are_unknown(
    answer: Callable[[dict[str, str]], httpx.Response], code: str
) -> None:
    result = _pay(_wechat(answer))
    assert (result.outcome, result.code) == (Outcome.UNKNOWN, code)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (httpx.ReadTimeout("slow"), "TIMEOUT"),
        (httpx.ConnectTimeout("slow"), "TIMEOUT"),
        (httpx.ConnectError("refused"), "CONNECT_ERROR"),
        (httpx.RemoteProtocolError("eof"), "NETWORK_ERROR"),
    ],
)
def test_wechat_transport_errors(error: Exception, code: str) -> None:
    def boom(fields: dict[str, str]) -> httpx.Response:
        raise error

    provider = _wechat(boom)
    assert (_pay(provider).outcome, _pay(provider).code) == (Outcome.UNKNOWN, code)
    assert (provider.query("T1").state, provider.query("T1").code) == (TradeState.ERROR, code)
    assert provider.reverse("T1").state is ReverseState.UNKNOWN
    refund = provider.refund(
        out_trade_no="T1", out_refund_no="R1", total_amount=2, refund_amount=1, reason=None
    )
    assert refund.state is RefundState.UNKNOWN
    assert provider.refund_query(out_trade_no="T1", out_refund_no="R1").state is RefundState.UNKNOWN
    with pytest.raises(BillDownloadError):
        provider.download_bill(date(2026, 11, 20))


@pytest.mark.parametrize(
    ("trade_state", "state"),
    [
        ("SUCCESS", TradeState.PAID),
        ("NOTPAY", TradeState.WAITING),
        ("USERPAYING", TradeState.WAITING),
        ("ACCEPT", TradeState.WAITING),
        ("CLOSED", TradeState.CLOSED),
        ("REVOKED", TradeState.CLOSED),
        ("REFUND", TradeState.REFUNDED),
        ("PAYERROR", TradeState.PAY_ERROR),
        ("SOMETHING_NEW", TradeState.ERROR),
    ],
)
def test_wechat_query_states(trade_state: str, state: TradeState) -> None:
    result = _wechat(
        _ok(out_trade_no="T1", trade_state=trade_state, total_fee="1234", transaction_id="42")
    ).query("T1")
    assert (result.state, result.raw_state, result.amount, result.provider_ref) == (
        state,
        trade_state,
        1234,
        "42",
    )


def test_wechat_query_errors() -> None:
    assert _wechat(_fail("ORDERNOTEXIST")).query("T1").state is TradeState.NOT_FOUND
    assert _wechat(_fail("SYSTEMERROR")).query("T1").state is TradeState.ERROR
    assert _wechat(_ok(out_trade_no="T9", trade_state="SUCCESS")).query("T1").state is TradeState.ERROR


@pytest.mark.parametrize(
    ("answer", "state", "code"),
    [
        (_ok(recall="N"), ReverseState.DONE, None),
        (_ok(recall="Y"), ReverseState.RETRY, "RECALL"),
        (_fail("SYSTEMERROR", recall="Y"), ReverseState.RETRY, "SYSTEMERROR"),
        (_fail("USERPAYING", recall="Y"), ReverseState.RETRY, "USERPAYING"),
        (_fail("BANKERROR"), ReverseState.RETRY, "BANKERROR"),
        (_fail("REVERSE_EXPIRE", recall="N"), ReverseState.EXPIRED, "REVERSE_EXPIRE"),
        (_fail("INVALID_TRANSACTIONID", recall="N"), ReverseState.FAILED, "INVALID_TRANSACTIONID"),
        (_fail("ORDERNOTEXIST", recall="N"), ReverseState.FAILED, "ORDERNOTEXIST"),
    ],
)
def test_wechat_reverse(
    answer: Callable[[dict[str, str]], httpx.Response], state: ReverseState, code: str | None
) -> None:
    result = _wechat(answer).reverse("T1")
    assert (result.state, result.code) == (state, code)


@pytest.mark.parametrize(
    ("answer", "state", "code"),
    [
        (_ok(out_trade_no="T1", out_refund_no="R1", refund_id="50X"), RefundState.PROCESSING, None),
        (_fail("ERROR"), RefundState.FAILED, "ERROR"),
        (_fail("NOTENOUGH"), RefundState.FAILED, "NOTENOUGH"),
        (_fail("TRADE_OVERDUE"), RefundState.FAILED, "TRADE_OVERDUE"),
        (_fail("SYSTEMERROR"), RefundState.UNKNOWN, "SYSTEMERROR"),
        (_fail("BIZERR_NEED_RETRY"), RefundState.UNKNOWN, "BIZERR_NEED_RETRY"),
        (_fail("FREQUENCY_LIMITED"), RefundState.UNKNOWN, "FREQUENCY_LIMITED"),
        (_ok(out_trade_no="T1", out_refund_no="R2"), RefundState.UNKNOWN, "ANSWER_MISMATCH"),
    ],
)
def test_wechat_refund(
    answer: Callable[[dict[str, str]], httpx.Response], state: RefundState, code: str | None
) -> None:
    provider = _wechat(answer)
    result = provider.refund(
        out_trade_no="T1", out_refund_no="R1", total_amount=200, refund_amount=100, reason="r"
    )
    assert (result.state, result.code) == (state, code)
    [request] = provider.seen  # type: ignore[attr-defined]
    assert request["path"] == "/secapi/pay/refund" and request["out_refund_no"] == "R1"
    assert (request["total_fee"], request["refund_fee"], request["refund_desc"]) == ("200", "100", "r")


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ("SUCCESS", RefundState.SUCCESS),
        ("PROCESSING", RefundState.PROCESSING),
        ("REFUNDCLOSE", RefundState.FAILED),
        ("CHANGE", RefundState.ABNORMAL),
        ("WHATEVER", RefundState.UNKNOWN),
    ],
)
def test_wechat_refund_query_status_of_our_refund(status: str, state: RefundState) -> None:
    answer = _ok(
        out_trade_no="T1",
        refund_count="2",
        out_refund_no_0="R0",
        refund_status_0="CHANGE",
        out_refund_no_1="R1",
        refund_status_1=status,
        refund_id_1="50R1",
    )
    result = _wechat(answer).refund_query(out_trade_no="T1", out_refund_no="R1")
    assert result.state is state and result.provider_ref == "50R1"


def test_wechat_refund_query_errors() -> None:
    assert _wechat(_fail("REFUNDNOTEXIST")).refund_query(out_trade_no="T1", out_refund_no="R1").state is (
        RefundState.NOT_FOUND
    )
    assert _wechat(_fail("SYSTEMERROR")).refund_query(out_trade_no="T1", out_refund_no="R1").state is (
        RefundState.UNKNOWN
    )
    other_trade = _ok(out_trade_no="T9", refund_count="1", out_refund_no_0="R1", refund_status_0="SUCCESS")
    assert (
        _wechat(other_trade).refund_query(out_trade_no="T1", out_refund_no="R1").state is RefundState.UNKNOWN
    )


def test_wechat_bill_answers() -> None:
    day = date(2026, 11, 20)
    bill = "交易时间,公众账号ID\r\n`2026-11-20 09:00:00,`wx\r\n".encode()
    assert _wechat(lambda f: httpx.Response(200, content=bill)).download_bill(day) == bill
    no_bill = (
        b"<xml><return_code>FAIL</return_code><return_msg>No Bill Exist</return_msg>"
        b"<error_code>20002</error_code></xml>"
    )
    assert _wechat(lambda f: httpx.Response(200, content=no_bill)).download_bill(day) is None
    broken = (
        b"<xml><return_code>FAIL</return_code><return_msg>invalid bill_date</return_msg>"
        b"<error_code>20001</error_code></xml>"
    )
    with pytest.raises(BillDownloadError) as exc:
        _wechat(lambda f: httpx.Response(200, content=broken)).download_bill(day)
    assert exc.value.code == "20001"


def test_wechat_logs_never_carry_secrets_or_payment_codes() -> None:
    with structlog.testing.capture_logs() as logs:
        _pay(_wechat(_ok(out_trade_no="T1", total_fee="1234")))
    assert logs == [
        {
            "event": "provider_call",
            "log_level": "info",
            "provider": "wechat",
            "method": "micropay",
            "outcome": "success",
            "code": None,
            "latency_ms": logs[0]["latency_ms"],
            "out_trade_no": "T1",
        }
    ]
    assert AUTH_CODE not in repr(logs) and WECHAT_KEY not in repr(logs)


# --------------------------------------------------------------------------- Alipay

_APP_PUBLIC = load_public_key(KEYS.app_public)
_ALIPAY_PRIVATE = load_private_key(KEYS.alipay_private)


def _alipay_body(
    method: str, answer: dict[str, Any], *, signed: bool = True, member: str | None = None
) -> bytes:
    """``{"<method>_response": …, "sign": …}``; ``member`` gives the exact member text (spacing kept)."""
    text = member if member is not None else json.dumps(answer, ensure_ascii=False, separators=(",", ":"))
    key = "error_response" if answer.get("_error") else method.replace(".", "_") + "_response"
    body = f'{{"{key}" : {text}'
    if signed:
        body += f' , "sign" : "{rsa2_sign(text, _ALIPAY_PRIVATE)}"'
    return (body + "}").encode()


def _alipay(answer: Callable[[str, dict[str, Any]], bytes | httpx.Response]) -> AlipayProvider:
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        params = dict(parse_qsl(request.url.query.decode()))
        form = dict(parse_qsl(request.content.decode()))
        assert set(form) == {"biz_content"} and "biz_content" not in params
        assert request.headers["content-type"] == "application/x-www-form-urlencoded;charset=utf-8"
        everything = {**params, **form}
        assert everything["sign_type"] == "RSA2" and everything["charset"] == "utf-8"
        assert everything["app_id"] == ALIPAY_APP_ID and everything["format"] == "JSON"
        assert rsa2_verify(alipay_string_to_sign(everything), everything["sign"], _APP_PUBLIC)
        biz = json.loads(everything["biz_content"])
        seen.append({"method": everything["method"], "notify_url": everything.get("notify_url"), **biz})
        result = answer(everything["method"], biz)
        return result if isinstance(result, httpx.Response) else httpx.Response(200, content=result)

    account = AlipayAccount(
        ALIPAY_APP_ID, KEYS.app_private, KEYS.alipay_public, notify_url="https://m.test/n"
    )
    provider = AlipayProvider(account, client=httpx.Client(transport=httpx.MockTransport(handler)))
    provider.seen = seen  # type: ignore[attr-defined]
    return provider


def _answer(**fields: Any) -> Callable[[str, dict[str, Any]], bytes]:
    return lambda method, biz: _alipay_body(method, fields)


@pytest.mark.parametrize(
    ("fields", "outcome", "code"),
    [
        (
            {"code": "10000", "trade_no": "2026X", "out_trade_no": "T1", "total_amount": "12.34"},
            Outcome.SUCCESS,
            None,
        ),
        ({"code": "10000", "trade_no": "2026X", "trade_status": "TRADE_SUCCESS"}, Outcome.SUCCESS, None),
        ({"code": "10000", "trade_no": "2026X", "trade_status": "TRADE_FINISHED"}, Outcome.SUCCESS, None),
        (
            {"code": "10000", "trade_no": "2026X", "trade_status": "WAIT_BUYER_PAY"},
            Outcome.UNKNOWN,
            "WAIT_BUYER_PAY",
        ),
        (
            {"code": "10000", "out_trade_no": "T1", "total_amount": "12.35"},
            Outcome.UNKNOWN,
            "ANSWER_MISMATCH",
        ),
        ({"code": "10003", "trade_no": "2026X"}, Outcome.UNKNOWN, "10003"),
        ({"code": "20000", "sub_code": "aop.ACQ.SYSTEM_ERROR"}, Outcome.UNKNOWN, "ACQ.SYSTEM_ERROR"),
        ({"code": "20000"}, Outcome.UNKNOWN, "20000"),
        ({"code": "40004", "sub_code": "ACQ.SYSTEM_ERROR"}, Outcome.UNKNOWN, "ACQ.SYSTEM_ERROR"),
        ({"code": "40004", "sub_code": "ACQ.TRADE_HAS_SUCCESS"}, Outcome.UNKNOWN, "ACQ.TRADE_HAS_SUCCESS"),
        (
            {"code": "40004", "sub_code": "ACQ.PAYMENT_AUTH_CODE_INVALID"},
            Outcome.FAILED,
            "ACQ.PAYMENT_AUTH_CODE_INVALID",
        ),
        (
            {"code": "40004", "sub_code": "ACQ.BUYER_BALANCE_NOT_ENOUGH"},
            Outcome.FAILED,
            "ACQ.BUYER_BALANCE_NOT_ENOUGH",
        ),
        (
            {"code": "40004", "sub_code": "ACQ.CONTEXT_INCONSISTENT"},
            Outcome.FAILED,
            "ACQ.CONTEXT_INCONSISTENT",
        ),
        ({"code": "40004", "sub_code": "ACQ.TRADE_HAS_CLOSE"}, Outcome.FAILED, "ACQ.TRADE_HAS_CLOSE"),
        ({"code": "40001", "sub_code": "isv.missing-signature"}, Outcome.FAILED, "isv.missing-signature"),
        ({"code": "40002", "sub_code": "isv.invalid-signature"}, Outcome.FAILED, "isv.invalid-signature"),
        (
            {"code": "40002", "sub_code": "isv.invalid-app-id", "_error": True},
            Outcome.FAILED,
            "isv.invalid-app-id",
        ),
        ({"code": "99999"}, Outcome.UNKNOWN, "99999"),
    ],
)
def test_alipay_pay_codes(fields: dict[str, Any], outcome: Outcome, code: str | None) -> None:
    result = _pay(_alipay(_answer(**fields)))
    assert (result.outcome, result.code) == (outcome, code)
    assert result.user_paying is (fields["code"] == "10003")
    if outcome is Outcome.SUCCESS:
        assert result.provider_ref == "2026X"


def test_alipay_pay_request() -> None:
    provider = _alipay(_answer(code="10000", trade_no="X"))
    _pay(provider, amount=5)
    [request] = provider.seen  # type: ignore[attr-defined]
    assert request == {
        "method": "alipay.trade.pay",
        "notify_url": "https://m.test/n",
        "out_trade_no": "T1",
        "scene": "bar_code",
        "auth_code": AUTH_CODE,
        "subject": "商品",
        "total_amount": "0.05",
    }


def test_alipay_answer_is_verified_over_the_member_text_exactly_as_received() -> None:
    spaced = (
        '{ "code" : "10000", "msg":"Success", "trade_no":"2026X",\n'
        ' "buyer_logon_id":"138***@qq.com", "subject":"\\u5546\\u54c1", "url":"a\\/b" }'
    )
    provider = _alipay(lambda method, biz: _alipay_body(method, {}, member=spaced))
    assert _pay(provider).outcome is Outcome.SUCCESS  # re-serialising would change the text and fail


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (_alipay_body("alipay.trade.pay", {"code": "10000"}, signed=False), "UNSIGNED_RESPONSE"),
        (_alipay_body("alipay.trade.pay", {"code": "10000"}).replace(b"10000", b"10003"), "BAD_SIGNATURE"),
        (
            _alipay_body("alipay.trade.query", {"code": "10000"}),
            "MALFORMED_RESPONSE",
        ),  # another method's answer
        (b"<html>502</html>", "MALFORMED_RESPONSE"),
        (b'{"alipay_trade_pay_response":{"code":"10000"},"sign":"x"} trailing', "MALFORMED_RESPONSE"),
        (b'{"alipay_trade_pay_response":"10000","sign":"x"}', "MALFORMED_RESPONSE"),
        (b"\xff\xfe", "MALFORMED_RESPONSE"),
    ],
)
def test_alipay_unverifiable_answers_are_unknown(body: bytes, code: str) -> None:
    result = _pay(_alipay(lambda method, biz: body))
    assert (result.outcome, result.code) == (Outcome.UNKNOWN, code)


def test_alipay_answer_signed_by_someone_else_is_unknown() -> None:
    text = '{"code":"10000","trade_no":"X"}'
    sign = rsa2_sign(text, load_private_key(KEYS.app_private))  # the app's key, not Alipay's
    forged = f'{{"alipay_trade_pay_response":{text},"sign":"{sign}"}}'
    result = _pay(_alipay(lambda method, biz: forged.encode()))
    assert (result.outcome, result.code) == (Outcome.UNKNOWN, "BAD_SIGNATURE")


@pytest.mark.parametrize(
    ("fields", "state"),
    [
        ({"code": "10000", "trade_status": "TRADE_SUCCESS", "total_amount": "12.34"}, TradeState.PAID),
        ({"code": "10000", "trade_status": "TRADE_FINISHED", "total_amount": "12.34"}, TradeState.PAID),
        ({"code": "10000", "trade_status": "WAIT_BUYER_PAY", "total_amount": "12.34"}, TradeState.WAITING),
        ({"code": "10000", "trade_status": "TRADE_CLOSED", "total_amount": "12.34"}, TradeState.CLOSED),
        ({"code": "10000", "trade_status": "SOMETHING_NEW"}, TradeState.ERROR),
        ({"code": "40004", "sub_code": "ACQ.TRADE_NOT_EXIST"}, TradeState.NOT_FOUND),
        ({"code": "40004", "sub_code": "ACQ.SYSTEM_ERROR"}, TradeState.ERROR),
        ({"code": "20000"}, TradeState.ERROR),
    ],
)
def test_alipay_query_states(fields: dict[str, Any], state: TradeState) -> None:
    result = _alipay(_answer(out_trade_no="T1", trade_no="2026X", **fields)).query("T1")
    assert result.state is state
    if fields["code"] == "10000" and "total_amount" in fields:
        assert (result.amount, result.raw_state, result.provider_ref) == (
            1234,
            fields["trade_status"],
            "2026X",
        )


@pytest.mark.parametrize(
    ("fields", "state", "action", "code"),
    [
        ({"code": "10000", "retry_flag": "N", "action": "close"}, ReverseState.DONE, "close", None),
        ({"code": "10000", "retry_flag": "N", "action": "refund"}, ReverseState.DONE, "refund", None),
        ({"code": "10000", "retry_flag": "Y"}, ReverseState.RETRY, None, "10000"),
        ({"code": "20000", "sub_code": "aop.ACQ.SYSTEM_ERROR"}, ReverseState.RETRY, None, "ACQ.SYSTEM_ERROR"),
        (
            {"code": "40004", "sub_code": "ACQ.SYSTEM_ERROR", "retry_flag": "Y"},
            ReverseState.RETRY,
            None,
            "ACQ.SYSTEM_ERROR",
        ),
        (
            {"code": "40004", "sub_code": "ACQ.TRADE_CANCEL_TIME_OUT"},
            ReverseState.EXPIRED,
            None,
            "ACQ.TRADE_CANCEL_TIME_OUT",
        ),
        (
            {"code": "40004", "sub_code": "ACQ.TRADE_NOT_EXIST", "retry_flag": "N"},
            ReverseState.FAILED,
            None,
            "ACQ.TRADE_NOT_EXIST",
        ),
    ],
)
def test_alipay_cancel(
    fields: dict[str, Any], state: ReverseState, action: str | None, code: str | None
) -> None:
    result = _alipay(_answer(**fields)).reverse("T1")
    assert (result.state, result.action, result.code) == (state, action, code)


@pytest.mark.parametrize(
    ("fields", "state", "code"),
    [
        ({"code": "10000", "fund_change": "Y"}, RefundState.SUCCESS, None),
        ({"code": "10000", "fund_change": "N"}, RefundState.PROCESSING, "FUND_CHANGE_N"),
        (
            {"code": "40004", "sub_code": "ACQ.REASON_TRADE_REFUND_FEE_ERR"},
            RefundState.FAILED,
            "ACQ.REASON_TRADE_REFUND_FEE_ERR",
        ),
        (
            {"code": "40004", "sub_code": "ACQ.TRADE_STATUS_ERROR"},
            RefundState.FAILED,
            "ACQ.TRADE_STATUS_ERROR",
        ),
        ({"code": "40004", "sub_code": "ACQ.SYSTEM_ERROR"}, RefundState.UNKNOWN, "ACQ.SYSTEM_ERROR"),
        ({"code": "20000"}, RefundState.UNKNOWN, "20000"),
    ],
)
def test_alipay_refund(fields: dict[str, Any], state: RefundState, code: str | None) -> None:
    provider = _alipay(_answer(out_trade_no="T1", **fields))
    result = provider.refund(
        out_trade_no="T1", out_refund_no="R1", total_amount=9999, refund_amount=1001, reason="坏了"
    )
    assert (result.state, result.code) == (state, code)
    [request] = provider.seen  # type: ignore[attr-defined]
    assert request == {
        "method": "alipay.trade.refund",
        "notify_url": None,
        "out_trade_no": "T1",
        "out_request_no": "R1",
        "refund_amount": "10.01",
        "refund_reason": "坏了",
    }


@pytest.mark.parametrize(
    ("fields", "state"),
    [
        (
            {"code": "10000", "out_request_no": "R1", "refund_amount": "10.01", "trade_no": "X"},
            RefundState.SUCCESS,
        ),
        (
            {
                "code": "10000",
                "out_request_no": "R1",
                "refund_amount": "10.01",
                "refund_status": "REFUND_SUCCESS",
            },
            RefundState.SUCCESS,
        ),
        (
            {
                "code": "10000",
                "out_request_no": "R1",
                "refund_amount": "10.01",
                "refund_status": "REFUND_PROCESSING",
            },
            RefundState.PROCESSING,
        ),
        ({"code": "10000", "out_request_no": "R2", "refund_amount": "10.01"}, RefundState.UNKNOWN),
        ({"code": "10000"}, RefundState.NOT_FOUND),
        ({"code": "40004", "sub_code": "ACQ.TRADE_NOT_EXIST"}, RefundState.NOT_FOUND),
        ({"code": "40004", "sub_code": "ACQ.SYSTEM_ERROR"}, RefundState.UNKNOWN),
        ({"code": "20000"}, RefundState.UNKNOWN),
    ],
)
def test_alipay_refund_query(fields: dict[str, Any], state: RefundState) -> None:
    assert _alipay(_answer(**fields)).refund_query(out_trade_no="T1", out_refund_no="R1").state is state


def test_alipay_bill_answers() -> None:
    day = date(2026, 11, 20)
    none = _alipay(_answer(code="40004", sub_code="isp.bill_not_exist"))
    assert none.download_bill(day) is None
    with pytest.raises(BillDownloadError) as exc:
        _alipay(_answer(code="20000", sub_code="aop.ACQ.SYSTEM_ERROR")).download_bill(day)
    assert exc.value.code == "ACQ.SYSTEM_ERROR"

    zipped = b"PK\x03\x04rest-of-zip"
    files = {"zip": zipped, "html": b"<html>"}

    def answer(method: str, biz: dict[str, Any]) -> bytes:
        assert biz == {"bill_type": "trade", "bill_date": "2026-11-20"}
        url = f"https://dl.test/bill?f={next(iter(files))}"
        return _alipay_body(method, {"code": "10000", "bill_download_url": url})

    provider = _alipay(answer)
    gateway = provider._client  # the scripted gateway; the bill file host is served here

    def route(request: httpx.Request) -> httpx.Response:
        if request.url.host == "dl.test":
            assert request.method == "GET"
            return httpx.Response(200, content=files.pop(request.url.params["f"]))
        return gateway.send(request)

    provider._client = httpx.Client(transport=httpx.MockTransport(route))
    assert provider.download_bill(day) == zipped
    with pytest.raises(BillDownloadError) as exc:
        provider.download_bill(day)
    assert exc.value.code == "NOT_A_ZIP"


def test_alipay_logs_never_carry_secrets_or_payment_codes() -> None:
    with structlog.testing.capture_logs() as logs:
        _pay(_alipay(_answer(code="10000", trade_no="X")))
    assert [entry["method"] for entry in logs] == ["alipay.trade.pay"]
    text = repr(logs)
    assert AUTH_CODE not in text and "PRIVATE" not in text
