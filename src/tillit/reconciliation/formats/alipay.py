"""The Alipay trade bill ZIP of GBK CSVs (providers.md §2.7)."""

from __future__ import annotations

import codecs
import io
import re
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import duckdb

from tillit.reconciliation.errors import BillFormatError
from tillit.reconciliation.formats.common import (
    CHINA_OFFSET_HOURS,
    CHUNK,
    ParsedBill,
    _bad_expr,
    _bill_date,
    _finish,
    _first_bad,
    _fmt,
    _int,
    _money,
    _read_csv,
    _unique,
    scan_file,
)

# --------------------------------------------------------------------------- Alipay


ALIPAY_COLUMNS = [
    "支付宝交易号",
    "商户订单号",
    "业务类型",
    "商品名称",
    "创建时间",
    "完成时间",
    "门店编号",
    "门店名称",
    "操作员",
    "终端号",
    "对方账户",
    "订单金额（元）",
    "商家实收（元）",
    "支付宝红包（元）",
    "集分宝（元）",
    "支付宝优惠（元）",
    "商家优惠（元）",
    "券核销金额（元）",
    "券名称",
    "商家红包消费金额（元）",
    "卡消费金额（元）",
    "退款批次号/请求号",
    "服务费（元）",
    "分润（元）",
    "备注",
]
# The 29-column acquirer variant's extra columns that providers.md names.
ALIPAY_EXTRA = ("实收净额（元）", "商户识别号", "交易方式", "花呗分期数")
ALIPAY_REQUIRED = ("支付宝交易号", "商户订单号", "业务类型", "完成时间", "订单金额（元）", "商家实收（元）")
ALIPAY_SUMMARY_COLUMNS = [
    "门店编号",
    "门店名称",
    "交易订单总笔数",
    "退款订单总笔数",
    "订单金额（元）",
    "商家实收（元）",
    "支付宝优惠（元）",
    "商家优惠（元）",
    "卡消费金额（元）",
    "服务费（元）",
    "分润（元）",
    "实收净额（元）",
]
DETAIL_START, DETAIL_END = "业务明细列表", "业务明细列表结束"
SUMMARY_START, SUMMARY_END = "业务汇总列表", "业务汇总列表结束"
PAY_FOOTER = re.compile(r"^#交易合计：(\d+)笔，商家实收共(-?[\d.]+)元，商家优惠共(-?[\d.]+)元")
REFUND_FOOTER = re.compile(r"^#退款合计：(\d+)笔，商家实收退款共(-?[\d.]+)元，商家优惠退款共(-?[\d.]+)元")
ACCOUNT_LINE = re.compile(r"^#账号：\[(\d+)\]")
START_LINE = re.compile(r"^#起始日期：\[(\d{4})年(\d{2})月(\d{2})日")


def _member_name(info: zipfile.ZipInfo) -> str:
    if info.flag_bits & 0x800:
        return info.filename
    try:  # names without the UTF-8 flag: Alipay's are GBK
        return info.filename.encode("cp437").decode("gbk")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return info.filename


@dataclass
class _AlipayText:
    """The detail member split into parts: '#' head lines, header, detail body (in a temp file) and
    '#' footer lines, with line numbers of the member."""

    head: list[tuple[int, str]]
    header: tuple[int, str]
    body_first_line: int
    body_lines: int
    foot: list[tuple[int, str]]


def _gbk_lines(raw: io.BufferedIOBase | Any, name: str) -> Iterator[tuple[int, str]]:
    decoder = codecs.getincrementaldecoder("gbk")()
    pending = ""
    number = 0
    while True:
        chunk = raw.read(CHUNK)
        try:
            text = decoder.decode(chunk, final=not chunk)
        except UnicodeDecodeError:
            # Find the line: decode what is left line by line.
            bad_line = number + 1 + pending.count("\n")
            for offset, piece in enumerate(chunk.split(b"\n")):
                try:
                    piece.decode("gbk")
                except UnicodeDecodeError:
                    bad_line = number + pending.count("\n") + offset + 1
                    break
            raise BillFormatError(
                "bill_encoding", "not valid GBK (wrong encoding?)", file=name, line=bad_line
            ) from None
        pending += text
        lines = pending.split("\n")
        pending = lines.pop()
        for line in lines:
            number += 1
            yield number, line.rstrip("\r")
        if not chunk:
            if pending:
                number += 1
                yield number, pending.rstrip("\r")
            return


