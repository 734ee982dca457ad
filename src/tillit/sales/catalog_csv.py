"""Products as CSV: export (formula cells neutralised) and import with row-level errors.

Columns: ``sku,barcode,name,price,stock,active``; ``price`` in yuan with at most two decimals, ``stock``
an integer or blank (not tracked), ``active`` 1/0 (blank: 1). A row whose sku exists updates that
product; another creates one. Import is all or nothing: every row is checked first, and if any row is
refused (bad cell, duplicate sku in the file, or a rule of ``catalog``), nothing is written and each
refusal is reported with its line number.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from typing import Any, TypedDict

from sqlalchemy import Connection, select

from tillit.adapters.db.schema import merchants, products
from tillit.domain.csvsafe import safe_cell
from tillit.domain.errors import DomainError, ErrorKind
from tillit.domain.money import MAX_AMOUNT
from tillit.kernel.context import Deps
from tillit.sales import catalog

COLUMNS = ("sku", "barcode", "name", "price", "stock", "active")
MAX_ROWS = 5000
MAX_BYTES = 1_000_000
MAX_STOCK = 10**9
PRICE = re.compile(r"^(\d{1,10})(?:\.(\d{1,2}))?$")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class RowError(TypedDict):
    line: int  # the file's line number (the header is line 1)
    column: str | None
    code: str
    message: str


@dataclass(frozen=True)
class ProductRow:
    line: int
    sku: str
    barcode: str | None
    name: str
    price: int
    stock: int | None
    active: bool


class ImportResult(TypedDict):
    created: int
    updated: int


def csv_rejected(errors: list[RowError]) -> DomainError:
    return DomainError(
        "csv_rejected",
        f"{len(errors)} row(s) were refused; nothing was imported.",
        ErrorKind.INVALID,
        {"errors": errors},
    )


def export_products(conn: Connection, merchant_id: str) -> str:
    """Every product of the merchant as CSV; text cells that a spreadsheet would evaluate are quoted."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for p in conn.execute(
        select(products).where(products.c.merchant_id == merchant_id).order_by(products.c.sku)
    ):
        whole, cents = divmod(int(p.price), 100)
        writer.writerow(
            [
                safe_cell(p.sku),
                safe_cell(p.barcode),
                safe_cell(p.name),
                safe_cell(f"{whole}.{cents:02d}"),
                safe_cell(p.stock),
                safe_cell(int(p.active)),
            ]
        )
    return out.getvalue()


def parse(data: bytes) -> tuple[list[ProductRow], list[RowError]]:
    """Decode and check every row (no database); returns the good rows and the row errors."""
    if len(data) > MAX_BYTES:
        return [], [_err(0, None, "csv_too_large", f"The file is larger than {MAX_BYTES} bytes.")]
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return [], [_err(0, None, "csv_not_utf8", "The file is not UTF-8 text.")]
    reader = csv.reader(io.StringIO(text))
    header = [h.strip().lower() for h in next(reader, [])]
    missing = [c for c in ("sku", "name", "price") if c not in header]
    if missing:
        return [], [_err(1, None, "csv_header", f"The header needs the columns {', '.join(missing)}.")]
    rows: list[ProductRow] = []
    errors: list[RowError] = []
    seen: dict[str, int] = {}
    for number, cells in enumerate(reader, start=2):
        if not any(cell.strip() for cell in cells):
            continue
        if len(rows) + len(errors) >= MAX_ROWS:
            errors.append(_err(number, None, "csv_too_many_rows", f"At most {MAX_ROWS} rows per file."))
            break
        record = {name: (cells[i].strip() if i < len(cells) else "") for i, name in enumerate(header)}
        row, row_errors = _row(number, record)
        if row is not None and row.sku in seen:
            row_errors.append(
                _err(number, "sku", "duplicate_sku", f"The sku is also on line {seen[row.sku]}.")
            )
        if row_errors:
            errors.extend(row_errors)
        elif row is not None:
            seen[row.sku] = number
            rows.append(row)
    return rows, errors


