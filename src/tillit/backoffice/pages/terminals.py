"""Terminals and their keys: add a till to one of the merchant's stores, issue a terminal key (its secret
shown once, on the answer to the form, and never again), revoke a terminal key."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Form
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from tillit.access import keys, merchants
from tillit.backoffice.registry import MANAGER, Page
from tillit.backoffice.web import CTX, Ctx
from tillit.domain.errors import DomainError, invalid, not_found
from tillit.domain.ids import normalise_id

router = APIRouter()
PAGE = Page(
    key="terminals", label="Terminals and keys", path="/terminals", roles=MANAGER, router=router, order=50
)


def _page(ctx: Ctx, status: int = 200, **values: Any) -> HTMLResponse:
    with ctx.container.db.read() as conn:
        tills = merchants.list_terminals(conn, ctx.actor)
        stores = merchants.list_stores(conn, ctx.actor)
        all_keys = keys.list_keys(conn, ctx.merchant_id)
    by_till: dict[str, list[Any]] = {t["id"]: [] for t in tills}
    for k in all_keys:
        if k["role"] == "terminal" and k["terminal_id"] in by_till:
            by_till[k["terminal_id"]].append(k)
    store_names = {s["id"]: s["name"] for s in stores}
    return ctx.render(
        "pages/terminals.html",
        status,
        tills=tills,
        stores=stores,
        store_names=store_names,
        keys=by_till,
        **values,
    )


def _name(text: str) -> str:
    name = text.strip()
    if not 1 <= len(name) <= 200:
        raise invalid("invalid_name", "name: 1 to 200 characters.")
    return name


def _refused(ctx: Ctx, exc: DomainError) -> HTMLResponse:
    if exc.kind.value == "not_found":
        raise exc
    text = ctx.t("Refused ({code}): {message}", code=exc.code, message=exc.message)
    return _page(ctx, 409 if exc.kind.value == "conflict" else 422, message=text, message_kind="error")


@router.get("/terminals", response_class=HTMLResponse)
async def terminals_page(ctx: Ctx = CTX) -> HTMLResponse:
    return await run_in_threadpool(_page, ctx)


@router.post("/terminals", response_class=HTMLResponse)
async def create_terminal(
    ctx: Ctx = CTX, store_id: str = Form(..., max_length=45), name: str = Form("", max_length=200)
) -> HTMLResponse:
    c = ctx.container

    def run() -> HTMLResponse:
        try:
            with c.db.transaction() as conn:
                store = merchants.get_store(
                    conn, ctx.actor, normalise_id(store_id, "store_id")
                )  # own store only
                made = merchants.create_terminal(conn, c.deps, store_id=store["id"], name=_name(name))
        except DomainError as exc:
            return _refused(ctx, exc)
        return _page(ctx, message=ctx.t("Terminal {name} created.", name=made["name"]), message_kind="ok")

    return await run_in_threadpool(run)


@router.post("/terminals/{terminal_id}/keys", response_class=HTMLResponse)
async def create_key(terminal_id: str, ctx: Ctx = CTX, name: str = Form("", max_length=200)) -> HTMLResponse:
    c = ctx.container
    tid = normalise_id(terminal_id, "terminal_id")

    def run() -> HTMLResponse:
        try:
            with c.db.transaction() as conn:
                merchants.get_terminal(conn, ctx.actor, tid)  # another merchant's terminal: 404
                view, secret = keys.create_key(
                    conn,
                    c.deps,
                    role="terminal",
                    name=_name(name),
                    merchant_id=ctx.merchant_id,
                    terminal_id=tid,
                )
        except DomainError as exc:
            return _refused(ctx, exc)
        # The secret is in this answer only (as the API's POST /v1/api-keys); it is stored as a hash.
        response = _page(ctx, new_key=view, new_secret=secret)
        response.headers["Cache-Control"] = "no-store"
        return response

    return await run_in_threadpool(run)


@router.post("/keys/{key_id}/revoke", response_class=HTMLResponse)
async def revoke_key(key_id: str, ctx: Ctx = CTX) -> HTMLResponse:
    c = ctx.container
    kid = normalise_id(key_id, "key_id")

    def run() -> HTMLResponse:
        with c.db.transaction() as conn:
            mine = {k["id"]: k for k in keys.list_keys(conn, ctx.merchant_id)}
            # Only this merchant's terminal keys: its own manager keys are the operator's to revoke.
            if kid not in mine or mine[kid]["role"] != "terminal":
                raise not_found("api_key", kid)
            view = keys.revoke_key(conn, c.deps, kid)
        ctx.request.app.state.key_cache.forget(kid)  # this server stops accepting it at once
        return _page(ctx, message=ctx.t("Key {prefix}… revoked.", prefix=view["prefix"]), message_kind="ok")

    return await run_in_threadpool(run)
