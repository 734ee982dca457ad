"""WeChat Pay v2 barcode-payment endpoints (XML over HTTP, MD5 / HMAC-SHA256 signatures).

Answer layering as the real API (providers.md §1.1): ``return_code`` reports the communication
(bad XML, unknown merchant, bad signature -> FAIL, unsigned); ``result_code``/``err_code`` report
the business outcome in a signed answer. Micropay has no async notification (§1.2).
"""

from __future__ import annotations

import gzip
import re
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta

from fastapi import APIRouter, Request, Response

from tillit.sandbox import onboarding, statements
from tillit.sandbox.bills import wechat_bill
from tillit.sandbox.config import WechatMerchant
from tillit.sandbox.engine import Outcome, Refund, Trade
from tillit.sandbox.runtime import Runtime, runtime
from tillit.sandbox.signing import (
    WECHAT_SIGN_TYPES,
    XmlError,
    parse_wechat_xml,
    to_wechat_xml,
    wechat_sign,
    wechat_verify,
)

router = APIRouter()

Fields = dict[str, str]
Handler = Callable[[Runtime, WechatMerchant, Fields], "Fields | Response"]

_OUT_NO = re.compile(r"^[A-Za-z0-9_\-|*@]{1,32}$")
_REFUND_NO = re.compile(r"^[A-Za-z0-9_\-|*@]{1,64}$")
MAX_FEN = 10**10

TRADE_STATE_DESC = {
    "SUCCESS": "支付成功",
    "REFUND": "订单发生过退款，退款详情请查询退款单",
    "NOTPAY": "订单未支付",
    "CLOSED": "订单已关闭",
    "REVOKED": "订单已撤销",
    "USERPAYING": "需要用户输入支付密码",
    "PAYERROR": "支付失败,请撤销订单",
}


def _xml(fields: Fields, status: int = 200) -> Response:
    return Response(to_wechat_xml(fields), status_code=status, media_type="text/xml; charset=utf-8")


def _fail(message: str) -> Response:
    """A communication-level failure: ``return_code=FAIL``, unsigned (the real API does not sign it)."""
    return _xml({"return_code": "FAIL", "return_msg": message})


def _err(code: str, description: str, **extra: str) -> Fields:
    return {"result_code": "FAIL", "err_code": code, "err_code_des": description, **extra}


def _time_end(moment: datetime | None) -> str:
    return moment.strftime("%Y%m%d%H%M%S") if moment else ""


def trade_state(trade: Trade) -> str:
    """The ``trade_state`` orderquery reports for a trade."""
    if trade.status == "PENDING":
        return "USERPAYING"
    if trade.status == "PAID":
        return "REFUND" if trade.refunded_fen > 0 else "SUCCESS"
    if trade.status == "FAILED":
        return "PAYERROR"
    return trade.status  # CLOSED / REVOKED


def bank_type(trade: Trade) -> str:
    """The payer's ``bank_type`` (its wallet's funding source), ``OTHERS`` when not set."""
    return str(trade.extra.get("funding") or "OTHERS")


def _paid_fields(rt: Runtime, trade: Trade) -> Fields:
    wallet = rt.engine.wallet_of(trade)
    fields: Fields = {
        "device_info": str(trade.extra.get("device_info", "")),
        "openid": wallet.buyer_id if wallet else "",
        "is_subscribe": "N",
        "trade_type": "MICROPAY",
        "bank_type": bank_type(trade),
        "fee_type": "CNY",
        "total_fee": str(trade.amount_fen),
        "cash_fee_type": "CNY",
        "cash_fee": str(trade.amount_fen),
        "transaction_id": trade.trade_no,
        "out_trade_no": trade.out_trade_no,
        "attach": str(trade.extra.get("attach", "")),
        "time_end": _time_end(trade.paid),
    }
    return fields


def _missing(fields: Fields, *names: str) -> Fields | None:
    for name in names:
        if not fields.get(name):
            return _err("LACK_PARAMS", f"缺少参数{name}")
    return None


# --------------------------------------------------------------------------- handlers


