"""What every bill format shares: the canonical row layout, the parsed-bill shape, file scanning,
DuckDB loading and the money and column helpers."""

from __future__ import annotations

import codecs
import hashlib
import re
from collections.abc import Callable
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
    "refund_no VARCHAR, amount BIGINT, fee BIGINT, rate_ppm INTEGER, ts TIMESTAMP, status VARCHAR, "
    "sub_merchant VARCHAR, store_name VARCHAR, card_kind VARCHAR"
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


def _q(column: str, parsed: dict[str, str]) -> str:
    return f'"{column}"' if column in parsed else "NULL::BIGINT"


def _split_wechat(text: str) -> list[str]:
    """A WeChat bill line's values (each is written with a leading backtick)."""
    return [v[1:] if v.startswith("`") else v for v in text.split(",")]


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


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def china_day_bounds(day: date) -> tuple[Any, Any]:
    """The UTC instants (naive) of a China-time calendar day: [start, end)."""
    from datetime import datetime

    start = datetime(day.year, day.month, day.day) - timedelta(hours=CHINA_OFFSET_HOURS)
    return start, start + timedelta(days=1)
