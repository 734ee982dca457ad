"""WeChat Pay v2 conformance: fields, codes, signatures both ways, and provider behaviour."""

from __future__ import annotations

from tests.sandbox.conftest import APPID, MCH_ID, WECHAT_KEY, Sandbox
from tillit.sandbox.signing import parse_wechat_xml, to_wechat_xml, wechat_sign


def test_official_signature_vector() -> None:
    fields = {
        "appid": "wxd930ea5d5a258f4f",
        "body": "test",
        "device_info": "1000",
        "mch_id": "10000100",
        "nonce_str": "ibuaiVcKdpRxkhJA",
    }
    key = "192006250b4c09247ec02edce69f6a2d"
    assert wechat_sign(fields, key) == "9A0A8659F005D6984697E2CA0A9CF3B7"
    assert wechat_sign(fields, key, "HMAC-SHA256") == (
        "6A9AE1657590FD6257D693A078E1C3E4BB6BA4DC30B23E0EE2496E54170DACD6"
    )


def test_micropay_success_fields_and_signed_answer_both_sign_types(sandbox: Sandbox) -> None:
    wallet = sandbox.wallet("wechat", 10_000)
    for n, sign_type in enumerate(("MD5", "HMAC-SHA256")):
        answer = sandbox.micropay(
            f"T{n}", 1234, sandbox.code(wallet["id"]), sign_type=sign_type, attach="x", device_info="T001"
        )
        assert answer["return_code"] == "SUCCESS" and answer["result_code"] == "SUCCESS"
        assert answer["appid"] == APPID and answer["mch_id"] == MCH_ID
        assert (
            answer["total_fee"] == "1234"
            and answer["cash_fee"] == "1234"
            and answer["trade_type"] == "MICROPAY"
        )
        assert answer["transaction_id"].startswith("4200") and len(answer["transaction_id"]) == 28
        assert answer["attach"] == "x" and answer["device_info"] == "T001" and len(answer["time_end"]) == 14
        assert wechat_sign(answer, WECHAT_KEY, sign_type) == answer["sign"]
    assert sandbox.ledger(wallet["id"])["total_debited_fen"] == 2468


def _trades(sandbox: Sandbox) -> list[dict[str, object]]:
    return list(sandbox.client.get("/sandbox/trades").json()["trades"])


def test_bad_signature_bad_xml_unknown_merchant_write_nothing(sandbox: Sandbox) -> None:
    wallet = sandbox.wallet("wechat", 10_000)
    code = sandbox.code(wallet["id"])
    bad = sandbox.micropay("T1", 100, code, key="0" * 32)
    assert bad == {"return_code": "FAIL", "return_msg": "签名错误"}
    fields = {"appid": APPID, "mch_id": MCH_ID, "nonce_str": "n", "sign_type": "SHA1", "out_trade_no": "T1"}
    fields["sign"] = wechat_sign(fields, WECHAT_KEY)
    r = sandbox.client.post("/pay/orderquery", content=to_wechat_xml(fields).encode())
    assert parse_wechat_xml(r.content)["return_code"] == "FAIL"
    r = sandbox.client.post("/pay/micropay", content=b"<xml><a>1</a>")
    assert parse_wechat_xml(r.content)["return_msg"] == "XML格式错误"
    r = sandbox.client.post("/pay/micropay", content=b'<!DOCTYPE x [<!ENTITY a "b">]><xml><a>&a;</a></xml>')
    assert parse_wechat_xml(r.content)["return_code"] == "FAIL"
    fields = {"appid": APPID, "mch_id": "999", "nonce_str": "n"}
    fields["sign"] = wechat_sign(fields, WECHAT_KEY)
    r = sandbox.client.post("/pay/orderquery", content=to_wechat_xml(fields).encode())
    assert parse_wechat_xml(r.content)["return_code"] == "FAIL"
    missing = sandbox.wechat("/pay/micropay", out_trade_no="T1", total_fee=100, auth_code=code)
    assert missing["err_code"] == "LACK_PARAMS"
    bad_fee = sandbox.micropay("T1", 0, code)
    assert bad_fee["err_code"] == "PARAM_ERROR"
    assert _trades(sandbox) == []
    assert sandbox.ledger(wallet["id"])["wallet"]["balance_fen"] == 10_000
    assert sandbox.micropay("T1", 100, code)["result_code"] == "SUCCESS"  # the code was never consumed


