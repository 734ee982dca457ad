"""Shifts and Z reports: each till's closed shifts, one report, and the hash chain re-verified on the page."""

from __future__ import annotations

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from tillit.backoffice.registry import MANAGER, Page
from tillit.backoffice.web import CTX, Ctx
from tillit.domain.ids import normalise_id
from tillit.sales import reports, shifts

router = APIRouter()
PAGE = Page(
    key="shifts", label="Shifts and Z reports", path="/shifts", roles=MANAGER, router=router, order=30
)
SHOWN = 200


@router.get("/shifts", response_class=HTMLResponse)
async def shifts_page(ctx: Ctx = CTX) -> HTMLResponse:
    c, merchant_id = ctx.container, ctx.merchant_id

    def load() -> HTMLResponse:
        with c.db.read() as conn:
            rows = shifts.list_shifts(conn, merchant_id, None, SHOWN)
            tills = {t["terminal_id"]: t["name"] for t in reports.till_names(conn, merchant_id)}
        return ctx.render("pages/shifts.html", rows=rows, tills=tills, checks=None)

    return await run_in_threadpool(load)


@router.get("/shifts/verify", response_class=HTMLResponse)
async def verify(ctx: Ctx = CTX, terminal_id: str | None = Query(None, max_length=45)) -> HTMLResponse:
    """Recompute every Z report's hash and link (reports.verify_chains); htmx swaps in the result."""
    c, merchant_id = ctx.container, ctx.merchant_id
    tid = normalise_id(terminal_id, "terminal_id") if terminal_id else None

    def load() -> list[reports.ChainCheck]:
        with c.db.read() as conn:
            return reports.verify_chains(conn, merchant_id, tid)

    checks = await run_in_threadpool(load)
    template = "pages/chain.html" if ctx.request.headers.get("hx-request") else "pages/chain_page.html"
    return ctx.render(template, checks=checks)


@router.get("/shifts/{shift_id}", response_class=HTMLResponse)
async def shift_page(shift_id: str, ctx: Ctx = CTX) -> HTMLResponse:
    c, merchant_id = ctx.container, ctx.merchant_id
    sid = normalise_id(shift_id, "shift_id")

    def load() -> HTMLResponse:
        with c.db.read() as conn:
            shift = reports.get_shift(conn, merchant_id, sid)
        return ctx.render("pages/shift.html", shift=shift)

    return await run_in_threadpool(load)