def _row(line: int, cell: dict[str, str]) -> tuple[ProductRow | None, list[RowError]]:
    errors: list[RowError] = []
    # A bare cell starting like a formula is refused: it was typed or pasted as one (our export quotes it).
    for name in ("sku", "barcode", "name"):
        if cell.get(name, "").startswith(FORMULA_START):
            errors.append(_err(line, name, "formula_cell", "A cell may not start with = + - @ or a tab."))
    cell = {name: _unquote(value) for name, value in cell.items()}
    sku, name, barcode = cell.get("sku", ""), cell.get("name", ""), cell.get("barcode", "")
    if not 1 <= len(sku) <= 64:
        errors.append(_err(line, "sku", "invalid_sku", "sku: 1 to 64 characters."))
    if not 1 <= len(name) <= 200:
        errors.append(_err(line, "name", "invalid_name", "name: 1 to 200 characters."))
    if len(barcode) > 64:
        errors.append(_err(line, "barcode", "invalid_barcode", "barcode: at most 64 characters."))
    price = _price(cell.get("price", ""))
    if price is None:
        errors.append(
            _err(line, "price", "invalid_price", "price: yuan with at most two decimals, e.g. 12.50.")
        )
    stock: int | None = None
    raw_stock = cell.get("stock", "")
    if raw_stock:
        if not re.fullmatch(r"-?\d{1,10}", raw_stock) or abs(int(raw_stock)) > MAX_STOCK:
            errors.append(_err(line, "stock", "invalid_stock", "stock: a whole number, or blank."))
        else:
            stock = int(raw_stock)
    raw_active = cell.get("active", "") or "1"
    if raw_active not in ("0", "1"):
        errors.append(_err(line, "active", "invalid_active", "active: 1 or 0."))
    if errors or price is None:
        return None, errors
    return ProductRow(line, sku, barcode or None, name, price, stock, raw_active == "1"), []


def _unquote(cell: str) -> str:
    """Our own export writes a formula-like text as ``'=...`` (csvsafe); reading it back drops that quote."""
    return cell[1:] if cell.startswith("'") and cell[1:].startswith(FORMULA_START) else cell


def _price(text: str) -> int | None:
    found = PRICE.match(text)
    if found is None:
        return None
    value = int(found.group(1)) * 100 + int((found.group(2) or "0").ljust(2, "0"))
    return value if value <= MAX_AMOUNT else None


def _err(line: int, column: str | None, code: str, message: str) -> RowError:
    return RowError(line=line, column=column, code=code, message=message)


def import_products(conn: Connection, deps: Deps, merchant_id: str, data: bytes) -> ImportResult:
    """Apply a CSV (module docstring). Raises ``csv_rejected`` with every row error, having written nothing
    (the caller's transaction rolls back)."""
    rows, errors = parse(data)
    if errors:
        raise csv_rejected(errors)
    currency = conn.execute(select(merchants.c.currency).where(merchants.c.id == merchant_id)).scalar_one()
    existing = (
        {
            r.sku: r.id
            for r in conn.execute(
                select(products.c.sku, products.c.id).where(
                    products.c.merchant_id == merchant_id, products.c.sku.in_([row.sku for row in rows])
                )
            )
        }
        if rows
        else {}
    )
    created = updated = 0
    for row in rows:
        try:
            if row.sku in existing:
                changes: dict[str, Any] = {
                    "name": row.name,
                    "barcode": row.barcode,
                    "price": row.price,
                    "stock": row.stock,
                    "active": row.active,
                }
                catalog.update_product(conn, deps, merchant_id, existing[row.sku], changes)
                updated += 1
            else:
                made = catalog.create_product(
                    conn,
                    deps,
                    merchant_id=merchant_id,
                    merchant_currency=currency,
                    sku=row.sku,
                    name=row.name,
                    price=row.price,
                    barcode=row.barcode,
                    stock=row.stock,
                )
                if not row.active:
                    catalog.update_product(conn, deps, merchant_id, made["id"], {"active": False})
                created += 1
        except DomainError as exc:
            errors.append(_err(row.line, None, exc.code, exc.message))
    if errors:
        raise csv_rejected(errors)
    return ImportResult(created=created, updated=updated)