def test_payment_codes_single_use_expiring_and_provider_specific(sandbox: Sandbox) -> None:
    wallet = sandbox.wallet("wechat", 10_000)
    code = sandbox.code(wallet["id"])
    assert len(code) == 18 and 10 <= int(code[:2]) <= 15
    assert sandbox.micropay("T1", 100, code)["result_code"] == "SUCCESS"
    reused = sandbox.micropay("T2", 100, code)
    assert reused["err_code"] == "AUTH_CODE_INVALID"
    stale = sandbox.code(wallet["id"])
    sandbox.advance(60)
    assert sandbox.micropay("T3", 100, stale)["err_code"] == "AUTHCODEEXPIRE"
    alipay_wallet = sandbox.wallet("alipay", 10_000)
    assert sandbox.micropay("T4", 100, sandbox.code(alipay_wallet["id"]))["err_code"] == "AUTH_CODE_INVALID"
    assert sandbox.micropay("T5", 100, "134567890123456789")["err_code"] == "AUTH_CODE_INVALID"
    assert sandbox.ledger(wallet["id"])["total_debited_fen"] == 100


def test_notenough_and_idempotent_out_trade_no(sandbox: Sandbox) -> None:
    poor = sandbox.wallet("wechat", 50)
    assert sandbox.micropay("T1", 100, sandbox.code(poor["id"]))["err_code"] == "NOTENOUGH"
    query = sandbox.wechat("/pay/orderquery", out_trade_no="T1")
    assert query["trade_state"] == "PAYERROR"

    rich = sandbox.wallet("wechat", 10_000)
    code = sandbox.code(rich["id"])
    first = sandbox.micropay("T2", 300, code)
    again = sandbox.micropay("T2", 300, code)
    assert first["transaction_id"] == again["transaction_id"] and again["result_code"] == "SUCCESS"
    other = sandbox.micropay("T2", 301, code)
    assert other["err_code"] == "OUT_TRADE_NO_USED"
    assert sandbox.ledger(rich["id"])["total_debited_fen"] == 300


def test_password_step_confirm_and_auto_revoke(sandbox: Sandbox) -> None:
    wallet = sandbox.wallet("wechat", 500_000)
    # Above the 1000 yuan threshold: USERPAYING until the customer enters the password.
    assert sandbox.micropay("T1", 100_001, sandbox.code(wallet["id"]))["err_code"] == "USERPAYING"
    assert sandbox.wechat("/pay/orderquery", out_trade_no="T1")["trade_state"] == "USERPAYING"
    wrong = sandbox.client.post(f"/sandbox/wallets/{wallet['id']}/confirm", json={"password": "000000"})
    assert wrong.status_code == 403 and wrong.json()["error"]["code"] == "wrong_password"
    assert sandbox.wechat("/pay/orderquery", out_trade_no="T1")["trade_state"] == "USERPAYING"
    ok = sandbox.client.post(f"/sandbox/wallets/{wallet['id']}/confirm", json={"password": "123456"})
    assert ok.status_code == 200 and ok.json()["status"] == "PAID"
    assert sandbox.wechat("/pay/orderquery", out_trade_no="T1")["trade_state"] == "SUCCESS"

    assert sandbox.micropay("T2", 100_001, sandbox.code(wallet["id"]))["err_code"] == "USERPAYING"
    sandbox.advance(44)
    assert sandbox.wechat("/pay/orderquery", out_trade_no="T2")["trade_state"] == "USERPAYING"
    sandbox.advance(1)
    assert sandbox.wechat("/pay/orderquery", out_trade_no="T2")["trade_state"] == "REVOKED"
    late = sandbox.client.post(f"/sandbox/wallets/{wallet['id']}/confirm", json={"password": "123456"})
    assert late.status_code == 409
    assert sandbox.ledger(wallet["id"])["total_debited_fen"] == 100_001


