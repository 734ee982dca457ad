"""Products and stock: list and search, create, edit, deactivate/reactivate, CSV export and import."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, File, Form, Query, UploadFile
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from tillit.adapters.db.schema import merchants
from tillit.backoffice.registry import MANAGER, Page
from tillit.backoffice.web import CTX, Ctx, parse_yuan
from tillit.domain.errors import DomainError, invalid
from tillit.domain.ids import normalise_id
from tillit.sales import catalog, catalog_csv

router = APIRouter()
PAGE = Page(
    key="products", label="Products and stock", path="/products", roles=MANAGER, router=router, order=40
)
SHOWN = 200


def _page(ctx: Ctx, q: str = "", status: int = 200, **values: Any) -> HTMLResponse:
    c, merchant_id = ctx.container, ctx.merchant_id
    with c.db.read() as conn:
        rows = catalog.list_products(conn, merchant_id, q=q or None, limit=SHOWN, after=None)
    return ctx.render("pages/products.html", status, rows=rows, q=q, **values)


def _fields(name: str, sku: str, barcode: str, price: str, stock: str) -> dict[str, Any]:
    name, sku, barcode = name.strip(), sku.strip(), barcode.strip()
    if not 1 <= len(name) <= 200:
        raise invalid("invalid_name", "name: 1 to 200 characters.")
    if not 1 <= len(sku) <= 64 or len(barcode) > 64:
        raise invalid("invalid_sku", "sku: 1 to 64 characters; barcode: at most 64.")
    amount = parse_yuan(price, "price")
    if amount is None:
        raise invalid("invalid_amount", "Enter the price in yuan, e.g. 12.50.")
    stock_value: int | None = None
    if stock.strip():
        text = stock.strip()
        if not (text.lstrip("-").isdigit() and len(text) <= 11 and abs(int(text)) <= catalog_csv.MAX_STOCK):
            raise invalid("invalid_stock", "stock: a whole number, or blank for not tracked.")
        stock_value = int(text)
    return {"name": name, "sku": sku, "barcode": barcode or None, "price": amount, "stock": stock_value}


def _act(ctx: Ctx, q: str, action: Any, done: str) -> HTMLResponse:
    """Run one write in a transaction; a refusal is shown on the page with its code, nothing written."""
    try:
        with ctx.container.db.transaction() as conn:
            action(conn)
    except DomainError as exc:
        status = 409 if exc.kind.value == "conflict" else 422 if exc.kind.value == "invalid" else 404
        if exc.kind.value == "not_found":
            raise
        message = ctx.t("Refused ({code}): {message}", code=exc.code, message=exc.message)
        return _page(ctx, q, status, message=message, message_kind="error", details=exc.details)
    return _page(ctx, q, message=done, message_kind="ok")


@router.get("/products", response_class=HTMLResponse)
async def products_page(ctx: Ctx = CTX, q: str = Query("", max_length=100)) -> HTMLResponse:
    return await run_in_threadpool(_page, ctx, q.strip())


@router.post("/products", response_class=HTMLResponse)
async def create_product(
    ctx: Ctx = CTX,
    name: str = Form("", max_length=200),
    sku: str = Form("", max_length=64),
    barcode: str = Form("", max_length=64),
    price: str = Form("", max_length=20),
    stock: str = Form("", max_length=12),
) -> HTMLResponse:
    c, merchant_id = ctx.container, ctx.merchant_id

    def run() -> HTMLResponse:
        def create(conn: Any) -> None:
            fields = _fields(name, sku, barcode, price, stock)
            currency = conn.execute(
                select(merchants.c.currency).where(merchants.c.id == merchant_id)
            ).scalar_one()
            catalog.create_product(
                conn, c.deps, merchant_id=merchant_id, merchant_currency=currency, **fields
            )

        return _act(ctx, "", create, ctx.t("Product {sku} created.", sku=sku.strip()))

    return await run_in_threadpool(run)


@router.get("/products/export.csv")
async def export_csv(ctx: Ctx = CTX) -> Response:
    c, merchant_id = ctx.container, ctx.merchant_id

    def load() -> str:
        with c.db.read() as conn:
            return catalog_csv.export_products(conn, merchant_id)

    body = await run_in_threadpool(load)
    return Response(
        body.encode("utf-8-sig"),  # the BOM lets spreadsheet programs read the Chinese names as UTF-8
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="products.csv"'},
    )


@router.post("/products/import", response_class=HTMLResponse)
async def import_csv(ctx: Ctx = CTX, file: UploadFile = File(...)) -> HTMLResponse:
    data = await file.read(catalog_csv.MAX_BYTES + 1)
    c, merchant_id = ctx.container, ctx.merchant_id

    def run() -> HTMLResponse:
        try:
            with c.db.transaction() as conn:
                result = catalog_csv.import_products(conn, c.deps, merchant_id, data)
        except DomainError as exc:
            errors = (exc.details or {}).get("errors", []) if isinstance(exc.details, dict) else []
            message = ctx.t("Nothing was imported: {n} row(s) refused.", n=len(errors) or 1)
            return _page(ctx, "", 422, message=message, message_kind="error", row_errors=errors or None)
        text = ctx.t("Imported: {created} created, {updated} updated.", **result)
        return _page(ctx, "", message=text, message_kind="ok")

    return await run_in_threadpool(run)


@router.get("/products/{product_id}", response_class=HTMLResponse)
async def edit_form(product_id: str, ctx: Ctx = CTX) -> HTMLResponse:
    c, merchant_id = ctx.container, ctx.merchant_id
    pid = normalise_id(product_id, "product_id")

    def load() -> HTMLResponse:
        with c.db.read() as conn:
            product = catalog.get_product(conn, merchant_id, pid)
        return ctx.render("pages/product.html", product=product)

    return await run_in_threadpool(load)


@router.post("/products/{product_id}", response_class=HTMLResponse)
async def edit_product(
    product_id: str,
    ctx: Ctx = CTX,
    name: str = Form("", max_length=200),
    sku: str = Form("", max_length=64),
    barcode: str = Form("", max_length=64),
    price: str = Form("", max_length=20),
    stock: str = Form("", max_length=12),
) -> HTMLResponse:
    c, merchant_id = ctx.container, ctx.merchant_id
    pid = normalise_id(product_id, "product_id")

    def run() -> HTMLResponse:
        def edit(conn: Any) -> None:
            fields = _fields(name, sku, barcode, price, stock)
            current = catalog.get_product(conn, merchant_id, pid)
            if fields["sku"] != current["sku"]:
                raise invalid("sku_fixed", "The sku of a product cannot change; create a new product.")
            del fields["sku"]
            catalog.update_product(conn, c.deps, merchant_id, pid, fields)

        return _act(ctx, "", edit, ctx.t("Product {sku} saved.", sku=sku.strip()))

    return await run_in_threadpool(run)


@router.post("/products/{product_id}/active", response_class=HTMLResponse)
async def set_active(
    product_id: str, ctx: Ctx = CTX, active: str = Form(..., pattern="^[01]$")
) -> HTMLResponse:
    c, merchant_id = ctx.container, ctx.merchant_id
    pid = normalise_id(product_id, "product_id")

    def run() -> HTMLResponse:
        def flip(conn: Any) -> None:
            catalog.update_product(conn, c.deps, merchant_id, pid, {"active": active == "1"})

        done = ctx.t("Product reactivated.") if active == "1" else ctx.t("Product deactivated.")
        return _act(ctx, "", flip, done)

    return await run_in_threadpool(run)
