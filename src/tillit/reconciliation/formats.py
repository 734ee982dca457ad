"""Bill parsers: WeChat Pay ``downloadbill``, the Alipay trade bill ZIP and a generic CSV with a
column-mapping file (shared/reference/providers.md §1.6, §2.7).

Every parser reads the file by header name into one DuckDB table of *canonical rows* (columnar; no
Python object per row) and checks the file's own totals against its detail rows. A malformed file
raises :class:`BillFormatError` with the file, the 1-based line and the reason; nothing is skipped.

Canonical columns (``CANONICAL``): ``line`` (in the file as delivered), ``kind`` (``payment``,
``refund`` or ``revoke`` — a reversal/cancel of a paid trade), ``out_trade_no``, ``trade_no`` (the
provider's transaction id), ``out_refund_no``, ``refund_no``, ``amount`` (fen, positive), ``fee``
(the provider's fee in 0.00001 yuan, positive when charged, negative when returned; NULL if the
layout has none), ``rate_ppm`` (the fee rate the bill states, NULL if none), ``ts`` (UTC timestamp:
payment time, or refund time on refund rows) and ``status`` (SUCCESS, or the refund status).
"""

from __future__ import annotations

import codecs
import hashlib
import io
import json
import re
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb

from tillit.reconciliation.errors import BillFormatError
from tillit.reconciliation.match import find_duplicates

CHUNK = 8 * 1024 * 1024
TAIL = 64 * 1024
CHINA_OFFSET_HOURS = 8
FORMATS = ("wechat", "alipay", "csv")
PROVIDERS = ("wechat", "alipay")

CANONICAL = (
    "line INTEGER, kind VARCHAR, out_trade_no VARCHAR, trade_no VARCHAR, out_refund_no VARCHAR, "
    "refund_no VARCHAR, amount BIGINT, fee BIGINT, rate_ppm INTEGER, ts TIMESTAMP, status VARCHAR"
)
CANONICAL_COLUMNS = tuple(part.split()[0] for part in CANONICAL.split(", "))

# Value parsers as DuckDB macros: exact decimal text to integers, NULL when the text is malformed.
MACROS = r"""
CREATE OR REPLACE TEMP MACRO tl_fen(x) AS CASE WHEN regexp_full_match(x, '-?[0-9]{1,13}(\.[0-9]{1,2})?')
  THEN CAST(CAST(x AS DECIMAL(18,2)) * 100 AS BIGINT) END;
CREATE OR REPLACE TEMP MACRO tl_e5(x) AS CASE WHEN regexp_full_match(x, '-?[0-9]{1,12}(\.[0-9]{1,5})?')
  THEN CAST(CAST(x AS DECIMAL(18,5)) * 100000 AS BIGINT) END;
CREATE OR REPLACE TEMP MACRO tl_ppm(x) AS CASE WHEN regexp_full_match(x, '[0-9]{1,2}(\.[0-9]{1,4})?%')
  THEN CAST(CAST(rtrim(x, '%') AS DECIMAL(8,4)) * 10000 AS INTEGER) END;
CREATE OR REPLACE TEMP MACRO tl_ts(x, fmt, hours) AS try_strptime(x, fmt) - to_hours(hours);
CREATE OR REPLACE TEMP MACRO tl_bq(x) AS CASE WHEN starts_with(x, '`') THEN x[2:] ELSE x END;
"""


@dataclass
class ParsedBill:
    """What a parser found; the rows themselves are in DuckDB table ``table``."""

    format: str
    provider: str
    bill_type: str
    bill_date: date | None
    account: str | None
    sha256: str
    size: int
    file: str
    table: str
    rows: int = 0
    payments: int = 0
    refunds: int = 0
    # Precision of the fee column in 0.00001 yuan (WeChat prints 5 decimals: 1; Alipay fen: 1000).
    fee_unit: int = 1
    totals: dict[str, Any] = field(default_factory=dict)

    @property
    def dups(self) -> str:
        """The table of lines that repeat an earlier line's payment or refund id."""
        return f"{self.table}_dups"

    def summary(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "provider": self.provider,
            "bill_type": self.bill_type,
            "bill_date": self.bill_date.isoformat() if self.bill_date else None,
            "account": self.account,
            "sha256": self.sha256,
            "size": self.size,
            "rows": self.rows,
            "payments": self.payments,
            "refunds": self.refunds,
            "totals": self.totals,
        }