def _split_alipay(
    stream: Iterator[tuple[int, str]], out: io.TextIOBase | Any, name: str, start: str, end: str
) -> _AlipayText:
    head: list[tuple[int, str]] = []
    foot: list[tuple[int, str]] = []
    header: tuple[int, str] | None = None
    state = "head"
    body_first = body_lines = 0
    last = 0
    for number, line in stream:
        last = number
        if state == "head":
            if number == 1:
                line = line.lstrip("\ufeff")
            if line.startswith("#"):
                head.append((number, line))
                continue
            if not line.strip():
                continue
            if not any(start in h and end not in h for _, h in head):
                raise BillFormatError(
                    "bill_header", f"no '#…{start}…' line before the header", file=name, line=number
                )
            header = (number, line)
            out.write(line + "\n")
            state = "body"
            body_first = number + 1
        elif state == "body":
            if line.startswith("#"):
                if end not in line:
                    raise BillFormatError(
                        "bill_row", f"a '#' line inside the rows before '#…{end}…'", file=name, line=number
                    )
                foot.append((number, line))
                state = "foot"
                continue
            if not line.strip():
                raise BillFormatError("bill_row", "blank line inside the bill", file=name, line=number)
            out.write(line + "\n")
            body_lines += 1
        else:
            if line.strip():
                foot.append((number, line))
    if header is None:
        raise BillFormatError(
            "bill_header", "no header line (empty or truncated file)", file=name, line=last or None
        )
    if state != "foot":
        raise BillFormatError(
            "bill_truncated",
            f"no '#…{end}…' line after the rows: the file is cut short",
            file=name,
            line=last,
        )
    return _AlipayText(head, header, body_first, body_lines, foot)


def _alipay_members(
    path: Path, name: str
) -> tuple[zipfile.ZipFile | None, zipfile.ZipInfo | None, zipfile.ZipInfo | None]:
    with path.open("rb") as handle:
        magic = handle.read(4)
    if magic != b"PK\x03\x04":
        return None, None, None  # a bare detail CSV
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise BillFormatError("bill_unreadable", "not a valid ZIP archive (truncated?)", file=name) from None
    detail = summary = None
    for info in archive.infolist():
        member = _member_name(info)
        if member.endswith("_业务明细.csv"):
            detail = info
        elif member.endswith("_业务明细(汇总).csv"):
            summary = info
    if detail is None:
        archive.close()
        raise BillFormatError("bill_unreadable", "the ZIP has no …_业务明细.csv member", file=name)
    return archive, detail, summary


