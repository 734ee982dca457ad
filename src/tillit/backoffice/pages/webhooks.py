"""The merchant's webhook endpoint (ful21): list it with its delivery state (last attempt, failures, next
retry), add one (the URL checked, the signing secret made here and shown once, on the answer to the form,
never again), rotate the secret (the new one shown once), disable or enable it, delete it, and see the
latest deliveries. The API (``/v1/webhook-endpoint``) manages the same endpoint with a secret the merchant
chooses. Every query is scoped by the signed-in merchant: another merchant's endpoint id is a 404."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Form
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from tillit.backoffice.registry import MANAGER, Page
from tillit.backoffice.web import CTX, Ctx
from tillit.domain.errors import DomainError, invalid
from tillit.domain.ids import normalise_id
from tillit.notifications import endpoints

router = APIRouter()
PAGE = Page(key="webhooks", label="Webhooks", path="/webhooks", roles=MANAGER, router=router, order=55)


def _values(ctx: Ctx) -> dict[str, Any]:
    with ctx.container.db.read() as conn:
        return {
            "endpoints": endpoints.list_endpoints(conn, ctx.merchant_id),
            "state": endpoints.delivery_state(conn, ctx.merchant_id),
            "deliveries": endpoints.recent_deliveries(conn, ctx.merchant_id),
        }


def _page(ctx: Ctx, status: int = 200, **values: Any) -> HTMLResponse:
    response = ctx.render("pages/webhooks.html", status, **_values(ctx), **values)
    response.headers["Cache-Control"] = "no-store"  # a fresh secret may be on it
    return response


def _refused(ctx: Ctx, exc: DomainError, **values: Any) -> HTMLResponse:
    if exc.kind.value == "not_found":
        raise exc
    text = ctx.t("Refused ({code}): {message}", code=exc.code, message=exc.message)
    status = 409 if exc.kind.value == "conflict" else 422
    return _page(ctx, status, message=text, message_kind="error", **values)


def _endpoint_id(raw: str) -> str:
    return normalise_id(raw, "endpoint_id")


@router.get("/webhooks", response_class=HTMLResponse)
async def webhooks_page(ctx: Ctx = CTX) -> HTMLResponse:
    return await run_in_threadpool(_page, ctx)


@router.get("/webhooks/deliveries", response_class=HTMLResponse)
async def deliveries(ctx: Ctx = CTX) -> HTMLResponse:
    """The delivery state and the latest deliveries alone (htmx refreshes them in place)."""

    def run() -> HTMLResponse:
        return ctx.render("pages/webhook_deliveries.html", **_values(ctx))

    return await run_in_threadpool(run)


@router.post("/webhooks", response_class=HTMLResponse)
async def add_endpoint(ctx: Ctx = CTX, url: str = Form("", max_length=1000)) -> HTMLResponse:
    c = ctx.container

    def run() -> HTMLResponse:
        try:
            with c.db.transaction() as conn:
                view, secret = endpoints.create_endpoint(conn, c.deps, ctx.merchant_id, url)
        except DomainError as exc:
            return _refused(ctx, exc, typed_url=url[: endpoints.MAX_URL])
        message = ctx.t("Webhook endpoint {url} added.", url=view["url"])
        return _page(ctx, message=message, message_kind="ok", new_secret=secret, secret_for=view["id"])

    return await run_in_threadpool(run)


@router.post("/webhooks/{endpoint_id}/rotate", response_class=HTMLResponse)
async def rotate(endpoint_id: str, ctx: Ctx = CTX) -> HTMLResponse:
    c = ctx.container
    eid = _endpoint_id(endpoint_id)

    def run() -> HTMLResponse:
        with c.db.transaction() as conn:  # another merchant's id: not_found, the 404 page
            view, secret = endpoints.rotate_secret(conn, c.deps, ctx.merchant_id, eid)
        message = ctx.t("A new secret was made: the old one no longer signs messages.")
        return _page(ctx, message=message, message_kind="ok", new_secret=secret, secret_for=view["id"])

    return await run_in_threadpool(run)


@router.post("/webhooks/{endpoint_id}/enabled", response_class=HTMLResponse)
async def enable(endpoint_id: str, ctx: Ctx = CTX, enabled: str = Form("", max_length=1)) -> HTMLResponse:
    c = ctx.container
    eid = _endpoint_id(endpoint_id)

    def run() -> HTMLResponse:
        try:
            with c.db.transaction() as conn:
                endpoints.find_endpoint(conn, ctx.merchant_id, eid)  # another merchant's id: the 404 page
                if enabled not in ("0", "1"):
                    raise invalid("invalid_form", "enabled must be 0 or 1.")
                view = endpoints.set_enabled(conn, c.deps, ctx.merchant_id, eid, enabled == "1")
        except DomainError as exc:
            return _refused(ctx, exc)
        text = ctx.t("Webhook endpoint enabled.") if view["enabled"] else ctx.t("Webhook endpoint disabled.")
        return _page(ctx, message=text, message_kind="ok")

    return await run_in_threadpool(run)


@router.post("/webhooks/{endpoint_id}/delete", response_class=HTMLResponse)
async def delete(endpoint_id: str, ctx: Ctx = CTX) -> HTMLResponse:
    c = ctx.container
    eid = _endpoint_id(endpoint_id)

    def run() -> HTMLResponse:
        with c.db.transaction() as conn:
            view = endpoints.delete_endpoint(conn, ctx.merchant_id, eid)
        message = ctx.t("Webhook endpoint {url} deleted.", url=view["url"])
        return _page(ctx, message=message, message_kind="ok")

    return await run_in_threadpool(run)
