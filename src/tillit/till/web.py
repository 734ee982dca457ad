"""The cashier page: server-rendered HTML with htmx (vendored), for touch, keyboard and scanner.

The product grid (category tabs, tiles, search-as-you-type filtering in the browser) is rendered once
with the page; every action posts a small form and gets the cashier panel (cart, numpad, tenders) back.
The panel polls itself while a payment is in flight and the status bar polls the sync state. The page
holds no state of its own: the journal does, so a reload or a till restart shows where the cashier was.
``/display`` is the customer's screen, polling the same journal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Form, Request
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape

from tillit.domain.provider import detect_method
from tillit.domain.tillrules import quick_cash
from tillit.till import counter
from tillit.till.client import LinkDown
from tillit.till.display import qr_svg
from tillit.till.i18n import DEFAULT, LOCALES, engine_message, method_label, translator
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
    # the counter (issue 17)
    "approval_required": "Above the store’s limit: a manager’s PIN is needed.",
    "approval_reason": "Give the reason for the manager’s approval.",
    "wrong_pin": "Wrong manager PIN: {left} more tries before PIN entry locks.",
    "pin_locked": "Too many wrong manager PINs: PIN entry is locked for {minutes} min.",
    "approvals_unavailable": "Manager approval needs the server once after the till starts: it has not been reached yet.",
    "invalid_mode": "Choose quantity, discount or price first.",
    "invalid_percent": "A percentage is between 0 and 100.",
    "price_above_catalogue": "A price can only be lowered (catalogue price {price}).",
    "rounding_disabled": "Rounding down (抹零) is off for this store.",
    "nothing_to_round": "The total is already round.",
    "too_many_held": "At most {max} sales can be parked.",
    "no_such_held": "That parked sale is no longer parked.",
    "invalid_refund_to": "Refund to the original tender or in cash.",
    "return_too_many": "Only {left} of that line can still be returned.",
    "nothing_to_return": "Pick the lines and quantities to return.",
    "select_line": "Tap a line first.",
}


@dataclass
class Ui:
    """What the panel shows besides the journal: the last finished sale, a lookup, a message, the line
    the numpad works on, a pending manager approval, whether the customer is asked for a payment code."""

    shown_sale: str | None = None
    lookup_sale: str | None = None
    message: str | None = None
    message_kind: str = "info"
    z_report: dict[str, Any] | None = None
    search: list[Any] = field(default_factory=list)
    selected_line: int | None = None
    pending: dict[str, str] | None = None  # a numpad entry waiting for a manager's PIN
    asking_code: bool = False
    show_held: bool = False
    last_change: int | None = None
    refusal: tuple[str, dict[str, Any]] | None = None  # the last refusal: reason and its parameters


ADJUSTMENT_LABELS = {"order_discount": "Order discount", "rounding": "Rounding (抹零)"}


def receipt_text(view: dict[str, Any], shop: str, t: Any) -> str:
    """The printer's receipt with the order discount and 抹零 written above the total, never silently."""
    text = render_receipt(view, shop, t)
    extra = [
        t(ADJUSTMENT_LABELS[a["kind"]]).ljust(20) + ("-" + fmt(a["amount"])).rjust(12)
        for a in view.get("adjustments", [])
    ]
    if not extra:
        return text
    lines = text.split("\n")
    at = next((i for i, ln in enumerate(lines) if ln.startswith(t("Total"))), len(lines))
    return "\n".join(lines[:at] + extra + lines[at:])