# --------------------------------------------------------------------------- file scanning


@dataclass
class Scan:
    """One pass over the raw bytes: hash, size, line count, first line, last lines, blank lines."""

    sha256: str
    size: int
    lines: int
    first: bytes
    tail: list[tuple[int, bytes]]  # (line number, content without EOL) of the last lines
    blanks: list[int]

    def last_content_line(self) -> int:
        for number, text in reversed(self.tail):
            if text.strip():
                return number
        return 0


def scan_file(path: Path, progress: Callable[[int], None] | None = None, *, utf8: str | None = None) -> Scan:
    """``utf8``: the file name for errors when every byte must be valid UTF-8 (checked in this pass)."""
    digest = hashlib.sha256()
    decoder = codecs.getincrementaldecoder("utf-8")() if utf8 else None
    size = newlines = 0
    first = b""
    tail = b""
    prev = b""
    blanks: set[int] = set()
    last_byte = b""
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            if decoder is not None:
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError as exc:
                    line = newlines + chunk.count(b"\n", 0, max(exc.start, 0)) + 1
                    raise BillFormatError(
                        "bill_encoding", "not valid UTF-8 (wrong encoding?)", file=str(utf8), line=line
                    ) from None
            if size == 0:
                first = chunk[:TAIL]
            buf = prev + chunk
            base = newlines - prev.count(b"\n")
            if len(blanks) < 10:
                for pattern in (b"\n\n", b"\n\r\n"):
                    at = buf.find(pattern)
                    while at != -1 and len(blanks) < 10:
                        blanks.add(base + buf.count(b"\n", 0, at + 1) + 1)
                        at = buf.find(pattern, at + 1)
            newlines += chunk.count(b"\n")
            size += len(chunk)
            prev = buf[-2:]
            tail = (tail + chunk)[-TAIL:]
            last_byte = chunk[-1:]
            if progress is not None:
                progress(len(chunk))
    total = newlines + (1 if size and last_byte != b"\n" else 0)
    parts = tail.split(b"\n")
    if last_byte == b"\n":
        parts = parts[:-1]
    if size > len(tail):
        parts = parts[1:]  # the first part may be cut
    numbered = [(total - len(parts) + 1 + i, p.rstrip(b"\r")) for i, p in enumerate(parts)]
    first_line = first.split(b"\n", 1)[0].rstrip(b"\r")
    if decoder is not None:
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise BillFormatError(
                "bill_encoding",
                "not valid UTF-8 (the file ends inside a character)",
                file=str(utf8),
                line=total,
            ) from None
    return Scan(digest.hexdigest(), size, total, first_line, numbered, sorted(blanks))


def _check_blanks(scan: Scan, name: str, last_allowed: int) -> None:
    inside = [n for n in scan.blanks if n <= last_allowed]
    if inside:
        raise BillFormatError(
            "bill_row", "blank line inside the bill (rows may be missing)", file=name, line=inside[0]
        )


def _decode(raw: bytes, encoding: str, name: str, line: int) -> str:
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError:
        raise BillFormatError(
            "bill_encoding", f"not valid {encoding} (wrong encoding?)", file=name, line=line
        ) from None
    return text.lstrip("\ufeff")


def _line_text(path: Path, line: int, encoding: str = "utf-8") -> str:
    """The raw text of one line, for an error message (error path only)."""
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if number == line:
                return raw.rstrip(b"\r\n").decode(encoding, errors="replace")[:300]
    return ""


