"""Alipay open-API gateway ``/gateway.do`` and the bill download URL.

Requests: common form/query parameters plus a JSON ``biz_content``, RSA2-signed with the app's
private key (verified here with the configured app public key). Responses:
``{"<method>_response": {...}, "sign": "..."}`` where the signature covers the exact JSON text of
the response member, made with the sandbox's private key (providers.md §2.1).
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request, Response

from tillit.sandbox import onboarding, statements
from tillit.sandbox.bills import alipay_bill, mask_account
from tillit.sandbox.clock import from_ms, to_ms
from tillit.sandbox.config import AlipayMerchant
from tillit.sandbox.engine import Outcome, Trade, Wallet
from tillit.sandbox.money import parse_yuan, yuan
from tillit.sandbox.runtime import Runtime, form_fields, runtime
from tillit.sandbox.signing import alipay_string_to_sign, rsa2_sign, rsa2_verify

router = APIRouter()

Biz = dict[str, Any]
Answer = dict[str, Any]
Handler = Callable[[Runtime, AlipayMerchant, Biz, dict[str, str], Request], Answer]

TIME_FMT = "%Y-%m-%d %H:%M:%S"
_OUT_NO = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
MAX_FEN = 100_000_000 * 100


def _ok(**fields: Any) -> Answer:
    return {"code": "10000", "msg": "Success", **fields}


def _biz_fail(sub_code: str, sub_msg: str, **fields: Any) -> Answer:
    return {"code": "40004", "msg": "Business Failed", "sub_code": sub_code, "sub_msg": sub_msg, **fields}


def _invalid(sub_msg: str) -> Answer:
    return _biz_fail("ACQ.INVALID_PARAMETER", sub_msg)


def _amount(biz: Biz, name: str) -> int | None:
    value = biz.get(name)
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        return None
    try:
        fen = parse_yuan(str(value))
    except ValueError:
        return None
    return fen if 0 < fen <= MAX_FEN else None


def masked_logon(wallet: Wallet | None) -> str:
    """``buyer_logon_id`` as Alipay returns it: ``138***@qq.com``."""
    if wallet is None:
        return ""
    local, _, domain = wallet.logon_id.partition("@")
    return f"{local[:3]}***@{domain}"


def trade_status(trade: Trade) -> str:
    """Alipay's ``trade_status`` for a trade (§2.2)."""
    if trade.status == "PENDING":
        return "WAIT_BUYER_PAY"
    if trade.status == "PAID" and trade.refunded_fen < trade.amount_fen:
        return "TRADE_SUCCESS"
    return "TRADE_CLOSED"


def fund_bill(trade: Trade, *, notify: bool = False) -> dict[str, str]:
    """The one ``fund_bill_list`` entry of a trade paid from its wallet's funding source
    (``fund_channel``, plus ``fund_type`` for a bank card); the async notification spells the keys
    ``fundChannel`` / ``fundType``."""
    channel, _, fund_type = str(trade.extra.get("funding") or "ALIPAYACCOUNT").partition(":")
    bill = {"fund_channel": channel, "amount": yuan(trade.amount_fen)}
    if fund_type:
        bill["fund_type"] = fund_type
    if notify:
        camel = {"fund_channel": "fundChannel", "fund_type": "fundType"}
        return {camel.get(k, k): v for k, v in bill.items()}
    return bill


def _trade_fields(rt: Runtime, trade: Trade) -> Answer:
    wallet = rt.engine.wallet_of(trade)
    fields: Answer = {
        "trade_no": trade.trade_no,
        "out_trade_no": trade.out_trade_no,
        "buyer_logon_id": masked_logon(wallet),
        "total_amount": yuan(trade.amount_fen),
        "buyer_user_id": wallet.buyer_id if wallet else "",
    }
    if trade.paid is not None:
        fields.update(
            receipt_amount=yuan(trade.amount_fen),
            buyer_pay_amount=yuan(trade.amount_fen),
            invoice_amount=yuan(trade.amount_fen),
            point_amount="0.00",
            fund_bill_list=[fund_bill(trade)],
        )
    return fields


def _ref(biz: Biz) -> tuple[str | None, str | None]:
    out_trade_no = biz.get("out_trade_no")
    trade_no = biz.get("trade_no")
    return (str(out_trade_no) if out_trade_no else None, str(trade_no) if trade_no else None)


