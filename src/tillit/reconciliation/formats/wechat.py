"""WeChat Pay ``downloadbill``: ALL, SUCCESS and REFUND bills (providers.md §1.6)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb

from tillit.reconciliation.errors import BillFormatError
from tillit.reconciliation.formats.common import (
    CHINA_OFFSET_HOURS,
    ParsedBill,
    _bad_expr,
    _bill_date,
    _check_blanks,
    _decode,
    _finish,
    _first_bad,
    _first_value,
    _fmt,
    _int,
    _money,
    _q,
    _read_csv,
    _split_wechat,
    _unique,
    scan_file,
)

# --------------------------------------------------------------------------- WeChat Pay


WECHAT_ALIASES = {  # legacy layout names -> current ones (providers.md §1.6)
    "子商户号": "特约商户号",
    "总金额": "应结订单金额",
    "代金券或立减优惠金额": "代金券金额",
    "代金券或立减优惠退款金额": "充值券退款金额",
}
WECHAT_COMMON = [
    "交易时间",
    "公众账号ID",
    "商户号",
    "特约商户号",
    "设备号",
    "微信订单号",
    "商户订单号",
    "用户标识",
    "交易类型",
    "交易状态",
    "付款银行",
    "货币种类",
    "应结订单金额",
    "代金券金额",
]
WECHAT_LAYOUTS: dict[str, list[str]] = {
    "ALL": [
        *WECHAT_COMMON,
        "微信退款单号",
        "商户退款单号",
        "退款金额",
        "充值券退款金额",
        "退款类型",
        "退款状态",
        "商品名称",
        "商户数据包",
        "手续费",
        "费率",
        "订单金额",
        "申请退款金额",
        "费率备注",
    ],
    "SUCCESS": [*WECHAT_COMMON, "商品名称", "商户数据包", "手续费", "费率", "订单金额", "费率备注"],
    "REFUND": [
        *WECHAT_COMMON,
        "退款申请时间",
        "退款成功时间",
        "微信退款单号",
        "商户退款单号",
        "退款金额",
        "充值券退款金额",
        "退款类型",
        "退款状态",
        "商品名称",
        "商户数据包",
        "手续费",
        "费率",
        "订单金额",
        "申请退款金额",
        "费率备注",
    ],
}
WECHAT_REQUIRED = ("交易时间", "微信订单号", "商户订单号", "交易状态", "应结订单金额")
WECHAT_SUMMARY_ALIASES = {
    "总交易额": "应结订单总金额",
    "总退款金额": "退款总金额",
    "总代金券或立减优惠退款金额": "充值券退款总金额",
}
# summary column -> (detail column summed, unit: fen or e5)
WECHAT_SUMMARY_SOURCES = {
    "应结订单总金额": ("应结订单金额", "fen"),
    "退款总金额": ("退款金额", "fen"),
    "充值券退款总金额": ("充值券退款金额", "fen"),
    "手续费总金额": ("手续费", "e5"),
    "订单总金额": ("订单金额", "fen"),
    "申请退款总金额": ("申请退款金额", "fen"),
}


def _wechat_layout(columns: list[str], name: str) -> str:
    known = set().union(*map(set, WECHAT_LAYOUTS.values()))
    for position, column in enumerate(columns):
        if column not in known:
            raise BillFormatError(
                "bill_header",
                f"unknown column {column!r} (position {position + 1})",
                file=name,
                line=1,
                details={"column": column},
            )
    if len(set(columns)) != len(columns):
        raise BillFormatError("bill_header", "a column name appears twice", file=name, line=1)
    missing = [c for c in WECHAT_REQUIRED if c not in columns]
    if missing:
        raise BillFormatError(
            "bill_header",
            f"missing column(s): {', '.join(missing)}",
            file=name,
            line=1,
            details={"missing": missing},
        )
    if "退款申请时间" in columns:
        return "REFUND"
    if "商户退款单号" in columns:
        return "ALL"
    return "SUCCESS"


def _card_kind(bank: str) -> str:
    """The card kind a ``付款银行`` value names: WeChat's bank types end in ``_DEBIT`` / ``_CREDIT``
    (``CMB_DEBIT``, ``ICBC_CREDIT``), ``CFT`` / ``LQT`` are the 零钱 / 零钱通 balance; anything else
    (``OTHERS`` in the official sample, providers.md §1.6) is unknown: the ``any`` contract applies.
    The suffix convention and the balance codes are [unconfirmed] in shared/reference."""
    b = f"upper(trim({bank}))"
    return (
        f"CASE WHEN ends_with({b}, '_DEBIT') THEN 'debit' WHEN ends_with({b}, '_CREDIT') THEN 'credit' "
        f"WHEN {b} IN ('CFT', 'LQT') THEN 'balance' END"
    )


def parse_wechat(
    con: duckdb.DuckDBPyConnection, path: Path, name: str, progress: Callable[[int], None] | None = None
) -> ParsedBill:
    try:
        scan = scan_file(path, progress, utf8=name)
    except BillFormatError as exc:
        if exc.line == 1:  # the header itself: say it plainly
            raise BillFormatError(
                "bill_encoding", "not valid UTF-8 (wrong encoding?)", file=name, line=1
            ) from None
        raise
    if scan.size == 0 or not scan.first.strip():
        raise BillFormatError("bill_unreadable", "empty file", file=name, line=1 if scan.size else None)
    header_text = _decode(scan.first, "utf-8", name, 1)
    if header_text.lstrip().startswith("<xml"):
        raise BillFormatError("bill_unreadable", "an XML error answer, not a bill", file=name, line=1)
    columns = [WECHAT_ALIASES.get(c.strip(), c.strip()) for c in header_text.split(",")]
    bill_type = _wechat_layout(columns, name)
    content = [(n, t) for n, t in scan.tail if t.strip()]
    if len(content) < 2 or scan.lines < 3:
        raise BillFormatError(
            "bill_truncated", "no summary rows at the end (the file is cut short)", file=name, line=scan.lines
        )
    (sum_head_no, sum_head_raw), (sum_row_no, sum_row_raw) = content[-2], content[-1]
    summary_columns = [
        WECHAT_SUMMARY_ALIASES.get(c.strip(), c.strip())
        for c in _decode(sum_head_raw, "utf-8", name, sum_head_no).split(",")
    ]
    if summary_columns[:1] != ["总交易单数"]:
        raise BillFormatError(
            "bill_truncated",
            "the summary header (总交易单数,…) is not the second-to-last line: the file is cut short",
            file=name,
            line=sum_row_no,
        )
    summary_values = _split_wechat(_decode(sum_row_raw, "utf-8", name, sum_row_no))
    if len(summary_values) != len(summary_columns):
        raise BillFormatError(
            "bill_truncated",
            f"the summary row has {len(summary_values)} values for {len(summary_columns)} columns",
            file=name,
            line=sum_row_no,
        )
    _check_blanks(scan, name, scan.last_content_line())
    pos = {c: i for i, c in enumerate(columns)}

    def v(column: str) -> str:
        return f"tl_bq(c{pos[column]})" if column in pos else "NULL"

    is_refund_row = (
        f"({v('商户退款单号')} NOT IN ('', '0'))"
        if "商户退款单号" in pos
        else ("TRUE" if bill_type == "REFUND" else "FALSE")
    )
    order_amount = "订单金额" if "订单金额" in pos else "应结订单金额"
    refund_amount = "申请退款金额" if "申请退款金额" in pos else "退款金额"
    refund_time = "退款申请时间" if "退款申请时间" in pos else "交易时间"
    sums = {src for src, _ in WECHAT_SUMMARY_SOURCES.values() if src in pos}
    money_cols = [
        c for c in ("应结订单金额", "退款金额", "充值券退款金额", "订单金额", "申请退款金额") if c in pos
    ]
    parsed: dict[str, str] = {c: f"tl_fen({v(c)})" for c in money_cols}
    if "手续费" in pos:
        parsed["手续费"] = f"tl_e5({v('手续费')})"
    fmt, hrs = "'%Y-%m-%d %H:%M:%S'", CHINA_OFFSET_HOURS
    inner = [
        "(ordinality + 1)::INTEGER AS line",
        f"{is_refund_row} AS is_refund",
        f"{v('交易状态')} AS trade_state",
        f"{v('商户订单号')} AS out_trade_no",
        f"{v('微信订单号')} AS trade_no",
        f"CASE WHEN {is_refund_row} THEN {v('商户退款单号')} END AS out_refund_no",
        f"CASE WHEN {is_refund_row} THEN {v('微信退款单号')} END AS refund_no",
        f"CASE WHEN {is_refund_row} THEN tl_ts({v(refund_time)}, {fmt}, {hrs}) "
        f"ELSE tl_ts({v('交易时间')}, {fmt}, {hrs}) END AS ts",
        f"{v('退款状态')} AS refund_state",
        f"tl_ppm({v('费率')}) AS rate_ppm" if "费率" in pos else "NULL::INTEGER AS rate_ppm",
        f"{v('费率')} AS rate_text",
        f"nullif(nullif(trim({v('特约商户号')}), ''), '0') AS sub_merchant",
        "NULL::VARCHAR AS store_name",
        f"{_card_kind(v('付款银行'))} AS card_kind",
    ]
    inner += [f'{expr} AS "{col}"' for col, expr in parsed.items()]
    checks = [
        ("out_trade_no = ''", "商户订单号"),
        ("trade_no = ''", "微信订单号"),
        ("ts IS NULL", refund_time if bill_type == "REFUND" else "交易时间"),
        ("is_refund AND out_refund_no = ''", "商户退款单号"),
        ("rate_ppm IS NULL AND coalesce(rate_text, '') <> ''", "费率"),
    ]
    checks += [(f'"{c}" IS NULL', c) for c in parsed]
    staged, table = _unique("wx_staged"), _unique("bill")
    select = (
        "SELECT *, "
        + _bad_expr(checks)
        + " AS bad, "
        + "CASE WHEN NOT is_refund THEN 'payment' WHEN trade_state = 'REVOKED' THEN 'revoke' "
        + "ELSE 'refund' END AS kind, "
        + f"CASE WHEN is_refund THEN {_q(refund_amount, parsed)} "
        + f"ELSE {_q(order_amount, parsed)} END AS amount, "
        + ('"手续费" AS fee, ' if "手续费" in parsed else "NULL::BIGINT AS fee, ")
        + "CASE WHEN is_refund THEN coalesce(refund_state, 'SUCCESS') ELSE trade_state END AS status "
        + "FROM (SELECT "
        + ", ".join(inner)
        + " FROM {src} WITH ORDINALITY)"
    )
    expected_rows = sum_head_no - 2
    _read_csv(
        con,
        path,
        len(columns),
        skip=1,
        select=select,
        into=staged,
        name=name,
        allowed_rejects={
            _decode(sum_head_raw, "utf-8", name, sum_head_no),
            _decode(sum_row_raw, "utf-8", name, sum_row_no),
        },
    )
    _first_bad(con, staged, name, path)
    loaded = con.execute(f"SELECT count(*) FROM {staged}").fetchone()
    if loaded is None or int(loaded[0]) != expected_rows:
        raise BillFormatError(
            "bill_row",
            f"expected {expected_rows} detail rows before the summary, read {loaded[0] if loaded else 0}",
            file=name,
            line=sum_head_no,
        )
    # The summary row against the detail rows.
    agg = [f'coalesce(sum("{parsed_col}"), 0)' for parsed_col in sums]
    sums_list = sorted(sums)
    actual: dict[str, int] = {"总交易单数": expected_rows}
    if sums_list:
        values = con.execute(
            "SELECT " + ", ".join(f'coalesce(sum("{c}"), 0)' for c in sums_list) + f" FROM {staged}"
        ).fetchone()
        assert values is not None
        actual.update(dict(zip(sums_list, (int(x) for x in values), strict=True)))
    del agg
    totals: dict[str, Any] = {}
    for column, text in zip(summary_columns, summary_values, strict=True):
        if column == "总交易单数":
            want, have = _int(text, name, sum_row_no, column), actual["总交易单数"]
        elif column in WECHAT_SUMMARY_SOURCES and WECHAT_SUMMARY_SOURCES[column][0] in actual:
            source, unit = WECHAT_SUMMARY_SOURCES[column]
            want = _money(text, unit, name, sum_row_no, column)
            have = actual[source]
        else:
            continue
        totals[column] = want
        if want != have:
            raise BillFormatError(
                "bill_totals_mismatch",
                f"summary {column} is {text} but the detail rows add up to "
                f"{_fmt(have, WECHAT_SUMMARY_SOURCES.get(column, ('', 'count'))[1])}",
                file=name,
                line=sum_row_no,
                details={"column": column, "summary": want, "details_sum": have},
            )
    rows, payments, refunds = _finish(con, staged, table)
    con.execute(f"DROP TABLE {staged}")
    account = con.execute("SELECT NULL").fetchone()
    del account
    mch = _first_value(con, path, columns, "商户号")
    return ParsedBill(
        format="wechat",
        provider="wechat",
        bill_type=bill_type,
        bill_date=_bill_date(con, table),
        account=mch,
        sha256=scan.sha256,
        size=scan.size,
        file=name,
        table=table,
        rows=rows,
        payments=payments,
        refunds=refunds,
        fee_unit=1,
        totals=totals,
    )