def micropay(rt: Runtime, merchant: WechatMerchant, f: Fields) -> Fields:
    """``/pay/micropay``: charge the customer's payment code."""
    missing = _missing(f, "body", "out_trade_no", "total_fee", "spbill_create_ip", "auth_code")
    if missing:
        return missing
    if not _OUT_NO.match(f["out_trade_no"]):
        return _err("PARAM_ERROR", "out_trade_no参数格式错误")
    if not f["total_fee"].isdigit() or not 0 < int(f["total_fee"]) <= MAX_FEN:
        return _err("PARAM_ERROR", "total_fee参数错误")
    if f.get("fee_type", "CNY") != "CNY":
        return _err("PARAM_ERROR", "fee_type参数错误")
    if len(f["body"]) > 128 or len(f["auth_code"]) > 128:
        return _err("PARAM_ERROR", "body或auth_code参数长度错误")
    amount = int(f["total_fee"])
    params = {"total_fee": amount, "body": f["body"], "auth_code": f["auth_code"]}
    extra = {k: f[k] for k in ("body", "attach", "device_info", "spbill_create_ip", "sub_mch_id") if f.get(k)}
    result = rt.engine.pay(
        "wechat", merchant.mch_id, f["out_trade_no"], f["auth_code"], amount, params, extra
    )
    if result.outcome is Outcome.MISMATCH:
        return _err("OUT_TRADE_NO_USED", "商户订单号重复")
    if result.outcome is Outcome.TOMBSTONE:
        return _err("ORDERREVERSED", "订单已撤销")
    if result.outcome is Outcome.CODE_INVALID:
        return _err("AUTH_CODE_INVALID", "付款码无效，请重新扫码")
    if result.outcome is Outcome.CODE_USED:
        return _err("AUTH_CODE_INVALID", "每个二维码仅限使用一次，请刷新再试")
    if result.outcome is Outcome.CODE_EXPIRED:
        return _err("AUTHCODEEXPIRE", "二维码已过期，请用户在微信上刷新后再试")
    trade = result.trade
    assert trade is not None
    if trade.status == "PAID":
        return {"result_code": "SUCCESS", **_paid_fields(rt, trade)}
    if trade.status == "PENDING":
        return _err("USERPAYING", "需要用户输入支付密码")
    if trade.status == "FAILED" and trade.fail_code == "NOTENOUGH":
        return _err("NOTENOUGH", "余额不足")
    if trade.status == "FAILED":
        return _err("TRADE_ERROR", "支付失败,请撤销订单")
    if trade.status == "REVOKED":
        return _err("ORDERREVERSED", "订单已撤销")
    return _err("ORDERCLOSED", "订单已关闭")


def orderquery(rt: Runtime, merchant: WechatMerchant, f: Fields) -> Fields:
    """``/pay/orderquery``: the trade's ``trade_state`` (the final word, §1.2)."""
    if not (f.get("transaction_id") or f.get("out_trade_no")):
        return _err("PARAM_ERROR", "transaction_id和out_trade_no必须填写其一")
    trade = rt.engine.find_trade("wechat", merchant.mch_id, f.get("out_trade_no"), f.get("transaction_id"))
    if trade is None:
        return _err("ORDERNOTEXIST", "此交易订单号不存在")
    state = trade_state(trade)
    fields = {
        "result_code": "SUCCESS",
        **_paid_fields(rt, trade),
        "trade_state": state,
        "trade_state_desc": TRADE_STATE_DESC[state],
    }
    if trade.paid is None:
        fields["time_end"] = ""
        fields["cash_fee"] = "0"
    return fields


def reverse(rt: Runtime, merchant: WechatMerchant, f: Fields) -> Fields:
    """``/secapi/pay/reverse``: unpaid -> revoked, paid -> refunded; ``recall`` says call again."""
    if not (f.get("transaction_id") or f.get("out_trade_no")):
        return _err("PARAM_ERROR", "transaction_id和out_trade_no必须填写其一", recall="N")
    result = rt.engine.reverse("wechat", merchant.mch_id, f.get("out_trade_no"), f.get("transaction_id"))
    if result.outcome in (Outcome.OK, Outcome.REPLAY, Outcome.TOMBSTONE):
        return {"result_code": "SUCCESS", "recall": "N"}
    if result.outcome is Outcome.USER_PAYING:
        return _err("USERPAYING", "用户正在支付中的订单不允许撤销，请稍后再试", recall="Y")
    if result.outcome is Outcome.EXPIRED:
        return _err("REVERSE_EXPIRE", "订单已超过撤销期限，请使用退款接口", recall="N")
    return _err("INVALID_TRANSACTIONID", "无效transaction_id", recall="N")


