"""Products: managers maintain the catalogue, cashiers search it."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import select

from tillit.adapters.db.schema import merchants
from tillit.api.deps import IDEMPOTENCY_HEADER, MANAGER, STAFF, IdPath, container, idempotent, ok
from tillit.api.schemas import ErrorOut, ProductCreate, ProductOut, ProductUpdate
from tillit.domain.ids import normalise_id
from tillit.kernel.context import Actor
from tillit.sales import catalog

router = APIRouter(prefix="/v1", tags=["catalogue"], responses={"4XX": {"model": ErrorOut}})


@router.post(
    "/products", status_code=201, summary="Add a product (manager)", responses={201: {"model": ProductOut}}
)
def create_product(
    body: ProductCreate, request: Request, who: Actor = MANAGER, key: str | None = IDEMPOTENCY_HEADER
) -> Response:
    c = container(request)
    merchant_id = who.merchant()

    def op(conn):  # type: ignore[no-untyped-def]
        currency = conn.execute(
            select(merchants.c.currency).where(merchants.c.id == merchant_id)
        ).scalar_one()
        return 201, catalog.create_product(
            conn,
            c.deps,
            merchant_id=merchant_id,
            merchant_currency=currency,
            sku=body.sku,
            name=body.name,
            price=body.price,
            barcode=body.barcode,
            currency=body.currency,
            stock=body.stock,
            tile=body.model_dump(
                include={"category", "tile_colour", "favourite", "sort_order"}, exclude_none=True
            ),
        )

    return idempotent(request, who, key, body.model_dump(), op)


@router.get("/products", summary="Search products by barcode, sku or name")
def list_products(
    request: Request,
    who: Actor = STAFF,
    q: str | None = Query(None, max_length=100),
    limit: int = Query(50, ge=1, le=200),
    after: str | None = Query(None, max_length=36),
) -> JSONResponse:
    with container(request).db.read() as conn:
        rows = catalog.list_products(conn, who.merchant(), q=q, limit=limit, after=after)
    return ok({"data": rows, "next": rows[-1]["id"] if len(rows) == limit else None})


@router.get("/products/{product_id}", summary="Read a product", responses={200: {"model": ProductOut}})
def get_product(product_id: IdPath, request: Request, who: Actor = STAFF) -> JSONResponse:
    with container(request).db.read() as conn:
        return ok(catalog.get_product(conn, who.merchant(), normalise_id(product_id)))


@router.patch(
    "/products/{product_id}", summary="Change a product (manager)", responses={200: {"model": ProductOut}}
)
def update_product(
    product_id: IdPath, body: ProductUpdate, request: Request, who: Actor = MANAGER
) -> JSONResponse:
    c = container(request)
    with c.db.transaction() as conn:
        return ok(
            catalog.update_product(
                conn, c.deps, who.merchant(), normalise_id(product_id), body.model_dump(exclude_unset=True)
            )
        )
