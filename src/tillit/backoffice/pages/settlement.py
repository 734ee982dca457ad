"""Settlement and fees pages (settle12; docs/settlement.md): each merchant-day's settlement with the
"not credited" (未到账) days explained, and the fee contracts with the 跳码 evidence and monthly leakage.

Operators (admin keys) see every merchant; a merchant sees only its own (every query is scoped)."""

from __future__ import annotations

from datetime import date

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from tillit.backoffice.registry import Page
from tillit.backoffice.web import CTX, Ctx
from tillit.domain.errors import not_found
from tillit.domain.ids import normalise_id
from tillit.domain.settlement import NEXT_ACTION, STATUSES
from tillit.fees import contracts
from tillit.reconciliation import fee_check
from tillit.settlement import service

ROLES = frozenset({"admin", "merchant"})
router = APIRouter()
PAGE = Page(
    key="settlement",
    label="Settlement",
    path="/settlement",
    roles=ROLES,
    router=router,
    section="operator",
    order=40,
)
FEES_PAGE = Page(
    key="fees", label="Fees and 跳码", path="/fees", roles=ROLES, router=router, section="operator", order=41
)
SHOWN = 200


def _scope(ctx: Ctx) -> str | None:
    return ctx.actor.merchant_id  # None for an operator: every merchant


def _action(ctx: Ctx, status: str) -> str:
    en, zh = NEXT_ACTION[status]
    return zh if ctx.locale == "zh_CN" else en


@router.get("/settlement", response_class=HTMLResponse)
async def settlement_page(
    ctx: Ctx = CTX, status: str | None = Query(None, pattern="^(" + "|".join(STATUSES) + ")$")
) -> HTMLResponse:
    scope = _scope(ctx)

    def load() -> HTMLResponse:
        with ctx.container.db.read() as conn:
            days = service.list_days(conn, scope, status=status, limit=SHOWN)
        return ctx.render(
            "pages/settlement.html", days=days, filter_status=status, action=lambda s: _action(ctx, s)
        )

    return await run_in_threadpool(load)


@router.get("/settlement/{merchant_id}/{provider}/{trade_day}", response_class=HTMLResponse)
async def settlement_day(merchant_id: str, provider: str, trade_day: date, ctx: Ctx = CTX) -> HTMLResponse:
    mid = normalise_id(merchant_id, "merchant_id")
    scope = _scope(ctx)
    if scope is not None and scope != mid:
        raise not_found("settlement_day", f"{provider}/{trade_day.isoformat()}")
    if provider not in ("wechat", "alipay"):
        raise not_found("settlement_day", f"{provider}/{trade_day.isoformat()}")

    def load() -> HTMLResponse:
        with ctx.container.db.read() as conn:
            day = service.get_day(conn, mid, provider, trade_day)
            lines = service.day_lines(conn, mid, provider, trade_day)
        return ctx.render(
            "pages/settlement_day.html", day=day, lines=lines, next_action=_action(ctx, day["status"])
        )

    return await run_in_threadpool(load)


@router.get("/fees", response_class=HTMLResponse)
async def fees_page(ctx: Ctx = CTX) -> HTMLResponse:
    scope = _scope(ctx)
    today = ctx.container.deps.clock.now().date()

    def load() -> HTMLResponse:
        with ctx.container.db.read() as conn:
            signed = contracts.list_contracts(conn, scope)
            jumps = fee_check.list_findings(conn, scope, finding_class="code_jump", limit=SHOWN)
            mismatches = fee_check.list_findings(conn, scope, finding_class="fee_mismatch", limit=SHOWN)
            leakage = fee_check.leakage_by_month(conn, scope, since=date(today.year - 1, 1, 1), until=today)
        return ctx.render(
            "pages/fees.html", contracts=signed, jumps=jumps, mismatches=mismatches, leakage=leakage
        )

    return await run_in_threadpool(load)