def closeorder(rt: Runtime, merchant: WechatMerchant, f: Fields) -> Fields:
    """``/pay/closeorder``: close an unpaid order (micropay merchants should reverse instead)."""
    missing = _missing(f, "out_trade_no")
    if missing:
        return missing
    result = rt.engine.close("wechat", merchant.mch_id, f["out_trade_no"], None)
    if result.outcome is Outcome.OK:
        return {"result_code": "SUCCESS"}
    if result.outcome is Outcome.PAID_ALREADY:
        return _err("ORDERPAID", "订单已支付，不能发起关单，请当作已支付的正常交易")
    if result.outcome is Outcome.CLOSED_ALREADY:
        return _err("ORDERCLOSED", "订单已关闭")
    return _err("ORDERNOTEXIST", "订单不存在")


def _refund_fields(trade: Trade, refund: Refund) -> Fields:
    return {
        "result_code": "SUCCESS",
        "transaction_id": trade.trade_no,
        "out_trade_no": trade.out_trade_no,
        "out_refund_no": refund.out_refund_no,
        "refund_id": refund.refund_no,
        "refund_channel": "",
        "refund_fee": str(refund.amount_fen),
        "coupon_refund_fee": "0",
        "total_fee": str(trade.amount_fen),
        "cash_fee": str(trade.amount_fen),
        "cash_refund_fee": str(refund.amount_fen),
    }


def refund(rt: Runtime, merchant: WechatMerchant, f: Fields) -> Fields:
    """``/secapi/pay/refund``: the answer only means "accepted"; the refund query is the truth."""
    missing = _missing(f, "out_refund_no", "total_fee", "refund_fee")
    if missing:
        return missing
    if not (f.get("transaction_id") or f.get("out_trade_no")):
        return _err("PARAM_ERROR", "transaction_id和out_trade_no必须填写其一")
    if not _REFUND_NO.match(f["out_refund_no"]):
        return _err("PARAM_ERROR", "out_refund_no参数格式错误")
    if not (f["total_fee"].isdigit() and f["refund_fee"].isdigit()) or int(f["refund_fee"]) <= 0:
        return _err("PARAM_ERROR", "total_fee或refund_fee参数错误")
    trade = rt.engine.find_trade("wechat", merchant.mch_id, f.get("out_trade_no"), f.get("transaction_id"))
    if trade is None:
        return _err("ORDERNOTEXIST", "订单不存在")
    if int(f["total_fee"]) != trade.amount_fen:
        return _err("PARAM_ERROR", "订单金额与实际金额不一致")
    result = rt.engine.refund(
        "wechat", merchant.mch_id, trade.out_trade_no, None, f["out_refund_no"], int(f["refund_fee"])
    )
    if result.outcome in (Outcome.OK, Outcome.REPLAY):
        assert result.trade is not None and result.refund is not None
        return _refund_fields(result.trade, result.refund)
    errors = {
        Outcome.MISMATCH: ("PARAM_ERROR", "同一退款单号的退款金额与之前请求不一致"),
        Outcome.NOT_FOUND: ("ORDERNOTEXIST", "订单不存在"),
        Outcome.STATUS_ERROR: ("ERROR", "订单状态错误，不能退款"),
        Outcome.EXCEEDS: ("ERROR", "申请退款金额超过订单可退金额"),
        Outcome.TOO_MANY: ("ERROR", "订单已经超过可退款的最大次数"),
        Outcome.TOO_SOON: ("FREQUENCY_LIMITED", "同一笔订单两次退款需间隔1分钟"),
        Outcome.EXPIRED: ("TRADE_OVERDUE", "订单已经超过退款期限"),
    }
    code, description = errors[result.outcome]
    return _err(code, description)


