"""The customer's order page: ``/c/{token}``, no login; the token is the order's signed link
(fulfilment/links.py). Shows status and timeline, lets the customer confirm receipt or open a dispute
with a reason and a photo, in zh-CN or en, at phone width.

Security: a token that does not verify answers 404 exactly like an order that does not exist. Forms
carry a signed form token (HMAC over the link token, the form and its issue time; no session) and a
cross-site Origin is refused, so another site cannot submit them. A photo is limited to
``MAX_PHOTO_BYTES`` (413) and must be a JPEG, PNG or WebP by its bytes (415); nothing is written then.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.routing import NoMatchFound

from tillit.bootstrap import Container
from tillit.domain import fulfilment as rules
from tillit.domain.errors import DomainError
from tillit.domain.links import receipt_signature
from tillit.domain.money import Money
from tillit.fulfilment import keys, service
from tillit.fulfilment.links import LinkSigner, OrderRef

PREFIX = "/c/"
RECEIPT_ROUTE = "receipt_page"  # the e-receipt page's route name (customer/receipt.py)
# The body limit for the page's routes (api/limits.BodyLimit): the photo plus the form's other fields.
BODY_LIMIT = rules.MAX_PHOTO_BYTES + 64 * 1024
_ENV = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"), autoescape=select_autoescape(["html"])
)

TEXT: dict[str, dict[str, str]] = {
    "en": {
        "title": "Your order",
        "order": "Order",
        "status": "Status",
        "timeline": "Timeline",
        "total": "Total",
        "confirm": "I received my order",
        "confirm_hint": "Confirm once everything has arrived in good order.",
        "extend": "Extend by 3 days",
        "extend_hint": "Not arrived yet? You can extend the automatic confirmation once, by 3 days.",
        "extended": "Confirmation extended by 3 days",
        "dispute": "Report a problem",
        "reason": "What went wrong?",
        "note": "Tell us more (optional)",
        "photo": "Photo (optional, JPEG/PNG/WebP, up to 2 MB)",
        "send": "Send",
        "carrier": "Carrier",
        "tracking": "Tracking number",
        "auto_confirm": "Confirmed automatically on",
        "receipt": "E-receipt",
        "not_found": "This link does not lead to an order.",
        "refused": "This form has expired or did not come from this page. Reload the page and try again.",
        "too_large": "The photo is larger than 2 MB. Choose a smaller one.",
        "bad_type": "The photo must be a JPEG, PNG or WebP image.",
        "conflict": "This order can no longer be changed that way.",
        "back": "Back to the order",
        "other_language": "中文",
        "pickup": "Pickup",
        "delivery": "Delivery",
        "awaiting_fulfilment": "Being prepared",
        "ready": "Ready for pickup",
        "shipped": "On its way",
        "delivered": "Delivered",
        "disputed": "Problem reported",
        "redelivering": "Sent again",
        "redelivered": "Delivered again",
        "confirmed": "Received",
        "cancelled": "Cancelled",
        "refunded": "Refunded",
        "order_paid": "Paid",
        "order_refunded": "Payment refunded",
        "not_received": "I did not receive it",
        "wrong_items": "Wrong items",
        "damaged_items": "Damaged items",
    },
    "zh-CN": {
        "title": "您的订单",
        "order": "订单",
        "status": "状态",
        "timeline": "进度",
        "total": "合计",
        "confirm": "确认收货",
        "confirm_hint": "请在商品完好收到后确认。",
        "extend": "延长收货 3 天",
        "extend_hint": "还没收到？可延长一次自动确认收货时间，延长 3 天。",
        "extended": "已延长收货 3 天",
        "dispute": "申请售后",
        "reason": "遇到了什么问题？",
        "note": "补充说明（可选）",
        "photo": "照片（可选，JPEG/PNG/WebP，不超过 2 MB）",
        "send": "提交",
        "carrier": "承运商",
        "tracking": "运单号",
        "auto_confirm": "自动确认收货时间",
        "receipt": "电子小票",
        "not_found": "此链接没有对应的订单。",
        "refused": "表单已过期或并非来自本页面，请刷新页面后重试。",
        "too_large": "照片超过 2 MB，请选择较小的照片。",
        "bad_type": "照片必须是 JPEG、PNG 或 WebP 图片。",
        "conflict": "此订单当前无法进行该操作。",
        "back": "返回订单",
        "other_language": "English",
        "pickup": "到店自提",
        "delivery": "配送",
        "awaiting_fulfilment": "备货中",
        "ready": "待取货",
        "shipped": "已发货",
        "delivered": "已送达",
        "disputed": "售后处理中",
        "redelivering": "已补发",
        "redelivered": "补发已送达",
        "confirmed": "已确认收货",
        "cancelled": "已取消",
        "refunded": "已退款",
        "order_paid": "已付款",
        "order_refunded": "已退款",
        "not_received": "未收到货",
        "wrong_items": "商品发错",
        "damaged_items": "商品损坏",
    },
}


def receipt_link(container: Container, request: Request, ref: OrderRef, paid: bool) -> str | None:
    """The order's e-receipt (customer/receipt.py, signed with the server's signing key) when the order is
    paid and the e-receipt page is mounted in this app; otherwise no link."""
    if not paid or container.signing_key is None:
        return None
    signature = receipt_signature(container.signing_key, ref.merchant_id, ref.order_id)
    try:
        return str(
            request.app.url_path_for(
                RECEIPT_ROUTE, merchant_id=ref.merchant_id, order_id=ref.order_id, signature=signature
            )
        )
    except NoMatchFound:
        return None


def _language(request: Request, default: str) -> str:
    asked = request.query_params.get("lang")
    return asked if asked in TEXT else default


# The link is the customer's credential: never sent to another site, the page never framed, no caching.
HEADERS = {
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'self'; style-src 'unsafe-inline'; frame-ancestors 'none'",
    "Cache-Control": "no-store",
}


def _page(template: str, status: int, **context: Any) -> HTMLResponse:
    return HTMLResponse(_ENV.get_template(template).render(**context), status_code=status, headers=HEADERS)


def _message(lang: str, key: str, status: int, token: str | None = None) -> HTMLResponse:
    return _page("message.html", status, t=TEXT[lang], lang=lang, text=TEXT[lang][key], token=token)


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == request.headers.get("host", "")


def build_router(container: Container) -> APIRouter:
    """The page's routes over ``container`` (mounted by api/app.py; not part of the JSON API schema)."""
    router = APIRouter(include_in_schema=False)

    def signer() -> LinkSigner:
        return keys.signer_for(container.db, container.deps)

    def verified(token: str) -> OrderRef | None:
        return signer().verify(token)

    @router.get("/c/{token}")
    def order_page(token: str, request: Request) -> Response:
        ref = verified(token)
        lang = _language(request, "zh-CN")
        if ref is None:
            return _message(lang, "not_found", 404)
        try:
            now = container.deps.clock.now()
            with container.db.read() as conn:
                view = service.customer_order(conn, ref, now)
        except DomainError:
            return _message(lang, "not_found", 404)
        lang = _language(request, view["language"])
        return _page(
            "order.html",
            200,
            t=TEXT[lang],
            lang=lang,
            other_lang="en" if lang == "zh-CN" else "zh-CN",
            order=view,
            token=token,
            total=Money(view["total"], view["currency"]).format(),
            lines=[{**ln, "amount": Money(ln["amount"], view["currency"]).format()} for ln in view["lines"]],
            reasons=sorted(rules.DISPUTE_REASONS),
            csrf_confirm=signer().form_token(token, "confirm", now),
            csrf_dispute=signer().form_token(token, "dispute", now),
            csrf_extend=signer().form_token(token, "extend", now),
            receipt=receipt_link(container, request, ref, view["paid"]),
            max_photo=rules.MAX_PHOTO_BYTES,
        )

    def refused(token: str, purpose: str, form_token: str, request: Request) -> bool:
        now = container.deps.clock.now()
        return not _same_origin(request) or not signer().check_form_token(token, purpose, form_token, now)

    @router.post("/c/{token}/confirm")
    def confirm(token: str, request: Request, csrf: str = Form("", max_length=64)) -> Response:
        lang = _language(request, "zh-CN")
        ref = verified(token)
        if ref is None:
            return _message(lang, "not_found", 404)
        if refused(token, "confirm", csrf, request):
            return _message(lang, "refused", 403, token)
        try:
            with container.db.transaction() as conn:
                service.customer_confirm(container.db, conn, container.deps, signer(), ref)
        except DomainError as exc:
            return _message(lang, "not_found" if exc.kind == "not_found" else "conflict", _status(exc), token)
        return RedirectResponse(f"/c/{token}?lang={lang}", status_code=303)

    @router.post("/c/{token}/extend")
    def extend(token: str, request: Request, csrf: str = Form("", max_length=64)) -> Response:
        """The buyer extends the auto-confirm once by 3 days (domain/fulfilment.py BUYER_EXTENSION)."""
        lang = _language(request, "zh-CN")
        ref = verified(token)
        if ref is None:
            return _message(lang, "not_found", 404)
        if refused(token, "extend", csrf, request):
            return _message(lang, "refused", 403, token)
        try:
            with container.db.transaction() as conn:
                service.customer_extend(container.db, conn, container.deps, ref)
        except DomainError as exc:
            return _message(lang, "not_found" if exc.kind == "not_found" else "conflict", _status(exc), token)
        return RedirectResponse(f"/c/{token}?lang={lang}", status_code=303)

    @router.post("/c/{token}/dispute")
    async def dispute(
        token: str,
        request: Request,
        csrf: str = Form("", max_length=64),
        reason: str = Form("", max_length=24),
        note: str = Form("", max_length=rules.MAX_NOTE),
        photo: UploadFile | None = File(None),
    ) -> Response:
        lang = _language(request, "zh-CN")
        ref = verified(token)
        if ref is None:
            return _message(lang, "not_found", 404)
        if refused(token, "dispute", csrf, request):
            return _message(lang, "refused", 403, token)
        data: bytes | None = None
        if photo is not None and photo.filename:
            data = await photo.read(rules.MAX_PHOTO_BYTES + 1)
            if len(data) > rules.MAX_PHOTO_BYTES:
                return _message(lang, "too_large", 413, token)
            if data and rules.sniff_photo(data) is None:
                return _message(lang, "bad_type", 415, token)
        if reason not in rules.DISPUTE_REASONS:
            return _message(lang, "conflict", 422, token)
        try:
            with container.db.transaction() as conn:
                service.open_dispute(
                    container.db,
                    conn,
                    container.deps,
                    signer(),
                    ref,
                    reason,
                    note.strip() or None,
                    data or None,
                )
        except DomainError as exc:
            return _message(lang, "not_found" if exc.kind == "not_found" else "conflict", _status(exc), token)
        return RedirectResponse(f"/c/{token}?lang={lang}", status_code=303)

    return router


def _status(exc: DomainError) -> int:
    return {"not_found": 404, "conflict": 409}.get(str(exc.kind), 422)