# --------------------------------------------------------------------------- DuckDB loading


_counter = iter(range(1, 1 << 62))


def _unique(prefix: str) -> str:
    return f"{prefix}_{next(_counter)}"


def prepare(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(MACROS)


def _read_csv(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    ncols: int,
    *,
    skip: int,
    select: str,
    into: str,
    name: str,
    allowed_rejects: set[str] | None = None,
    delim: str = ",",
    line_offset: int = 0,
) -> None:
    """CREATE TABLE ``into`` AS ``select`` over the file's rows (columns c0..cN as text; ``ordinality``
    is the row's index in file order). Every rejected line whose text is not in ``allowed_rejects``
    (the WeChat summary lines) fails the whole file, reported at its exact line."""
    rejects, scans = _unique("rej"), _unique("rscan")
    columns = "{" + ", ".join(f"'c{i}': 'VARCHAR'" for i in range(ncols)) + "}"
    source = (
        f"read_csv(?, header=false, skip={skip}, columns={columns}, delim='{delim}', quote='', "
        f"escape='', auto_detect=false, store_rejects=true, rejects_table='{rejects}', "
        f"rejects_scan='{scans}', null_padding=false)"
    )
    try:
        con.execute(f"CREATE TEMP TABLE {into} AS {select.format(src=source)}", [str(path)])
        bad = con.execute(
            f"SELECT line_byte_position, error_type, error_message, csv_line FROM {rejects} "
            "ORDER BY line_byte_position"
        ).fetchall()
    except duckdb.Error as exc:
        raise BillFormatError("bill_row", f"cannot read the rows: {exc}"[:300], file=name) from None
    finally:
        con.execute(f"DROP TABLE IF EXISTS {rejects}")
        con.execute(f"DROP TABLE IF EXISTS {scans}")
    allowed = {t.strip() for t in allowed_rejects or set()}
    for position, error_type, message, text in bad:
        if str(text or "").strip() in allowed:
            continue
        # DuckDB's line numbers are approximate on large files read in parallel; byte offsets are not.
        real = _line_at(path, int(position)) + line_offset
        kind = str(error_type).upper()
        code = "bill_encoding" if "ENCODING" in kind or "UNICODE" in kind else "bill_row"
        reason = "not valid UTF-8 (wrong encoding?)" if code == "bill_encoding" else str(message)
        raise BillFormatError(code, reason, file=name, line=real)


def _line_at(path: Path, offset: int) -> int:
    """The 1-based line number of the byte at ``offset`` (error path only)."""
    count = 0
    with path.open("rb") as handle:
        remaining = offset
        while remaining > 0:
            chunk = handle.read(min(CHUNK, remaining))
            if not chunk:
                break
            count += chunk.count(b"\n")
            remaining -= len(chunk)
    return count + 1


def _first_bad(
    con: duckdb.DuckDBPyConnection, table: str, name: str, path: Path, encoding: str = "utf-8"
) -> None:
    """Fail on the first row whose ``bad`` column names an unreadable value."""
    row = con.execute(f"SELECT line, bad FROM {table} WHERE bad IS NOT NULL ORDER BY line LIMIT 1").fetchone()
    if row is not None:
        line, column = int(row[0]), str(row[1])
        raise BillFormatError(
            "bill_row",
            f"column {column}: value missing or not readable",
            file=name,
            line=line,
            details={"column": column, "text": _line_text(path, line, encoding)},
        )


def _bad_expr(checks: list[tuple[str, str]]) -> str:
    """CASE naming the first failing check: [(condition that is true when bad, column name)]."""
    whens = " ".join(f"WHEN {cond} THEN '{col}'" for cond, col in checks)
    return f"CASE {whens} END" if checks else "NULL"


def _finish(con: duckdb.DuckDBPyConnection, staged: str, table: str) -> tuple[int, int, int]:
    """The canonical table, and the lines that repeat a key of the bill (table ``<table>_dups``)."""
    cols = ", ".join(CANONICAL_COLUMNS)
    con.execute(f"CREATE TEMP TABLE {table} AS SELECT {cols} FROM {staged}")
    find_duplicates(con, table, f"{table}_dups")
    row = con.execute(
        f"SELECT count(*), count(*) FILTER (kind = 'payment'), count(*) FILTER (kind <> 'payment') "
        f"FROM {table}"
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


def _bill_date(con: duckdb.DuckDBPyConnection, table: str, hours: int = CHINA_OFFSET_HOURS) -> date | None:
    row = con.execute(
        f"SELECT mode(CAST(ts + to_hours({hours}) AS DATE)) FROM {table} WHERE kind = 'payment'"
    ).fetchone()
    if row is None or row[0] is None:
        row = con.execute(f"SELECT mode(CAST(ts + to_hours({hours}) AS DATE)) FROM {table}").fetchone()
    return row[0] if row is not None and row[0] is not None else None


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


def _split_wechat(text: str) -> list[str]:
    return [v[1:] if v.startswith("`") else v for v in text.split(",")]


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


def _q(column: str, parsed: dict[str, str]) -> str:
    return f'"{column}"' if column in parsed else "NULL::BIGINT"


def _first_value(con: duckdb.DuckDBPyConnection, path: Path, columns: list[str], column: str) -> str | None:
    """A per-file constant such as the WeChat 商户号, from the first detail line."""
    if column not in columns:
        return None
    with path.open("rb") as handle:
        handle.readline()
        raw = handle.readline().rstrip(b"\r\n")
    values = _split_wechat(raw.decode("utf-8", errors="replace"))
    index = columns.index(column)
    if len(values) != len(columns) or values[0] == "总交易单数":
        return None
    return values[index].strip() or None


def _int(text: str, name: str, line: int, column: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise BillFormatError(
            "bill_row", f"{column} {text!r} is not a whole number", file=name, line=line
        ) from None


_DECIMAL = {"fen": re.compile(r"^-?\d{1,13}(\.\d{1,2})?$"), "e5": re.compile(r"^-?\d{1,12}(\.\d{1,5})?$")}


def _money(text: str, unit: str, name: str, line: int, column: str) -> int:
    """Exact yuan text to fen (``unit`` fen) or 0.00001 yuan (``e5``)."""
    text = text.strip()
    if not _DECIMAL[unit].match(text):
        raise BillFormatError("bill_row", f"{column} {text!r} is not an amount", file=name, line=line)
    negative = text.startswith("-")
    whole, _, frac = text.lstrip("-").partition(".")
    digits, scale = (2, 100) if unit == "fen" else (5, 100_000)
    value = int(whole) * scale + int(frac.ljust(digits, "0") or "0")
    return -value if negative else value


def _fmt(value: int, unit: str) -> str:
    if unit == "count":
        return str(value)
    digits = 2 if unit == "fen" else 5
    sign = "-" if value < 0 else ""
    whole, frac = divmod(abs(value), 10**digits)
    return f"{sign}{whole}.{frac:0{digits}d}"


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


# --------------------------------------------------------------------------- generic CSV


@dataclass(frozen=True)
class Mapping:
    """A generic CSV's column mapping (TOML or JSON file; docs/reconciliation.md)."""

    provider: str
    columns: dict[str, str]
    kinds: dict[str, tuple[str, ...]]
    ignore_columns: tuple[str, ...] = ()
    encoding: str = "utf-8"
    delimiter: str = ","
    amount_unit: str = "yuan"
    time_format: str = "%Y-%m-%d %H:%M:%S"
    utc_offset_hours: int = CHINA_OFFSET_HOURS
    fee_unit: str = "yuan"

    FIELDS = (
        "out_trade_no",
        "trade_no",
        "amount",
        "time",
        "kind",
        "out_refund_no",
        "refund_no",
        "fee",
        "status",
    )
    REQUIRED = ("out_trade_no", "amount", "time")


#: A mapping is an object of strings, with lists of strings in [kinds]: three levels at most.
MAX_MAPPING_DEPTH = 3
MAX_MAPPING_FILE_CHARS = 64 * 1024


def json_depth(text: str) -> int:
    """How deeply ``text``'s arrays and objects nest, counted without parsing (so without recursion)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def mapping_from_json(text: str, name: str = "mapping", max_chars: int = MAX_MAPPING_FILE_CHARS) -> Mapping:
    """A mapping from JSON text, refused (``bill_mapping_invalid``) if longer than ``max_chars``, nested
    deeper than ``MAX_MAPPING_DEPTH`` (checked before parsing: deep nesting would exhaust the parser's
    recursion) or not JSON."""

    def bad(reason: str) -> BillFormatError:
        return BillFormatError("bill_mapping_invalid", reason, file=name)

    if len(text) > max_chars:
        raise bad(f"the mapping is longer than {max_chars} characters")
    if json_depth(text) > MAX_MAPPING_DEPTH:
        raise bad(f"the mapping nests deeper than {MAX_MAPPING_DEPTH} levels (an object of strings)")
    try:
        raw = json.loads(text)
    except ValueError:
        raise bad("the mapping is not valid JSON") from None
    return mapping_from_dict(raw, name)


def load_mapping(path: Path) -> Mapping:
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() == ".json":
            return mapping_from_json(text, name)
        else:
            import tomllib

            raw = tomllib.loads(text)
    except (OSError, ValueError) as exc:
        raise BillFormatError(
            "bill_mapping_invalid", f"cannot read the mapping: {exc}"[:300], file=name
        ) from None
    return mapping_from_dict(raw, name)


def mapping_from_dict(raw: Any, name: str = "mapping") -> Mapping:
    def bad(reason: str) -> BillFormatError:
        return BillFormatError("bill_mapping_invalid", reason, file=name)

    if not isinstance(raw, dict):
        raise bad("the mapping must be a table/object")
    allowed = {
        "provider",
        "columns",
        "kinds",
        "ignore_columns",
        "encoding",
        "delimiter",
        "amount_unit",
        "time_format",
        "utc_offset_hours",
        "fee_unit",
    }
    extra = set(raw) - allowed
    if extra:
        raise bad(f"unknown key(s): {', '.join(sorted(extra))}")
    provider = raw.get("provider")
    if provider not in PROVIDERS:
        raise bad("provider must be wechat or alipay (whose payments the file lists)")
    columns = raw.get("columns")
    if not isinstance(columns, dict) or not all(isinstance(v, str) and v for v in columns.values()):
        raise bad("[columns] must map fields to header names")
    unknown = set(columns) - set(Mapping.FIELDS)
    if unknown:
        raise bad(f"unknown field(s) in [columns]: {', '.join(sorted(unknown))}")
    missing = [f for f in Mapping.REQUIRED if f not in columns]
    if missing:
        raise bad(f"[columns] needs {', '.join(missing)}")
    kinds_raw = raw.get("kinds", {})
    if not isinstance(kinds_raw, dict) or set(kinds_raw) - {"payment", "refund", "revoke"}:
        raise bad("[kinds] maps payment/refund/revoke to lists of values of the kind column")
    kinds_lists = {k: (v if isinstance(v, list) else [v]) for k, v in kinds_raw.items()}
    values_seen = [x for values in kinds_lists.values() for x in values]
    if not all(isinstance(x, str | int) and not isinstance(x, bool) for x in values_seen):
        raise bad("[kinds] values are strings or lists of strings")
    kinds = {k: tuple(str(x) for x in values) for k, values in kinds_lists.items()}
    if "kind" in columns and not kinds:
        raise bad("a kind column needs [kinds]")
    if "refund" in kinds and "out_refund_no" not in columns:
        raise bad("refund rows need an out_refund_no column")
    encoding = str(raw.get("encoding", "utf-8")).lower()
    if encoding not in ("utf-8", "gbk"):
        raise bad("encoding must be utf-8 or gbk")
    delimiter = str(raw.get("delimiter", ","))
    if len(delimiter) != 1 or delimiter in "'\"\n\r":
        raise bad("delimiter must be one character")
    unit = str(raw.get("amount_unit", "yuan"))
    fee_unit = str(raw.get("fee_unit", "yuan"))
    if unit not in ("yuan", "fen") or fee_unit not in ("yuan", "fen"):
        raise bad("amount_unit and fee_unit are yuan or fen")
    offset = raw.get("utc_offset_hours", CHINA_OFFSET_HOURS)
    if not isinstance(offset, int) or not -12 <= offset <= 14:
        raise bad("utc_offset_hours is a whole number of hours")
    ignore = raw.get("ignore_columns", [])
    if not isinstance(ignore, list) or not all(isinstance(x, str) for x in ignore):
        raise bad("ignore_columns is a list of header names")
    if not isinstance(raw.get("time_format", ""), str):
        raise bad("time_format is a strftime pattern (a string)")
    return Mapping(
        provider=str(provider),
        columns={str(k): str(v) for k, v in columns.items()},
        kinds=kinds,
        ignore_columns=tuple(str(x) for x in ignore),
        encoding=encoding,
        delimiter=delimiter,
        amount_unit=unit,
        time_format=str(raw.get("time_format", "%Y-%m-%d %H:%M:%S")),
        utc_offset_hours=offset,
        fee_unit=fee_unit,
    )


def parse_csv(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    name: str,
    mapping: Mapping,
    progress: Callable[[int], None] | None = None,
    workdir: Path | None = None,
) -> ParsedBill:
    scan = scan_file(path, progress, utf8=name if mapping.encoding == "utf-8" else None)
    if scan.size == 0 or not scan.first.strip():
        raise BillFormatError("bill_unreadable", "empty file", file=name)
    _check_blanks(scan, name, scan.last_content_line())
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        source = path
        if mapping.encoding == "gbk":
            source = Path(tmp) / "utf8.csv"
            with path.open("rb") as raw, source.open("w", encoding="utf-8", newline="\n") as out:
                for _, line in _gbk_lines(raw, name):
                    out.write(line + "\n")
            header_text = source.open(encoding="utf-8").readline().rstrip("\n")
        else:
            header_text = _decode(scan.first, "utf-8", name, 1)
        columns = [c.strip().strip('"') for c in header_text.split(mapping.delimiter)]
        wanted = set(mapping.columns.values())
        for position, column in enumerate(columns):
            if column not in wanted and column not in mapping.ignore_columns:
                raise BillFormatError(
                    "bill_header",
                    f"unknown column {column!r} (position {position + 1}); "
                    "map it or list it in ignore_columns",
                    file=name,
                    line=1,
                    details={"column": column},
                )
        missing = sorted(wanted - set(columns))
        if missing:
            raise BillFormatError(
                "bill_header",
                f"missing column(s): {', '.join(missing)}",
                file=name,
                line=1,
                details={"missing": missing},
            )
        pos = {c: i for i, c in enumerate(columns)}

        def v(fieldname: str) -> str:
            column = mapping.columns.get(fieldname)
            return f"trim(c{pos[column]}, ' \t`\"')" if column else "NULL"

        def money(fieldname: str, unit: str, scale: str) -> str:
            if unit == "fen":
                return f"TRY_CAST({v(fieldname)} AS BIGINT) * {1 if scale == 'fen' else 1000}"
            return f"tl_fen({v(fieldname)})" + ("" if scale == "fen" else " * 1000")

        kind_expr = "'payment'"
        if "kind" in mapping.columns:
            whens = " ".join(
                f"WHEN {v('kind')} IN ({', '.join(_sql_str(x) for x in values)}) THEN '{kind}'"
                for kind, values in mapping.kinds.items()
            )
            kind_expr = f"CASE {whens} END"
        fmt = _sql_str(mapping.time_format)
        inner = [
            "(ordinality + 1)::INTEGER AS line",
            f"{kind_expr} AS kind",
            f"{v('out_trade_no')} AS out_trade_no",
            f"nullif({v('trade_no')}, '') AS trade_no",
            f"nullif({v('out_refund_no')}, '') AS out_refund_no",
            f"nullif({v('refund_no')}, '') AS refund_no",
            f"abs({money('amount', mapping.amount_unit, 'fen')}) AS amount",
            (
                f"{money('fee', mapping.fee_unit, 'e5')} AS fee"
                if "fee" in mapping.columns
                else "NULL::BIGINT AS fee"
            ),
            "NULL::INTEGER AS rate_ppm",
            f"tl_ts({v('time')}, {fmt}, {mapping.utc_offset_hours}) AS ts",
            f"coalesce(nullif({v('status')}, ''), 'SUCCESS') AS status",
        ]
        checks = [
            ("out_trade_no = ''", mapping.columns["out_trade_no"]),
            ("amount IS NULL", mapping.columns["amount"]),
            ("ts IS NULL", mapping.columns["time"]),
            ("kind IS NULL", mapping.columns.get("kind", "kind")),
            (
                "kind IN ('refund') AND out_refund_no IS NULL",
                mapping.columns.get("out_refund_no", "out_refund_no"),
            ),
        ]
        if "fee" in mapping.columns:
            checks.append((f"fee IS NULL AND {v('fee')} <> ''", mapping.columns["fee"]))
        select = (
            "SELECT *, "
            + _bad_expr(checks)
            + " AS bad FROM (SELECT "
            + ", ".join(inner)
            + " FROM {src} WITH ORDINALITY)"
        )
        staged, table = _unique("csv_staged"), _unique("bill")
        _read_csv(
            con,
            source,
            len(columns),
            skip=1,
            select=select,
            into=staged,
            name=name,
            delim=mapping.delimiter,
        )
        _first_bad(con, staged, name, source)
    rows, payments, refunds = _finish(con, staged, table)
    con.execute(f"DROP TABLE {staged}")
    return ParsedBill(
        format="csv",
        provider=mapping.provider,
        bill_type="csv",
        bill_date=_bill_date(con, table, mapping.utc_offset_hours),
        account=None,
        sha256=scan.sha256,
        size=scan.size,
        file=name,
        table=table,
        rows=rows,
        payments=payments,
        refunds=refunds,
        fee_unit=1 if mapping.fee_unit == "yuan" else 1000,
        totals={},
    )


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def parse(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    fmt: str,
    *,
    name: str | None = None,
    mapping: Mapping | None = None,
    progress: Callable[[int], None] | None = None,
    workdir: Path | None = None,
) -> ParsedBill:
    """Parse ``path`` in format ``fmt`` (wechat, alipay or csv) into a table of canonical rows."""
    prepare(con)
    label = name or path.name
    if not path.is_file():
        raise BillFormatError("bill_unreadable", "no such file", file=label)
    if fmt == "wechat":
        return parse_wechat(con, path, label, progress)
    if fmt == "alipay":
        return parse_alipay(con, path, label, progress, workdir)
    if fmt == "csv":
        if mapping is None:
            raise BillFormatError(
                "bill_mapping_invalid", "a generic CSV needs a column mapping (--mapping)", file=label
            )
        return parse_csv(con, path, label, mapping, progress, workdir)
    raise BillFormatError("bill_unreadable", f"unknown format {fmt!r}: use wechat, alipay or csv", file=label)


def china_day_bounds(day: date) -> tuple[Any, Any]:
    """The UTC instants (naive) of a China-time calendar day: [start, end)."""
    from datetime import datetime

    start = datetime(day.year, day.month, day.day) - timedelta(hours=CHINA_OFFSET_HOURS)
    return start, start + timedelta(days=1)
