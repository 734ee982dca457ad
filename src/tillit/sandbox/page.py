"""The customer page at ``GET /sandbox/``: server-rendered HTML, no build step.

A person (or the demo) picks a wallet, shows its payment code as barcode and QR for the till to
scan, confirms or cancels a payment that waits for the password, and sees the wallet's history.
"""

from __future__ import annotations

from html import escape
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from tillit.sandbox.barcode import code128_svg, qr_svg
from tillit.sandbox.engine import ControlError, Wallet
from tillit.sandbox.money import yuan
from tillit.sandbox.runtime import form_fields, runtime

router = APIRouter(prefix="/sandbox")

STYLE = """
body{font-family:system-ui,sans-serif;margin:0;background:#f4f5f7;color:#222}
header{background:#1f6f43;color:#fff;padding:12px 20px}header a{color:#fff}
main{display:flex;gap:20px;padding:20px;flex-wrap:wrap}
section{background:#fff;border-radius:8px;padding:16px;box-shadow:0 1px 3px #0002}
.wallets{min-width:240px}.wallets a{display:block;padding:6px 0}
.sel{font-weight:bold}.code svg{max-width:100%;height:auto}.qr svg{width:180px;height:180px}
table{border-collapse:collapse}td,th{padding:4px 8px;border-bottom:1px solid #eee;text-align:left}
.msg{background:#fff3cd;padding:8px 12px;border-radius:6px}.pending{border:2px solid #e0a800}
button{padding:6px 14px;margin:4px 4px 4px 0;cursor:pointer}
"""


def _page(body: str, refresh: bool) -> HTMLResponse:
    meta = '<meta http-equiv="refresh" content="4">' if refresh else ""
    return HTMLResponse(
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">{meta}'
        f"<title>Tillit payment sandbox — customer</title><style>{STYLE}</style></head><body>"
        f'<header><b>Tillit payment sandbox</b> · customer wallet · <a href="/sandbox/">wallets</a></header>'
        f"{body}</body></html>"
    )


def _wallet_link(w: Wallet, selected: int | None) -> str:
    cls = ' class="sel"' if w.id == selected else ""
    label = "WeChat" if w.provider == "wechat" else "Alipay"
    return f'<a{cls} href="/sandbox/?wallet={w.id}">{label} · {escape(w.name)} · ¥{yuan(w.balance_fen)}</a>'


@router.get("/", response_class=HTMLResponse)
async def customer_page(request: Request) -> HTMLResponse:
    """Wallet list; with ``?wallet=ID`` the wallet's code, pending payment and history."""
    engine = runtime(request).engine
    wallets = engine.wallets()
    raw = request.query_params.get("wallet", "")
    selected = int(raw) if raw.isdigit() and any(w.id == int(raw) for w in wallets) else None
    parts = ['<main><section class="wallets"><h3>Wallets</h3>']
    parts += [_wallet_link(w, selected) for w in wallets] or ["<p>No wallets yet.</p>"]
    parts.append("</section>")
    refresh = False
    if selected is not None:
        wallet = engine.wallet(selected)
        msg = request.query_params.get("msg")
        parts.append(f"<section><h3>{escape(wallet.name)} — balance ¥{yuan(wallet.balance_fen)}</h3>")
        if msg:
            parts.append(f'<p class="msg">{escape(msg)}</p>')
        code = request.query_params.get("code", "")
        if code.isdigit() and len(code) % 2 == 0 and len(code) <= 24:
            parts.append(f'<div class="code">{code128_svg(code)}</div><div class="qr">{qr_svg(code)}</div>')
            refresh = True
        parts.append(
            f'<form method="post" action="/sandbox/ui/wallets/{wallet.id}/code">'
            "<button>Show a new payment code</button></form>"
        )
        for trade in engine.pending_for_wallet(wallet.id):
            refresh = True
            tn = escape(trade.trade_no)
            subject = escape(str(trade.extra.get("subject") or trade.extra.get("body") or ""))
            parts.append(
                f'<div class="pending"><p>Payment of <b>¥{yuan(trade.amount_fen)}</b> '
                f"to {escape(trade.merchant)} ({subject}) waits for your "
                f'password.</p><form method="post" action="/sandbox/ui/wallets/{wallet.id}/confirm">'
                f'<input type="hidden" name="trade_no" value="{tn}">'
                '<input name="password" type="password" inputmode="numeric" maxlength="6" '
                'placeholder="password">'
                "<button>Pay</button></form>"
                f'<form method="post" action="/sandbox/ui/wallets/{wallet.id}/cancel">'
                f'<input type="hidden" name="trade_no" value="{tn}"><button>Cancel</button></form></div>'
            )
        rows = "".join(
            f"<tr><td>{t.created:%Y-%m-%d %H:%M:%S}</td><td>{escape(t.merchant)}</td>"
            f"<td>{escape(t.out_trade_no)}</td><td>¥{yuan(t.amount_fen)}</td><td>{t.status}</td>"
            f"<td>{'¥' + yuan(t.refunded_fen) if t.refunded_fen else ''}</td></tr>"
            for t in engine.history(wallet.id)
        )
        parts.append(
            "<h4>History</h4><table><tr><th>Time</th><th>Merchant</th><th>Order</th><th>Amount</th>"
            f"<th>Status</th><th>Refunded</th></tr>{rows}</table></section>"
        )
    parts.append("</main>")
    return _page("".join(parts), refresh)


def _back(wallet_id: int, **params: str) -> RedirectResponse:
    return RedirectResponse(f"/sandbox/?{urlencode({'wallet': wallet_id, **params})}", status_code=303)


def _id(raw: str) -> int:
    if not raw.isdigit() or len(raw) > 12:
        raise ControlError(404, "wallet_not_found", f"no wallet {raw!r}")
    return int(raw)


@router.post("/ui/wallets/{wallet_id}/code", include_in_schema=False)
async def ui_code(request: Request, wallet_id: str) -> RedirectResponse:
    """Issue a code and show it."""
    wid = _id(wallet_id)
    code = runtime(request).engine.issue_code(wid)
    return _back(wid, code=code["code"])


@router.post("/ui/wallets/{wallet_id}/confirm", include_in_schema=False)
async def ui_confirm(request: Request, wallet_id: str) -> RedirectResponse:
    """Confirm the pending payment with the password from the form."""
    wid = _id(wallet_id)
    form = await form_fields(request)
    password, trade_no = str(form.get("password", "")), str(form.get("trade_no", "")) or None
    try:
        trade = runtime(request).engine.confirm(wid, password, trade_no)
    except ControlError as exc:
        return _back(wid, msg=exc.message)
    return _back(wid, msg=f"Payment {trade.out_trade_no}: {trade.status}")


@router.post("/ui/wallets/{wallet_id}/cancel", include_in_schema=False)
async def ui_cancel(request: Request, wallet_id: str) -> RedirectResponse:
    """Cancel the pending payment."""
    wid = _id(wallet_id)
    form = await form_fields(request)
    try:
        trade = runtime(request).engine.customer_cancel(wid, str(form.get("trade_no", "")) or None)
    except ControlError as exc:
        return _back(wid, msg=exc.message)
    return _back(wid, msg=f"Payment {trade.out_trade_no} cancelled")
