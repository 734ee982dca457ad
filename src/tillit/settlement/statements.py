"""Statement formats (docs/settlement.md; shared/reference/operations.md §1.2, §2.2):

* ``wechat_fundflow`` — WeChat Pay 资金账单 (``downloadfundflow`` / ``fundflowbill``): UTF-8 CSV, a header
  of 11 columns, every value prefixed by a backquote, then the summary header and one summary row
  (counts printed as decimals). ``资金流水单号`` is the import key, ``业务凭证号`` names our payment
  (``out_trade_no``) or refund id, ``备注`` may say ``结算总金额 X 元;含手续费 Y 元``.
* ``alipay_account`` — Alipay 账务明细 (``bill_type=signcustomer``): GBK CSV (or the ZIP holding it,
  member chosen by header), ``#`` framing lines, a TAB before the comma on text cells, brackets in the
  money headers full- or half-width, footer totals ``#支出合计：N笔，共X元`` / ``#收入合计：N笔，共X元``
  checked against the rows. ``账务流水号`` is the import key, ``商户订单号`` our id.
* ``bank`` — Tillit's simple bank statement CSV (UTF-8, header required, extra columns ignored):
  ``value_date,amount,currency,counterparty,bank_ref,memo``. ``amount`` is signed yuan (credits
  positive); ``bank_ref`` is unique per line (the import key); the provider is recognised from the
  counterparty (财付通/微信/Tenpay/WeChat, 支付宝/Alipay); an 8-digit date in the memo names the trade day
  being settled (else the value date minus the contract's cycle is assumed).

Parsing is all or nothing: a bad file raises a ``statement_*`` error with the line and writes nothing.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from tillit.domain.errors import DomainError, ErrorKind

CHINA = timezone(timedelta(hours=8))
SOURCES = ("wechat_fundflow", "alipay_account", "bank")
MAX_STATEMENT_BYTES = 32 * 1024 * 1024
MAX_LINES = 500_000

WECHAT_HEADER = (
    "记账时间",
    "微信支付业务单号",
    "资金流水单号",
    "业务名称",
    "业务类型",
    "收支类型",
    "收支金额(元)",
    "账户结余(元)",
    "资金变更提交申请人",
    "备注",
    "业务凭证号",
)
WECHAT_SUMMARY = ("资金流水总笔数", "收入笔数", "收入金额", "支出笔数", "支出金额")
ALIPAY_REQUIRED = (
    "账务流水号",
    "业务流水号",
    "商户订单号",
    "发生时间",
    "收入金额(+元)",
    "支出金额(-元)",
    "业务类型",
)
BANK_REQUIRED = ("value_date", "amount", "counterparty", "bank_ref")
FEE_NOTE = re.compile(r"含手续费\s*([0-9]+(?:\.[0-9]{1,2})?)\s*元")
DAY_IN_MEMO = re.compile(r"(?<!\d)(20\d{2})(\d{2})(\d{2})(?!\d)")
COUNTERPARTY_PROVIDER = (("财付通", "wechat"), ("微信", "wechat"), ("tenpay", "wechat"), ("wechat", "wechat"),
                         ("支付宝", "alipay"), ("alipay", "alipay"))  # fmt: skip
# 业务类型 strings mapped to our line kinds (raw kept in the note). Unknown strings are 'other'.
WECHAT_KINDS = {"交易": "income", "退款": "refund", "手续费": "fee", "提现": "withdrawal"}
ALIPAY_KINDS = {
    "在线支付": "income",
    "交易付款": "income",
    "交易": "income",
    "交易退款": "refund",
    "退款": "refund",
    "手续费": "fee",
    "收费": "fee",
    "服务费": "fee",
    "提现": "withdrawal",
}


def statement_error(code: str, reason: str, line: int | None = None, **details: Any) -> DomainError:
    where = f"line {line}: " if line is not None else ""
    return DomainError(code, where + reason, ErrorKind.INVALID, {"line": line, "reason": reason, **details})


@dataclass(frozen=True, slots=True)
class StatementLine:
    """One balance movement, in our terms (``amount`` signed fen: + into the account)."""

    line_key: str
    provider: str
    booked_at: datetime
    kind: str
    amount: int
    fee: int | None = None
    out_trade_no: str | None = None
    business_no: str | None = None
    trade_day: date | None = None
    balance: int | None = None
    note: str | None = None

    @property
    def booked_day(self) -> date:
        return self.booked_at.astimezone(CHINA).date()


@dataclass
class Statement:
    source: str
    provider: str | None
    lines: list[StatementLine]
    totals: dict[str, Any] = field(default_factory=dict)


def _fen(text: str, line: int, column: str) -> int:
    value = text.strip().replace(",", "")
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise statement_error(
            "statement_row", f"{column} is not an amount", line, column=column, text=text[:40]
        ) from None
    if amount != amount.quantize(Decimal("0.01")) or abs(amount) >= Decimal(10) ** 13:
        raise statement_error(
            "statement_row", f"{column} is not an amount in fen", line, column=column, text=text[:40]
        )
    return int(amount * 100)


def _ts(text: str, line: int, column: str) -> datetime:
    try:
        local = datetime.strptime(text.strip(), "%Y-%m-%d %H:%M:%S")
    except ValueError:
        raise statement_error(
            "statement_row", f"{column} is not a time", line, column=column, text=text[:40]
        ) from None
    return local.replace(tzinfo=CHINA).astimezone(UTC)


def _decode(data: bytes, encoding: str) -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise statement_error(
            "statement_encoding", f"the file is not {encoding}", None, offset=exc.start
        ) from None


def parse(data: bytes, source: str) -> Statement:
    """Parse a statement file of ``source`` (see the module docstring)."""
    if source not in SOURCES:
        raise statement_error("statement_unreadable", f"unknown statement source {source!r}")
    if not data:
        raise statement_error("statement_unreadable", "the file is empty")
    if len(data) > MAX_STATEMENT_BYTES:
        raise statement_error("statement_unreadable", f"the file is over {MAX_STATEMENT_BYTES} bytes")
    if source == "wechat_fundflow":
        return parse_wechat_fundflow(data)
    if source == "alipay_account":
        return parse_alipay_account(data)
    return parse_bank(data)


# --------------------------------------------------------------------------- WeChat 资金账单


def _unquote(cell: str) -> str:
    cell = cell.strip()
    return cell[1:] if cell.startswith("`") else cell


def parse_wechat_fundflow(data: bytes) -> Statement:
    text = _decode(data.removeprefix(b"\xef\xbb\xbf"), "utf-8")
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or tuple(c.strip() for c in rows[0]) != WECHAT_HEADER:
        raise statement_error(
            "statement_header", "not a WeChat fund-flow bill header", 1, expected=",".join(WECHAT_HEADER)
        )
    lines: list[StatementLine] = []
    summary: list[str] | None = None
    for number, row in enumerate(rows[1:], start=2):
        if not row or all(not c.strip() for c in row):
            continue
        if tuple(c.strip() for c in row) == WECHAT_SUMMARY:
            if number >= len(rows) or len(rows[number]) != len(WECHAT_SUMMARY):
                raise statement_error("statement_truncated", "the summary row is missing", number + 1)
            summary = [_unquote(c) for c in rows[number]]
            break
        if len(row) != len(WECHAT_HEADER):
            raise statement_error(
                "statement_row", f"{len(row)} columns, expected {len(WECHAT_HEADER)}", number
            )
        cells = dict(zip(WECHAT_HEADER, (_unquote(c) for c in row), strict=True))
        direction = cells["收支类型"]
        if direction not in ("收入", "支出"):
            raise statement_error(
                "statement_row", "收支类型 must be 收入 or 支出", number, text=direction[:20]
            )
        amount = _fen(cells["收支金额(元)"], number, "收支金额(元)")
        if amount < 0:
            raise statement_error("statement_row", "收支金额 is unsigned in this bill", number)
        kind = WECHAT_KINDS.get(cells["业务类型"], "other")
        if kind == "other" and cells["业务名称"] in WECHAT_KINDS:
            kind = WECHAT_KINDS[cells["业务名称"]]
        if kind == "income" and direction == "支出":
            kind = "other"
        if kind == "refund" and direction == "收入":
            kind = "fee_return" if "手续费" in cells["备注"] else "other"
        note = cells["备注"]
        fee_match = FEE_NOTE.search(note)
        lines.append(
            StatementLine(
                line_key=cells["资金流水单号"][:64] or f"wechat-line-{number}",
                provider="wechat",
                booked_at=_ts(cells["记账时间"], number, "记账时间"),
                kind=kind,
                amount=amount if direction == "收入" else -amount,
                fee=_fen(fee_match.group(1), number, "备注") if fee_match else None,
                out_trade_no=cells["业务凭证号"][:64] or None,
                business_no=cells["微信支付业务单号"][:64] or None,
                balance=_fen(cells["账户结余(元)"], number, "账户结余(元)")
                if cells["账户结余(元)"]
                else None,
                note=f"{cells['业务名称']}/{cells['业务类型']} {note}"[:300],
            )
        )
        if len(lines) > MAX_LINES:
            raise statement_error("statement_row", f"more than {MAX_LINES} lines: split the file", number)
    if summary is None:
        raise statement_error("statement_truncated", "the summary header is missing: the file was cut short")
    try:
        total, n_in, amt_in, n_out, amt_out = (Decimal(v) for v in summary)
    except InvalidOperation:
        raise statement_error("statement_row", "the summary row cannot be read") from None
    got_in = sum(line.amount for line in lines if line.amount > 0)
    got_out = -sum(line.amount for line in lines if line.amount < 0)
    want = (int(total), int(n_in), int(amt_in * 100), int(n_out), int(amt_out * 100))
    have = (
        len(lines),
        sum(1 for x in lines if x.amount > 0),
        got_in,
        sum(1 for x in lines if x.amount < 0),
        got_out,
    )
    if want != have:
        raise statement_error(
            "statement_totals_mismatch",
            "the summary row disagrees with the lines",
            None,
            summary=list(want),
            details_sum=list(have),
        )
    return Statement(
        "wechat_fundflow", "wechat", lines, {"lines": len(lines), "income": got_in, "expense": got_out}
    )


# --------------------------------------------------------------------------- Alipay 账务明细


def _alipay_text(data: bytes) -> str:
    if data[:2] == b"PK":
        try:
            archive = zipfile.ZipFile(io.BytesIO(data))
        except zipfile.BadZipFile:
            raise statement_error("statement_unreadable", "not a ZIP archive") from None
        for info in archive.infolist():
            if info.file_size > MAX_STATEMENT_BYTES:
                raise statement_error("statement_unreadable", "a ZIP member is too large")
            text = _decode(archive.read(info), "gbk")
            if "账务流水号" in text:  # the detail member, wherever it sits (the summary may be first)
                return text
        raise statement_error("statement_unreadable", "no 账务明细 member in the ZIP")
    return _decode(data, "gbk")


def _normal_header(cell: str) -> str:
    return cell.strip().replace("（", "(").replace("）", ")")


def parse_alipay_account(data: bytes) -> Statement:
    text = _alipay_text(data)
    raw_lines = text.splitlines()
    header: list[str] | None = None
    account: str | None = None
    footer: dict[str, tuple[int, int]] = {}
    lines: list[StatementLine] = []
    for number, raw in enumerate(raw_lines, start=1):
        if raw.startswith("#"):
            if m := re.search(r"账号：\[(\d+)\]", raw):
                account = m.group(1)
            if m := re.match(r"#(支出|收入)合计：(\d+)笔，共(-?[0-9.]+)元", raw):
                footer[m.group(1)] = (int(m.group(2)), abs(_fen(m.group(3), number, m.group(1) + "合计")))
            continue
        if not raw.strip():
            continue
        cells = next(csv.reader([raw]))
        if header is None:
            header = [_normal_header(c) for c in cells]
            missing = [c for c in ALIPAY_REQUIRED if c not in header]
            if missing:
                raise statement_error(
                    "statement_header", "not an Alipay account statement header", number, missing=missing
                )
            continue
        if len(cells) != len(header):
            raise statement_error("statement_row", f"{len(cells)} columns, expected {len(header)}", number)
        row = {h: c.strip() for h, c in zip(header, cells, strict=True)}
        income = _fen(row["收入金额(+元)"] or "0", number, "收入金额")
        expense = abs(_fen(row["支出金额(-元)"] or "0", number, "支出金额"))
        if (income == 0) == (expense == 0):
            raise statement_error("statement_row", "a line moves money one way: income or expense", number)
        kind = ALIPAY_KINDS.get(row["业务类型"], "other")
        if kind == "income" and expense:
            kind = "other"
        if kind == "refund" and income:
            kind = "other"
        if kind == "fee" and income:
            kind = "fee_return"
        balance = row.get("账户余额(元)")
        lines.append(
            StatementLine(
                line_key=row["账务流水号"][:64],
                provider="alipay",
                booked_at=_ts(row["发生时间"], number, "发生时间"),
                kind=kind,
                amount=income or -expense,
                out_trade_no=row["商户订单号"][:64] or None,
                business_no=row["业务流水号"][:64] or None,
                balance=_fen(balance, number, "账户余额") if balance else None,
                note=f"{row['业务类型']} {row.get('备注', '')}".strip()[:300],
            )
        )
        if not row["账务流水号"]:
            raise statement_error("statement_row", "账务流水号 is empty", number)
        if len(lines) > MAX_LINES:
            raise statement_error("statement_row", f"more than {MAX_LINES} lines: split the file", number)
    if header is None:
        raise statement_error("statement_header", "no header line")
    if "收入" not in footer or "支出" not in footer:
        raise statement_error("statement_truncated", "the footer totals are missing: the file was cut short")
    have_in = (sum(1 for x in lines if x.amount > 0), sum(x.amount for x in lines if x.amount > 0))
    have_out = (sum(1 for x in lines if x.amount < 0), -sum(x.amount for x in lines if x.amount < 0))
    if footer["收入"] != have_in or footer["支出"] != have_out:
        raise statement_error(
            "statement_totals_mismatch",
            "the footer totals disagree with the lines",
            None,
            footer={k: list(v) for k, v in footer.items()},
            details_sum={"收入": list(have_in), "支出": list(have_out)},
        )
    totals = {"lines": len(lines), "income": have_in[1], "expense": have_out[1], "account": account}
    return Statement("alipay_account", "alipay", lines, totals)


# --------------------------------------------------------------------------- bank statement CSV


def provider_of(counterparty: str) -> str | None:
    lowered = counterparty.lower()
    for needle, provider in COUNTERPARTY_PROVIDER:
        if needle in lowered:
            return provider
    return None


def parse_bank(data: bytes) -> Statement:
    text = _decode(data.removeprefix(b"\xef\xbb\xbf"), "utf-8")
    reader = csv.reader(io.StringIO(text))
    try:
        header = [c.strip().lower() for c in next(reader)]
    except StopIteration:
        raise statement_error("statement_header", "no header line", 1) from None
    missing = [c for c in BANK_REQUIRED if c not in header]
    if missing:
        raise statement_error("statement_header", "the bank CSV lacks required columns", 1, missing=missing)
    lines: list[StatementLine] = []
    for number, cells in enumerate(reader, start=2):
        if not cells or all(not c.strip() for c in cells):
            continue
        if len(cells) != len(header):
            raise statement_error("statement_row", f"{len(cells)} columns, expected {len(header)}", number)
        row = {h: c.strip() for h, c in zip(header, cells, strict=True)}
        if row.get("currency", "CNY") not in ("", "CNY"):
            raise statement_error(
                "statement_row", "only CNY lines can settle CNY trades", number, column="currency"
            )
        try:
            value_date = date.fromisoformat(row["value_date"])
        except ValueError:
            raise statement_error(
                "statement_row", "value_date must be YYYY-MM-DD", number, column="value_date"
            ) from None
        if not row["bank_ref"]:
            raise statement_error("statement_row", "bank_ref is empty", number, column="bank_ref")
        provider = provider_of(row["counterparty"])
        if provider is None:
            continue  # not a provider's settlement: other money on the account
        memo = row.get("memo", "")
        day_match = DAY_IN_MEMO.search(memo)
        trade_day = None
        if day_match:
            try:
                trade_day = date(int(day_match.group(1)), int(day_match.group(2)), int(day_match.group(3)))
            except ValueError:
                trade_day = None
        amount = _fen(row["amount"], number, "amount")
        lines.append(
            StatementLine(
                line_key=row["bank_ref"][:64],
                provider=provider,
                booked_at=datetime(
                    value_date.year, value_date.month, value_date.day, 12, tzinfo=CHINA
                ).astimezone(UTC),
                kind="income" if amount > 0 else "other",
                amount=amount,
                trade_day=trade_day,
                note=f"{row['counterparty']} {memo}".strip()[:300],
            )
        )
        if len(lines) > MAX_LINES:
            raise statement_error("statement_row", f"more than {MAX_LINES} lines: split the file", number)
    return Statement(
        "bank", None, lines, {"lines": len(lines), "income": sum(x.amount for x in lines if x.amount > 0)}
    )