# --------------------------------------------------------------------------- methods


def trade_pay(rt: Runtime, m: AlipayMerchant, biz: Biz, common: dict[str, str], request: Request) -> Answer:
    """``alipay.trade.pay`` (scene ``bar_code``): 10000 paid, 10003 waiting for the password."""
    for name in ("out_trade_no", "scene", "auth_code", "subject", "total_amount"):
        if not biz.get(name):
            return _invalid(f"缺少必选参数{name}")
    out_trade_no, auth_code, subject = str(biz["out_trade_no"]), str(biz["auth_code"]), str(biz["subject"])
    if biz["scene"] not in ("bar_code", "wave_code"):
        return _invalid("scene参数无效")
    if not _OUT_NO.match(out_trade_no) or len(subject) > 256:
        return _invalid("out_trade_no或subject参数无效")
    amount = _amount(biz, "total_amount")
    if amount is None:
        return _invalid("total_amount参数无效")
    params = {"total_amount": amount, "subject": subject, "auth_code": auth_code}
    extra = {"subject": subject, "notify_url": common.get("notify_url", "")}
    extra.update({k: str(biz[k]) for k in ("store_id", "operator_id", "terminal_id", "body") if biz.get(k)})
    # 直付通: the trade is collected for the sub-merchant (二级商户) named in sub_merchant.merchant_id,
    # which the sandbox's 进件 must have issued and which must be active (finished, not frozen).
    sub = biz.get("sub_merchant")
    if sub is not None:
        smid = str(sub.get("merchant_id") or "") if isinstance(sub, dict) else ""
        if not smid:
            return _biz_fail("ACQ.SECONDARY_MERCHANT_ID_BLANK", "二级商户编号错误")
        status = onboarding.sub_merchant_status(request, "alipay", smid)
        if status == "unknown":
            return _biz_fail("ACQ.SECONDARY_MERCHANT_ID_INVALID", "二级商户不存在")
        if status != "active":
            return _biz_fail("ACQ.SECONDARY_MERCHANT_STATUS_ERROR", "商户状态异常")
        extra["smid"] = smid
    result = rt.engine.pay("alipay", m.app_id, out_trade_no, auth_code, amount, params, extra)
    if result.outcome is Outcome.MISMATCH:
        return _biz_fail("ACQ.CONTEXT_INCONSISTENT", "交易信息被篡改")
    if result.outcome is Outcome.TOMBSTONE:
        return _biz_fail("ACQ.TRADE_HAS_CLOSE", "交易已经关闭")
    if result.outcome in (Outcome.CODE_INVALID, Outcome.CODE_USED, Outcome.CODE_EXPIRED):
        return _biz_fail(
            "ACQ.PAYMENT_AUTH_CODE_INVALID",
            "支付失败，获取顾客账户信息失败，请顾客刷新付款码后重新收款，如再次收款失败，请联系管理员处理。[SOUNDWAVE_PARSER_FAIL]",
        )
    trade = result.trade
    assert trade is not None
    if trade.status == "PAID":
        return _ok(
            **_trade_fields(rt, trade), gmt_payment=trade.paid.strftime(TIME_FMT) if trade.paid else ""
        )
    if trade.status == "PENDING":
        fields = _trade_fields(rt, trade)
        return {"code": "10003", "msg": "order success pay inprocess", **fields}
    if trade.fail_code == "NOTENOUGH":
        return _biz_fail("ACQ.BUYER_BALANCE_NOT_ENOUGH", "买家余额不足")
    return _biz_fail("ACQ.TRADE_HAS_CLOSE", "交易已经关闭")


def trade_query(rt: Runtime, m: AlipayMerchant, biz: Biz, common: dict[str, str], request: Request) -> Answer:
    """``alipay.trade.query``: ``trade_status`` is the answer."""
    out_trade_no, trade_no = _ref(biz)
    if not (out_trade_no or trade_no):
        return _invalid("out_trade_no和trade_no不能同时为空")
    trade = rt.engine.find_trade("alipay", m.app_id, out_trade_no, trade_no)
    if trade is None:
        return _biz_fail("ACQ.TRADE_NOT_EXIST", "交易不存在")
    fields = _trade_fields(rt, trade)
    fields["trade_status"] = trade_status(trade)
    if trade.paid is not None:
        fields["send_pay_date"] = trade.paid.strftime(TIME_FMT)
    return _ok(**fields)


