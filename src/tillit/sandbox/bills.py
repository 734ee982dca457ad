"""Daily trade bills in the providers' exact layouts (providers.md §1.6 and §2.7).

WeChat: UTF-8, CRLF, a header line, detail rows whose every field starts with a backquote, the
summary header and one summary row. Alipay: a ZIP of two GBK CSV files with '#' header/footer
lines, a TAB after text-like values, full-width （元） headers and negative refund rows.
Free text never contains an ASCII comma in these bills (they are not quoted), so commas in
merchant-supplied text are replaced by the full-width '，'.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime

from tillit.sandbox.config import AlipayMerchant, WechatMerchant
from tillit.sandbox.engine import Refund, Trade, Wallet
from tillit.sandbox.money import fee_e5, fee_fen, format_e5, format_rate, yuan

WECHAT_ALL_HEADER = (
    "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,"
    "应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,"
    "手续费,费率,订单金额,申请退款金额,费率备注"
)
WECHAT_SUCCESS_HEADER = (
    "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,"
    "应结订单金额,代金券金额,商品名称,商户数据包,手续费,费率,订单金额,费率备注"
)
WECHAT_REFUND_HEADER = (
    "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,"
    "应结订单金额,代金券金额,退款申请时间,退款成功时间,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,"
    "商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注"
)
WECHAT_ALL_SUMMARY = (
    "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额"
)
WECHAT_SUCCESS_SUMMARY = "总交易单数,应结订单总金额,手续费总金额,订单总金额"
WECHAT_BILL_TYPES = {
    "ALL": (WECHAT_ALL_HEADER, WECHAT_ALL_SUMMARY),
    "SUCCESS": (WECHAT_SUCCESS_HEADER, WECHAT_SUCCESS_SUMMARY),
    "REFUND": (WECHAT_REFUND_HEADER, WECHAT_ALL_SUMMARY),
}

ALIPAY_DETAIL_HEADER = (
    "支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,门店名称,操作员,终端号,对方账户,订单金额（元）,"
    "商家实收（元）,支付宝红包（元）,集分宝（元）,支付宝优惠（元）,商家优惠（元）,券核销金额（元）,券名称,"
    "商家红包消费金额（元）,卡消费金额（元）,退款批次号/请求号,服务费（元）,分润（元）,备注"
)
ALIPAY_SUMMARY_HEADER = (
    "门店编号,门店名称,交易订单总笔数,退款订单总笔数,订单金额（元）,商家实收（元）,支付宝优惠（元）,商家优惠（元）,"
    "卡消费金额（元）,服务费（元）,分润（元）,实收净额（元）"
)

TIME_FMT = "%Y-%m-%d %H:%M:%S"


def _text(value: object) -> str:
    return str(value or "").replace(",", "，").replace("\r", " ").replace("\n", " ")


def _grouped(payments: list[Trade], refunds: list[tuple[Trade, Refund]]) -> list[tuple[Trade, Refund | None]]:
    """Payments in time order, each followed by its refunds of the day; then other refunds."""
    by_trade: dict[int, list[Refund]] = {}
    for trade, refund in refunds:
        by_trade.setdefault(trade.id, []).append(refund)
    rows: list[tuple[Trade, Refund | None]] = []
    seen = set()
    for trade in payments:
        rows.append((trade, None))
        for refund in by_trade.get(trade.id, []):
            rows.append((trade, refund))
        seen.add(trade.id)
    for trade, refund in refunds:
        if trade.id not in seen:
            rows.append((trade, refund))
    return rows


# --------------------------------------------------------------------------- WeChat


def _wechat_row(merchant: WechatMerchant, trade: Trade, refund: Refund | None, openid: str) -> dict[str, str]:
    rate = merchant.fee_rate_ppm
    base = {
        "公众账号ID": merchant.appid,
        "商户号": merchant.mch_id,
        # The sub-merchant the trade was paid to (服务商模式), "0" for a normal merchant (§1.6).
        "特约商户号": _text(trade.extra.get("bill_sub_mch_id") or trade.extra.get("sub_mch_id")) or "0",
        "设备号": _text(trade.extra.get("device_info")),
        "微信订单号": trade.trade_no,
        "商户订单号": trade.out_trade_no,
        "用户标识": openid,
        "交易类型": "MICROPAY",
        # the payer's bank type (CMB_DEBIT, ICBC_CREDIT, CFT …) when planted, else the wallet's own
        # (what the query answered), else the sample's OTHERS
        "付款银行": _text(trade.extra.get("bill_bank_type")) or _text(trade.extra.get("funding")) or "OTHERS",
        "货币种类": "CNY",
        "代金券金额": "0.00",
        "充值券退款金额": "0.00",
        "商品名称": _text(trade.extra.get("body")),
        "商户数据包": _text(trade.extra.get("attach")),
        "费率": format_rate(rate),
        "费率备注": "",
    }
    paid_at = trade.paid.strftime(TIME_FMT) if trade.paid else ""
    if refund is None:
        base.update(
            {
                "交易时间": paid_at,
                "交易状态": "SUCCESS",
                "应结订单金额": yuan(trade.amount_fen),
                "微信退款单号": "0",
                "商户退款单号": "0",
                "退款金额": "0.00",
                "退款类型": "",
                "退款状态": "",
                "手续费": format_e5(fee_e5(trade.amount_fen, rate)),
                "订单金额": yuan(trade.amount_fen),
                "申请退款金额": "0.00",
                "退款申请时间": "",
                "退款成功时间": "",
            }
        )
        return base
    base.update(
        {
            "交易时间": refund.created.strftime(TIME_FMT),
            # A reversal of a paid payment is a refund row marked REVOKED (choice, see docs/sandbox.md).
            "交易状态": "REVOKED" if refund.kind == "reverse" else "REFUND",
            "应结订单金额": "0.00",
            "微信退款单号": refund.refund_no,
            "商户退款单号": refund.out_refund_no,
            "退款金额": yuan(refund.amount_fen),
            "退款类型": "ORIGINAL",
            "退款状态": refund.status,
            "手续费": format_e5(-fee_e5(refund.amount_fen, rate)),
            "订单金额": "0.00",
            "申请退款金额": yuan(refund.amount_fen),
            "退款申请时间": refund.created.strftime(TIME_FMT),
            "退款成功时间": refund.success.strftime(TIME_FMT) if refund.success else "",
        }
    )
    return base


def _to_e5(text: str) -> int:
    negative = text.startswith("-")
    whole, _, frac = text.lstrip("-").partition(".")
    value = int(whole) * 100_000 + int(frac.ljust(5, "0"))
    return -value if negative else value


def wechat_bill(
    merchant: WechatMerchant,
    bill_type: str,
    payments: list[Trade],
    refunds: list[tuple[Trade, Refund]],
    wallet_of: Callable[[Trade], Wallet | None],
    device_info: str | None = None,
    sub_mch_id: str | None = None,
) -> str | None:
    """The bill text, or None when it has no rows ("No Bill Exist"). ``sub_mch_id`` keeps one
    sub-merchant's trades (a service provider asking without it gets all of them)."""
    header, summary_header = WECHAT_BILL_TYPES[bill_type]
    if bill_type == "SUCCESS":
        refunds = []
    elif bill_type == "REFUND":
        payments = []
    rows = []
    for trade, refund in _grouped(payments, refunds):
        if device_info and trade.extra.get("device_info") != device_info:
            continue
        if sub_mch_id and trade.extra.get("sub_mch_id") != sub_mch_id:
            continue
        wallet = wallet_of(trade)
        row = _wechat_row(merchant, trade, refund, wallet.buyer_id if wallet else "")
        if bill_type == "REFUND":
            # The refund bill keeps the payment's time and amounts beside the refund columns.
            row["交易时间"] = trade.paid.strftime(TIME_FMT) if trade.paid else ""
            row["应结订单金额"] = row["订单金额"] = yuan(trade.amount_fen)
        rows.append(row)
    if not rows:
        return None
    columns = header.split(",")
    lines = [header]
    lines += [",".join("`" + row[c] for c in columns) for row in rows]
    sums = {
        "总交易单数": str(len(rows)),
        "应结订单总金额": yuan(sum(_fen(r["应结订单金额"]) for r in rows)),
        "退款总金额": yuan(sum(_fen(r["退款金额"]) for r in rows)),
        "充值券退款总金额": "0.00",
        "手续费总金额": format_e5(sum(_to_e5(r["手续费"]) for r in rows)),
        "订单总金额": yuan(sum(_fen(r["订单金额"]) for r in rows)),
        "申请退款总金额": yuan(sum(_fen(r["申请退款金额"]) for r in rows)),
    }
    lines.append(summary_header)
    lines.append(",".join("`" + sums[c] for c in summary_header.split(",")))
    return "\r\n".join(lines) + "\r\n"


