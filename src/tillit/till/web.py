"""The cashier page: server-rendered HTML with htmx (vendored), keyboard- and scanner-friendly.

Every action posts a small form and gets the whole cashier panel back; the panel polls itself while a
payment is in flight and the status bar polls the sync state. The page holds no state of its own: the
journal does, so a reload or a till restart shows exactly where the cashier was.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape

from tillit.till.client import LinkDown
from tillit.till.i18n import DEFAULT, LOCALES, engine_message, translator
from tillit.till.printer import Printer, render_receipt
from tillit.till.service import Till, TillError, fmt, parse_minor

HERE = Path(__file__).parent

# What the cashier is told for each refusal (English msgids; zh_CN in locales/).
REASONS = {
    "unknown_barcode": "Unknown barcode or SKU: {code}",
    "invalid_quantity": "Quantity must be between 1 and 9999.",
    "invalid_discount": "The discount must be between 0 and the line amount.",
    "invalid_amount": "Enter an amount in yuan, e.g. 12.50.",
    "invalid_tender_amount": "The amount must be more than 0 and at most the {due} due.",
    "insufficient_tender": "The cash handed over is less than the amount.",
    "unsupported_code": "This code belongs to no supported provider: ask for a WeChat or Alipay payment code, or take cash.",
    "link_down": "The server cannot be reached: provider payments are unavailable. Take cash.",
    "payment_in_progress": "A payment is in progress: wait for its result. Do not charge again.",
    "empty_sale": "The sale is empty: scan an item first.",
    "sale_frozen": "Payment has started: the items can no longer change.",
    "no_sale": "There is no sale in progress.",
    "no_such_line": "That line does not exist.",
    "too_many_lines": "A sale has at most 200 lines.",
    "no_open_shift": "Open a shift first.",
    "shift_already_open": "A shift is already open.",
    "sale_in_progress": "Finish or cancel the sale in progress first.",
    "close_refused": "The shift cannot close yet. Waiting to sync: {unsynced}. Payment outcome unknown: {unknown}.",
    "not_refundable": "Only a paid tender of a completed sale can be refunded.",
    "refund_too_large": "At most {refundable} can still be refunded.",
    "invalid_reason": "Choose a cancel reason.",
    "no_such_sale": "No sale with that receipt number.",
}


@dataclass
class Ui:
    """What the panel shows besides the journal: the last finished sale, a lookup, a message."""

    shown_sale: str | None = None
    lookup_sale: str | None = None
    message: str | None = None
    message_kind: str = "info"
    z_report: dict[str, Any] | None = None
    search: list[Any] = field(default_factory=list)


def create_till_app(till: Till, printer: Printer, shop_name: str = "Tillit") -> FastAPI:
    app = FastAPI(title="Tillit till", docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]))
    env.filters["money"] = fmt
    ui = Ui()

    def locale_of(request: Request) -> str:
        value = request.cookies.get("lang", DEFAULT)
        return value if value in LOCALES else DEFAULT

    def panel(request: Request, template: str = "app.html") -> HTMLResponse:
        locale = locale_of(request)
        t = translator(locale)
        sale = till.open_sale()
        shown = None
        if sale is not None and (till._sale_lines(sale["id"]) or sale["frozen"]):
            shown = till.sale_view(sale)
        elif ui.shown_sale:
            row = till.journal.one("SELECT * FROM sales WHERE id = ?", (ui.shown_sale,))
            shown = till.sale_view(row) if row else None
        lookup = None
        if ui.lookup_sale:
            row = till.journal.one("SELECT * FROM sales WHERE id = ?", (ui.lookup_sale,))
            lookup = till.sale_view(row) if row else None
        in_flight = bool(shown and any(tn["in_flight"] for tn in shown["tenders"]))
        for view in (shown, lookup):
            if view:
                for tn in view["tenders"]:
                    tn["text"] = engine_message(till.cashier_message(tn), locale)
        receipt = None
        if shown and shown["sale"]["status"] != "open":
            receipt = render_receipt(shown, shop_name, t)
        html = env.get_template(template).render(
            t=t,
            locale=locale,
            locales=LOCALES,
            ui=ui,
            sale=shown,
            lookup=lookup,
            in_flight=in_flight,
            shift=till.current_shift(),
            status=till.status(),
            receipt=receipt,
            shop=shop_name,
            blockers=till.close_blockers(),
        )
        return HTMLResponse(html)

    def act(request: Request, action: Any) -> HTMLResponse:
        """Run one cashier action; a refusal is shown on the page and changes nothing."""
        t = translator(locale_of(request))
        ui.message, ui.message_kind = None, "info"
        try:
            result = action()
            if isinstance(result, str):
                ui.message = result
        except TillError as exc:
            ui.message = t(
                REASONS.get(exc.reason, exc.reason),
                **{k: (fmt(v) if isinstance(v, int) else v) for k, v in exc.params.items()},
            )
            ui.message_kind = "error"
        except LinkDown:
            ui.message, ui.message_kind = t(REASONS["link_down"]), "error"
        return panel(request)

    @app.get("/", response_class=HTMLResponse)
    def index(request: Request) -> HTMLResponse:
        return panel(request, "index.html")

    @app.get("/app", response_class=HTMLResponse)
    def app_panel(request: Request) -> HTMLResponse:
        return panel(request)

    @app.get("/tenders", response_class=HTMLResponse)
    def tenders(request: Request) -> HTMLResponse:
        """The polled tender list; once nothing is in flight it tells the panel to refresh itself."""
        response = panel(request, "tenders.html")
        if b'hx-trigger="every 1s"' not in response.body:
            response.headers["HX-Trigger"] = "tender-settled"
        return response

    @app.get("/status", response_class=HTMLResponse)
    def status_bar(request: Request) -> HTMLResponse:
        return panel(request, "status.html")

    @app.post("/scan", response_class=HTMLResponse)
    def scan(request: Request, code: str = Form("")) -> HTMLResponse:
        def do() -> str | None:
            ui.search = []
            text = code.strip()
            if not text:
                return None
            if till.find_product(text) is None and not text.isdigit():
                ui.search = till.search(text)
                if ui.search:
                    return None
            till.add_item(text)
            ui.shown_sale = None
            ui.z_report = None
            return None

        return act(request, do)

    @app.post("/line/{line_no}", response_class=HTMLResponse)
    def edit_line(
        request: Request, line_no: int, quantity: str = Form(""), discount: str = Form("")
    ) -> HTMLResponse:
        def do() -> None:
            if quantity.strip():
                if not quantity.strip().isdigit():
                    raise TillError("invalid_quantity")
                till.set_quantity(line_no, int(quantity))
            if discount.strip():
                value = parse_minor(discount)
                till.set_discount(line_no, value or 0)

        return act(request, do)

    @app.post("/pay/cash", response_class=HTMLResponse)
    def pay_cash(request: Request, tendered: str = Form(""), amount: str = Form("")) -> HTMLResponse:
        def do() -> str | None:
            t = translator(locale_of(request))
            result = till.pay_cash(parse_minor(tendered), parse_minor(amount))
            _after_tender(result["sale_id"])
            if result["change_due"]:
                return str(t("Change: {change}", change=fmt(result["change_due"])))
            return None

        return act(request, do)

    @app.post("/pay/code", response_class=HTMLResponse)
    def pay_code(request: Request, code: str = Form(""), amount: str = Form("")) -> HTMLResponse:
        def do() -> None:
            result = till.pay_code(code, parse_minor(amount))
            if result.get("sale_id"):
                _after_tender(result["sale_id"])

        return act(request, do)

    def _after_tender(sale_id: str) -> None:
        row = till.journal.one("SELECT * FROM sales WHERE id = ?", (sale_id,))
        if row is not None and row["status"] == "completed":
            ui.shown_sale = sale_id
            printer.print(
                f"receipt-{row['number']}",
                render_receipt(till.sale_view(row), shop_name, translator(DEFAULT)),
            )

    @app.post("/sale/new", response_class=HTMLResponse)
    def new_sale(request: Request) -> HTMLResponse:
        def do() -> None:
            ui.shown_sale, ui.lookup_sale, ui.z_report, ui.search = None, None, None, []

        return act(request, do)

    @app.post("/sale/cancel", response_class=HTMLResponse)
    def cancel_sale(request: Request, reason: str = Form("customer_cancelled")) -> HTMLResponse:
        return act(request, lambda: till.cancel_sale(reason))

    @app.post("/lookup", response_class=HTMLResponse)
    def lookup(request: Request, number: str = Form("")) -> HTMLResponse:
        def do() -> None:
            sale = till.sale_by_number(int(number)) if number.strip().isdigit() else None
            if sale is None:
                raise TillError("no_such_sale")
            ui.lookup_sale = sale["id"]

        return act(request, do)

    @app.post("/refund", response_class=HTMLResponse)
    def refund(
        request: Request, tender_id: str = Form(""), amount: str = Form(""), reason: str = Form("")
    ) -> HTMLResponse:
        def do() -> str:
            value = parse_minor(amount)
            if value is None:
                raise TillError("invalid_amount")
            result = till.refund(tender_id, value, reason.strip()[:200] or None)
            t = translator(locale_of(request))
            return str(
                t("Refund {amount}: {status}", amount=fmt(result["amount"]), status=t(result["status"]))
            )

        return act(request, do)

    @app.post("/shift/open", response_class=HTMLResponse)
    def shift_open(request: Request, opening_float: str = Form("")) -> HTMLResponse:
        return act(request, lambda: till.open_shift(parse_minor(opening_float) or 0) and None)

    @app.post("/shift/close", response_class=HTMLResponse)
    def shift_close(request: Request, counted: str = Form("")) -> HTMLResponse:
        def do() -> None:
            value = parse_minor(counted)
            if value is None:
                raise TillError("invalid_amount")
            ui.z_report = till.close_shift(value)
            ui.shown_sale = None

        return act(request, do)

    @app.post("/print/{sale_id}", response_class=HTMLResponse)
    def print_receipt(request: Request, sale_id: str) -> HTMLResponse:
        def do() -> str:
            row = till.journal.one("SELECT * FROM sales WHERE id = ?", (sale_id,))
            if row is None:
                raise TillError("no_such_sale")
            where = printer.print(
                f"receipt-{row['number']}",
                render_receipt(till.sale_view(row), shop_name, translator(locale_of(request))),
            )
            return str(translator(locale_of(request))("Printed to {where}", where=where))

        return act(request, do)

    @app.get("/lang/{code}")
    def set_lang(code: str) -> Response:
        response = RedirectResponse("/", status_code=303)
        if code in LOCALES:
            response.set_cookie("lang", code, max_age=365 * 86400, samesite="strict")
        return response

    @app.get("/api/state")
    def state() -> JSONResponse:
        """Machine-readable state for monitoring and tests: the open sale, the shift, sync counts."""
        sale = till.open_sale()
        completed = till.journal.one("SELECT COUNT(*) AS n FROM sales WHERE status = 'completed'")
        view = till.sale_view(sale) if sale is not None else None
        return JSONResponse(
            {
                "shift": dict(till.current_shift()) if till.current_shift() else None,
                "open_sale": {
                    "number": view["sale"]["number"],
                    "total": view["sale"]["total"],
                    "due": view["due"],
                    "lines": len(view["lines"]),
                    "frozen": bool(view["sale"]["frozen"]),
                    "in_flight": any(t["in_flight"] for t in view["tenders"]),
                }
                if view
                else None,
                "completed_sales": completed["n"] if completed else 0,
                "link_up": till.link.up,
                "unsynced_sales": till.journal.unsynced_sales(),
                "pending_entries": till.journal.pending_count(),
            }
        )

    @app.get("/healthz")
    def healthz() -> PlainTextResponse:
        return PlainTextResponse("ok")

    return app
