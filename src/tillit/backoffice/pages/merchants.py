"""Operator pages of the merchants area (issue 12): applications and the review queue, one merchant with
its documents (approve / reject with reasons), lifecycle actions, limits and onboarding with their audit
trails, and the blacklist. Operators act across merchants, so ids travel in the query or the form;
every action goes through the merchants use cases, and a refusal shows its stable code, writing nothing.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Form, Query
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from tillit.backoffice.registry import OPERATOR, Page
from tillit.backoffice.web import BASE, CTX, Ctx
from tillit.domain.errors import DomainError, invalid
from tillit.domain.ids import normalise_id
from tillit.merchants import blacklist, documents, lifecycle, limits, onboarding, review
from tillit.merchants.ports import MerchantsConfig

router = APIRouter()
PAGE = Page(
    key="merchants",
    label="Merchants",
    path="/merchants",
    roles=OPERATOR,
    router=router,
    section="operator",
    order=10,
)
blacklist_router = APIRouter()
BLACKLIST_PAGE = Page(
    key="blacklist",
    label="Blacklist",
    path="/blacklist",
    roles=OPERATOR,
    router=blacklist_router,
    section="operator",
    order=12,
)
STATUSES = ("under_review", "applied", "active", "suspended", "rejected", "terminated")


def _cfg(ctx: Ctx) -> MerchantsConfig:
    cfg = ctx.container.merchants
    if cfg is None:
        raise invalid("merchants_not_configured", "The merchants area is not configured.")
    return cfg


def _refusal(ctx: Ctx, exc: DomainError) -> str:
    return ctx.t("Refused ({code}): {message}", code=exc.code, message=exc.message)


@router.get("/merchants", response_class=HTMLResponse)
async def merchants_page(
    ctx: Ctx = CTX, status: str = Query("under_review", pattern="^(" + "|".join(STATUSES) + "|all)$")
) -> HTMLResponse:
    def run() -> HTMLResponse:
        with ctx.container.db.read() as conn:
            rows = lifecycle.list_profiles(
                conn, status=None if status == "all" else status, limit=200, after=None
            )
        return ctx.render("pages/merchants.html", rows=rows, current=status, statuses=STATUSES)

    return await run_in_threadpool(run)


def _merchant_page(ctx: Ctx, merchant_id: str, status: int = 200, **values: Any) -> HTMLResponse:
    c = ctx.container
    with c.db.read() as conn:
        profile = lifecycle.get_profile(conn, ctx.actor, merchant_id)
        docs = documents.list_documents(conn, merchant_id)
        events = lifecycle.history(conn, ctx.actor, merchant_id)
        rows = limits.list_limits(conn, c.deps, merchant_id)
        changes = limits.list_changes(conn, merchant_id, limit=50)
        apps = onboarding.list_applications(conn, merchant_id)
    return ctx.render(
        "pages/merchant.html",
        status,
        profile=profile,
        documents=docs,
        events=events,
        limits=rows,
        changes=changes,
        applications=apps,
        tiers=limits.tiers(),
        **values,
    )


@router.get("/merchants/view", response_class=HTMLResponse)
async def merchant_view(ctx: Ctx = CTX, id: str = Query(..., max_length=45)) -> HTMLResponse:
    mid = normalise_id(id, "merchant_id")
    return await run_in_threadpool(_merchant_page, ctx, mid)


def _amount(text: str) -> int | None:
    text = text.strip()
    if not text:
        return None
    if not text.isdigit() or int(text) <= 0:
        raise invalid("limit_invalid", "Limit amounts are positive whole fen, or empty for none.")
    return int(text)


@router.post("/merchants/act", response_class=HTMLResponse)
async def merchant_act(
    ctx: Ctx = CTX,
    merchant_id: str = Form(..., max_length=45),
    action: str = Form(..., max_length=20),
    reason: str = Form("", max_length=500),
    override_reason: str = Form("", max_length=500),
    document_id: str = Form("", max_length=45),
    scope: str = Form("merchant", max_length=45),
    method: str = Form("wechat", max_length=16),
    single_max: str = Form("", max_length=15),
    daily_max: str = Form("", max_length=15),
    monthly_max: str = Form("", max_length=15),
    provider: str = Form("wechat", max_length=16),
) -> HTMLResponse:
    c = ctx.container
    mid = normalise_id(merchant_id, "merchant_id")
    who = ctx.actor.label
    why = reason.strip()

    def run() -> HTMLResponse:
        try:
            with c.db.transaction() as conn:
                lifecycle.get_profile(conn, ctx.actor, mid)  # unknown merchant: the 404 page
                if action in ("doc_approve", "doc_reject"):
                    review.review_document(
                        conn,
                        c.deps,
                        mid,
                        normalise_id(document_id, "document_id"),
                        approve=action == "doc_approve",
                        reason=why or None,
                        actor=who,
                    )
                elif action == "approve":
                    review.approve(
                        c.db,
                        conn,
                        c.deps,
                        _cfg(ctx),
                        mid,
                        actor=who,
                        reason=why or None,
                        override_reason=override_reason.strip() or None,
                    )
                elif action == "reject":
                    review.reject(c.db, conn, c.deps, _cfg(ctx), mid, actor=who, reason=why or "rejected")
                elif action in ("suspend", "resume", "terminate"):
                    if len(why) < 3:
                        raise invalid("reason_required", "Give the reason, for the audit trail.")
                    move = {
                        "suspend": lifecycle.suspend,
                        "resume": lifecycle.resume,
                        "terminate": lifecycle.terminate,
                    }[action]
                    move(c.db, conn, c.deps, mid, who, why)
                elif action == "rereview":
                    review.complete_rereview(
                        conn, c.deps, _cfg(ctx), mid, actor=who, note=why or "re-reviewed"
                    )
                elif action == "limit":
                    if len(why) < 3:
                        raise invalid("reason_required", "Give the reason, for the audit trail.")
                    limits.set_limit(
                        conn,
                        c.deps,
                        mid,
                        scope=scope if scope == "merchant" else normalise_id(scope, "scope"),
                        method=method,
                        single_max=_amount(single_max),
                        daily_max=_amount(daily_max),
                        monthly_max=_amount(monthly_max),
                        actor=who,
                        reason=why,
                    )
                elif action == "onboard":
                    onboarding.submit(conn, c.deps, _cfg(ctx), mid, provider)
                else:
                    raise invalid("unknown_action", f"Unknown action {action!r}.")
        except DomainError as exc:
            if exc.kind.value == "not_found" and action not in ("doc_approve", "doc_reject"):
                raise
            code = {"conflict": 409, "forbidden": 403, "not_found": 404}.get(exc.kind.value, 422)
            return _merchant_page(
                ctx, mid, code, message=_refusal(ctx, exc), message_kind="error", refused_code=exc.code
            )
        return _merchant_page(ctx, mid, message=ctx.t("Done: {action}.", action=action), message_kind="ok")

    return await run_in_threadpool(run)


@blacklist_router.get("/blacklist", response_class=HTMLResponse)
async def blacklist_page(ctx: Ctx = CTX) -> HTMLResponse:
    return await run_in_threadpool(_blacklist_page, ctx)


def _blacklist_page(ctx: Ctx, status: int = 200, **values: Any) -> HTMLResponse:
    with ctx.container.db.read() as conn:
        rows = blacklist.list_entries(conn, include_removed=True, limit=500)
    return ctx.render("pages/blacklist.html", status, rows=rows, **values)


@blacklist_router.post("/blacklist", response_class=HTMLResponse)
async def blacklist_add(
    ctx: Ctx = CTX,
    kind: str = Form(..., max_length=16),
    value: str = Form(..., max_length=64),
    source: str = Form(..., max_length=100),
    reason: str = Form(..., max_length=500),
) -> HTMLResponse:
    c = ctx.container

    def run() -> HTMLResponse:
        try:
            if len(reason.strip()) < 3 or not source.strip():
                raise invalid("reason_required", "Give the source and the reason.")
            with c.db.transaction() as conn:
                entry = blacklist.add_entry(
                    c.db,
                    conn,
                    c.deps,
                    _cfg(ctx),
                    kind=kind,
                    value=value,
                    source=source.strip(),
                    reason=reason.strip(),
                    actor=ctx.actor.label,
                )
        except DomainError as exc:
            return _blacklist_page(
                ctx,
                409 if exc.kind.value == "conflict" else 422,
                message=_refusal(ctx, exc),
                message_kind="error",
            )
        text = ctx.t(
            "Added {shown}; {n} active merchant(s) suspended.",
            shown=entry["shown"],
            n=len(entry["suspended_merchants"]),
        )
        return _blacklist_page(ctx, message=text, message_kind="ok")

    return await run_in_threadpool(run)


@blacklist_router.post("/blacklist/remove", response_class=HTMLResponse)
async def blacklist_remove(ctx: Ctx = CTX, entry_id: str = Form(..., max_length=45)) -> Response:
    c = ctx.container
    eid = normalise_id(entry_id, "entry_id")

    def run() -> Response:
        with c.db.transaction() as conn:
            blacklist.remove_entry(conn, c.deps, eid, ctx.actor.label)
        return RedirectResponse(f"{BASE}/blacklist", status_code=303)

    return await run_in_threadpool(run)