def trade_cancel(
    rt: Runtime, m: AlipayMerchant, biz: Biz, common: dict[str, str], request: Request
) -> Answer:
    """``alipay.trade.cancel``: ``action`` close (was unpaid) or refund (was paid)."""
    out_trade_no, trade_no = _ref(biz)
    if not (out_trade_no or trade_no):
        return _invalid("out_trade_no和trade_no不能同时为空")
    result = rt.engine.reverse("alipay", m.app_id, out_trade_no, trade_no)
    if result.outcome in (Outcome.TOMBSTONE, Outcome.NOT_FOUND):
        # No trade: nothing to undo; the reference is now closed against a late pay request.
        return _ok(out_trade_no=out_trade_no or "", retry_flag="N")
    trade = result.trade
    assert trade is not None
    fields: Answer = {"trade_no": trade.trade_no, "out_trade_no": trade.out_trade_no, "retry_flag": "N"}
    if result.action:
        fields["action"] = result.action
    if result.action == "refund" and trade.closed:
        fields["gmt_refund_pay"] = trade.closed.strftime(TIME_FMT)
    return _ok(**fields)


def trade_close(rt: Runtime, m: AlipayMerchant, biz: Biz, common: dict[str, str], request: Request) -> Answer:
    """``alipay.trade.close``: unpaid trades only."""
    out_trade_no, trade_no = _ref(biz)
    if not (out_trade_no or trade_no):
        return _invalid("out_trade_no和trade_no不能同时为空")
    result = rt.engine.close("alipay", m.app_id, out_trade_no, trade_no)
    if result.outcome is Outcome.OK and result.trade:
        return _ok(trade_no=result.trade.trade_no, out_trade_no=result.trade.out_trade_no)
    if result.outcome is Outcome.PAID_ALREADY:
        return _biz_fail("ACQ.TRADE_HAS_SUCCESS", "交易已被支付")
    if result.outcome is Outcome.CLOSED_ALREADY:
        return _biz_fail("ACQ.TRADE_STATUS_ERROR", "交易状态不合法")
    return _biz_fail("ACQ.TRADE_NOT_EXIST", "交易不存在")


