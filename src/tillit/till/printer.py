"""Receipts: rendered as text (the same text an ESC/POS printer would print), printed to a file by
default. A real printer adapter needs only the ``Printer`` protocol."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

WIDTH = 32  # characters on a 58 mm thermal roll


class Printer(Protocol):
    def print(self, name: str, text: str) -> str:
        """Print ``text``; returns where it went (a path, a device)."""
        ...


class FilePrinter:
    """Writes each receipt to ``<dir>/<name>.txt`` (fsynced): the demo's and the tests' printer."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def print(self, name: str, text: str) -> str:
        path = self.directory / f"{name}.txt"
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            import os

            os.fsync(fh.fileno())
        return str(path)


def _money(minor: int) -> str:
    return f"{minor // 100}.{minor % 100:02d}"


def render_receipt(view: dict[str, Any], shop: str, t: Any) -> str:
    """A plain-text receipt: lines, discounts, tenders, change, refunds; ``t`` translates labels."""
    sale = view["sale"]
    out = [
        shop.center(WIDTH),
        "-" * WIDTH,
        f"{t('Receipt')} #{sale['number']}",
        sale["created_at"][:19].replace("T", " "),
    ]
    out.append("-" * WIDTH)
    for line in view["lines"]:
        out.append(line["name"][:WIDTH])
        out.append(
            f"  {line['quantity']} x {_money(line['unit_price'])}".ljust(20)
            + _money(line["amount"]).rjust(12)
        )
        if line["discount"]:
            out.append(f"  {t('Discount')}".ljust(20) + ("-" + _money(line["discount"])).rjust(12))
    out.append("-" * WIDTH)
    out.append(t("Total").ljust(20) + _money(sale["total"]).rjust(12))
    for tender in view["tenders"]:
        if tender["status"] == "captured":
            label = t("Cash") if tender["method"] == "cash" else tender["method"].capitalize()
            out.append(label.ljust(20) + _money(tender["amount"]).rjust(12))
            if tender["method"] == "cash" and tender["tendered"]:
                out.append(f"  {t('Tendered')}".ljust(20) + _money(tender["tendered"]).rjust(12))
                out.append(f"  {t('Change')}".ljust(20) + _money(tender["change_due"] or 0).rjust(12))
            if tender["code_masked"]:
                out.append(f"  {tender['code_masked']}")
    for refund in view["refunds"]:
        if refund["status"] == "succeeded":
            out.append(t("Refund").ljust(20) + ("-" + _money(refund["amount"])).rjust(12))
    if sale["status"] == "cancelled":
        out.append(t("Cancelled"))
    out.append("-" * WIDTH)
    out.append(t("Thank you").center(WIDTH))
    return "\n".join(out) + "\n"
