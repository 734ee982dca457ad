"""Integrity-engine routes: provider accounts (operator), exceptions (managers), provider notifications."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import Field

from tillit.api.deps import ADMIN, ANY, MANAGER, OVERSEER, IdPath, container, ok
from tillit.api.schemas import ErrorOut, Strict
from tillit.domain.errors import invalid, not_found
from tillit.domain.ids import normalise_id
from tillit.exceptions import cases as exc_svc
from tillit.kernel.context import Actor
from tillit.payments import accounts as provider_accounts
from tillit.payments import notifications

router = APIRouter(prefix="/v1", tags=["integrity"], responses={"4XX": {"model": ErrorOut}})
notify_router = APIRouter(prefix="/v1", tags=["provider callbacks"])

MAX_NOTIFY_BYTES = 16 * 1024


class ExceptionResolve(Strict):
    resolution: Annotated[
        str, Field(min_length=3, max_length=500, description="What was done, for the audit")
    ]


@router.put("/merchants/{merchant_id}/providers/{provider}", summary="Set a merchant's WeChat/Alipay account")
def set_provider_account(
    merchant_id: IdPath,
    provider: str,
    request: Request,
    config: Annotated[dict[str, Any], Body(description="Account settings; secrets are never returned")],
    who: Actor = ADMIN,
) -> JSONResponse:
    c = container(request)
    if len(config) > 20 or any(not isinstance(v, str | int | float) for v in config.values()):
        raise invalid("provider_config_incomplete", "Account settings are at most 20 flat values.")
    with c.db.transaction() as conn:
        return ok(provider_accounts.set_account(conn, c.deps, normalise_id(merchant_id), provider, config))


@router.get("/merchants/{merchant_id}/providers", summary="A merchant's provider accounts (no secrets)")
def list_provider_accounts(merchant_id: IdPath, request: Request, who: Actor = ANY) -> JSONResponse:
    mid = normalise_id(merchant_id)
    if who.role != "admin" and who.merchant_id != mid:
        raise not_found("merchant", mid)
    with container(request).db.read() as conn:
        return ok({"data": provider_accounts.list_accounts(conn, mid)})


@router.get("/exceptions", summary="Needs attention: what the engine could not settle itself")
def list_exceptions(
    request: Request,
    who: Actor = OVERSEER,
    status: str | None = Query("open", pattern="^(open|resolved)$"),
    limit: int = Query(50, ge=1, le=200),
) -> JSONResponse:
    with container(request).db.read() as conn:
        return ok({"data": exc_svc.list_exceptions(conn, who.merchant_id, status, limit)})


@router.get("/exceptions/{exception_id}", summary="Read an exception")
def get_exception(exception_id: IdPath, request: Request, who: Actor = OVERSEER) -> JSONResponse:
    with container(request).db.read() as conn:
        return ok(exc_svc.view(exc_svc.get_exception(conn, who.merchant_id, normalise_id(exception_id))))


@router.post("/exceptions/{exception_id}/resolve", summary="Resolve an exception (audited)")
def resolve_exception(
    exception_id: IdPath, body: ExceptionResolve, request: Request, who: Actor = MANAGER
) -> JSONResponse:
    c = container(request)
    with c.db.transaction() as conn:
        return ok(
            exc_svc.resolve(conn, c.deps, who, normalise_id(exception_id), body.resolution, who.merchant_id)
        )


@notify_router.post(
    "/providers/alipay/notify",
    summary="Alipay asynchronous notification (authenticated by Alipay's signature, not an API key)",
    response_class=PlainTextResponse,
    responses={
        400: {"description": "`fail`: bad signature, unknown account", "content": {"text/plain": {}}},
        413: {"description": "`fail`: over the notification size limit", "content": {"text/plain": {}}},
    },
)
async def alipay_notify(request: Request) -> PlainTextResponse:
    raw = await request.body()
    if len(raw) > MAX_NOTIFY_BYTES:
        return PlainTextResponse("fail", status_code=413)
    try:
        form = dict(parse_qsl(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False))
    except UnicodeDecodeError:
        return PlainTextResponse("fail", status_code=400)
    from starlette.concurrency import run_in_threadpool

    outcome = await run_in_threadpool(_handle_alipay, request, form)
    if outcome in ("bad_signature", "unknown_account"):
        return PlainTextResponse("fail", status_code=400)
    return PlainTextResponse("success")


def _handle_alipay(request: Request, form: dict[str, str]) -> str:
    c = container(request)
    assert c.engine is not None
    app_id = form.get("app_id", "")
    with c.db.read() as conn:
        found = provider_accounts.find_by_ref(conn, "alipay", app_id)
        if found is None:
            return "unknown_account"
        merchant_id, account = found
        adapter = c.engine.providers.get(conn, merchant_id, "alipay")
    note = adapter.verify_notification(form)  # type: ignore[attr-defined]
    if note is None:
        return "bad_signature"
    with c.db.transaction() as conn:
        return notifications.record_alipay(conn, c.deps, merchant_id, account, note, form)