def _fen(text: str) -> int:
    negative = text.startswith("-")
    whole, _, frac = text.lstrip("-").partition(".")
    value = int(whole) * 100 + int(frac.ljust(2, "0"))
    return -value if negative else value


# --------------------------------------------------------------------------- Alipay


def mask_account(wallet: Wallet | None) -> str:
    """The masked counterparty as bills show it: ``*三(138***@qq.com)``."""
    if wallet is None:
        return ""
    local, _, domain = wallet.logon_id.partition("@")
    masked = f"{local[:3]}***@{domain}" if domain else f"{local[:3]}***{local[-2:]}"
    return f"*{wallet.name[-1:]}({masked})"


def _cn_time(moment: datetime) -> str:
    return f"{moment.year}年{moment.month:02d}月{moment.day:02d}日 {moment:%H:%M:%S}"


@dataclass(frozen=True)
class AlipayBill:
    """The ZIP the download URL serves, plus its member names."""

    zip_bytes: bytes
    detail_name: str
    summary_name: str


def alipay_bill(
    merchant: AlipayMerchant,
    bill_date: date,
    day_start: datetime,
    day_end: datetime,
    exported: datetime,
    payments: list[Trade],
    refunds: list[tuple[Trade, Refund]],
    wallet_of: Callable[[Trade], Wallet | None],
) -> AlipayBill:
    """Build the trade bill ZIP (an empty day still has a bill with zero totals)."""
    account = f"{merchant.pid}0156"
    detail: list[str] = [
        "#支付宝业务明细查询",
        f"#账号：[{account}]",
        f"#起始日期：[{_cn_time(day_start)}]   终止日期：[{_cn_time(day_end)}]",
        "#" + "-" * 41 + "业务明细列表" + "-" * 40,
        ALIPAY_DETAIL_HEADER,
    ]
    stores: dict[str, dict[str, int]] = {}
    pay_count = refund_count = pay_total = refund_total = 0
    for trade, refund in _grouped(payments, refunds):
        store_id = _text(trade.extra.get("store_id"))
        totals = stores.setdefault(store_id, {"pays": 0, "refunds": 0, "order": 0, "received": 0, "fee": 0})
        common_head = [
            f"{trade.trade_no}\t",
            f"{trade.out_trade_no}\t",
        ]
        common_mid = [
            f"{store_id}\t",
            # a planted store name (POST /sandbox/trades/{trade_no}/bill) stands for a 跳码 payee
            f"{_text(trade.extra.get('bill_store_name') or merchant.stores.get(store_id, ''))}\t",
            f"{_text(trade.extra.get('operator_id'))}\t",
            f"{_text(trade.extra.get('terminal_id'))}\t",
            f"{mask_account(wallet_of(trade))}\t",
        ]
        created = trade.created.strftime(TIME_FMT)
        subject = _text(trade.extra.get("subject"))
        if refund is None:
            amount = trade.amount_fen
            fee = fee_fen(amount, merchant.fee_rate_ppm)
            done = trade.paid.strftime(TIME_FMT) if trade.paid else ""
            cells = [
                *common_head,
                "交易\t",
                subject,
                created,
                done,
                *common_mid,
                yuan(amount),
                yuan(amount),
                "0.00",
                "0.00",
                "0.00",
                "0.00",
                "0.00",
                "",
                "0.00\t",
                "0.00",
                "\t",
                yuan(-fee),
                "0.00",
                "",
            ]
            pay_count += 1
            pay_total += amount
            totals["pays"] += 1
            totals["order"] += amount
            totals["received"] += amount
            totals["fee"] -= fee
        else:
            amount = refund.amount_fen
            done = refund.created.strftime(TIME_FMT)
            cells = [
                *common_head,
                "退款\t",
                subject,
                created,
                done,
                *common_mid,
                yuan(-amount),
                yuan(-amount),
                "0.00",
                "0.00",
                "0.00",
                "0.00",
                "0.00",
                "",
                "0.00\t",
                "0.00",
                f"{refund.out_refund_no}\t",
                "0.00",
                "0.00",
                "",
            ]
            refund_count += 1
            refund_total += amount
            totals["refunds"] += 1
            totals["received"] -= amount
        detail.append(",".join(cells))
    detail += [
        "#" + "-" * 41 + "业务明细列表结束" + "-" * 36,
        f"#交易合计：{pay_count}笔，商家实收共{yuan(pay_total)}元，商家优惠共0.00元",
        f"#退款合计：{refund_count}笔，商家实收退款共{yuan(-refund_total)}元，商家优惠退款共0.00元",
        f"#导出时间：[{_cn_time(exported)}]",
    ]
    summary: list[str] = [
        "#支付宝业务汇总查询",
        f"#账号：[{account}]",
        "#" + "-" * 41 + "业务汇总列表" + "-" * 40,
        ALIPAY_SUMMARY_HEADER,
    ]
    grand = {"pays": 0, "refunds": 0, "order": 0, "received": 0, "fee": 0}

    def figures(t: dict[str, int]) -> list[str]:
        return [
            str(t["pays"]),
            str(t["refunds"]),
            yuan(t["order"]),
            yuan(t["received"]),
            "0.00",
            "0.00",
            "0.00",
            yuan(t["fee"]),
            "0.00",
            yuan(t["received"] + t["fee"]),
        ]

    for store_id in sorted(stores):
        t = stores[store_id]
        for key in grand:
            grand[key] += t[key]
        summary.append(
            ",".join([f"{store_id}\t", f"{_text(merchant.stores.get(store_id, ''))}\t", *figures(t)])
        )
    summary += [
        ",".join(["合计", "", *figures(grand)]),
        "#" + "-" * 40 + "业务汇总列表结束" + "-" * 37,
        f"#导出时间：[{_cn_time(exported)}]",
    ]
    stamp = bill_date.strftime("%Y%m%d")
    detail_name = f"{account}_{stamp}_业务明细.csv"
    summary_name = f"{account}_{stamp}_业务明细(汇总).csv"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, lines in ((detail_name, detail), (summary_name, summary)):
            data = ("\r\n".join(lines) + "\r\n").encode("gbk", errors="replace")
            info = zipfile.ZipInfo(name, date_time=exported.timetuple()[:6])
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return AlipayBill(buffer.getvalue(), detail_name, summary_name)
