"""The one error a bad bill file raises: which file, which line, why — with a stable code."""

from __future__ import annotations

from typing import Any

from tillit.domain.errors import DomainError, ErrorKind

#: Stable codes (docs/errors.md). ``bill_`` codes describe the file; the CLI exits 2 on any of them.
BILL_CODES = {
    "bill_unreadable": "The file cannot be read as a bill at all (empty, not a ZIP, no detail member).",
    "bill_encoding": "The file is not in the format's encoding (WeChat UTF-8, Alipay GBK).",
    "bill_header": "The header line is missing, has an unknown column or lacks a required one.",
    "bill_row": "A detail row has the wrong number of columns or a value that cannot be read.",
    "bill_truncated": "The summary row or footer totals are missing: the file was cut short.",
    "bill_totals_mismatch": "The summary row or footer totals disagree with the detail rows.",
    "bill_mapping_invalid": "The column-mapping file for a generic CSV is not valid.",
}


class BillFormatError(DomainError):
    """A malformed bill: rejected as a whole, never skipped in silence.

    ``file`` and ``line`` (1-based, counted in the file as delivered; None when the whole file is at
    fault) say where, ``reason`` says what.
    """

    def __init__(
        self,
        code: str,
        reason: str,
        *,
        file: str,
        line: int | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        assert code in BILL_CODES, code
        where = f"{file}:{line}" if line is not None else file
        super().__init__(
            code,
            f"{where}: {reason}",
            ErrorKind.INVALID,
            {"file": file, "line": line, "reason": reason, **(details or {})},
        )
        self.file = file
        self.line = line
        self.reason = reason
