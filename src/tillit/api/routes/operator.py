"""Operator routes: merchants, stores, terminals and API keys (admin keys only, except reads)."""

from __future__ import annotations

import json

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from tillit.access import keys, merchants
from tillit.api.deps import (
    ADMIN,
    ANY,
    IDEMPOTENCY_HEADER,
    IdPath,
    IdQuery,
    container,
    idempotent,
    key_cache,
    ok,
)
from tillit.api.schemas import ErrorOut, KeyCreate, MerchantCreate, StoreCreate, TerminalCreate
from tillit.domain.ids import normalise_id
from tillit.kernel.context import Actor

router = APIRouter(prefix="/v1", tags=["operator"], responses={"4XX": {"model": ErrorOut}})


@router.get("/me", summary="Who this API key is: role, merchant, store and terminal")
def me(who: Actor = ANY) -> JSONResponse:
    return ok(
        {
            "key_id": who.key_id,
            "role": who.role,
            "merchant_id": who.merchant_id,
            "store_id": who.store_id,
            "terminal_id": who.terminal_id,
        }
    )


@router.post("/merchants", status_code=201, summary="Create a merchant (operator)")
def create_merchant(
    body: MerchantCreate, request: Request, who: Actor = ADMIN, key: str | None = IDEMPOTENCY_HEADER
) -> Response:
    c = container(request)
    return idempotent(
        request,
        who,
        key,
        body.model_dump(),
        lambda conn: (201, merchants.create_merchant(conn, c.deps, name=body.name, currency=body.currency)),
    )


@router.get("/merchants", summary="List merchants (operator)")
def list_merchants(
    request: Request,
    who: Actor = ADMIN,
    limit: int = Query(50, ge=1, le=200),
    after: str | None = Query(None, max_length=36),
) -> JSONResponse:
    with container(request).db.read() as conn:
        rows = merchants.list_merchants(conn, limit=limit, after=after)
    return ok({"data": rows, "next": rows[-1]["id"] if len(rows) == limit else None})


@router.get("/merchants/{merchant_id}", summary="Read a merchant (operator, or the merchant itself)")
def get_merchant(merchant_id: IdPath, request: Request, who: Actor = ANY) -> JSONResponse:
    with container(request).db.read() as conn:
        return ok(merchants.get_merchant(conn, who, normalise_id(merchant_id)))


@router.post("/stores", status_code=201, summary="Create a store for a merchant (operator)")
def create_store(
    body: StoreCreate, request: Request, who: Actor = ADMIN, key: str | None = IDEMPOTENCY_HEADER
) -> Response:
    c = container(request)
    merchant_id = normalise_id(body.merchant_id, "merchant_id")
    return idempotent(
        request,
        who,
        key,
        body.model_dump(),
        lambda conn: (201, merchants.create_store(conn, c.deps, merchant_id=merchant_id, name=body.name)),
    )


@router.get("/stores", summary="List stores (a merchant's own; operators may filter by merchant_id)")
def list_stores(
    request: Request, who: Actor = ANY, merchant_id: IdQuery = None
) -> JSONResponse:
    with container(request).db.read() as conn:
        scope = normalise_id(merchant_id, "merchant_id") if merchant_id else None
        return ok({"data": merchants.list_stores(conn, who, scope)})


@router.get("/stores/{store_id}", summary="Read a store")
def get_store(store_id: IdPath, request: Request, who: Actor = ANY) -> JSONResponse:
    with container(request).db.read() as conn:
        return ok(merchants.get_store(conn, who, normalise_id(store_id)))


@router.post("/terminals", status_code=201, summary="Create a terminal in a store (operator)")
def create_terminal(
    body: TerminalCreate, request: Request, who: Actor = ADMIN, key: str | None = IDEMPOTENCY_HEADER
) -> Response:
    c = container(request)
    store_id = normalise_id(body.store_id, "store_id")
    return idempotent(
        request,
        who,
        key,
        body.model_dump(),
        lambda conn: (201, merchants.create_terminal(conn, c.deps, store_id=store_id, name=body.name)),
    )


@router.get("/terminals", summary="List terminals")
def list_terminals(
    request: Request, who: Actor = ANY, merchant_id: IdQuery = None
) -> JSONResponse:
    with container(request).db.read() as conn:
        scope = normalise_id(merchant_id, "merchant_id") if merchant_id else None
        return ok({"data": merchants.list_terminals(conn, who, scope)})


@router.get("/terminals/{terminal_id}", summary="Read a terminal")
def get_terminal(terminal_id: IdPath, request: Request, who: Actor = ANY) -> JSONResponse:
    with container(request).db.read() as conn:
        return ok(merchants.get_terminal(conn, who, normalise_id(terminal_id)))


@router.post("/api-keys", status_code=201, summary="Create an API key; the secret is in this answer only")
def create_key(
    body: KeyCreate, request: Request, who: Actor = ADMIN, key: str | None = IDEMPOTENCY_HEADER
) -> Response:
    c = container(request)
    secrets: list[str] = []

    def op(conn):  # type: ignore[no-untyped-def]
        record, secret = keys.create_key(
            conn,
            c.deps,
            role=body.role,
            name=body.name,
            merchant_id=normalise_id(body.merchant_id, "merchant_id") if body.merchant_id else None,
            terminal_id=normalise_id(body.terminal_id, "terminal_id") if body.terminal_id else None,
        )
        secrets.append(secret)
        return 201, record

    response = idempotent(request, who, key, body.model_dump(), op)
    if response.status_code != 201:
        return response
    # The secret is never stored, not even in the idempotency record: only the first answer has it. A
    # replay says so (`secret_shown: false`, `Secret-Withheld: replay`), so a client that lost the first
    # answer knows to revoke this key and create another. The answer is rebuilt, so none of the stored
    # answer's headers (its Content-Length above all) may be copied: only the replay marker is kept.
    payload = json.loads(bytes(response.body))
    shown = bool(secrets)
    payload["secret"] = secrets[0] if shown else None
    payload["secret_shown"] = shown
    headers = {} if shown else {"Idempotent-Replayed": "true", "Secret-Withheld": "replay"}
    return JSONResponse(payload, status_code=201, headers=headers)


@router.get("/api-keys", summary="List API keys (no secrets)")
def list_keys(
    request: Request, who: Actor = ADMIN, merchant_id: IdQuery = None
) -> JSONResponse:
    with container(request).db.read() as conn:
        return ok({"data": keys.list_keys(conn, normalise_id(merchant_id) if merchant_id else None)})


@router.post("/api-keys/{key_id}/revoke", summary="Revoke an API key")
def revoke_key(key_id: IdPath, request: Request, who: Actor = ADMIN) -> JSONResponse:
    c = container(request)
    with c.db.transaction() as conn:
        revoked = keys.revoke_key(conn, c.deps, normalise_id(key_id))
    key_cache(request).forget(revoked["id"])  # at once here; other processes within KEY_CACHE_TTL_S
    return ok(revoked)