def parse_alipay(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    name: str,
    progress: Callable[[int], None] | None = None,
    workdir: Path | None = None,
) -> ParsedBill:
    scan = scan_file(path, progress)
    if scan.size == 0:
        raise BillFormatError("bill_unreadable", "empty file", file=name)
    archive, detail_info, summary_info = _alipay_members(path, name)
    detail_name = f"{name}!{_member_name(detail_info)}" if detail_info is not None else name
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        body_path = Path(tmp) / "detail.csv"
        try:
            with body_path.open("w", encoding="utf-8", newline="\n") as out:
                try:
                    raw: Any = archive.open(detail_info) if archive and detail_info else path.open("rb")
                    with raw:
                        text = _split_alipay(
                            _gbk_lines(raw, detail_name), out, detail_name, DETAIL_START, DETAIL_END
                        )
                except (zipfile.BadZipFile, EOFError, OSError) as exc:
                    raise BillFormatError(
                        "bill_unreadable", f"cannot read the ZIP member: {exc}"[:200], file=detail_name
                    ) from None
            summary = _alipay_summary(archive, summary_info, name) if archive and summary_info else None
        finally:
            if archive is not None:
                archive.close()
        header_no, header_line = text.header
        columns = [c.strip() for c in header_line.split(",")]
        known = set(ALIPAY_COLUMNS) | set(ALIPAY_EXTRA)
        for position, column in enumerate(columns):
            if column not in known:
                raise BillFormatError(
                    "bill_header",
                    f"unknown column {column!r} (position {position + 1})",
                    file=detail_name,
                    line=header_no,
                    details={"column": column},
                )
        missing = [c for c in ALIPAY_REQUIRED if c not in columns]
        if missing or len(set(columns)) != len(columns):
            raise BillFormatError(
                "bill_header",
                f"missing column(s): {', '.join(missing)}" if missing else "a column name appears twice",
                file=detail_name,
                line=header_no,
                details={"missing": missing},
            )
        pos = {c: i for i, c in enumerate(columns)}

        def v(column: str) -> str:
            return f"trim(c{pos[column]}, ' \t')" if column in pos else "NULL"

        money = {
            c: f"tl_fen({v(c)})"
            for c in ("订单金额（元）", "商家实收（元）", "商家优惠（元）", "服务费（元）")
            if c in pos
        }
        fmt, hrs = "'%Y-%m-%d %H:%M:%S'", CHINA_OFFSET_HOURS
        inner = [
            f"(ordinality + {text.body_first_line - 1})::INTEGER AS line",
            f"{v('业务类型')} AS biz",
            f"{v('商户订单号')} AS out_trade_no",
            f"{v('支付宝交易号')} AS trade_no",
            f"{v('退款批次号/请求号')} AS request_no",
            f"tl_ts({v('完成时间')}, {fmt}, {hrs}) AS ts",
            "NULL::VARCHAR AS sub_merchant",
            f"nullif({v('门店名称')}, '') AS store_name",
            "NULL::VARCHAR AS card_kind",  # the trade bill names no fund channel (providers.md §2.7)
        ] + [f'{expr} AS "{col}"' for col, expr in money.items()]
        checks = [
            ("out_trade_no = ''", "商户订单号"),
            ("trade_no = ''", "支付宝交易号"),
            ("biz NOT IN ('交易', '退款')", "业务类型"),
            ("ts IS NULL", "完成时间"),
        ] + [(f'"{c}" IS NULL', c) for c in money]
        fee = '-"服务费（元）" * 1000' if "服务费（元）" in money else "NULL::BIGINT"
        select = (
            "SELECT *, "
            + _bad_expr(checks)
            + " AS bad, "
            + "CASE WHEN biz = '交易' THEN 'payment' "
            + "WHEN coalesce(request_no, '') IN ('', trade_no) THEN 'revoke' "
            + "ELSE 'refund' END AS kind, "
            + "CASE WHEN biz = '退款' THEN coalesce(nullif(request_no, ''), trade_no) END AS out_refund_no, "
            + "NULL::VARCHAR AS refund_no, "
            + 'abs("订单金额（元）") AS amount, '
            + f"{fee} AS fee, NULL::INTEGER AS rate_ppm, 'SUCCESS' AS status "
            + "FROM (SELECT "
            + ", ".join(inner)
            + " FROM {src} WITH ORDINALITY)"
        )
        staged, table = _unique("ali_staged"), _unique("bill")
        _read_csv(
            con,
            body_path,
            len(columns),
            skip=1,
            select=select,
            into=staged,
            name=detail_name,
            line_offset=header_no - 1,
        )
        try:
            _first_bad(con, staged, detail_name, body_path)
        except BillFormatError as exc:
            # The temp file holds the header and rows only: report the member's own line number.
            assert exc.line is not None
            raise BillFormatError(
                "bill_row",
                exc.reason,
                file=detail_name,
                line=exc.line,
                details={"column": exc.details["column"]},
            ) from None
    loaded = con.execute(f"SELECT count(*) FROM {staged}").fetchone()
    if loaded is None or int(loaded[0]) != text.body_lines:
        raise BillFormatError(
            "bill_row", f"read {loaded[0] if loaded else 0} of {text.body_lines} rows", file=detail_name
        )
    totals = _alipay_footer_check(con, staged, text, detail_name, summary, name)
    account = None
    bill_day = None
    for _, line in text.head:
        if m := ACCOUNT_LINE.match(line):
            account = m.group(1)
        if m := START_LINE.match(line):
            bill_day = date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    rows, payments, refunds = _finish(con, staged, table)
    con.execute(f"DROP TABLE {staged}")
    return ParsedBill(
        format="alipay",
        provider="alipay",
        bill_type="trade",
        bill_date=bill_day or _bill_date(con, table),
        account=account,
        sha256=scan.sha256,
        size=scan.size,
        file=name,
        table=table,
        rows=rows,
        payments=payments,
        refunds=refunds,
        fee_unit=1000,
        totals=totals,
    )


def _alipay_summary(archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str) -> dict[str, Any]:
    """The 合计 row of the summary member, as {column: text} (with its line number)."""
    member = f"{name}!{_member_name(info)}"
    sink = io.StringIO()
    with archive.open(info) as raw:
        text = _split_alipay(_gbk_lines(raw, member), sink, member, SUMMARY_START, SUMMARY_END)
    columns = [c.strip() for c in text.header[1].split(",")]
    unknown = [c for c in columns if c not in ALIPAY_SUMMARY_COLUMNS]
    if unknown:
        raise BillFormatError(
            "bill_header",
            f"unknown column {unknown[0]!r}",
            file=member,
            line=text.header[0],
            details={"column": unknown[0]},
        )
    rows = sink.getvalue().splitlines()[1:]
    for offset, row in enumerate(rows):
        values = [x.strip(" \t") for x in row.split(",")]
        if values and values[0] == "合计":
            if len(values) != len(columns):
                raise BillFormatError(
                    "bill_row",
                    "the 合计 row has the wrong number of values",
                    file=member,
                    line=text.body_first_line + offset,
                )
            return {
                "member": member,
                "line": text.body_first_line + offset,
                "values": dict(zip(columns, values, strict=True)),
            }
    raise BillFormatError(
        "bill_truncated", "the summary has no 合计 row", file=member, line=text.body_first_line
    )


