"""Today: the day's sales, payments by method, refunds, open exceptions and each till's sync state."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from tillit.backoffice.registry import MANAGER, Page
from tillit.backoffice.web import CTX, SHOP_TZ, Ctx
from tillit.sales import reports

router = APIRouter()
PAGE = Page(key="today", label="Today", path="/today", roles=MANAGER, router=router, order=10)


def day_window(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time.min, tzinfo=SHOP_TZ)
    return start, start + timedelta(days=1)


@router.get("/today", response_class=HTMLResponse)
async def today_page(
    ctx: Ctx = CTX, day: date | None = Query(None, description="YYYY-MM-DD, the shop's local day")
) -> HTMLResponse:
    c = ctx.container
    shown = day or c.deps.clock.now().astimezone(SHOP_TZ).date()
    start, end = day_window(shown)
    merchant_id = ctx.merchant_id

    def load() -> reports.TodayView:
        with c.db.read() as conn:
            return reports.today(conn, merchant_id, start, end)

    view = await run_in_threadpool(load)
    return ctx.render("pages/today.html", view=view, day=shown)
