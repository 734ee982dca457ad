"""The e-receipt: ``GET /receipts/{merchant}/{order}/{signature}`` (HTML, phone-width) and ``…/pdf``.

The signature is an HMAC of merchant and order with the server's signing key (domain/links.py). A
forged or altered link, an unknown order, another merchant's order and an unpaid order all answer the
same 404, so a link reveals nothing but the receipt it was made for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from tillit.adapters.receipt_pdf import ReceiptFontMissing, find_cjk_font, render_pdf
from tillit.bootstrap import Container
from tillit.domain.errors import DomainError
from tillit.domain.ids import normalise_id
from tillit.domain.links import check_receipt_signature
from tillit.domain.receipt import LABELS, Receipt, money
from tillit.sales.receipts import receipt

HERE = Path(__file__).resolve().parent
_ENV = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]))
_ENV.filters["money"] = money
LANG = Query("zh-CN", pattern="^(zh-CN|en)$", description="Language of the receipt")
NOT_FOUND = "<!doctype html><meta charset=utf-8><title>404</title><p>Receipt not found / 未找到小票</p>"

router = APIRouter(tags=["customer"], include_in_schema=False)


def _receipt(request: Request, merchant_id: str, order_id: str, signature: str) -> Receipt | None:
    c: Container = request.app.state.container
    if c.signing_key is None:
        return None
    try:
        mid, oid = normalise_id(merchant_id), normalise_id(order_id)
    except DomainError:
        return None
    if not check_receipt_signature(c.signing_key, mid, oid, signature):
        return None
    try:
        with c.db.read() as conn:
            return receipt(conn, mid, oid, url=c.receipt_url(mid, oid))
    except DomainError:
        return None


@router.get("/receipts/{merchant_id}/{order_id}/{signature}", response_class=HTMLResponse)
def receipt_page(
    merchant_id: str, order_id: str, signature: str, request: Request, lang: str = LANG
) -> Response:
    found = _receipt(request, merchant_id, order_id, signature)
    if found is None:
        return HTMLResponse(NOT_FOUND, status_code=404)
    t: dict[str, Any] = LABELS[lang]
    html = _ENV.get_template("receipt.html").render(r=found, t=t, lang=lang)
    return HTMLResponse(
        html, headers={"Cache-Control": "private, no-store", "Referrer-Policy": "no-referrer"}
    )


@router.get("/receipts/{merchant_id}/{order_id}/{signature}/pdf")
def receipt_pdf(
    merchant_id: str, order_id: str, signature: str, request: Request, lang: str = LANG
) -> Response:
    found = _receipt(request, merchant_id, order_id, signature)
    if found is None:
        return HTMLResponse(NOT_FOUND, status_code=404)
    c: Container = request.app.state.container
    try:
        font = find_cjk_font(c.settings.receipt_font)
    except ReceiptFontMissing as exc:
        return Response(str(exc), status_code=503, media_type="text/plain; charset=utf-8")
    body = render_pdf(found, font, lang)
    return Response(
        body,
        media_type="application/pdf",
        headers={
            "Content-Disposition": f'inline; filename="receipt-{found.number}.pdf"',
            "Cache-Control": "private, no-store",
        },
    )