def create_till_app(till: Till, printer: Printer, shop_name: str = "Tillit") -> FastAPI:
    app = FastAPI(title="Tillit till", docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]))
    env.filters["money"] = fmt
    env.globals["method_label"] = method_label
    images = till.journal.path.parent / "images"
    ui = Ui()

    def locale_of(request: Request) -> str:
        value = request.cookies.get("lang", DEFAULT)
        return value if value in LOCALES else DEFAULT

    def current_view() -> dict[str, Any] | None:
        sale = till.open_sale()
        if sale is not None and (till._sale_lines(sale["id"]) or sale["frozen"]):
            return till.sale_view(sale)
        if ui.shown_sale:
            row = till.journal.one("SELECT * FROM sales WHERE id = ?", (ui.shown_sale,))
            return till.sale_view(row) if row else None
        return None

    def panel(request: Request, template: str = "app.html") -> HTMLResponse:
        locale = locale_of(request)
        t = translator(locale)
        if ui.refusal is not None:  # told in the language of the page that shows it
            reason, params = ui.refusal
            ui.message = t(
                REASONS.get(reason, reason),
                **{
                    k: (fmt(v) if isinstance(v, int) and k not in ("max", "left", "minutes") else v)
                    for k, v in params.items()
                },
            )
        shown = current_view()
        lookup = None
        returnable: list[dict[str, Any]] = []
        if ui.lookup_sale:
            row = till.journal.one("SELECT * FROM sales WHERE id = ?", (ui.lookup_sale,))
            lookup = till.sale_view(row) if row else None
            if row is not None and row["status"] == "completed":
                returnable = counter.net_lines(till, row["id"])
        in_flight = bool(shown and any(tn["in_flight"] for tn in shown["tenders"]))
        for view in (shown, lookup):
            if view:
                for tn in view["tenders"]:
                    tn["text"] = engine_message(till.cashier_message(tn), locale)
        receipt = None
        if shown and shown["sale"]["status"] != "open":
            receipt = receipt_text(shown, shop_name, t)
        settings = till.settings()
        html = env.get_template(template).render(
            t=t,
            locale=locale,
            locales=LOCALES,
            ui=ui,
            sale=shown,
            lookup=lookup,
            returnable=returnable,
            in_flight=in_flight,
            shift=till.current_shift(),
            status=till.status(),
            receipt=receipt,
            shop=shop_name,
            blockers=till.close_blockers(),
            held=counter.held_sales(till),
            quick=quick_cash(shown["due"]) if shown and shown["sale"]["status"] == "open" else [],
            products=till.grid_products() if template == "index.html" else [],
            settings=settings,
            labels=ADJUSTMENT_LABELS,
        )
        return HTMLResponse(html)

    def act(request: Request, action: Any) -> HTMLResponse:
        """Run one cashier action; a refusal is shown on the page and changes nothing."""
        ui.message, ui.message_kind, ui.refusal = None, "info", None
        try:
            result = action()
            if isinstance(result, str):
                ui.message = result
        except TillError as exc:
            ui.refusal = (exc.reason, exc.params)
            ui.message_kind = "error"
        except LinkDown:
            ui.refusal, ui.message_kind = ("link_down", {}), "error"
        return panel(request)

    def fresh_sale() -> None:
        ui.shown_sale, ui.z_report, ui.last_change, ui.pending = None, None, None, None
        ui.asking_code = False

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
        """Polled every 2 s: renders the sync state only (not the whole panel's queries), so the poll
        takes as little as possible from a tap or a scan that arrives beside it."""
        html = env.get_template("status.html").render(t=translator(locale_of(request)), status=till.status())
        return HTMLResponse(html)

    def add(code: str) -> None:
        product = till.add_item(code)
        fresh_sale()
        sale = till.open_sale()
        if sale is not None:
            row = till.journal.one(
                "SELECT MAX(line_no) AS n FROM sale_lines WHERE sale_id = ? AND product_id = ?",
                (sale["id"], product["id"]),
            )
            ui.selected_line = int(row["n"]) if row and row["n"] is not None else None

    @app.post("/scan", response_class=HTMLResponse)
    def scan(request: Request, code: str = Form("")) -> HTMLResponse:
        """A scan or typed code: a product adds a line; a customer's payment code scanned into the same
        box pays the sale (no click needed); otherwise a name search."""

        def do() -> str | None:
            ui.search = []
            text = code.strip()
            if not text:
                return None
            if till.find_product(text) is None:
                sale = till.open_sale()
                if detect_method(text) is not None and sale is not None and till._sale_lines(sale["id"]):
                    pay_with_code(text, None, locale_of(request))
                    return None
                if not text.isdigit():
                    ui.search = till.search(text)
                    if ui.search:
                        return None
            add(text)
            return None

        return act(request, do)

    @app.post("/tap/{product_id}", response_class=HTMLResponse)
    def tap(request: Request, product_id: str) -> HTMLResponse:
        def do() -> None:
            row = till.journal.one("SELECT sku FROM products WHERE id = ? AND active = 1", (product_id,))
            if row is None:
                raise TillError("unknown_barcode", code=product_id[:40])
            add(row["sku"])

        return act(request, do)

    @app.post("/line/{line_no}", response_class=HTMLResponse)
    def edit_line(
        request: Request, line_no: int, quantity: str = Form(""), discount: str = Form("")
    ) -> HTMLResponse:
        """The keyboard path (kept for scripts and tests): quantity and line discount in yuan."""

        def do() -> None:
            if quantity.strip():
                if not quantity.strip().isdigit():
                    raise TillError("invalid_quantity")
                counter.set_line(till, line_no, "qty", int(quantity))
            if discount.strip():
                value = parse_minor(discount)
                counter.set_line(till, line_no, "disc_amt", value or 0)

        return act(request, do)

    @app.post("/select/{line_no}", response_class=HTMLResponse)
    def select_line(request: Request, line_no: int) -> HTMLResponse:
        def do() -> None:
            ui.selected_line = line_no
            ui.pending = None

        return act(request, do)

    @app.post("/line/{line_no}/remove", response_class=HTMLResponse)
    def remove(request: Request, line_no: int) -> HTMLResponse:
        def do() -> None:
            counter.remove_line(till, line_no)
            ui.selected_line = None

        return act(request, do)

    def numeric(mode: str, value: str) -> int:
        if mode in ("qty", "disc_pct", "order_pct"):
            if not value.strip().isdigit():
                raise TillError("invalid_quantity" if mode == "qty" else "invalid_percent")
            return int(value.strip())
        parsed = parse_minor(value)
        if parsed is None:
            raise TillError("invalid_amount")
        return parsed

    @app.post("/numpad", response_class=HTMLResponse)
    def numpad(
        request: Request,
        mode: str = Form(""),
        value: str = Form(""),
        line_no: str = Form(""),
        pin: str = Form(""),
        reason: str = Form(""),
    ) -> HTMLResponse:
        """The numpad's Enter: quantity / discount (% or ¥) / price of the selected line, or an order
        discount. Over the store's limit the entry waits for a manager's PIN and reason."""

        def do() -> None:
            approval = counter.Approval(pin.strip(), reason) if pin.strip() else None
            target = int(line_no) if line_no.strip().isdigit() else None
            amount = numeric(mode, value)
            try:
                if mode in counter.ORDER_MODES:
                    counter.order_discount(till, mode, amount, approval)
                else:
                    if target is None:
                        raise TillError("select_line")
                    counter.set_line(till, target, mode, amount, approval)
            except TillError as exc:
                if exc.reason in ("approval_required", "wrong_pin", "approval_reason", "pin_locked"):
                    ui.pending = {"mode": mode, "value": value, "line_no": line_no}
                raise
            ui.pending = None

        return act(request, do)

    @app.post("/approval/cancel", response_class=HTMLResponse)
    def approval_cancel(request: Request) -> HTMLResponse:
        def do() -> None:
            ui.pending = None

        return act(request, do)

    @app.post("/round", response_class=HTMLResponse)
    def round_total(request: Request) -> HTMLResponse:
        return act(request, lambda: counter.round_down(till) and None)

    @app.post("/hold", response_class=HTMLResponse)
    def hold(request: Request, note: str = Form("")) -> HTMLResponse:
        def do() -> str:
            number = counter.hold(till, note)
            fresh_sale()
            ui.selected_line = None
            return str(translator(locale_of(request))("Sale #{n} parked.", n=number))

        return act(request, do)

    @app.post("/held/toggle", response_class=HTMLResponse)
    def held_toggle(request: Request) -> HTMLResponse:
        def do() -> None:
            ui.show_held = not ui.show_held

        return act(request, do)

    @app.post("/recall/{sale_id}", response_class=HTMLResponse)
    def recall(request: Request, sale_id: str) -> HTMLResponse:
        def do() -> None:
            counter.recall(till, sale_id)
            fresh_sale()
            ui.show_held, ui.selected_line = False, None

        return act(request, do)

    @app.post("/pay/cash", response_class=HTMLResponse)
    def pay_cash(request: Request, tendered: str = Form(""), amount: str = Form("")) -> HTMLResponse:
        def do() -> str | None:
            t = translator(locale_of(request))
            result = till.pay_cash(parse_minor(tendered), parse_minor(amount))
            ui.last_change = result["change_due"]
            ui.asking_code = False
            _after_tender(result["sale_id"], locale_of(request))
            if result["change_due"]:
                return str(t("Change: {change}", change=fmt(result["change_due"])))
            return None

        return act(request, do)

    def pay_with_code(code_text: str, amount: int | None, locale: str) -> None:
        ui.asking_code, ui.last_change = True, None
        result = till.pay_code(code_text, amount)
        if result.get("sale_id"):
            _after_tender(result["sale_id"], locale)

    @app.post("/pay/code", response_class=HTMLResponse)
    def pay_code(request: Request, code: str = Form(""), amount: str = Form("")) -> HTMLResponse:
        return act(request, lambda: pay_with_code(code, parse_minor(amount), locale_of(request)))

    @app.post("/pay/ask-code", response_class=HTMLResponse)
    def ask_code(request: Request) -> HTMLResponse:
        """The cashier chose a payment code: the customer display says "scan to pay"."""

        def do() -> None:
            ui.asking_code = True

        return act(request, do)

    def _after_tender(sale_id: str, locale: str) -> None:
        """A paid sale prints its receipt in the language of the cashier's page."""
        row = till.journal.one("SELECT * FROM sales WHERE id = ?", (sale_id,))
        if row is not None and row["status"] == "completed":
            ui.shown_sale = sale_id
            ui.asking_code = False
            printer.print(
                f"receipt-{row['number']}",
                receipt_text(till.sale_view(row), shop_name, translator(locale)),
                qr=till.receipt_link(sale_id),
            )

    @app.post("/sale/new", response_class=HTMLResponse)
    def new_sale(request: Request) -> HTMLResponse:
        def do() -> None:
            fresh_sale()
            ui.lookup_sale, ui.search, ui.selected_line = None, [], None

        return act(request, do)

    @app.post("/sale/cancel", response_class=HTMLResponse)
    def cancel_sale(request: Request, reason: str = Form("customer_cancelled")) -> HTMLResponse:
        def do() -> None:
            till.cancel_sale(reason)
            ui.asking_code, ui.selected_line = False, None

        return act(request, do)

    @app.post("/lookup", response_class=HTMLResponse)
    def lookup(request: Request, number: str = Form("")) -> HTMLResponse:
        """Find a sale by its receipt number, typed or scanned (a receipt's barcode/QR carries the number,
        optionally as ``R<number>``)."""

        def do() -> None:
            text = number.strip().upper().removeprefix("R").lstrip("#")
            sale = till.sale_by_number(int(text)) if text.isdigit() else None
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

    @app.post("/return", response_class=HTMLResponse)
    async def return_items(request: Request) -> HTMLResponse:
        """Return picked lines of the looked-up sale: ``qty-<line_no>`` fields, ``refund_to``, ``reason``."""
        form = await request.form()
        quantities: dict[int, int] = {}
        bad = False
        for key, raw in form.items():
            if key.startswith("qty-") and key[4:].isdigit() and isinstance(raw, str) and raw.strip():
                if not raw.strip().isdigit():
                    bad = True
                    continue
                quantities[int(key[4:])] = int(raw.strip())

        def do() -> str:
            if bad:
                raise TillError("invalid_quantity")
            if ui.lookup_sale is None:
                raise TillError("no_such_sale")
            reason = str(form.get("reason", "")).strip()[:200] or None
            done = counter.return_items(
                till, ui.lookup_sale, quantities, str(form.get("refund_to", "original")), reason
            )
            t = translator(locale_of(request))
            return "; ".join(
                str(t("Refund {amount}: {status}", amount=fmt(r["amount"]), status=t(r["status"])))
                for r in done
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
                receipt_text(till.sale_view(row), shop_name, translator(locale_of(request))),
                qr=till.receipt_link(sale_id),
            )
            return str(translator(locale_of(request))("Printed to {where}", where=where))

        return act(request, do)

    @app.get("/images/{name}")
    def image(name: str) -> Response:
        """A tile image from the till's cache (named by its digest), so the grid works offline."""
        if not name.isalnum() or not (images / name).is_file():
            return PlainTextResponse("not found", status_code=404)
        return FileResponse(images / name, headers={"Cache-Control": "max-age=31536000, immutable"})

    # --- the customer display -----------------------------------------------------------------------

    def display_panel_html(request: Request, template: str) -> HTMLResponse:
        locale = locale_of(request)
        view = current_view()
        state = counter.display_state(view, ui.asking_code)
        receipt_url = None
        if view and state == "paid":
            # The server's e-receipt URL once synced, else the link the till signs itself (offline too).
            receipt_url = view["sale"].get("receipt_url") or till.receipt_link(str(view["sale"]["id"]))
        html = env.get_template(template).render(
            t=translator(locale),
            locale=locale,
            shop=shop_name,
            sale=view,
            state=state,
            qr=qr_svg(receipt_url) if receipt_url else None,
            labels=ADJUSTMENT_LABELS,
        )
        return HTMLResponse(html)

    @app.get("/display", response_class=HTMLResponse)
    def display(request: Request) -> HTMLResponse:
        return display_panel_html(request, "display.html")

    @app.get("/display/panel", response_class=HTMLResponse)
    def display_panel(request: Request) -> HTMLResponse:
        return display_panel_html(request, "display_panel.html")

    @app.get("/lang/{code}")
    def set_lang(code: str, to: str = "/") -> Response:
        response = RedirectResponse("/display" if to == "/display" else "/", status_code=303)
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
                "held_sales": len(counter.held_sales(till)),
            }
        )

    @app.get("/healthz")
    def healthz() -> PlainTextResponse:
        return PlainTextResponse("ok")

    return app
