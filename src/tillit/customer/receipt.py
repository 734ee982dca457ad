"""The e-receipt: ``GET /receipts/{merchant}/{order}/{signature}`` (HTML, phone-width) and ``…/pdf``.

The signature is an HMAC of merchant and order with the server's signing key (domain/links.py). A
forged or altered link, an unknown order, another merchant's order and an unpaid order all answer the
same 404, so a link reveals nothing but the receipt it was made for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import select

from tillit.access import receipt_keys
from tillit.adapters.db.schema import fulfilments, orders
from tillit.adapters.receipt_pdf import ReceiptFontMissing, find_cjk_font, render_pdf
from tillit.bootstrap import Container
from tillit.domain.errors import DomainError
from tillit.domain.ids import normalise_id
from tillit.domain.links import check_receipt_signature, receipt_path
from tillit.domain.receipt import LABELS, Receipt, money
from tillit.fulfilment import keys
from tillit.fulfilment.links import customer_path
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


NOT_YET = (
    "<!doctype html><meta charset=utf-8><title>404</title><p>这张小票还在从收银台同步，请几分钟后再试。"
    "<p>This receipt is still on its way from the till; try again in a few minutes."
)


@router.get("/r/{key_id}/{order_id}/{mac}")
def till_receipt_link(key_id: str, order_id: str, mac: str, request: Request) -> Response:
    """The QR on a paper receipt, signed by the till with its receipt-link key, even offline
    (access/receipt_keys.py). A forged, altered or revoked link answers 404 like an unknown order; a
    genuine link to an order the till has not synced yet says so (still 404). Otherwise: to the order's
    customer page when it is a pickup or delivery order, else to its e-receipt."""
    c: Container = request.app.state.container
    if c.signing_key is None:
        return HTMLResponse(NOT_FOUND, status_code=404)
    with c.db.read() as conn:
        linked = receipt_keys.resolve(conn, c.signing_key, key_id.lower(), order_id.lower(), mac.lower())
        if linked is None:
            return HTMLResponse(NOT_FOUND, status_code=404)
        status = conn.execute(
            select(orders.c.status).where(
                orders.c.merchant_id == linked.merchant_id,
                orders.c.id == linked.order_id,
                orders.c.terminal_id == linked.terminal_id,  # a till signs its own orders only
            )
        ).scalar_one_or_none()
        fulfilment = conn.execute(
            select(fulfilments.c.id).where(
                fulfilments.c.merchant_id == linked.merchant_id, fulfilments.c.order_id == linked.order_id
            )
        ).first()
    if status is None:
        return HTMLResponse(NOT_YET, status_code=404, headers={"Retry-After": "120"})
    if fulfilment is not None:
        target = customer_path(keys.signer_for(c.db, c.deps), linked.merchant_id, linked.order_id)
    else:
        target = receipt_path(c.signing_key, linked.merchant_id, linked.order_id)
    return RedirectResponse(target, status_code=303, headers={"Referrer-Policy": "no-referrer"})
