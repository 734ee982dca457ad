"""Statement files in the providers' layouts (operations.md §1.2, §2.2) and Tillit's bank CSV, built
line by line for tests: each line is (time, key, kind, signed fen, our id, note)."""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from datetime import datetime


def yuan(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    return f"{sign}{abs(fen) // 100}.{abs(fen) % 100:02d}"


@dataclass(frozen=True)
class Line:
    at: datetime  # China time
    key: str
    kind: str  # 交易 / 退款 / 手续费 / 提现 (WeChat 业务类型) or 在线支付 / 交易退款 / 手续费 (Alipay)
    fen: int  # signed: + income
    ref: str  # our out_trade_no (or refund id)
    note: str = ""


WECHAT_HEADER = (
    "记账时间,微信支付业务单号,资金流水单号,业务名称,业务类型,收支类型,收支金额(元),账户结余(元),"
    "资金变更提交申请人,备注,业务凭证号"
)


def wechat_fundflow(lines: list[Line], *, summary: tuple[str, ...] | None = None) -> bytes:
    out = [WECHAT_HEADER]
    balance = 0
    for x in lines:
        balance += x.fen
        way = "收入" if x.fen > 0 else "支出"
        cells = [x.at.strftime("%Y-%m-%d %H:%M:%S"), "4200" + x.key, x.key, x.kind, x.kind, way,
                 yuan(abs(x.fen)), yuan(balance), "system", x.note, x.ref]  # fmt: skip
        out.append(",".join("`" + c for c in cells))
    inc = [x.fen for x in lines if x.fen > 0]
    exp = [-x.fen for x in lines if x.fen < 0]
    # The official sample prints the counts as decimals.
    row = summary or (f"{len(lines)}.0", f"{len(inc)}.0", yuan(sum(inc)), f"{len(exp)}.0", yuan(sum(exp)))
    out += ["资金流水总笔数,收入笔数,收入金额,支出笔数,支出金额", ",".join("`" + v for v in row)]
    return ("\r\n".join(out) + "\r\n").encode("utf-8")


ALIPAY_HEADER = (
    "账务流水号,业务流水号,商户订单号,商品名称,发生时间,对方账号,收入金额（+元）,支出金额（-元）,账户余额（元）,"
    "交易渠道,业务类型,备注"
)


def alipay_account(lines: list[Line], *, zipped: bool = True, footer_income: int | None = None) -> bytes:
    out = [
        "#支付宝账务明细查询",
        "#账号：[20881021778468800156]",
        "#起始日期：[2026年11月21日 00:00:00]   终止日期：[2026年11月22日 00:00:00]",
        "#-----------------------------------------账务明细列表----------------------------------------",
        ALIPAY_HEADER,
    ]
    balance = 0
    for x in lines:
        balance += x.fen
        out.append(
            f"{x.key}\t,2026{x.key}\t,{x.ref}\t,商品\t,{x.at:%Y-%m-%d %H:%M:%S},*三(138***@qq.com)\t,"
            f"{yuan(max(x.fen, 0))},{yuan(max(-x.fen, 0))},{yuan(balance)},支付宝\t,{x.kind}\t,{x.note}\t"
        )
    inc = [x.fen for x in lines if x.fen > 0]
    exp = [-x.fen for x in lines if x.fen < 0]
    out += [
        "#----------------------------------------账务明细列表结束-------------------------------------",
        f"#支出合计：{len(exp)}笔，共{yuan(sum(exp))}元",
        f"#收入合计：{len(inc)}笔，共{yuan(sum(inc) if footer_income is None else footer_income)}元",
        "#导出时间：[2026年11月22日 10:19:03]",
    ]
    body = ("\r\n".join(out) + "\r\n").encode("gbk")
    if not zipped:
        return body
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(
            "20881021778468800156_20261121_账务汇总.csv", "#支付宝账务汇总查询\r\n".encode("gbk")
        )
        archive.writestr("20881021778468800156_20261121_账务明细.csv", body)
    return buffer.getvalue()


def bank_csv(rows: list[tuple[str, int, str, str, str]]) -> bytes:
    """(value_date, signed fen, counterparty, bank_ref, memo) rows in Tillit's bank format."""
    out = ["value_date,amount,currency,counterparty,bank_ref,memo"]
    out += [f"{d},{yuan(f)},CNY,{cp},{ref},{memo}" for d, f, cp, ref, memo in rows]
    return ("\n".join(out) + "\n").encode("utf-8")