def refundquery(rt: Runtime, merchant: WechatMerchant, f: Fields) -> Fields:
    """``/pay/refundquery``: ``refund_status_$n`` per refund (SUCCESS / PROCESSING)."""
    engine = rt.engine
    found: tuple[Trade, list[Refund]] | None = None
    if f.get("refund_id"):
        hit = engine.find_refund("wechat", merchant.mch_id, f["refund_id"])
        found = (hit[0], [hit[1]]) if hit else None
    elif f.get("out_refund_no"):
        hit = engine.find_refund_by_out_no("wechat", merchant.mch_id, f["out_refund_no"])
        found = (hit[0], [hit[1]]) if hit else None
    elif f.get("transaction_id") or f.get("out_trade_no"):
        trade = engine.find_trade("wechat", merchant.mch_id, f.get("out_trade_no"), f.get("transaction_id"))
        if trade is not None:
            found = (trade, [r for r in engine.refunds_of(trade.id) if r.kind == "refund"])
    else:
        return _err("PARAM_ERROR", "refund_id、out_refund_no、transaction_id、out_trade_no必须填写其一")
    if found is None or not found[1]:
        return _err("REFUNDNOTEXIST", "not exist")
    if str(found[0].extra.get("sub_mch_id", "")) != f.get("sub_mch_id", ""):
        # 服务商模式: another sub-merchant's (or a direct merchant's) refund is not found for this one,
        # whichever reference names it — as orderquery answers ORDERNOTEXIST (_sub_merchant_refusal).
        return _err("REFUNDNOTEXIST", "not exist")
    trade, refunds = found
    fields: Fields = {
        "result_code": "SUCCESS",
        "transaction_id": trade.trade_no,
        "out_trade_no": trade.out_trade_no,
        "total_fee": str(trade.amount_fen),
        "cash_fee": str(trade.amount_fen),
        "refund_fee": str(sum(r.amount_fen for r in refunds)),
        "refund_count": str(len(refunds)),
    }
    for n, r in enumerate(refunds):
        fields.update(
            {
                f"out_refund_no_{n}": r.out_refund_no,
                f"refund_id_{n}": r.refund_no,
                f"refund_channel_{n}": "ORIGINAL",
                f"refund_fee_{n}": str(r.amount_fen),
                f"refund_status_{n}": r.status,
                f"refund_account_{n}": "REFUND_SOURCE_UNSETTLED_FUNDS",
                f"refund_recv_accout_{n}": "支付用户的零钱",
            }
        )
        if r.success:
            fields[f"refund_success_time_{n}"] = r.success.strftime("%Y-%m-%d %H:%M:%S")
    return fields


def _bill_fail(message: str, code: str) -> Response:
    return _xml({"return_code": "FAIL", "return_msg": message, "error_code": code})


def downloadbill(rt: Runtime, merchant: WechatMerchant, f: Fields) -> Fields | Response:
    """``/pay/downloadbill``: the day's bill as text (gzip with ``tar_type=GZIP``)."""
    try:
        bill_date = datetime.strptime(f.get("bill_date", ""), "%Y%m%d").date()
    except ValueError:
        return _bill_fail("invalid bill_date", "20001")
    bill_type = f.get("bill_type") or "ALL"
    if bill_type not in ("ALL", "SUCCESS", "REFUND"):
        return _bill_fail("invalid bill_type", "20001")
    if f.get("tar_type") not in (None, "", "GZIP"):
        return _bill_fail("invalid tar_type", "20001")
    start, end, ready = rt.bill_window(bill_date)
    now = rt.engine.now()
    # Not generated yet (before 10:00 next day), older than 3 months, or a "late bill" fault.
    if now < ready or now - end > timedelta(days=92) or rt.faults.late_bill(f"wechat:{bill_date}"):
        return _bill_fail("No Bill Exist", "20002")
    payments, refunds = rt.engine.trades_for_bill("wechat", merchant.mch_id, start, end)
    text = wechat_bill(
        merchant,
        bill_type,
        payments,
        refunds,
        rt.engine.wallet_of,
        f.get("device_info") or None,
        f.get("sub_mch_id") or None,
    )
    if text is None:
        return _bill_fail("No Bill Exist", "20002")
    data = text.encode("utf-8")
    if f.get("tar_type") == "GZIP":
        return Response(gzip.compress(data, mtime=0), media_type="application/x-gzip")
    return Response(data, media_type="text/plain; charset=utf-8")


# --------------------------------------------------------------------------- plumbing

#: Endpoints that name an existing trade: a trade of another sub-merchant is not found there.
_TRADE_ENDPOINTS = frozenset({"wechat.orderquery", "wechat.reverse", "wechat.refund", "wechat.closeorder"})


