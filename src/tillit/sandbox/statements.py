"""Fund-flow statements from the sandbox (shared/reference/operations.md §1.2, §2.2; docs/settlement.md).

* WeChat ``/pay/downloadfundflow`` (v2, HMAC-SHA256 only, ``account_type=Basic``): the BASIC account's
  资金账单 of ``bill_date``: one ``交易`` income line per payment of the day ``settle_days`` before,
  net of its fee (备注 ``结算总金额 X 元;含手续费 Y 元``), one ``退款`` expense line per refund made that
  day (net of the fee returned), backquoted cells, then the summary header and row.
* Alipay ``alipay.data.dataservice.bill.downloadurl.query`` with ``bill_type=signcustomer``: a URL to a
  ZIP holding the GBK 账务明细 CSV (``#`` framing, TAB before commas, footer totals): trade income
  gross, a separate ``手续费`` expense per trade, refunds as expenses.

Planted settlement faults (``POST /sandbox/settlement/faults``, per ``out_trade_no``): ``drop`` (never
credited), ``short`` (credited 1 yuan less, at most the amount), ``late`` (booked ``days`` later) and
``duplicate`` (credited by two lines). They let tests and the demo show a "not credited" day.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import secrets
import zipfile
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from tillit.sandbox.clock import to_ms
from tillit.sandbox.config import AlipayMerchant, WechatMerchant
from tillit.sandbox.engine import ControlError, Refund, Trade
from tillit.sandbox.money import fee_fen, yuan
from tillit.sandbox.runtime import Runtime, runtime
from tillit.sandbox.signing import to_wechat_xml

router = APIRouter(prefix="/sandbox")

SETTLE_DAYS = 1
FAULTS = ("drop", "short", "late", "duplicate")
TIME_FMT = "%Y-%m-%d %H:%M:%S"
FUNDFLOW_HEADER = ",".join(
    ("记账时间", "微信支付业务单号", "资金流水单号", "业务名称", "业务类型", "收支类型", "收支金额(元)",
     "账户结余(元)", "资金变更提交申请人", "备注", "业务凭证号")
)  # fmt: skip
FUNDFLOW_SUMMARY = "资金流水总笔数,收入笔数,收入金额,支出笔数,支出金额"
ACCOUNT_HEADER = ",".join(
    ("账务流水号", "业务流水号", "商户订单号", "商品名称", "发生时间", "对方账号", "收入金额（+元）",
     "支出金额（-元）", "账户余额（元）", "交易渠道", "业务类型", "备注")
)  # fmt: skip
SCHEMA = """
CREATE TABLE IF NOT EXISTS settlement_faults (
    out_trade_no TEXT PRIMARY KEY, fault TEXT NOT NULL, days INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS statement_tokens (
    token TEXT PRIMARY KEY, app_id TEXT NOT NULL, bill_date TEXT NOT NULL, expires_ms INTEGER NOT NULL
);
"""


def _ensure(rt: Runtime) -> None:
    with rt.engine.store.tx() as conn:
        for statement in SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)


def faults(rt: Runtime) -> dict[str, tuple[str, int]]:
    _ensure(rt)
    with rt.engine.store.tx() as conn:
        return {
            r[0]: (r[1], int(r[2]))
            for r in conn.execute("SELECT out_trade_no, fault, days FROM settlement_faults")
        }


@router.post("/settlement/faults")
async def set_fault(request: Request) -> JSONResponse:
    """Plant a settlement fault for one trade: ``{"out_trade_no", "fault", "days"?}``."""
    try:
        data = json.loads(await request.body() or b"{}")
    except ValueError as exc:
        raise ControlError(400, "invalid_json", "body is not JSON") from exc
    if not isinstance(data, dict):
        raise ControlError(400, "invalid_json", "body must be a JSON object")
    out_trade_no, fault, days = data.get("out_trade_no"), data.get("fault"), data.get("days", 2)
    if not isinstance(out_trade_no, str) or not 0 < len(out_trade_no) <= 64:
        raise ControlError(
            422, "invalid_field", "'out_trade_no' must be a string of 1-64", {"field": "out_trade_no"}
        )
    if fault not in FAULTS:
        raise ControlError(
            422, "invalid_field", f"'fault' must be one of {', '.join(FAULTS)}", {"field": "fault"}
        )
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 30:
        raise ControlError(422, "invalid_field", "'days' must be 1-30", {"field": "days"})
    rt = runtime(request)
    _ensure(rt)
    with rt.engine.store.tx() as conn:
        conn.execute(
            "INSERT INTO settlement_faults(out_trade_no, fault, days) VALUES (?, ?, ?) "
            "ON CONFLICT(out_trade_no) DO UPDATE SET fault = excluded.fault, days = excluded.days",
            (out_trade_no, fault, days),
        )
    return JSONResponse({"out_trade_no": out_trade_no, "fault": fault, "days": days})


# --------------------------------------------------------------------------- what is booked on a day


def _booked(
    rt: Runtime, provider: str, merchant: str, rate: int, day: date
) -> list[tuple[datetime, str, Trade, Refund | None, int, int]]:
    """The movements booked on ``day``: (time, key suffix, trade, refund, gross, fee) in time order.
    Trades settle ``SETTLE_DAYS`` after their day (plus a planted delay); refunds the day they are made."""
    planted = faults(rt)
    out: list[tuple[datetime, str, Trade, Refund | None, int, int]] = []
    # A planted delay books a trade up to 30 days after its day: look back as far as the longest.
    longest = max((days for fault, days in planted.values() if fault == "late"), default=0)
    for back in range(SETTLE_DAYS, SETTLE_DAYS + longest + 1):
        start, end, _ = rt.bill_window(day - timedelta(days=back))
        trades, _refunds = rt.engine.trades_for_bill(provider, merchant, start, end)
        for trade in trades:
            fault, days = planted.get(trade.out_trade_no, ("", 0))
            delay = days if fault == "late" else 0
            if back != SETTLE_DAYS + delay or fault == "drop":
                continue
            gross = trade.amount_fen
            if fault == "short":
                gross = max(gross - 100, 1)
            fee = fee_fen(trade.amount_fen, rate)
            at = datetime.combine(day, datetime.min.time(), tzinfo=start.tzinfo) + timedelta(hours=9)
            at += timedelta(seconds=len(out))
            out.append((at, "I", trade, None, gross, fee))
            if fault == "duplicate":
                out.append((at + timedelta(seconds=1), "D", trade, None, gross, fee))
    start, end, _ = rt.bill_window(day)
    _trades, refunds = rt.engine.trades_for_bill(provider, merchant, start, end)
    for trade, refund in refunds:
        if refund.status != "SUCCESS":
            continue
        returned = min(fee_fen(refund.amount_fen, rate), fee_fen(trade.amount_fen, rate))
        out.append((refund.success or refund.created, "R", trade, refund, refund.amount_fen, returned))
    out.sort(key=lambda x: (x[0], x[1]))
    return out


# --------------------------------------------------------------------------- WeChat 资金账单


def _settled_note(gross: int, fee: int) -> str:
    return f"结算总金额 {yuan(gross)} 元;含手续费 {yuan(fee)} 元"


def wechat_fundflow(rt: Runtime, merchant: WechatMerchant, day: date) -> str | None:
    rows = _booked(rt, "wechat", merchant.mch_id, merchant.fee_rate_ppm, day)
    if not rows:
        return None
    balance = 0
    lines = [FUNDFLOW_HEADER]
    n_in = n_out = amt_in = amt_out = 0
    for at, suffix, trade, refund, gross, fee in rows:
        if refund is None:
            net = gross - fee
            balance += net
            n_in, amt_in = n_in + 1, amt_in + net
            cells = [
                at.strftime(TIME_FMT),
                trade.trade_no,
                f"{trade.trade_no}{suffix}",
                "交易",
                "交易",
                "收入",
                yuan(net),
                yuan(balance),
                "system",
                _settled_note(gross, fee),
                trade.out_trade_no,
            ]
        else:
            net = gross - fee
            balance -= net
            n_out, amt_out = n_out + 1, amt_out + net
            cells = [
                at.strftime(TIME_FMT),
                refund.refund_no,
                f"{refund.refund_no}R",
                "退款",
                "退款",
                "支出",
                yuan(net),
                yuan(balance),
                "system",
                f"退款 {yuan(gross)} 元;退回手续费 {yuan(fee)} 元",
                refund.out_refund_no,
            ]
        lines.append(",".join("`" + c.replace(",", "，") for c in cells))
    lines.append(FUNDFLOW_SUMMARY)
    lines.append(
        ",".join("`" + v for v in (f"{len(rows)}.0", f"{n_in}.0", yuan(amt_in), f"{n_out}.0", yuan(amt_out)))
    )
    return "\r\n".join(lines) + "\r\n"


def downloadfundflow(rt: Runtime, merchant: WechatMerchant, f: dict[str, str]) -> dict[str, str] | Response:
    """``/pay/downloadfundflow``: the BASIC account's fund-flow bill of ``bill_date`` as text."""

    def fail(message: str, code: str) -> Response:
        return Response(
            to_wechat_xml({"return_code": "FAIL", "return_msg": message, "error_code": code}),
            media_type="application/xml",
        )

    if f.get("sign_type") != "HMAC-SHA256":
        return fail("sign_type must be HMAC-SHA256", "20001")
    if (f.get("account_type") or "Basic") != "Basic":
        return fail("only the Basic account is emulated", "20001")
    try:
        day = datetime.strptime(f.get("bill_date", ""), "%Y%m%d").date()
    except ValueError:
        return fail("invalid bill_date", "20001")
    _, _end, ready = rt.bill_window(day)
    if rt.engine.now() < ready:
        return fail("BILL_CREATING", "20003")
    if f.get("tar_type") not in (None, "", "GZIP"):
        return fail("invalid tar_type", "20001")
    text = wechat_fundflow(rt, merchant, day)
    if text is None:
        return fail("NO_BILL_EXIST", "20002")
    data = text.encode("utf-8")
    digest = {"Digest": "SHA=" + hashlib.sha1(data).hexdigest()}  # of the uncompressed file (§1.1)
    if f.get("tar_type") == "GZIP":
        return Response(gzip.compress(data, mtime=0), media_type="application/x-gzip", headers=digest)
    return Response(data, media_type="text/plain; charset=utf-8", headers=digest)


# --------------------------------------------------------------------------- Alipay 账务明细


def _cell(text: str) -> str:
    return text.replace(",", "，") + "\t"


def alipay_account(rt: Runtime, merchant: AlipayMerchant, day: date) -> bytes:
    rows = _booked(rt, "alipay", merchant.app_id, merchant.fee_rate_ppm, day)
    account = f"{merchant.pid}0156"
    out = [
        "#支付宝账务明细查询",
        f"#账号：[{account}]",
        f"#起始日期：[{day:%Y年%m月%d日} 00:00:00]   "
        f"终止日期：[{day + timedelta(days=1):%Y年%m月%d日} 00:00:00]",
        "#-----------------------------------------账务明细列表----------------------------------------",
        ACCOUNT_HEADER,
    ]
    balance = seq = n_in = n_out = amt_in = amt_out = 0

    def line(at: datetime, key: str, biz: str, order: str, income: int, expense: int, kind: str) -> None:
        nonlocal balance, seq, n_in, n_out, amt_in, amt_out
        seq += 1
        balance += income - expense
        if income:
            n_in, amt_in = n_in + 1, amt_in + income
        else:
            n_out, amt_out = n_out + 1, amt_out + expense
        out.append(
            ",".join(
                [
                    _cell(key),
                    _cell(biz),
                    _cell(order),
                    _cell("商品"),
                    at.strftime(TIME_FMT),
                    _cell(""),
                    yuan(income),
                    yuan(expense),
                    yuan(balance),
                    _cell("支付宝"),
                    _cell(kind),
                    _cell(""),
                ]
            )
        )

    for at, suffix, trade, refund, gross, fee in rows:
        stamp = at.strftime("%Y%m%d")
        if refund is None:
            line(
                at,
                f"{stamp}{trade.id:08d}{suffix}1",
                trade.trade_no,
                trade.out_trade_no,
                gross,
                0,
                "在线支付",
            )
            if fee:
                line(
                    at,
                    f"{stamp}{trade.id:08d}{suffix}2",
                    trade.trade_no,
                    trade.out_trade_no,
                    0,
                    fee,
                    "手续费",
                )
        else:
            line(at, f"{stamp}{refund.id:08d}R1", trade.trade_no, trade.out_trade_no, 0, gross, "交易退款")
            if fee:
                line(at, f"{stamp}{refund.id:08d}R2", trade.trade_no, trade.out_trade_no, fee, 0, "手续费")
    out += [
        "#----------------------------------------账务明细列表结束-------------------------------------",
        f"#支出合计：{n_out}笔，共{yuan(amt_out)}元",
        f"#收入合计：{n_in}笔，共{yuan(amt_in)}元",
        f"#导出时间：[{rt.engine.now():%Y年%m月%d日 %H:%M:%S}]",
    ]
    body = ("\r\n".join(out) + "\r\n").encode("gbk")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{account}_{day:%Y%m%d}_账务明细.csv", body)
    return buffer.getvalue()


def signcustomer_url(
    rt: Runtime, merchant: AlipayMerchant, day: date, request: Request
) -> dict[str, Any] | None:
    """The download URL answer for ``bill_type=signcustomer`` (None while the bill is not ready)."""
    _, _end, ready = rt.bill_window(day)
    now = rt.engine.now()
    if now < ready:
        return None
    _ensure(rt)
    token = secrets.token_urlsafe(24)
    with rt.engine.store.tx() as conn:
        conn.execute(
            "INSERT INTO statement_tokens(token, app_id, bill_date, expires_ms) VALUES (?, ?, ?, ?)",
            (
                token,
                merchant.app_id,
                day.isoformat(),
                to_ms(now) + rt.config.behaviour.bill_url_ttl_seconds * 1000,
            ),
        )
    query = urlencode(
        {"bizType": "fnd", "userId": f"{merchant.pid}0156", "bizDates": f"{day:%Y%m%d}", "token": token}
    )
    return {"bill_download_url": f"{str(request.base_url).rstrip('/')}/downloadAccountFile.resource?{query}"}


account_router = APIRouter()


@account_router.get("/downloadAccountFile.resource", include_in_schema=False)
async def download_account_file(request: Request) -> Response:
    rt = runtime(request)
    _ensure(rt)
    token = request.query_params.get("token", "")
    with rt.engine.store.tx() as conn:
        row = conn.execute(
            "SELECT app_id, bill_date, expires_ms FROM statement_tokens WHERE token = ?", (token,)
        ).fetchone()
    if row is None or to_ms(rt.engine.now()) > row[2]:
        return Response("download url invalid", status_code=404, media_type="text/plain")
    merchant = rt.config.alipay_merchant(row[0])
    if merchant is None:
        return Response("download url invalid", status_code=404, media_type="text/plain")
    return Response(alipay_account(rt, merchant, date.fromisoformat(row[1])), media_type="application/zip")
