"""What the cashier station needs from the server besides sales: tile images and the store's till rules."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from tillit.access import receipt_keys
from tillit.api.deps import CASHIER, MANAGER, STAFF, IdPath, container, ok
from tillit.api.schemas import (
    ErrorOut,
    ProductOut,
    ReceiptKeyOut,
    ReceiptKeyRevokedOut,
    TerminalTillSettingsOut,
    TillSettingsIn,
    TillSettingsOut,
)
from tillit.domain.errors import DomainError, ErrorKind
from tillit.domain.ids import normalise_id
from tillit.kernel.context import Actor
from tillit.sales import catalog, tiles

router = APIRouter(prefix="/v1", tags=["till station"], responses={"4XX": {"model": ErrorOut}})

IMAGE_BODY = {
    "required": True,
    "content": {t: {"schema": {"type": "string", "format": "binary"}} for t in tiles.IMAGE_TYPES},
}


@router.put(
    "/products/{product_id}/image",
    summary="Set a product's till tile image (manager; PNG, JPEG, WebP or GIF, at most 200 kB)",
    responses={200: {"model": ProductOut}},
    openapi_extra={"requestBody": IMAGE_BODY},
)
async def put_image(product_id: IdPath, request: Request, who: Actor = MANAGER) -> JSONResponse:
    c = container(request)
    data = await request.body()
    content_type = request.headers.get("content-type", "")
    merchant_id, pid = who.merchant(), normalise_id(product_id)

    def write() -> JSONResponse:
        with c.db.transaction() as conn:
            catalog.get_product(conn, merchant_id, pid)  # 404 for another merchant's or an unknown id
            tiles.set_image(conn, c.deps, merchant_id, pid, content_type, data)
            return ok(catalog.get_product(conn, merchant_id, pid))

    return await run_in_threadpool(write)


@router.get(
    "/products/{product_id}/image",
    summary="A product's tile image (cacheable: its URL carries the digest)",
    responses={200: {"content": {t: {} for t in tiles.IMAGE_TYPES}}},
)
def get_image(product_id: IdPath, request: Request, who: Actor = STAFF) -> Response:
    with container(request).db.read() as conn:
        content_type, data, digest = tiles.get_image(conn, who.merchant(), normalise_id(product_id))
    etag = f'"{digest[:32]}"'
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers={"ETag": etag})
    return Response(
        data, media_type=content_type, headers={"ETag": etag, "Cache-Control": "private, max-age=86400"}
    )


@router.put(
    "/stores/{store_id}/till-settings",
    summary="Set a store's till rules: discount limit, 抹零 rounding, managers' PINs (manager)",
    responses={200: {"model": TillSettingsOut}},
)
def put_settings(
    store_id: IdPath, body: TillSettingsIn, request: Request, who: Actor = MANAGER
) -> JSONResponse:
    c = container(request)
    with c.db.transaction() as conn:
        return ok(
            tiles.put_settings(
                conn,
                c.deps,
                who.merchant(),
                normalise_id(store_id),
                discount_limit_pct=body.discount_limit_pct,
                rounding=body.rounding,
                managers=[(m.name, m.pin) for m in body.managers] if body.managers is not None else None,
            )
        )


@router.get(
    "/stores/{store_id}/till-settings",
    summary="Read a store's till rules (manager; the PINs are never returned)",
    responses={200: {"model": TillSettingsOut}},
)
def get_settings(store_id: IdPath, request: Request, who: Actor = MANAGER) -> JSONResponse:
    with container(request).db.read() as conn:
        return ok(tiles.get_settings(conn, who.merchant(), normalise_id(store_id)))


@router.get(
    "/till/settings",
    summary="The calling terminal's store till rules, with the managers' PIN hashes for offline checks",
    responses={200: {"model": TerminalTillSettingsOut}},
)
def terminal_settings(request: Request, who: Actor = CASHIER) -> JSONResponse:
    if who.store_id is None:
        raise DomainError("forbidden", "Only a terminal key has a store.", ErrorKind.FORBIDDEN)
    with container(request).db.read() as conn:
        return ok(tiles.terminal_settings(conn, who.merchant(), who.store_id))


@router.get(
    "/till/receipt-key",
    summary="The calling terminal's receipt-link key: the till signs the QR on its paper receipts with it "
    "(made on first call; docs/notifications.md)",
    responses={200: {"model": ReceiptKeyOut}},
)
def receipt_key(request: Request, who: Actor = CASHIER) -> JSONResponse:
    c = container(request)
    assert c.signing_key is not None, "build() loads the signing key"
    with c.db.transaction() as conn:
        issued = receipt_keys.issue(conn, c.deps, who, c.signing_key)
    return ok(
        {
            "key_id": issued.key_id,
            "key": issued.key,
            "terminal_id": issued.terminal_id,
            "base_url": c.settings.public_url,
            "link": "{base_url}/r/{key_id}/{order_id}/{mac}",
        }
    )


@router.post(
    "/terminals/{terminal_id}/receipt-key/revoke",
    summary="Revoke a terminal's receipt-link key (manager): every receipt link it printed answers 404; "
    "the till gets a new key at its next refresh",
    responses={200: {"model": ReceiptKeyRevokedOut}},
)
def revoke_receipt_key(terminal_id: IdPath, request: Request, who: Actor = MANAGER) -> JSONResponse:
    c = container(request)
    tid = normalise_id(terminal_id)
    with c.db.transaction() as conn:
        revoked = receipt_keys.revoke(conn, c.deps, who.merchant(), tid)
    return ok({"terminal_id": tid, "revoked": revoked})
