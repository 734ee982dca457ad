"""What a receipt says, and how it is laid out on a paper roll: pure, shared by the e-receipt page and
PDF (customer/), the server-side ESC/POS printer and the till's printer.

Width is counted in printer columns: a CJK character takes two (``display_width``), so 58 mm rolls
(32 columns) and 80 mm rolls (48 columns) line up in Chinese as in English.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field

WIDTHS = {58: 32, 80: 48}  # roll width in mm -> columns of the standard 12x24 font

LABELS = {
    "en": {
        "receipt": "Receipt",
        "store": "Store",
        "terminal": "Till",
        "time": "Time",
        "subtotal": "Subtotal",
        "discount": "Discount",
        "total": "Total",
        "cash": "Cash",
        "wechat": "WeChat Pay",
        "alipay": "Alipay",
        "tendered": "Tendered",
        "change": "Change",
        "refund": "Refund",
        "copy": "COPY",
        "thanks": "Thank you",
        "scan": "Scan for your e-receipt",
        "status_refunded": "Refunded",
        "status_cancelled": "Cancelled",
    },
    "zh-CN": {
        "receipt": "小票",
        "store": "门店",
        "terminal": "收银台",
        "time": "时间",
        "subtotal": "小计",
        "discount": "优惠",
        "total": "合计",
        "cash": "现金",
        "wechat": "微信支付",
        "alipay": "支付宝",
        "tendered": "实收",
        "change": "找零",
        "refund": "退款",
        "copy": "重印",
        "thanks": "谢谢惠顾",
        "scan": "扫码查看电子小票",
        "status_refunded": "已退款",
        "status_cancelled": "已取消",
    },
}


@dataclass(frozen=True, slots=True)
class ReceiptLine:
    name: str
    quantity: int
    unit_price: int
    discount: int
    amount: int


@dataclass(frozen=True, slots=True)
class ReceiptPayment:
    method: str  # cash | wechat | alipay
    amount: int
    code_masked: str | None = None  # only ever the masked code (1340********1234)
    tendered: int | None = None
    change_due: int | None = None


@dataclass(frozen=True, slots=True)
class ReceiptRefund:
    amount: int
    at: str


@dataclass(frozen=True, slots=True)
class Receipt:
    merchant_name: str
    store_name: str
    terminal_name: str | None
    number: int
    at: str  # ISO time of the sale
    currency: str
    status: str
    subtotal: int
    discount_total: int
    total: int
    lines: list[ReceiptLine] = field(default_factory=list)
    payments: list[ReceiptPayment] = field(default_factory=list)
    refunds: list[ReceiptRefund] = field(default_factory=list)
    url: str | None = None  # the signed e-receipt link (QR code on paper)
    copy: int = 0  # 0: the original; n: the n-th reprint, marked 重印 / COPY n


def money(minor: int) -> str:
    sign = "-" if minor < 0 else ""
    return f"{sign}{abs(minor) // 100}.{abs(minor) % 100:02d}"


def display_width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in text)


def clip(text: str, columns: int) -> str:
    out, used = [], 0
    for ch in text:
        w = display_width(ch)
        if used + w > columns:
            break
        out.append(ch)
        used += w
    return "".join(out)


def pair(left: str, right: str, columns: int) -> str:
    """``left`` and ``right`` on one line, right-aligned to ``columns``."""
    left = clip(left, columns - display_width(right) - 1)
    return left + " " * (columns - display_width(left) - display_width(right)) + right


def center(text: str, columns: int) -> str:
    text = clip(text, columns)
    pad = (columns - display_width(text)) // 2
    return " " * pad + text


def paper_lines(receipt: Receipt, columns: int, locale: str = "zh-CN") -> list[str]:
    """The receipt's text, line by line, for a roll ``columns`` wide (the QR code follows them)."""
    t = LABELS.get(locale, LABELS["zh-CN"])
    rule = "-" * columns
    out = [center(receipt.merchant_name, columns)]
    if receipt.copy:
        out.append(center(f"*** {t['copy']} {receipt.copy} ***", columns))
    out += [
        rule,
        pair(t["receipt"], f"#{receipt.number}", columns),
        pair(t["store"], receipt.store_name, columns),
    ]
    if receipt.terminal_name:
        out.append(pair(t["terminal"], receipt.terminal_name, columns))
    out += [pair(t["time"], receipt.at[:19].replace("T", " "), columns), rule]
    for line in receipt.lines:
        out.append(clip(line.name, columns))
        out.append(
            pair(
                f"  {line.quantity} x {money(line.unit_price)}",
                money(line.quantity * line.unit_price),
                columns,
            )
        )
        if line.discount:
            out.append(pair(f"  {t['discount']}", "-" + money(line.discount), columns))
    out.append(rule)
    if receipt.discount_total:
        out.append(pair(t["subtotal"], money(receipt.subtotal), columns))
        out.append(pair(t["discount"], "-" + money(receipt.discount_total), columns))
    out.append(pair(f"{t['total']} {receipt.currency}", money(receipt.total), columns))
    for pay in receipt.payments:
        out.append(pair(t.get(pay.method, pay.method), money(pay.amount), columns))
        if pay.tendered is not None:
            out.append(pair(f"  {t['tendered']}", money(pay.tendered), columns))
            out.append(pair(f"  {t['change']}", money(pay.change_due or 0), columns))
        if pay.code_masked:
            out.append(f"  {pay.code_masked}")
    for refund in receipt.refunds:
        out.append(pair(t["refund"], "-" + money(refund.amount), columns))
    if receipt.status in ("refunded", "cancelled"):
        out.append(center(t[f"status_{receipt.status}"], columns))
    out += [rule, center(t["thanks"], columns)]
    if receipt.url:
        out.append(center(t["scan"], columns))
    return out