def _sub_merchant_refusal(
    request: Request, rt: Runtime, merchant: WechatMerchant, endpoint: str, f: Fields
) -> Fields | Response | None:
    """The service-provider mode (服务商模式): a call naming ``sub_mch_id`` is refused unless the
    sandbox's 进件 issued that sub-merchant and it is active (finished, not frozen): ``NOAUTH``, a
    definite business failure. A trade is the sub-merchant's it was paid to: another sub-merchant (or
    none) naming it gets ``ORDERNOTEXIST``."""
    sub = f.get("sub_mch_id", "")
    if sub:
        status = onboarding.sub_merchant_status(request, "wechat", sub)
        if status != "active":
            message = (
                "特约子商户号不存在" if status == "unknown" else "特约子商户商户号未授权服务商的产品权限"
            )
            if endpoint == "wechat.downloadbill":
                return _bill_fail(message, "NOAUTH")
            return _err("NOAUTH", message, **({"recall": "N"} if endpoint == "wechat.reverse" else {}))
    if endpoint in _TRADE_ENDPOINTS and (f.get("out_trade_no") or f.get("transaction_id")):
        trade = rt.engine.find_trade(
            "wechat", merchant.mch_id, f.get("out_trade_no"), f.get("transaction_id")
        )
        if trade is not None and str(trade.extra.get("sub_mch_id", "")) != sub:
            return _err(
                "ORDERNOTEXIST",
                "此交易订单号不存在",
                **({"recall": "N"} if endpoint == "wechat.reverse" else {}),
            )
    return None


async def _serve(request: Request, endpoint: str, handler: Handler) -> Response:
    rt = runtime(request)
    decision = rt.faults.decide(endpoint)
    # Read the body first: a "hang" must still process the request after the client has given up.
    body = await request.body()
    await rt.delay(decision)
    try:
        fields = parse_wechat_xml(body)
    except XmlError:
        return _fail("XML格式错误")
    merchant = rt.config.wechat_merchant(fields.get("mch_id", ""))
    if merchant is None:
        return _fail("mch_id参数格式错误")
    if fields.get("appid") != merchant.appid:
        return _fail("appid和mch_id不匹配")
    sign_type = fields.get("sign_type") or "MD5"
    if sign_type not in WECHAT_SIGN_TYPES:
        return _fail("sign_type参数格式错误")
    if not fields.get("nonce_str"):
        return _fail("缺少参数nonce_str")
    if not wechat_verify(fields, merchant.api_key):
        return _fail("签名错误")
    refusal = _sub_merchant_refusal(request, rt, merchant, endpoint, fields)
    if refusal is not None:
        answer: Fields | Response = refusal
    elif decision.system_error:
        answer = _err("SYSTEMERROR", "系统超时")
        if endpoint == "wechat.reverse":
            answer = _err("SYSTEMERROR", "系统超时", recall="Y")
        elif endpoint == "wechat.downloadbill":
            answer = _bill_fail("SYSTEMERROR", "20007")
    else:
        answer = handler(rt, merchant, fields)  # commits before the answer can be lost
    if decision.answer_lost:
        return Response(b"", status_code=rt.faults.profile.answer_lost_status)
    if isinstance(answer, Response):
        return answer
    out: Fields = {
        "return_code": "SUCCESS",
        "return_msg": "OK",
        "appid": merchant.appid,
        "mch_id": merchant.mch_id,
        "nonce_str": secrets.token_hex(16),
        **({"sub_mch_id": fields["sub_mch_id"]} if fields.get("sub_mch_id") else {}),
        **{k: v for k, v in answer.items() if v != ""},
    }
    key = merchant.api_key
    if decision.bad_signature:
        key = key[::-1]  # a wrong key gives a well-formed but wrong signature
    out["sign"] = wechat_sign(out, key, sign_type)
    return _xml(out)


ROUTES: dict[str, tuple[str, Handler]] = {
    "/pay/micropay": ("wechat.micropay", micropay),
    "/pay/orderquery": ("wechat.orderquery", orderquery),
    "/secapi/pay/reverse": ("wechat.reverse", reverse),
    "/pay/closeorder": ("wechat.closeorder", closeorder),
    "/secapi/pay/refund": ("wechat.refund", refund),
    "/pay/refundquery": ("wechat.refundquery", refundquery),
    "/pay/downloadbill": ("wechat.downloadbill", downloadbill),
    "/pay/downloadfundflow": ("wechat.downloadfundflow", statements.downloadfundflow),  # settle12
}


def _make_route(endpoint: str, handler: Handler) -> Callable[[Request], object]:
    async def route(request: Request) -> Response:
        return await _serve(request, endpoint, handler)

    route.__name__ = endpoint.replace(".", "_")
    return route


for _path, (_endpoint, _handler) in ROUTES.items():
    router.add_api_route(_path, _make_route(_endpoint, _handler), methods=["POST"], include_in_schema=False)