def test_reverse_semantics(sandbox: Sandbox) -> None:
    wallet = sandbox.wallet("wechat", 10_000, always_password=True)
    assert sandbox.micropay("T1", 500, sandbox.code(wallet["id"]))["err_code"] == "USERPAYING"
    paying = sandbox.wechat("/secapi/pay/reverse", out_trade_no="T1")
    assert paying["err_code"] == "USERPAYING" and paying["recall"] == "Y"
    sandbox.client.post(f"/sandbox/wallets/{wallet['id']}/cancel")
    assert sandbox.wechat("/pay/orderquery", out_trade_no="T1")["trade_state"] == "PAYERROR"
    done = sandbox.wechat("/secapi/pay/reverse", out_trade_no="T1")
    assert done["result_code"] == "SUCCESS" and done["recall"] == "N"
    assert sandbox.wechat("/pay/orderquery", out_trade_no="T1")["trade_state"] == "REVOKED"
    assert sandbox.wechat("/secapi/pay/reverse", out_trade_no="T1")["recall"] == "N"  # idempotent

    # Reversing a paid trade refunds it in full.
    payer = sandbox.wallet("wechat", 10_000)
    code = sandbox.code(payer["id"])
    assert sandbox.micropay("T2", 700, code)["result_code"] == "SUCCESS"
    assert sandbox.wechat("/secapi/pay/reverse", out_trade_no="T2")["recall"] == "N"
    assert sandbox.wechat("/pay/orderquery", out_trade_no="T2")["trade_state"] == "REVOKED"
    truth = sandbox.ledger(payer["id"])
    assert truth["total_debited_fen"] == 700 and truth["total_refunded_fen"] == 700
    assert truth["wallet"]["balance_fen"] == 10_000
    assert sandbox.micropay("T2", 700, code)["err_code"] == "ORDERREVERSED"

    # A reference reversed before any trade existed can never be charged later.
    assert sandbox.wechat("/secapi/pay/reverse", out_trade_no="T3")["recall"] == "N"
    assert sandbox.micropay("T3", 100, sandbox.code(payer["id"]))["err_code"] == "ORDERREVERSED"
    assert sandbox.wechat("/pay/orderquery", out_trade_no="T3")["err_code"] == "ORDERNOTEXIST"
    assert sandbox.ledger(payer["id"])["total_debited_fen"] == 700
    assert sandbox.wechat("/secapi/pay/reverse", transaction_id="4200")["err_code"] == "INVALID_TRANSACTIONID"


def test_closeorder(sandbox: Sandbox) -> None:
    wallet = sandbox.wallet("wechat", 10_000)
    sandbox.micropay("T1", 100, sandbox.code(wallet["id"]))
    assert sandbox.wechat("/pay/closeorder", out_trade_no="T1")["err_code"] == "ORDERPAID"
    assert sandbox.wechat("/pay/closeorder", out_trade_no="NOPE")["err_code"] == "ORDERNOTEXIST"
    slow = sandbox.wallet("wechat", 10_000, always_password=True)
    sandbox.micropay("T2", 100, sandbox.code(slow["id"]))
    assert sandbox.wechat("/pay/closeorder", out_trade_no="T2")["result_code"] == "SUCCESS"
    assert sandbox.wechat("/pay/orderquery", out_trade_no="T2")["trade_state"] == "CLOSED"
    assert sandbox.wechat("/pay/closeorder", out_trade_no="T2")["err_code"] == "ORDERCLOSED"


