"""Fulfilment orders for the merchant: declare, list, move to ready/shipped/delivered, confirm at pickup,
resolve a dispute (re-deliver or refund), cancel, and the merchant's periods. docs/fulfilment.md."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from tillit.api.deps import (
    IDEMPOTENCY_HEADER,
    MANAGER,
    STAFF,
    IdPath,
    IdQuery,
    container,
    idempotent,
    ok,
    phased,
)
from tillit.api.schemas import ErrorOut
from tillit.api.schemas_fulfilment import (
    FulfilmentCreate,
    FulfilmentList,
    FulfilmentOut,
    PickupBody,
    ResolveBody,
    SettingsBody,
    SettingsOut,
    ShipBody,
)
from tillit.domain.errors import invalid
from tillit.domain.fulfilment import FULFILMENT
from tillit.domain.ids import normalise_id
from tillit.fulfilment import keys, service
from tillit.kernel.context import Actor

router = APIRouter(prefix="/v1", tags=["fulfilment"], responses={"4XX": {"model": ErrorOut}})
ONE: dict[int | str, dict[str, Any]] = {200: {"model": FulfilmentOut}}
STATUS_PATTERN = "^(" + "|".join(sorted(FULFILMENT.statuses)) + ")$"


@router.post(
    "/orders/{order_id}/fulfilment",
    status_code=201,
    summary="Make an order a pickup or delivery order (validated kind, address, contact)",
    responses={201: {"model": FulfilmentOut}, 200: {"model": FulfilmentOut, "description": "It already is"}},
)
def create(
    order_id: IdPath,
    body: FulfilmentCreate,
    request: Request,
    who: Actor = STAFF,
    key: str | None = IDEMPOTENCY_HEADER,
) -> Response:
    c = container(request)
    signer = keys.signer_for(c.db, c.deps)
    oid = normalise_id(order_id)
    data = body.model_dump()
    return idempotent(
        request,
        who,
        key,
        data,
        lambda conn: service.create_fulfilment(c.db, conn, c.deps, who, signer, oid, data),
    )


@router.get(
    "/fulfilments", summary="List fulfilment orders, newest first", responses={200: {"model": FulfilmentList}}
)
def list_all(
    request: Request,
    who: Actor = STAFF,
    limit: int = Query(50, ge=1, le=200),
    before: IdQuery = None,  # cursor: the last id of the previous page
    status: str | None = Query(None, pattern=STATUS_PATTERN),
    kind: str | None = Query(None, pattern="^(pickup|delivery)$"),
) -> JSONResponse:
    c = container(request)
    signer = keys.signer_for(c.db, c.deps)
    with c.db.read() as conn:
        rows = service.list_fulfilments(
            conn,
            signer,
            who.merchant(),
            limit=limit,
            before=normalise_id(before) if before else None,
            status=status,
            kind=kind,
        )
    return ok({"data": rows, "next": rows[-1]["id"] if len(rows) == limit else None})


@router.get("/fulfilments/{fulfilment_id}", summary="Read a fulfilment order", responses=ONE)
def get_one(fulfilment_id: IdPath, request: Request, who: Actor = STAFF) -> JSONResponse:
    c = container(request)
    signer = keys.signer_for(c.db, c.deps)
    with c.db.read() as conn:
        return ok(service.get_fulfilment(conn, signer, who.merchant(), normalise_id(fulfilment_id)))


@router.get(
    "/fulfilments/{fulfilment_id}/photo",
    summary="The photo the customer attached to the dispute",
    response_class=Response,
    responses={
        200: {
            "description": "The photo as uploaded (its type was sniffed at upload)",
            "content": {"image/jpeg": {}, "image/png": {}, "image/webp": {}},
        }
    },
)
def photo(fulfilment_id: IdPath, request: Request, who: Actor = STAFF) -> Response:
    with container(request).db.read() as conn:
        media, data = service.dispute_photo(conn, who.merchant(), normalise_id(fulfilment_id))
    # served with its sniffed type, as an attachment, never sniffed again by the browser
    headers = {
        "X-Content-Type-Options": "nosniff",
        "Content-Disposition": "attachment",
        "Cache-Control": "no-store",
    }
    return Response(data, media_type=media, headers=headers)


@router.post(
    "/fulfilments/{fulfilment_id}/ready", summary="A pickup order is ready to collect", responses=ONE
)
def ready(
    fulfilment_id: IdPath, request: Request, who: Actor = STAFF, key: str | None = IDEMPOTENCY_HEADER
) -> Response:
    c = container(request)
    signer = keys.signer_for(c.db, c.deps)
    fid = normalise_id(fulfilment_id)
    return idempotent(
        request, who, key, {}, lambda conn: (200, service.mark_ready(c.db, conn, c.deps, who, signer, fid))
    )


@router.post(
    "/fulfilments/{fulfilment_id}/ship", summary="A delivery order was handed to the carrier", responses=ONE
)
def ship(
    fulfilment_id: IdPath,
    body: ShipBody,
    request: Request,
    who: Actor = STAFF,
    key: str | None = IDEMPOTENCY_HEADER,
) -> Response:
    c = container(request)
    signer = keys.signer_for(c.db, c.deps)
    fid = normalise_id(fulfilment_id)
    data = body.model_dump()
    return idempotent(
        request,
        who,
        key,
        data,
        lambda conn: (200, service.mark_shipped(c.db, conn, c.deps, who, signer, fid, data)),
    )


@router.post(
    "/fulfilments/{fulfilment_id}/deliver", summary="The carrier reports the order delivered", responses=ONE
)
def deliver(
    fulfilment_id: IdPath, request: Request, who: Actor = STAFF, key: str | None = IDEMPOTENCY_HEADER
) -> Response:
    c = container(request)
    signer = keys.signer_for(c.db, c.deps)
    fid = normalise_id(fulfilment_id)
    return idempotent(
        request,
        who,
        key,
        {},
        lambda conn: (200, service.mark_delivered(c.db, conn, c.deps, who, signer, fid)),
    )


@router.post(
    "/fulfilments/pickup",
    summary="The cashier scans the order's code at pickup: confirmed",
    responses=ONE,
)
def pickup(
    body: PickupBody, request: Request, who: Actor = STAFF, key: str | None = IDEMPOTENCY_HEADER
) -> Response:
    c = container(request)
    signer = keys.signer_for(c.db, c.deps)
    data = body.model_dump()
    return idempotent(
        request,
        who,
        key,
        data,
        lambda conn: (200, service.confirm_pickup(c.db, conn, c.deps, who, signer, data["code"])),
    )


@router.post(
    "/fulfilments/{fulfilment_id}/resolve",
    status_code=200,
    summary="Resolve a dispute: re-deliver, or refund all or part through the payment engine",
    responses={
        200: {"model": FulfilmentOut, "description": "Re-delivery on its way"},
        201: {"model": FulfilmentOut, "description": "Refund settled (see refund.status)"},
        202: {"model": FulfilmentOut, "description": "Refund accepted by the provider, not confirmed yet"},
    },
)
def resolve(
    fulfilment_id: IdPath,
    body: ResolveBody,
    request: Request,
    who: Actor = MANAGER,
    key: str | None = IDEMPOTENCY_HEADER,
) -> Response:
    c = container(request)
    signer = keys.signer_for(c.db, c.deps)
    fid = normalise_id(fulfilment_id)
    data = body.model_dump()
    if data["action"] == "redeliver":
        if data["amount"] is not None or data["restock"] is not None:
            raise invalid("invalid_resolution", "A re-delivery takes carrier and tracking_number only.")
        return idempotent(
            request,
            who,
            key,
            data,
            lambda conn: (200, service.resolve_redeliver(c.db, conn, c.deps, who, signer, fid, data)),
        )
    if data["carrier"] is not None or data["tracking_number"] is not None:
        raise invalid("invalid_resolution", "A refund takes amount and restock only.")
    return phased(
        request,
        who,
        key,
        data,
        lambda conn: service.resolve_refund(
            c.db, conn, c.deps, who, signer, fid, data["amount"], data["restock"], c.gateway
        ),
        lambda conn, _rid: service.takeover(conn, signer, who.merchant(), fid),
    )


@router.post(
    "/fulfilments/{fulfilment_id}/cancel",
    status_code=201,
    summary="Cancel before handover: a paid order is refunded in full and its stock released",
    responses={
        201: {"model": FulfilmentOut},
        202: {"model": FulfilmentOut, "description": "Refund accepted by the provider, not confirmed yet"},
    },
)
def cancel(
    fulfilment_id: IdPath, request: Request, who: Actor = MANAGER, key: str | None = IDEMPOTENCY_HEADER
) -> Response:
    c = container(request)
    signer = keys.signer_for(c.db, c.deps)
    fid = normalise_id(fulfilment_id)
    return phased(
        request,
        who,
        key,
        {},
        lambda conn: service.cancel_fulfilment(c.db, conn, c.deps, who, signer, fid, c.gateway),
        lambda conn, _rid: service.takeover(conn, signer, who.merchant(), fid),
    )


@router.get(
    "/fulfilment/settings",
    summary="The merchant's fulfilment periods",
    responses={200: {"model": SettingsOut}},
)
def get_settings(request: Request, who: Actor = MANAGER) -> JSONResponse:
    with container(request).db.read() as conn:
        return ok(service.get_settings(conn, who.merchant()))


@router.put(
    "/fulfilment/settings",
    summary="Set the auto-confirm period, reminder lead and shipping SLA",
    responses={200: {"model": SettingsOut}},
)
def put_settings(body: SettingsBody, request: Request, who: Actor = MANAGER) -> JSONResponse:
    c = container(request)
    with c.db.transaction() as conn:
        return ok(service.put_settings(conn, c.deps, who.merchant(), body.model_dump()))
