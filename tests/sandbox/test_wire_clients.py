"""Wire compatibility: unmodified third-party clients against a real HTTP sandbox.

wechatpy's ``WeChatPay`` and python-alipay-sdk's ``AliPay`` each run pay -> query ->
reverse/cancel -> refund -> refund query -> bill download.
"""

from __future__ import annotations

import urllib.request

import pytest
from alipay import AliPay
from wechatpy.exceptions import WeChatPayException
from wechatpy.pay import WeChatPay

from tests.sandbox.billparse import parse_alipay, parse_wechat
from tests.sandbox.conftest import ALIPAY_APP_ID, APPID, KEYS, MCH_ID, WECHAT_KEY, LiveServer


def test_wechatpy_full_flow(live: LiveServer) -> None:
    sb = live.sandbox
    client = WeChatPay(appid=APPID, api_key=WECHAT_KEY, mch_id=MCH_ID, timeout=5)
    client.API_BASE_URL = live.url + "/"
    wallet = sb.wallet("wechat", 100_000)

    paid = client.micropay.create(
        body="商品",
        total_fee=3999,
        auth_code=sb.code(wallet["id"]),
        client_ip="127.0.0.1",
        out_trade_no="TLW000001",
        attach="a=1",
    )
    assert paid["result_code"] == "SUCCESS" and paid["total_fee"] == "3999"
    assert client.check_signature(dict(paid))  # the client's own response verification

    query = client.micropay.query(out_trade_no="TLW000001")
    assert query["trade_state"] == "SUCCESS" and query["attach"] == "a=1"

    # A second sale waits for the password, the customer closes the box, the till reverses.
    careful = sb.wallet("wechat", 100_000, always_password=True)
    with pytest.raises(WeChatPayException) as exc:
        client.micropay.create(
            body="商品",
            total_fee=1000,
            auth_code=sb.code(careful["id"]),
            client_ip="127.0.0.1",
            out_trade_no="TLW000002",
        )
    assert exc.value.errcode == "USERPAYING"
    assert client.micropay.query(out_trade_no="TLW000002")["trade_state"] == "USERPAYING"
    assert sb.client.post(f"/sandbox/wallets/{careful['id']}/cancel").status_code == 200
    assert client.micropay.query(out_trade_no="TLW000002")["trade_state"] == "PAYERROR"
    reverse = client.order.reverse(out_trade_no="TLW000002")
    assert reverse["recall"] == "N"
    assert client.micropay.query(out_trade_no="TLW000002")["trade_state"] == "REVOKED"

    refund = client.refund.apply(
        total_fee=3999, refund_fee=1999, out_refund_no="RTLW000001", out_trade_no="TLW000001"
    )
    assert refund["refund_fee"] == "1999"
    refund_query = client.refund.query(out_refund_no="RTLW000001")
    assert refund_query["refund_status_0"] == "SUCCESS"

    sb.advance(25 * 3600 + 60)  # the 2026-11-20 bill is ready from 10:00 on the 21st
    text = client.tools.download_bill("20261120")
    rows, summary = parse_wechat(text)
    assert [(r["商户订单号"], r["交易状态"], r["退款金额"]) for r in rows] == [
        ("TLW000001", "SUCCESS", "0.00"),
        ("TLW000001", "REFUND", "19.99"),
    ]
    assert summary["总交易单数"] == "2" and summary["退款总金额"] == "19.99"
    assert sb.ledger(careful["id"])["debits"] == []

    with pytest.raises(WeChatPayException) as exc:
        client.tools.download_bill("20261121")
    assert exc.value.return_msg == "No Bill Exist"


def test_python_alipay_sdk_full_flow(live: LiveServer) -> None:
    sb = live.sandbox
    ali = AliPay(
        appid=ALIPAY_APP_ID,
        app_notify_url=None,
        app_private_key_string=KEYS.app_private,
        alipay_public_key_string=KEYS.sandbox_public,
        sign_type="RSA2",
    )
    ali._gateway = live.url + "/gateway.do"  # the SDK has no public setting for the gateway
    wallet = sb.wallet("alipay", 100_000, name="李四")

    paid = ali.api_alipay_trade_pay(
        out_trade_no="TLA000001",
        scene="bar_code",
        auth_code=sb.code(wallet["id"]),
        subject="商品",
        total_amount="39.99",
        store_id="S001",
    )
    assert paid["code"] == "10000" and paid["total_amount"] == "39.99"

    query = ali.api_alipay_trade_query(out_trade_no="TLA000001")
    assert query["trade_status"] == "TRADE_SUCCESS"

    second = ali.api_alipay_trade_pay(
        out_trade_no="TLA000002",
        scene="bar_code",
        auth_code=sb.code(wallet["id"]),
        subject="商品",
        total_amount="12.50",
    )
    assert second["code"] == "10000"
    cancel = ali.api_alipay_trade_cancel(out_trade_no="TLA000002")
    assert cancel["action"] == "refund" and cancel["retry_flag"] == "N"

    refund = ali.api_alipay_trade_refund(
        refund_amount="10.00", out_trade_no="TLA000001", out_request_no="RTLA000001"
    )
    assert refund["fund_change"] == "Y" and refund["refund_fee"] == "10.00"
    again = ali.api_alipay_trade_refund(
        refund_amount="10.00", out_trade_no="TLA000001", out_request_no="RTLA000001"
    )
    assert again["fund_change"] == "N"
    rq = ali.api_alipay_trade_fastpay_refund_query("RTLA000001", out_trade_no="TLA000001")
    assert rq["refund_amount"] == "10.00"

    sb.advance(25 * 3600 + 60)
    url = ali.server_api(
        "alipay.data.dataservice.bill.downloadurl.query",
        biz_content={"bill_type": "trade", "bill_date": "2026-11-20"},
    )["bill_download_url"]
    with urllib.request.urlopen(url, timeout=5) as response:
        data = response.read()
    _, detail, summary = parse_alipay(data)
    kinds = [(r["商户订单号"], r["业务类型"], r["商家实收（元）"]) for r in detail]
    assert kinds == [
        ("TLA000001", "交易", "39.99"),
        ("TLA000001", "退款", "-10.00"),
        ("TLA000002", "交易", "12.50"),
        ("TLA000002", "退款", "-12.50"),
    ]
    total = next(r for r in summary if r["门店编号"] == "合计")
    assert total["商家实收（元）"] == "29.99"

    sb.advance(31)  # the URL lives 30 s of sandbox time
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(url, timeout=5)