def _alipay_footer_check(
    con: duckdb.DuckDBPyConnection,
    staged: str,
    text: _AlipayText,
    detail_name: str,
    summary: dict[str, Any] | None,
    name: str,
) -> dict[str, Any]:
    discount = '"商家优惠（元）"' if _has_column(con, staged, "商家优惠（元）") else "0"
    fee = '"服务费（元）"' if _has_column(con, staged, "服务费（元）") else "0"
    row = con.execute(
        f"""SELECT count(*) FILTER (biz = '交易'), coalesce(sum("商家实收（元）") FILTER (biz = '交易'), 0),
        coalesce(sum({discount}) FILTER (biz = '交易'), 0),
        count(*) FILTER (biz = '退款'), coalesce(sum("商家实收（元）") FILTER (biz = '退款'), 0),
        coalesce(sum({discount}) FILTER (biz = '退款'), 0),
        coalesce(sum("订单金额（元）") FILTER (biz = '交易'), 0), coalesce(sum("商家实收（元）"), 0),
        coalesce(sum({fee}), 0)
        FROM {staged}"""
    ).fetchone()
    assert row is not None
    pays, pay_received, pay_discount, refunds, refund_received, refund_discount, ordered, received, fees = (
        int(x) for x in row
    )
    found = {"pay": False, "refund": False}
    totals: dict[str, Any] = {}
    for number, line in text.foot:
        for kind, pattern, expected in (
            ("pay", PAY_FOOTER, (pays, pay_received, pay_discount)),
            ("refund", REFUND_FOOTER, (refunds, refund_received, refund_discount)),
        ):
            m = pattern.match(line)
            if not m:
                continue
            found[kind] = True
            stated = (
                _int(m.group(1), detail_name, number, "笔数"),
                _money(m.group(2), "fen", detail_name, number, "商家实收"),
                _money(m.group(3), "fen", detail_name, number, "商家优惠"),
            )
            totals[kind] = {"count": stated[0], "received": stated[1], "discount": stated[2]}
            labels = ("count", "merchant received (商家实收)", "merchant discount (商家优惠)")
            for label, want, have in zip(labels, stated, expected, strict=True):
                if want != have:
                    raise BillFormatError(
                        "bill_totals_mismatch",
                        f"footer {label} is {want if label == 'count' else _fmt(want, 'fen')} "
                        "but the rows add up "
                        f"to {have if label == 'count' else _fmt(have, 'fen')}",
                        file=detail_name,
                        line=number,
                        details={"total": kind, "field": label, "footer": want, "details_sum": have},
                    )
    for kind, seen in found.items():
        if not seen:
            label = "#交易合计" if kind == "pay" else "#退款合计"
            raise BillFormatError(
                "bill_truncated",
                f"no {label} footer line: the file is cut short",
                file=detail_name,
                line=text.foot[-1][0] if text.foot else None,
            )
    if summary is not None:
        values = summary["values"]
        checks = [
            ("交易订单总笔数", pays, "count"),
            ("退款订单总笔数", refunds, "count"),
            ("订单金额（元）", ordered, "fen"),
            ("商家实收（元）", received, "fen"),
            ("服务费（元）", fees, "fen"),
        ]
        for column, have, unit in checks:
            if column not in values:
                continue
            sum_line = int(summary["line"])
            want = (
                _int(values[column], summary["member"], sum_line, column)
                if unit == "count"
                else _money(values[column], "fen", summary["member"], sum_line, column)
            )
            if want != have:
                raise BillFormatError(
                    "bill_totals_mismatch",
                    f"合计 {column} is {values[column]} but the detail rows add up to {_fmt(have, unit)}",
                    file=summary["member"],
                    line=sum_line,
                    details={"column": column, "summary": want, "details_sum": have},
                )
        totals["summary"] = {k: values[k] for k, _, _ in checks if k in values}
    return totals


def _has_column(con: duckdb.DuckDBPyConnection, table: str, column: str) -> bool:
    row = con.execute(
        "SELECT count(*) FROM information_schema.columns WHERE table_name = ? AND column_name = ?",
        [table, column],
    ).fetchone()
    return bool(row and row[0])
