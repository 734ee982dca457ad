"""Orders, payments, refunds and cancels: cashier (terminal) and manager (merchant) keys."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from tillit.api.deps import IDEMPOTENCY_HEADER, STAFF, IdPath, container, idempotent, ok, phased
from tillit.api.schemas import (
    ErrorOut,
    EventOut,
    OrderCancel,
    OrderCreate,
    OrderOut,
    PaymentCreate,
    PaymentOut,
    RefundCreate,
    RefundOut,
)
from tillit.bootstrap import Container
from tillit.domain.ids import normalise_id
from tillit.kernel.context import Actor
from tillit.sales import cancel, orders, payments, refunds

router = APIRouter(prefix="/v1", tags=["sales"], responses={"4XX": {"model": ErrorOut}})


def _with_receipt(c: Container, merchant_id: str, view: Any) -> dict[str, Any]:
    """An order answer with its signed e-receipt link once it is paid (issue 14), else null."""
    paid = view["status"] in ("paid", "refunded")
    return {**view, "receipt_url": c.receipt_url(merchant_id, view["id"]) if paid else None}


@router.post(
    "/orders",
    status_code=201,
    summary="Create an order; the server prices it",
    responses={
        201: {"model": OrderOut},
        200: {"model": OrderOut, "description": "The order with this id exists"},
    },
)
def create_order(
    body: OrderCreate, request: Request, who: Actor = STAFF, key: str | None = IDEMPOTENCY_HEADER
) -> Response:
    c = container(request)
    data = body.model_dump()
    if data.get("store_id"):
        data["store_id"] = normalise_id(data["store_id"], "store_id")
    for line in data["lines"]:
        if line.get("product_id"):
            line["product_id"] = normalise_id(line["product_id"], "product_id")
    def create(conn: Any) -> tuple[int, Any]:
        status, view = orders.create_order(conn, c.deps, who, data)
        return status, _with_receipt(c, who.merchant(), view)

    return idempotent(request, who, key, body.model_dump(), create)


@router.get("/orders", summary="List orders, newest first")
def list_orders(
    request: Request,
    who: Actor = STAFF,
    limit: int = Query(50, ge=1, le=200),
    before: str | None = Query(None, max_length=36, description="Cursor: the last id of the previous page"),
    status: str | None = Query(None, pattern="^(open|paid|cancelled|refunded)$"),
    number: int | None = Query(None, ge=1, le=2**63 - 1, description="Receipt number (BIGINT column)"),
    since: datetime | None = None,
    until: datetime | None = None,
) -> JSONResponse:
    with container(request).db.read() as conn:
        rows = orders.list_orders(
            conn,
            who.merchant(),
            limit=limit,
            before=normalise_id(before) if before else None,
            status=status,
            number=number,
            since=since,
            until=until,
        )
    return ok({"data": rows, "next": rows[-1]["id"] if len(rows) == limit else None})


@router.get(
    "/orders/{order_id}",
    summary="Read an order with lines, payments and refunds",
    responses={200: {"model": OrderOut}},
)
def get_order(order_id: IdPath, request: Request, who: Actor = STAFF) -> JSONResponse:
    c = container(request)
    with c.db.read() as conn:
        view = orders.get_order(conn, who.merchant(), normalise_id(order_id))
    return ok(_with_receipt(c, who.merchant(), view))


@router.get(
    "/orders/{order_id}/events",
    summary="The order's event timeline",
    responses={200: {"model": list[EventOut]}},
)
def order_events(order_id: IdPath, request: Request, who: Actor = STAFF) -> JSONResponse:
    with container(request).db.read() as conn:
        return ok({"data": orders.timeline(conn, who.merchant(), normalise_id(order_id))})


@router.post(
    "/orders/{order_id}/cancel",
    summary="Cancel an open order with a reason code",
    responses={200: {"model": OrderOut}},
)
def cancel_order(
    order_id: IdPath,
    body: OrderCancel,
    request: Request,
    who: Actor = STAFF,
    key: str | None = IDEMPOTENCY_HEADER,
) -> Response:
    c = container(request)
    oid = normalise_id(order_id)
    return idempotent(
        request,
        who,
        key,
        body.model_dump(),
        lambda conn: (
            200,
            cancel.cancel_order(c.db, conn, c.deps, who, oid, body.reason, body.note, c.gateway),
        ),
    )


@router.post(
    "/payments",
    status_code=201,
    summary="Pay (part of) an order: cash, or scan the customer's WeChat/Alipay payment code",
    responses={
        201: {"model": PaymentOut, "description": "Settled: captured, or failed with a cashier message"},
        202: {"model": PaymentOut, "description": "Outcome still being resolved: poll GET /v1/payments/{id}"},
    },
)
def create_payment(
    body: PaymentCreate, request: Request, who: Actor = STAFF, key: str | None = IDEMPOTENCY_HEADER
) -> Response:
    c = container(request)
    data = body.model_dump()
    return phased(
        request,
        who,
        key,
        data,
        lambda conn: payments.start_payment(c.db, conn, c.deps, who, data, c.gateway),
        lambda conn, rid: payments.payment_takeover(conn, who.merchant(), rid),
    )


@router.get(
    "/payments/{payment_id}", summary="Read a payment attempt", responses={200: {"model": PaymentOut}}
)
def get_payment(payment_id: IdPath, request: Request, who: Actor = STAFF) -> JSONResponse:
    with container(request).db.read() as conn:
        return ok(payments.get_payment(conn, who.merchant(), normalise_id(payment_id)))


@router.post(
    "/refunds",
    status_code=201,
    summary="Refund (part of) a captured payment",
    responses={
        201: {"model": RefundOut},
        202: {"model": RefundOut, "description": "Accepted by the provider, not confirmed yet"},
    },
)
def create_refund(
    body: RefundCreate, request: Request, who: Actor = STAFF, key: str | None = IDEMPOTENCY_HEADER
) -> Response:
    c = container(request)
    data = body.model_dump()
    return phased(
        request,
        who,
        key,
        data,
        lambda conn: refunds.create_refund(c.db, conn, c.deps, who, data, c.gateway),
        lambda conn, rid: refunds.refund_takeover(conn, who.merchant(), rid),
    )


@router.get("/refunds/{refund_id}", summary="Read a refund", responses={200: {"model": RefundOut}})
def get_refund(refund_id: IdPath, request: Request, who: Actor = STAFF) -> JSONResponse:
    with container(request).db.read() as conn:
        return ok(refunds.get_refund(conn, who.merchant(), normalise_id(refund_id)))