def trade_refund(
    rt: Runtime, m: AlipayMerchant, biz: Biz, common: dict[str, str], request: Request
) -> Answer:
    """``alipay.trade.refund``: ``fund_change`` Y when money moved on this call, N on a replay."""
    out_trade_no, trade_no = _ref(biz)
    if not (out_trade_no or trade_no):
        return _invalid("out_trade_no和trade_no不能同时为空")
    amount = _amount(biz, "refund_amount")
    if amount is None:
        return _invalid("refund_amount参数无效")
    out_request_no = str(biz.get("out_request_no") or "")
    if out_request_no and not _OUT_NO.match(out_request_no):
        return _invalid("out_request_no参数无效")
    trade = rt.engine.find_trade("alipay", m.app_id, out_trade_no, trade_no)
    if trade is None:
        return _biz_fail("ACQ.TRADE_NOT_EXIST", "交易不存在")
    if not out_request_no:
        if amount != trade.amount_fen:
            return _biz_fail("ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "退款金额与订单金额不一致")
        out_request_no = trade.out_trade_no  # a full refund without a number is keyed on the trade
    result = rt.engine.refund("alipay", m.app_id, trade.out_trade_no, None, out_request_no, amount)
    if result.outcome in (Outcome.OK, Outcome.REPLAY):
        assert result.trade is not None and result.refund is not None
        wallet = rt.engine.wallet_of(result.trade)
        return _ok(
            trade_no=result.trade.trade_no,
            out_trade_no=result.trade.out_trade_no,
            buyer_logon_id=masked_logon(wallet),
            buyer_user_id=wallet.buyer_id if wallet else "",
            fund_change="Y" if result.fund_change else "N",
            refund_fee=yuan(result.trade.refunded_fen),
            send_back_fee=yuan(result.refund.amount_fen),
            gmt_refund_pay=result.refund.created.strftime(TIME_FMT),
        )
    errors = {
        Outcome.MISMATCH: ("ACQ.CONTEXT_INCONSISTENT", "退款请求号对应的退款金额不一致"),
        Outcome.NOT_FOUND: ("ACQ.TRADE_NOT_EXIST", "交易不存在"),
        Outcome.STATUS_ERROR: ("ACQ.TRADE_STATUS_ERROR", "交易状态不合法"),
        Outcome.EXCEEDS: ("ACQ.REASON_TRADE_REFUND_FEE_ERR", "退款金额超限"),
        Outcome.TOO_MANY: ("ACQ.TRADE_NOT_ALLOW_REFUND", "当前交易退款次数已达上限"),
        Outcome.EXPIRED: ("ACQ.TRADE_NOT_ALLOW_REFUND", "当前交易不允许退款"),
        Outcome.TOO_SOON: ("ACQ.TRADE_NOT_ALLOW_REFUND", "当前交易不允许退款"),
    }
    sub_code, sub_msg = errors[result.outcome]
    return _biz_fail(sub_code, sub_msg)


def refund_query(
    rt: Runtime, m: AlipayMerchant, biz: Biz, common: dict[str, str], request: Request
) -> Answer:
    """``alipay.trade.fastpay.refund.query``: refund data present = refund succeeded (§2.5)."""
    out_trade_no, trade_no = _ref(biz)
    out_request_no = str(biz.get("out_request_no") or "")
    if not (out_trade_no or trade_no) or not out_request_no:
        return _invalid("out_request_no和out_trade_no/trade_no必填")
    trade = rt.engine.find_trade("alipay", m.app_id, out_trade_no, trade_no)
    if trade is None:
        return _biz_fail("ACQ.TRADE_NOT_EXIST", "交易不存在")
    for r in rt.engine.refunds_of(trade.id):
        if r.out_refund_no == out_request_no and r.status == "SUCCESS":
            return _ok(
                trade_no=trade.trade_no,
                out_trade_no=trade.out_trade_no,
                out_request_no=r.out_refund_no,
                total_amount=yuan(trade.amount_fen),
                refund_amount=yuan(r.amount_fen),
                refund_status="REFUND_SUCCESS",
                gmt_refund_pay=(r.success or r.created).strftime(TIME_FMT),
            )
    return _ok()


def bill_url(rt: Runtime, m: AlipayMerchant, biz: Biz, common: dict[str, str], request: Request) -> Answer:
    """``alipay.data.dataservice.bill.downloadurl.query``: a download URL valid 30 s."""
    if biz.get("bill_type") == "signcustomer":  # settle12: the account statement (statements.py)
        try:
            day = datetime.strptime(str(biz.get("bill_date", "")), "%Y-%m-%d").date()
        except ValueError:
            return _invalid("bill_date参数无效，格式为yyyy-MM-dd")
        answer = statements.signcustomer_url(rt, m, day, request)
        return _biz_fail("isp.bill_not_exist", "账单不存在") if answer is None else _ok(**answer)
    if biz.get("bill_type") != "trade":
        return _biz_fail("isv.invalid-bill-type", "账单类型不支持，仅支持trade")
    try:
        bill_date = datetime.strptime(str(biz.get("bill_date", "")), "%Y-%m-%d").date()
    except ValueError:
        return _invalid("bill_date参数无效，格式为yyyy-MM-dd")
    _, end, ready = rt.bill_window(bill_date)
    now = rt.engine.now()
    if now < ready or (now - end).days > 900 or rt.faults.late_bill(f"alipay:{bill_date}"):
        return _biz_fail("isp.bill_not_exist", "账单不存在")
    token = secrets.token_urlsafe(24)
    expires_ms = to_ms(now) + rt.config.behaviour.bill_url_ttl_seconds * 1000
    with rt.engine.store.tx() as conn:
        conn.execute(
            "INSERT INTO bill_tokens(token, app_id, bill_date, expires_ms) VALUES (?, ?, ?, ?)",
            (token, m.app_id, bill_date.isoformat(), expires_ms),
        )
    stamp = bill_date.strftime("%Y%m%d")
    query = urlencode(
        {
            "bizType": "trade",
            "userId": m.pid,
            "fileType": "csv.zip",
            "bizDates": stamp,
            "downloadFileName": f"{m.pid}_{stamp}.csv.zip",
            "fileId": f"/trade/{m.pid}/{stamp}",
            "timestamp": str(to_ms(now)),
            "token": token,
        }
    )
    base = str(request.base_url).rstrip("/")
    return _ok(bill_download_url=f"{base}/downloadBillFile.resource?{query}")


METHODS: dict[str, Handler] = {
    "alipay.trade.pay": trade_pay,
    "alipay.trade.query": trade_query,
    "alipay.trade.cancel": trade_cancel,
    "alipay.trade.close": trade_close,
    "alipay.trade.refund": trade_refund,
    "alipay.trade.fastpay.refund.query": refund_query,
    "alipay.data.dataservice.bill.downloadurl.query": bill_url,
}


# --------------------------------------------------------------------------- plumbing


def _response_key(method: str) -> str:
    return method.replace(".", "_") + "_response"


def signed_body(method: str, answer: Answer, merchant: AlipayMerchant | None, corrupt: bool = False) -> str:
    """``{"<method>_response": {...}, "sign": "..."}`` signing the exact member text."""
    member = json.dumps(answer, ensure_ascii=False, separators=(",", ":"))
    if merchant is None:
        return f'{{"{_response_key(method)}":{member}}}'
    sign = rsa2_sign(member, merchant.sandbox_private_key)
    if corrupt:
        sign = rsa2_sign(member + " ", merchant.sandbox_private_key)  # valid base64, wrong content
    return f'{{"{_response_key(method)}":{member},"sign":"{sign}"}}'


def _json(text: str, status: int = 200) -> Response:
    return Response(text, status_code=status, media_type="application/json; charset=utf-8")


def _error_response(code: str, msg: str, sub_code: str, sub_msg: str) -> Response:
    body = {"code": code, "msg": msg, "sub_code": sub_code, "sub_msg": sub_msg}
    return _json(json.dumps({"error_response": body}, ensure_ascii=False, separators=(",", ":")))


@router.api_route("/gateway.do", methods=["GET", "POST"], include_in_schema=False)
async def gateway(request: Request) -> Response:
    """The single Alipay gateway: parameters from the query string and/or the form body."""
    rt = runtime(request)
    params: dict[str, str] = dict(request.query_params)
    if request.method == "POST":
        params.update(await form_fields(request))
    method = params.get("method", "")
    endpoint = method if method in METHODS else "alipay.gateway"
    decision = rt.faults.decide(endpoint)
    await rt.delay(decision)
    if not method:
        return _error_response("40001", "Missing Required Arguments", "isv.missing-method", "缺少方法名参数")
    merchant = rt.config.alipay_merchant(params.get("app_id", ""))
    if merchant is None:
        answer = {
            "code": "40002",
            "msg": "Invalid Arguments",
            "sub_code": "isv.invalid-app-id",
            "sub_msg": "无效的AppID参数",
        }
        return _json(signed_body(method, answer, None))

    def reply(answer: Answer) -> Response:
        return _json(signed_body(method, answer, merchant, corrupt=decision.bad_signature))

    def arg_error(code: str, msg: str, sub_code: str, sub_msg: str) -> Response:
        return reply({"code": code, "msg": msg, "sub_code": sub_code, "sub_msg": sub_msg})

    if method not in METHODS:
        return arg_error("40002", "Invalid Arguments", "isv.invalid-method", "不存在的方法名")
    if not params.get("sign"):
        return arg_error("40001", "Missing Required Arguments", "isv.missing-signature", "缺少签名参数")
    if params.get("sign_type", "RSA") != "RSA2":
        return arg_error("40002", "Invalid Arguments", "isv.invalid-signature-type", "无效的签名类型")
    if not params.get("timestamp"):
        return arg_error("40001", "Missing Required Arguments", "isv.missing-timestamp", "缺少时间戳参数")
    if params.get("charset", "utf-8").lower() not in ("utf-8", "utf8"):
        return arg_error("40002", "Invalid Arguments", "isv.invalid-charset", "字符集错误")
    unsigned = alipay_string_to_sign(params)
    if not rsa2_verify(unsigned, params["sign"], merchant.app_public_key):
        return arg_error(
            "40002",
            "Invalid Arguments",
            "isv.invalid-signature",
            f"验签出错，建议检查签名字符串或签名私钥与应用公钥是否匹配，网关生成的验签字符串为：{unsigned}",
        )
    try:
        biz = json.loads(params.get("biz_content") or "{}")
    except json.JSONDecodeError:
        biz = None
    if not isinstance(biz, dict):
        return arg_error(
            "40002", "Invalid Arguments", "isv.invalid-biz-content", "biz_content不是合法的JSON对象"
        )
    if decision.system_error:
        answer = {
            "code": "20000",
            "msg": "Service Currently Unavailable",
            "sub_code": "aop.ACQ.SYSTEM_ERROR",
            "sub_msg": "系统异常",
        }
        if method == "alipay.trade.cancel":
            answer["retry_flag"] = "Y"
        return reply(answer)
    answer = METHODS[method](rt, merchant, biz, params, request)  # commits before the answer can be lost
    if decision.answer_lost:
        return Response(b"", status_code=rt.faults.profile.answer_lost_status)
    return reply(answer)


@router.get("/downloadBillFile.resource", include_in_schema=False)
async def download_bill_file(request: Request) -> Response:
    """The bill ZIP behind a ``bill_download_url`` (valid 30 s of sandbox time)."""
    rt = runtime(request)
    decision = rt.faults.decide("alipay.bill.file")
    await rt.delay(decision)
    token = request.query_params.get("token", "")
    with rt.engine.store.lock:
        row = rt.engine.store.conn.execute("SELECT * FROM bill_tokens WHERE token = ?", (token,)).fetchone()
    if row is None:
        return Response("download url invalid", status_code=404, media_type="text/plain")
    if to_ms(rt.engine.now()) > row["expires_ms"]:
        return Response("download url expired", status_code=403, media_type="text/plain")
    if decision.system_error or decision.answer_lost:
        return Response(b"", status_code=rt.faults.profile.answer_lost_status)
    merchant = rt.config.alipay_merchant(row["app_id"])
    if merchant is None:
        return Response("merchant no longer configured", status_code=404, media_type="text/plain")
    bill_date = datetime.strptime(row["bill_date"], "%Y-%m-%d").date()
    start, end, ready = rt.bill_window(bill_date)
    payments, refunds = rt.engine.trades_for_bill("alipay", merchant.app_id, start, end)
    bill = alipay_bill(merchant, bill_date, start, end, ready, payments, refunds, rt.engine.wallet_of)
    name = f"{merchant.pid}_{bill_date:%Y%m%d}.csv.zip"
    return Response(
        bill.zip_bytes,
        media_type="application/zip",
        headers={"Content-Disposition": f"attachment; filename*=UTF-8''{quote(name)}"},
    )


def notification_params(
    merchant: AlipayMerchant,
    trade: Trade,
    wallet: Wallet | None,
    status: str,
    event_ms: int,
    notify_id: str,
    now: datetime,
    refund_fen: int | None = None,
) -> dict[str, str]:
    """The signed form an Alipay async notification posts (sign over all but sign/sign_type)."""
    params = {
        "notify_time": now.strftime(TIME_FMT),
        "notify_type": "trade_status_sync",
        "notify_id": notify_id,
        "app_id": merchant.app_id,
        "charset": "utf-8",
        "version": "1.0",
        "trade_no": trade.trade_no,
        "out_trade_no": trade.out_trade_no,
        "buyer_id": wallet.buyer_id if wallet else "",
        "buyer_logon_id": masked_logon(wallet),
        "seller_id": merchant.pid,
        "trade_status": status,
        "total_amount": yuan(trade.amount_fen),
        "receipt_amount": yuan(trade.amount_fen),
        "invoice_amount": yuan(trade.amount_fen),
        "buyer_pay_amount": yuan(trade.amount_fen),
        "point_amount": "0.00",
        "subject": str(trade.extra.get("subject", "")),
        "gmt_create": trade.created.strftime(TIME_FMT),
        "fund_bill_list": json.dumps([fund_bill(trade, notify=True)], separators=(",", ":")),
    }
    if trade.paid:
        params["gmt_payment"] = trade.paid.strftime(TIME_FMT)
    if status == "TRADE_CLOSED":
        event = from_ms(event_ms)
        params["gmt_close"] = event.strftime(TIME_FMT)
        params["refund_fee"] = yuan(refund_fen if refund_fen is not None else trade.refunded_fen)
        params["gmt_refund"] = event.strftime(TIME_FMT) + f".{event.microsecond // 1000:03d}"
    params = {k: v for k, v in params.items() if v != ""}
    params["sign"] = rsa2_sign(alipay_string_to_sign(params), merchant.sandbox_private_key)
    params["sign_type"] = "RSA2"
    return params


__all__ = ["METHODS", "mask_account", "notification_params", "router", "signed_body", "trade_status"]
