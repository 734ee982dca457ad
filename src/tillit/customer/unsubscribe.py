"""Unsubscribe: ``/u/{merchant_id}/{address}/{signature}``, the signed link every customer e-mail carries
(in its body and its ``List-Unsubscribe`` header, with ``List-Unsubscribe-Post: One-Click``, RFC 8058).

``GET`` shows a page with one button (a link prefetcher or a virus scanner opening the link must not
unsubscribe anyone); ``POST`` — the button, or a mail client's one-click request — records the opt-out
in the consent records (``outbox.set_consent``, source ``unsubscribe_link``). From then on nothing is
sent to that address for that merchant: waiting messages and later events end ``suppressed``. A link
whose signature does not verify answers 404. The link is the credential, so no cookie or form token.
"""

from __future__ import annotations

from html import escape

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from tillit.bootstrap import Container
from tillit.domain.errors import DomainError
from tillit.domain.ids import normalise_id
from tillit.domain.links import check_unsubscribe
from tillit.notifications.outbox import set_consent

router = APIRouter(include_in_schema=False)
HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"}
_PAGE = (
    "<!doctype html><html lang=zh-CN><meta charset=utf-8>"
    "<meta name=viewport content='width=device-width, initial-scale=1'><title>{title}</title>"
    "<body style='font-family:sans-serif;max-width:30rem;margin:2rem auto;padding:0 1rem'>"
    "{body}</body></html>"
)
NOT_FOUND = _PAGE.format(title="404", body="<p>此链接无效。<p>This link is not valid.")


def _address(request: Request, merchant_id: str, encoded: str, signature: str) -> tuple[str, str] | None:
    c: Container = request.app.state.container
    if c.signing_key is None:
        return None
    try:
        mid = normalise_id(merchant_id)
    except DomainError:
        return None
    address = check_unsubscribe(c.signing_key, mid, encoded, signature.lower())
    return (mid, address) if address is not None else None


@router.get("/u/{merchant_id}/{encoded}/{signature}")
def unsubscribe_page(merchant_id: str, encoded: str, signature: str, request: Request) -> HTMLResponse:
    found = _address(request, merchant_id, encoded, signature)
    if found is None:
        return HTMLResponse(NOT_FOUND, status_code=404, headers=HEADERS)
    body = (
        f"<h1>退订邮件 / Unsubscribe</h1><p>{escape(found[1])}</p>"
        "<form method=post><button id=unsubscribe type=submit>退订 / Unsubscribe</button></form>"
    )
    return HTMLResponse(_PAGE.format(title="Unsubscribe", body=body), headers=HEADERS)


@router.post("/u/{merchant_id}/{encoded}/{signature}")
def unsubscribe(merchant_id: str, encoded: str, signature: str, request: Request) -> HTMLResponse:
    found = _address(request, merchant_id, encoded, signature)
    if found is None:
        return HTMLResponse(NOT_FOUND, status_code=404, headers=HEADERS)
    c: Container = request.app.state.container
    mid, address = found
    with c.db.transaction() as conn:
        set_consent(
            conn,
            c.deps.clock.now(),
            merchant_id=mid,
            channel="email",
            recipient=address,
            opted_in=False,
            source="unsubscribe_link",
        )
    body = (
        f"<h1 id=done>已退订 / Unsubscribed</h1><p>{escape(address)}</p>"
        "<p>此商户不会再给这个地址发送邮件。<p>This shop will send no more e-mail to this address."
    )
    return HTMLResponse(_PAGE.format(title="Unsubscribed", body=body), headers=HEADERS)
