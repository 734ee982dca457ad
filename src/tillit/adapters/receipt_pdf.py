"""E-receipt PDFs with fpdf2 and a CJK font found on the system (fonts-noto-cjk).

``find_cjk_font`` looks at ``TILLIT_RECEIPT_FONT`` first, then the Noto CJK files Debian's
fonts-noto-cjk installs. Without one, ``ReceiptFontMissing`` says what to install — a PDF with tofu
boxes for every Chinese character would be worse than no PDF.
"""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass
from pathlib import Path

import qrcode
from fpdf import FPDF

from tillit.domain.receipt import LABELS, Receipt, money

CANDIDATES = (
    # (path, index of Simplified Chinese in the collection)
    ("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc", 2),
    ("/usr/share/fonts/opentype/noto/NotoSerifCJK-Regular.ttc", 2),
    ("/usr/share/fonts/truetype/noto/NotoSansCJK-Regular.ttc", 2),
    ("/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc", 2),
    ("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc", 0),
)
PAGE_WIDTH_MM = 80


class ReceiptFontMissing(RuntimeError):
    """No CJK font: install fonts-noto-cjk (Debian/Ubuntu) or set TILLIT_RECEIPT_FONT to a .ttf/.ttc."""


@dataclass(frozen=True)
class CjkFont:
    path: Path
    index: int = 0


def find_cjk_font(configured: str | None = None) -> CjkFont:
    if configured:
        path = Path(configured)
        if not path.is_file():
            raise ReceiptFontMissing(f"TILLIT_RECEIPT_FONT={configured} is not a file")
        return CjkFont(path, 2 if path.suffix == ".ttc" and "CJK" in path.name else 0)
    for candidate, index in CANDIDATES:
        if Path(candidate).is_file():
            return CjkFont(Path(candidate), index)
    raise ReceiptFontMissing(
        "No CJK font for receipt PDFs: install fonts-noto-cjk (apt-get install fonts-noto-cjk) "
        "or set TILLIT_RECEIPT_FONT to a TrueType/OpenType font with Chinese glyphs."
    )


_LOCK = threading.Lock()  # fpdf2 is not documented as thread-safe; PDFs are rare, serialise them


def render_pdf(receipt: Receipt, font: CjkFont, locale: str = "zh-CN") -> bytes:
    t = LABELS.get(locale, LABELS["zh-CN"])
    rows = 16 + 2 * len(receipt.lines) + 3 * len(receipt.payments) + len(receipt.refunds)
    height = 30 + rows * 6 + (50 if receipt.url else 0)
    with _LOCK:
        pdf = FPDF(unit="mm", format=(PAGE_WIDTH_MM, height))
        pdf.set_margins(5, 5, 5)
        pdf.set_auto_page_break(False)
        pdf.add_page()
        pdf.add_font("cjk", fname=str(font.path), collection_font_number=font.index)
        pdf.set_title(f"{t['receipt']} #{receipt.number}")
        width = PAGE_WIDTH_MM - 10

        def line(left: str, right: str = "", size: float = 9) -> None:
            pdf.set_font("cjk", size=size)
            pdf.cell(width * 0.65, 5, left)
            pdf.cell(width * 0.35, 5, right, align="R", new_x="LMARGIN", new_y="NEXT")

        def centred(text: str, size: float = 9) -> None:
            pdf.set_font("cjk", size=size)
            pdf.cell(width, 6, text, align="C", new_x="LMARGIN", new_y="NEXT")

        def rule() -> None:
            y = pdf.get_y() + 1
            pdf.line(5, y, PAGE_WIDTH_MM - 5, y)
            pdf.set_y(y + 1)

        centred(receipt.merchant_name, 13)
        if receipt.copy:
            centred(f"*** {t['copy']} {receipt.copy} ***", 10)
        rule()
        line(t["receipt"], f"#{receipt.number}")
        line(t["store"], receipt.store_name)
        if receipt.terminal_name:
            line(t["terminal"], receipt.terminal_name)
        line(t["time"], receipt.at[:19].replace("T", " "))
        rule()
        for item in receipt.lines:
            line(item.name)
            line(f"   {item.quantity} x {money(item.unit_price)}", money(item.quantity * item.unit_price))
            if item.discount:
                line(f"   {t['discount']}", "-" + money(item.discount))
        rule()
        if receipt.discount_total:
            line(t["subtotal"], money(receipt.subtotal))
            line(t["discount"], "-" + money(receipt.discount_total))
        line(f"{t['total']} {receipt.currency}", money(receipt.total), 11)
        for pay in receipt.payments:
            line(t.get(pay.method, pay.method), money(pay.amount))
            if pay.tendered is not None:
                line(f"   {t['tendered']}", money(pay.tendered))
                line(f"   {t['change']}", money(pay.change_due or 0))
            if pay.code_masked:
                line(f"   {pay.code_masked}")
        for refund in receipt.refunds:
            line(t["refund"], "-" + money(refund.amount))
        if receipt.status in ("refunded", "cancelled"):
            centred(t[f"status_{receipt.status}"])
        rule()
        centred(t["thanks"])
        if receipt.url:
            image = qrcode.make(receipt.url, box_size=4, border=1)
            buf = io.BytesIO()
            image.save(buf, format="PNG")
            pdf.image(buf, x=(PAGE_WIDTH_MM - 40) / 2, w=40, h=40)
        return bytes(pdf.output())
