"""A generic CSV bill read through a column-mapping file (JSON or TOML), bounded in size and depth."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from tillit.reconciliation.errors import BillFormatError
from tillit.reconciliation.formats.alipay import _gbk_lines
from tillit.reconciliation.formats.common import (
    CHINA_OFFSET_HOURS,
    PROVIDERS,
    ParsedBill,
    _bad_expr,
    _bill_date,
    _check_blanks,
    _decode,
    _finish,
    _first_bad,
    _read_csv,
    _sql_str,
    _unique,
    scan_file,
)

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
            "NULL::VARCHAR AS sub_merchant",
            "NULL::VARCHAR AS store_name",
            "NULL::VARCHAR AS card_kind",
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
