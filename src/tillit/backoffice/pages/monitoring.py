"""Monitoring pages (mon13): analytics with server-rendered SVG charts and the cancellation heat map,
channel health, and alerts (acknowledge / resolve, CSRF-checked forms). They read the monitoring area's
use cases with the session's merchant; CSV exports of every analytics table sit beside the charts."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Annotated

from fastapi import APIRouter, Form, Path, Query
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import Markup
from starlette.concurrency import run_in_threadpool

from tillit.backoffice.registry import MANAGER, OPERATOR, Page
from tillit.backoffice.web import BASE, CTX, SHOP_TZ, Ctx
from tillit.domain import alerts as rules
from tillit.domain.errors import DomainError, invalid
from tillit.domain.ids import normalise_id
from tillit.monitoring import alerts, analytics, charts, health
from tillit.monitoring.frames import Range

analytics_router = APIRouter()
health_router = APIRouter()
alerts_router = APIRouter()
ANALYTICS = Page(
    key="analytics",
    label="Analytics",
    path="/analytics",
    roles=MANAGER,
    router=analytics_router,
    section="analytics",
    order=10,
)
HEALTH = Page(
    key="channel-health",
    label="Channel health",
    path="/channel-health",
    roles=MANAGER | OPERATOR,
    router=health_router,
    section="analytics",
    order=20,
)
ALERTS = Page(
    key="alerts",
    label="Alerts",
    path="/alerts",
    roles=MANAGER,
    router=alerts_router,
    section="analytics",
    order=30,
)
OFFSET = 8 * 60  # the shop's day (SHOP_TZ) as minutes from UTC
MAX_DAYS = 92


def _range(ctx: Ctx, day: date | None, days: int) -> tuple[Range, date]:
    last = day or ctx.container.deps.clock.now().astimezone(SHOP_TZ).date()
    start = datetime.combine(last - timedelta(days=days - 1), time.min, tzinfo=SHOP_TZ)
    end = datetime.combine(last + timedelta(days=1), time.min, tzinfo=SHOP_TZ)
    return Range(ctx.merchant_id, start, end), last


async def _compute(ctx: Ctx, rng: Range) -> analytics.Analytics:
    c = ctx.container

    def load() -> analytics.Analytics:
        with c.db.read() as conn:
            return analytics.compute(conn, rng, utc_offset_minutes=OFFSET)

    return await run_in_threadpool(load)


DayQuery = Annotated[date | None, Query(description="YYYY-MM-DD, the last shop day shown")]
DaysQuery = Annotated[int, Query(ge=1, le=MAX_DAYS)]


@analytics_router.get("/analytics", response_class=HTMLResponse)
async def analytics_page(ctx: Ctx = CTX, day: DayQuery = None, days: DaysQuery = 1) -> HTMLResponse:
    rng, last = _range(ctx, day, days)
    result = await _compute(ctx, rng)
    lang = "zh" if ctx.locale == "zh_CN" else "en"
    svgs = {
        "by_hour": Markup(charts.bar_chart(ctx.t("Sales by hour"), result.by_hour)),
        "by_day": Markup(charts.bar_chart(ctx.t("Sales by day"), result.by_day)),
        "by_method": Markup(charts.bar_chart(ctx.t("Sales by method"), result.by_method)),
        "by_product": Markup(charts.bar_chart(ctx.t("Sales by product"), result.by_product[:24])),
        "heatmap": Markup(charts.heat_map(result.failures, lang=lang)),
    }
    return ctx.render(
        "pages/analytics.html", result=result, svgs=svgs, day=last, days=days, tables=analytics.TABLES
    )


@analytics_router.get("/analytics/{table}.csv")
async def analytics_csv(
    table: Annotated[str, Path(pattern="^(" + "|".join(analytics.TABLES) + ")$")],
    ctx: Ctx = CTX,
    day: DayQuery = None,
    days: DaysQuery = 1,
) -> Response:
    rng, _ = _range(ctx, day, days)
    result = await _compute(ctx, rng)
    return Response(
        analytics.to_csv(result.table(table)),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{table}.csv"'},
    )


@health_router.get("/channel-health", response_class=HTMLResponse)
async def health_page(ctx: Ctx = CTX) -> HTMLResponse:
    c = ctx.container
    scope = None if ctx.actor.role == "admin" else ctx.merchant_id

    def load() -> list[health.ChannelHealth]:
        with c.db.read() as conn:
            return health.measure(conn, c.deps.clock.now(), merchant_id=scope)

    rows = await run_in_threadpool(load)
    return ctx.render("pages/channel_health.html", rows=rows, everyone=scope is None)


@alerts_router.get("/alerts", response_class=HTMLResponse)
async def alerts_page(ctx: Ctx = CTX) -> HTMLResponse:
    c = ctx.container
    merchant_id = ctx.merchant_id

    def load() -> tuple[list[alerts.AlertView], list[alerts.RuleView]]:
        with c.db.read() as conn:
            return alerts.list_alerts(conn, merchant_id, limit=200), alerts.list_rules(conn, merchant_id)

    found, rules = await run_in_threadpool(load)
    return ctx.render("pages/alerts.html", alerts=found, rules=rules)


async def _move(ctx: Ctx, alert_id: str, target: str, reason: str) -> Response:
    c = ctx.container
    merchant_id = ctx.merchant_id

    def write() -> None:
        with c.db.transaction() as conn:
            alerts.move(conn, c.deps, merchant_id, alert_id, target, ctx.actor.label, reason[:500] or target)

    await run_in_threadpool(write)
    return RedirectResponse(f"{BASE}/alerts", status_code=303)


AlertId = Annotated[str, Path(max_length=45)]
Reason = Annotated[str, Form(max_length=500)]


@alerts_router.post("/alerts/{alert_id}/acknowledge")
async def acknowledge(alert_id: AlertId, ctx: Ctx = CTX, reason: Reason = "") -> Response:
    return await _move(ctx, alert_id, "acknowledged", reason or "acknowledged on the back office")


@alerts_router.post("/alerts/{alert_id}/resolve")
async def resolve(alert_id: AlertId, ctx: Ctx = CTX, reason: Reason = "") -> Response:
    return await _move(ctx, alert_id, "resolved", reason or "resolved on the back office")


# --- alert rules: edit thresholds, window, spike factor, channels, language (bo13b) ---------------------

RuleId = Annotated[str, Path(max_length=45)]


def _rule_page(ctx: Ctx, rule_id: str, status: int = 200, **values: object) -> HTMLResponse:
    c, merchant_id = ctx.container, ctx.merchant_id
    with c.db.read() as conn:
        rule = alerts.get_rule(conn, merchant_id, rule_id)
        changes = alerts.rule_changes(conn, merchant_id, rule.id)
    return ctx.render(
        "pages/alert_rule.html",
        status,
        rule=rule,
        changes=list(reversed(changes)),
        unit=rules.RULE_KINDS[rule.kind].unit,
        **values,
    )


@alerts_router.get("/alerts/rules/{rule_id}", response_class=HTMLResponse)
async def rule_form(rule_id: RuleId, ctx: Ctx = CTX) -> HTMLResponse:
    return await run_in_threadpool(_rule_page, ctx, normalise_id(rule_id, "rule_id"))


def _whole(text: str, field: str) -> int:
    value = text.strip()
    if not (value.isdigit() and len(value) <= 9):
        raise invalid(f"alert_rule_{field}_invalid", f"{field}: a whole number.")
    return int(value)


@alerts_router.post("/alerts/rules/{rule_id}", response_class=HTMLResponse)
async def edit_rule(
    rule_id: RuleId,
    ctx: Ctx = CTX,
    name: str = Form("", max_length=200),
    threshold: str = Form("", max_length=12),
    window_minutes: str = Form("", max_length=12),
    min_attempts: str = Form("", max_length=12),
    provider: str = Form("all", pattern="^(all|wechat|alipay)$"),
    channels: str = Form("", max_length=1200),
    locale: str = Form("zh-CN", pattern="^(zh-CN|en)$"),
) -> HTMLResponse:
    c, merchant_id = ctx.container, ctx.merchant_id
    rid = normalise_id(rule_id, "rule_id")

    def run() -> HTMLResponse:
        try:
            edit = alerts.RuleEdit(
                name=name.strip(),
                threshold=_whole(threshold, "threshold"),
                window_minutes=_whole(window_minutes, "window"),
                min_attempts=_whole(min_attempts, "min_attempts"),
                provider="" if provider == "all" else provider,
                channels=tuple(line.strip() for line in channels.splitlines() if line.strip()),
                locale=locale,
            )
            with c.db.transaction() as conn:
                alerts.update_rule(conn, c.deps, merchant_id, rid, edit, ctx.actor.label)
        except DomainError as exc:
            if exc.kind.value == "not_found":
                raise
            status = 409 if exc.kind.value == "conflict" else 422
            message = ctx.t("Refused ({code}): {message}", code=exc.code, message=exc.message)
            return _rule_page(ctx, rid, status, message=message, message_kind="error")
        return _rule_page(ctx, rid, message=ctx.t("Rule saved."), message_kind="ok")

    return await run_in_threadpool(run)
