"""Bill parsers: WeChat Pay ``downloadbill`` (wechat.py), the Alipay trade bill ZIP (alipay.py) and a
generic CSV with a column-mapping file (generic.py); common.py holds what they share
(shared/reference/providers.md §1.6, §2.7).

Every parser reads the file by header name into one DuckDB table of *canonical rows* (columnar; no
Python object per row) and checks the file's own totals against its detail rows. A malformed file
raises :class:`BillFormatError` with the file, the 1-based line and the reason; nothing is skipped.

Canonical columns (``CANONICAL``): ``line`` (in the file as delivered), ``kind`` (``payment``,
``refund`` or ``revoke`` — a reversal/cancel of a paid trade), ``out_trade_no``, ``trade_no`` (the
provider's transaction id), ``out_refund_no``, ``refund_no``, ``amount`` (fen, positive), ``fee``
(the provider's fee in 0.00001 yuan, positive when charged, negative when returned; NULL if the
layout has none), ``rate_ppm`` (the fee rate the bill states, NULL if none), ``ts`` (UTC timestamp:
payment time, or refund time on refund rows), ``status`` (SUCCESS, or the refund status), and who the
row says was paid and how: ``sub_merchant`` (WeChat ``特约商户号``, NULL for ``0``: a direct merchant),
``store_name`` (Alipay ``门店名称``) and ``card_kind`` (``debit`` / ``credit`` / ``balance`` read from
WeChat's ``付款银行``, NULL when the bill does not say) — NULL wherever a layout has no such column.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import duckdb

from tillit.reconciliation.errors import BillFormatError
from tillit.reconciliation.formats.alipay import parse_alipay
from tillit.reconciliation.formats.common import (
    CANONICAL,
    CANONICAL_COLUMNS,
    CHINA_OFFSET_HOURS,
    FORMATS,
    PROVIDERS,
    ParsedBill,
    china_day_bounds,
    prepare,
)
from tillit.reconciliation.formats.generic import (
    MAX_MAPPING_DEPTH,
    MAX_MAPPING_FILE_CHARS,
    Mapping,
    json_depth,
    load_mapping,
    mapping_from_dict,
    mapping_from_json,
    parse_csv,
)
from tillit.reconciliation.formats.wechat import parse_wechat

__all__ = [
    "CANONICAL",
    "CANONICAL_COLUMNS",
    "CHINA_OFFSET_HOURS",
    "FORMATS",
    "MAX_MAPPING_DEPTH",
    "MAX_MAPPING_FILE_CHARS",
    "PROVIDERS",
    "Mapping",
    "ParsedBill",
    "china_day_bounds",
    "json_depth",
    "load_mapping",
    "mapping_from_dict",
    "mapping_from_json",
    "parse",
    "parse_alipay",
    "parse_csv",
    "parse_wechat",
    "prepare",
]


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