def _refund(sandbox: Sandbox, out_refund_no: str, refund_fee: int, total_fee: int = 1000) -> dict[str, str]:
    return sandbox.wechat(
        "/secapi/pay/refund",
        out_trade_no="T1",
        out_refund_no=out_refund_no,
        total_fee=total_fee,
        refund_fee=refund_fee,
    )


def test_refund_rules_and_refund_query(sandbox: Sandbox) -> None:
    wallet = sandbox.wallet("wechat", 10_000)
    sandbox.micropay("T1", 1000, sandbox.code(wallet["id"]))
    assert sandbox.wechat("/pay/refundquery", out_trade_no="T1")["err_code"] == "REFUNDNOTEXIST"
    assert _refund(sandbox, "R0", 1001)["err_code"] == "ERROR"
    assert _refund(sandbox, "R0", 10, total_fee=999)["err_code"] == "PARAM_ERROR"
    first = _refund(sandbox, "R1", 300)
    assert first["result_code"] == "SUCCESS" and first["refund_fee"] == "300"
    replay = _refund(sandbox, "R1", 300)
    assert replay["refund_id"] == first["refund_id"]
    assert _refund(sandbox, "R1", 301)["err_code"] == "PARAM_ERROR"
    assert _refund(sandbox, "R2", 700)["result_code"] == "SUCCESS"
    assert _refund(sandbox, "R3", 1)["err_code"] == "ERROR"  # nothing left to refund
    query = sandbox.wechat("/pay/refundquery", out_trade_no="T1")
    assert query["refund_count"] == "2" and query["refund_status_0"] == "SUCCESS"
    assert query["out_refund_no_1"] == "R2" and query["refund_fee"] == "1000"
    single = sandbox.wechat("/pay/refundquery", refund_id=first["refund_id"])
    assert single["refund_count"] == "1" and single["out_refund_no_0"] == "R1"
    assert sandbox.wechat("/pay/orderquery", out_trade_no="T1")["trade_state"] == "REFUND"
    truth = sandbox.ledger(wallet["id"])
    assert [r["amount_fen"] for r in truth["refunds"]] == [300, 700]
    assert (
        sandbox.wechat(
            "/secapi/pay/refund", out_trade_no="NOPE", out_refund_no="R", total_fee=1, refund_fee=1
        )["err_code"]
        == "ORDERNOTEXIST"
    )


def test_at_most_50_refunds(sandbox: Sandbox) -> None:
    wallet = sandbox.wallet("wechat", 10_000)
    sandbox.micropay("T1", 1000, sandbox.code(wallet["id"]))
    for n in range(50):
        assert _refund(sandbox, f"R{n}", 1)["result_code"] == "SUCCESS"
    assert _refund(sandbox, "R50", 1)["err_code"] == "ERROR"
    assert sandbox.ledger(wallet["id"])["total_refunded_fen"] == 50


def test_refund_interval_and_processing_state(make_sandbox) -> None:  # type: ignore[no-untyped-def]
    sandbox = make_sandbox(
        behaviour={"wechat_refund_min_interval_seconds": 60, "wechat_refund_processing_seconds": 10}
    )
    wallet = sandbox.wallet("wechat", 10_000)
    sandbox.micropay("T1", 1000, sandbox.code(wallet["id"]))
    assert _refund(sandbox, "R1", 100)["result_code"] == "SUCCESS"
    assert sandbox.wechat("/pay/refundquery", out_refund_no="R1")["refund_status_0"] == "PROCESSING"
    assert sandbox.ledger(wallet["id"])["total_refunded_fen"] == 0
    assert _refund(sandbox, "R2", 100)["err_code"] == "FREQUENCY_LIMITED"
    sandbox.advance(10)
    assert sandbox.wechat("/pay/refundquery", out_refund_no="R1")["refund_status_0"] == "SUCCESS"
    assert sandbox.ledger(wallet["id"])["total_refunded_fen"] == 100
    sandbox.advance(50)
    assert _refund(sandbox, "R2", 100)["result_code"] == "SUCCESS"
