"""Alipay gateway conformance: RSA2 both ways, codes, trade states, cancel/close/refund rules,
and signed async notifications retried until acknowledged."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

import httpx

from tests.sandbox.conftest import ALIPAY_APP_ID, ALIPAY_PID, KEYS, Sandbox
from tillit.sandbox.signing import alipay_string_to_sign, rsa2_verify


def _pay(sb: Sandbox, out_trade_no: str, amount: str, code: str, **extra: Any) -> dict[str, Any]:
    common = {k: extra.pop(k) for k in list(extra) if k == "notify_url"}
    biz = {
        "out_trade_no": out_trade_no,
        "scene": "bar_code",
        "auth_code": code,
        "subject": "商品",
        "total_amount": amount,
        **extra,
    }
    return sb.alipay("alipay.trade.pay", biz, **common)


def _member(text: str, key: str) -> str:
    prefix = f'{{"{key}":'
    assert text.startswith(prefix)
    return text[len(prefix) : text.rindex(',"sign":')]


def test_pay_answer_is_signed_over_the_exact_member_text(sandbox: Sandbox) -> None:
    wallet = sandbox.wallet("alipay", 10_000)
    code = sandbox.code(wallet["id"])
    assert len(code) == 18 and 25 <= int(code[:2]) <= 30
    r = sandbox.alipay_raw(
        "alipay.trade.pay",
        {
            "out_trade_no": "A1",
            "scene": "bar_code",
            "auth_code": code,
            "subject": "商品",
            "total_amount": "12.50",
            "store_id": "S001",
        },
    )
    member = _member(r.text, "alipay_trade_pay_response")
    assert rsa2_verify(member, r.json()["sign"], KEYS.sandbox_public)
    answer = json.loads(member)
    assert answer["code"] == "10000" and answer["total_amount"] == "12.50"
    assert answer["trade_no"].startswith("20261120") and answer["buyer_logon_id"].startswith("138***@")
    assert answer["fund_bill_list"] == [{"fund_channel": "ALIPAYACCOUNT", "amount": "12.50"}]
    assert sandbox.ledger(wallet["id"])["total_debited_fen"] == 1250


def test_bad_request_signature_and_malformed_requests_write_nothing(sandbox: Sandbox) -> None:
    wallet = sandbox.wallet("alipay", 10_000)
    code = sandbox.code(wallet["id"])
    params = sandbox.alipay_params(
        "alipay.trade.pay",
        {
            "out_trade_no": "A1",
            "scene": "bar_code",
            "auth_code": code,
            "subject": "x",
            "total_amount": "1.00",
        },
    )
    params["biz_content"] = params["biz_content"].replace("1.00", "0.01")  # tampered after signing
    r = sandbox.client.get("/gateway.do", params=params)
    body = r.json()["alipay_trade_pay_response"]
    assert body["code"] == "40002" and body["sub_code"] == "isv.invalid-signature"
    assert rsa2_verify(_member(r.text, "alipay_trade_pay_response"), r.json()["sign"], KEYS.sandbox_public)

    unknown = dict(params, app_id="2021999999999999")
    r = sandbox.client.get("/gateway.do", params=unknown)
    assert (
        r.json()["alipay_trade_pay_response"]["sub_code"] == "isv.invalid-app-id" and "sign" not in r.json()
    )
    r = sandbox.client.get("/gateway.do", params={"app_id": ALIPAY_APP_ID})
    assert r.json()["error_response"]["sub_code"] == "isv.missing-method"
    assert sandbox.alipay("alipay.trade.nope", {})["sub_code"] == "isv.invalid-method"
    params = sandbox.alipay_params("alipay.trade.pay", {})
    params["biz_content"] = "{not json"
    from tillit.sandbox.signing import rsa2_sign

    params["sign"] = rsa2_sign(alipay_string_to_sign(params), KEYS.app_private)
    r = sandbox.client.get("/gateway.do", params=params)
    assert r.json()["alipay_trade_pay_response"]["sub_code"] == "isv.invalid-biz-content"
    for amount in ("0", "1.001", "-1", "abc", "1e3"):
        assert _pay(sandbox, "A1", amount, code)["sub_code"] == "ACQ.INVALID_PARAMETER"
    assert _pay(sandbox, "A1", "1.00", code, scene="qr")["sub_code"] == "ACQ.INVALID_PARAMETER"
    assert sandbox.client.get("/sandbox/trades").json()["trades"] == []
    assert _pay(sandbox, "A1", "1.00", code)["code"] == "10000"  # the code survived


def test_codes_balance_and_idempotent_out_trade_no(sandbox: Sandbox) -> None:
    poor = sandbox.wallet("alipay", 50)
    assert _pay(sandbox, "A1", "1.00", sandbox.code(poor["id"]))["sub_code"] == "ACQ.BUYER_BALANCE_NOT_ENOUGH"
    wallet = sandbox.wallet("alipay", 10_000)
    code = sandbox.code(wallet["id"])
    first = _pay(sandbox, "A2", "3.00", code)
    again = _pay(sandbox, "A2", "3.00", code)
    assert first["trade_no"] == again["trade_no"] and again["code"] == "10000"
    assert _pay(sandbox, "A2", "3.01", code)["sub_code"] == "ACQ.CONTEXT_INCONSISTENT"
    assert _pay(sandbox, "A3", "1.00", code)["sub_code"] == "ACQ.PAYMENT_AUTH_CODE_INVALID"  # reused
    stale = sandbox.code(wallet["id"])
    sandbox.advance(60)
    assert _pay(sandbox, "A4", "1.00", stale)["sub_code"] == "ACQ.PAYMENT_AUTH_CODE_INVALID"
    wechat = sandbox.wallet("wechat", 10_000)
    assert (
        _pay(sandbox, "A5", "1.00", sandbox.code(wechat["id"]))["sub_code"] == "ACQ.PAYMENT_AUTH_CODE_INVALID"
    )
    assert sandbox.ledger(wallet["id"])["total_debited_fen"] == 300
    assert sandbox.alipay("alipay.trade.query", {"out_trade_no": "A9"})["sub_code"] == "ACQ.TRADE_NOT_EXIST"


class Receiver:
    """A notify_url endpoint (httpx MockTransport) that records posts and answers as told."""

    def __init__(self, answers: Callable[[int], str] = lambda n: "success"):
        self.posts: list[dict[str, str]] = []
        self.answers = answers

    def handler(self, request: httpx.Request) -> httpx.Response:
        form = dict(parse_qsl(request.content.decode()))
        self.posts.append(form)
        return httpx.Response(200, text=self.answers(len(self.posts)))


def _verify_notification(form: dict[str, str]) -> bool:
    data = {k: v for k, v in form.items() if k not in ("sign", "sign_type")}
    return form["sign_type"] == "RSA2" and rsa2_verify(
        alipay_string_to_sign(data), form["sign"], KEYS.sandbox_public
    )


def test_password_step_then_signed_notification(make_sandbox: Callable[..., Sandbox]) -> None:
    receiver = Receiver()
    sandbox = make_sandbox(notify_transport=httpx.MockTransport(receiver.handler))
    wallet = sandbox.wallet("alipay", 500_000, always_password=True)
    pending = _pay(sandbox, "A1", "20.00", sandbox.code(wallet["id"]), notify_url="http://merchant/notify")
    assert pending["code"] == "10003" and pending["trade_no"]
    query = sandbox.alipay("alipay.trade.query", {"out_trade_no": "A1"})
    assert query["trade_status"] == "WAIT_BUYER_PAY"
    sandbox.client.post(f"/sandbox/wallets/{wallet['id']}/confirm", json={"password": "123456"})
    sandbox.advance(0)
    assert len(receiver.posts) == 1
    form = receiver.posts[0]
    assert _verify_notification(form)
    assert form["trade_status"] == "TRADE_SUCCESS" and form["out_trade_no"] == "A1"
    assert (
        form["total_amount"] == "20.00"
        and form["app_id"] == ALIPAY_APP_ID
        and form["seller_id"] == ALIPAY_PID
    )
    sandbox.advance(24 * 3600)
    assert len(receiver.posts) == 1  # acknowledged: never sent again
    assert sandbox.alipay("alipay.trade.query", {"out_trade_no": "A1"})["trade_status"] == "TRADE_SUCCESS"


def test_notifications_retry_on_schedule_until_success(make_sandbox: Callable[..., Sandbox]) -> None:
    receiver = Receiver(lambda n: "success" if n >= 3 else "fail")
    sandbox = make_sandbox(notify_transport=httpx.MockTransport(receiver.handler))
    wallet = sandbox.wallet("alipay", 500_000, always_password=True)
    _pay(sandbox, "A1", "20.00", sandbox.code(wallet["id"]), notify_url="http://merchant/notify")
    sandbox.client.post(f"/sandbox/wallets/{wallet['id']}/confirm", json={"password": "123456"})
    sandbox.advance(0)
    assert len(receiver.posts) == 1
    sandbox.advance(239)
    assert len(receiver.posts) == 1
    sandbox.advance(1)  # +4 min
    assert len(receiver.posts) == 2
    sandbox.advance(600)  # +10 min
    assert len(receiver.posts) == 3
    sandbox.advance(86400)
    assert len(receiver.posts) == 3
    assert len({p["notify_id"] for p in receiver.posts}) == 1  # the same notify_id on every resend
    state = sandbox.client.get("/sandbox/notifications").json()["notifications"][0]
    assert state["acked"] and state["attempts"] == 3


def test_customer_cancel_closes_trade_and_cancel_close_actions(sandbox: Sandbox) -> None:
    slow = sandbox.wallet("alipay", 10_000, always_password=True)
    assert _pay(sandbox, "A1", "1.00", sandbox.code(slow["id"]))["code"] == "10003"
    sandbox.client.post(f"/sandbox/wallets/{slow['id']}/cancel")
    assert sandbox.alipay("alipay.trade.query", {"out_trade_no": "A1"})["trade_status"] == "TRADE_CLOSED"

    assert _pay(sandbox, "A2", "1.00", sandbox.code(slow["id"]))["code"] == "10003"
    cancel = sandbox.alipay("alipay.trade.cancel", {"out_trade_no": "A2"})
    assert cancel["action"] == "close" and cancel["retry_flag"] == "N"
    assert sandbox.alipay("alipay.trade.query", {"out_trade_no": "A2"})["trade_status"] == "TRADE_CLOSED"

    assert _pay(sandbox, "A3", "1.00", sandbox.code(slow["id"]))["code"] == "10003"
    sandbox.advance(45)  # auto-close of an unpaid trade
    assert sandbox.alipay("alipay.trade.query", {"out_trade_no": "A3"})["trade_status"] == "TRADE_CLOSED"

    payer = sandbox.wallet("alipay", 10_000)
    assert _pay(sandbox, "A4", "2.00", sandbox.code(payer["id"]))["code"] == "10000"
    assert sandbox.alipay("alipay.trade.close", {"out_trade_no": "A4"})["sub_code"] == "ACQ.TRADE_HAS_SUCCESS"
    cancel = sandbox.alipay("alipay.trade.cancel", {"out_trade_no": "A4"})
    assert cancel["action"] == "refund"
    assert sandbox.ledger(payer["id"])["total_refunded_fen"] == 200

    ghost = sandbox.alipay("alipay.trade.cancel", {"out_trade_no": "A5"})
    assert ghost["code"] == "10000" and "action" not in ghost
    assert _pay(sandbox, "A5", "1.00", sandbox.code(payer["id"]))["sub_code"] == "ACQ.TRADE_HAS_CLOSE"
    assert sandbox.alipay("alipay.trade.close", {"out_trade_no": "A9"})["sub_code"] == "ACQ.TRADE_NOT_EXIST"
    assert sandbox.ledger(slow["id"])["debits"] == []


def test_refund_rules(make_sandbox: Callable[..., Sandbox]) -> None:
    receiver = Receiver()
    sandbox = make_sandbox(notify_transport=httpx.MockTransport(receiver.handler))
    wallet = sandbox.wallet("alipay", 10_000)
    _pay(sandbox, "A1", "10.00", sandbox.code(wallet["id"]), notify_url="http://merchant/notify")

    def refund(amount: str, number: str | None = None) -> dict[str, Any]:
        biz = {"out_trade_no": "A1", "refund_amount": amount}
        if number:
            biz["out_request_no"] = number
        return sandbox.alipay("alipay.trade.refund", biz)

    assert refund("3.00")["sub_code"] == "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL"
    assert refund("10.01", "R1")["sub_code"] == "ACQ.REASON_TRADE_REFUND_FEE_ERR"
    first = refund("3.00", "R1")
    assert first["fund_change"] == "Y" and first["refund_fee"] == "3.00"
    replay = refund("3.00", "R1")
    assert replay["fund_change"] == "N" and replay["refund_fee"] == "3.00"
    assert refund("4.00", "R1")["sub_code"] == "ACQ.CONTEXT_INCONSISTENT"
    rq = sandbox.alipay("alipay.trade.fastpay.refund.query", {"out_trade_no": "A1", "out_request_no": "R1"})
    assert rq["refund_amount"] == "3.00" and rq["out_request_no"] == "R1"
    none = sandbox.alipay("alipay.trade.fastpay.refund.query", {"out_trade_no": "A1", "out_request_no": "R9"})
    assert none == {"code": "10000", "msg": "Success"}
    assert sandbox.alipay("alipay.trade.query", {"out_trade_no": "A1"})["trade_status"] == "TRADE_SUCCESS"
    assert refund("7.00", "R2")["refund_fee"] == "10.00"
    assert sandbox.alipay("alipay.trade.query", {"out_trade_no": "A1"})["trade_status"] == "TRADE_CLOSED"
    assert refund("0.01", "R3")["sub_code"] == "ACQ.TRADE_STATUS_ERROR"
    sandbox.advance(0)
    closed = [p for p in receiver.posts if p["trade_status"] == "TRADE_CLOSED"]
    assert len(closed) == 1 and closed[0]["refund_fee"] == "10.00" and _verify_notification(closed[0])
    assert sandbox.ledger(wallet["id"])["total_refunded_fen"] == 1000


def test_bill_url_before_ready_is_refused(sandbox: Sandbox) -> None:
    answer = sandbox.alipay(
        "alipay.data.dataservice.bill.downloadurl.query", {"bill_type": "trade", "bill_date": "2026-11-20"}
    )
    assert answer["sub_code"] == "isp.bill_not_exist"
    assert (
        sandbox.alipay(
            "alipay.data.dataservice.bill.downloadurl.query",
            {"bill_type": "signcustomer", "bill_date": "2026-11-19"},
        )["code"]
        == "40004"
    )
    assert (
        sandbox.alipay(
            "alipay.data.dataservice.bill.downloadurl.query",
            {"bill_type": "trade", "bill_date": "2026/11/19"},
        )["sub_code"]
        == "ACQ.INVALID_PARAMETER"
    )
    assert sandbox.client.get("/downloadBillFile.resource?token=nope").status_code == 404
