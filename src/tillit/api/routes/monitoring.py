"""Monitoring routes: analytics tables (JSON, CSV, SVG charts), channel health, alert rules and alerts
(acknowledge, resolve), and ``/metrics`` for Prometheus. Managers read their own merchant; operators
(admin keys) name the merchant (``merchant_id``) or, for channel health, read every merchant at once."""

from __future__ import annotations

import hmac
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from tillit.api.deps import (
    IDEMPOTENCY_HEADER,
    OVERSEER,
    IdPath,
    IdQuery,
    actor,
    container,
    idempotent,
    ok,
)
from tillit.api.schemas import ErrorOut, Strict, UUIDStr
from tillit.domain.alerts import MAX_THRESHOLD, MAX_WINDOW_MINUTES, RULE_KINDS
from tillit.domain.errors import DomainError, ErrorKind, invalid, not_found
from tillit.domain.ids import normalise_id
from tillit.kernel.context import Actor
from tillit.monitoring import alerts, analytics, charts, health, metrics
from tillit.monitoring.frames import MAX_RANGE_DAYS, Range

router = APIRouter(prefix="/v1/monitoring", tags=["monitoring"], responses={"4XX": {"model": ErrorOut}})
metrics_router = APIRouter(tags=["meta"])

TABLE_PATTERN = "^(" + "|".join(analytics.TABLES) + ")$"
CHART_PATTERN = "^(by_hour|by_day|by_method|by_product|heatmap)$"
KIND_PATTERN = "^(" + "|".join(RULE_KINDS) + ")$"
Offset = Annotated[
    int,
    Query(
        ge=-analytics.MAX_OFFSET_MINUTES,
        le=analytics.MAX_OFFSET_MINUTES,
        description="The merchant's local time as minutes from UTC (China: 480)",
    ),
]


def _json(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    return value


def _merchant(who: Actor, merchant_id: str | None) -> str:
    """A manager's own merchant (another's answers 404); an operator must name one."""
    if who.role == "admin":
        if not merchant_id:
            raise invalid("merchant_id_required", "Operators name the merchant (`merchant_id`).")
        return normalise_id(merchant_id, "merchant_id")
    own = who.merchant()
    if merchant_id and normalise_id(merchant_id, "merchant_id") != own:
        raise not_found("merchant", normalise_id(merchant_id, "merchant_id"))
    return own


def _range(request: Request, merchant_id: str, start: datetime | None, end: datetime | None) -> Range:
    now = container(request).deps.clock.now()
    end = end or now
    start = start or end - timedelta(days=7)
    if start.tzinfo is None or end.tzinfo is None:
        raise invalid("timestamp_naive", "start and end need a time zone (e.g. 2026-11-20T00:00:00+08:00).")
    if not start < end or end - start > timedelta(days=MAX_RANGE_DAYS):
        raise invalid("analytics_range_invalid", f"start must be before end, at most {MAX_RANGE_DAYS} days.")
    return Range(merchant_id, start, end)


def _analytics(request: Request, rng: Range, offset: int) -> analytics.Analytics:
    with container(request).db.read() as conn:
        return analytics.compute(conn, rng, utc_offset_minutes=offset)


@router.get("/analytics", summary="Sales, cancellations and failures, refund rate, time to pay and settle")
async def get_analytics(
    request: Request,
    who: Actor = OVERSEER,
    merchant_id: IdQuery = None,
    start: datetime | None = None,
    end: datetime | None = None,
    utc_offset_minutes: Offset = 480,
) -> JSONResponse:
    rng = _range(request, _merchant(who, merchant_id), start, end)
    result = await run_in_threadpool(_analytics, request, rng, utc_offset_minutes)
    return ok({"start": rng.start.isoformat(), "end": rng.end.isoformat(), **_json(asdict(result))})


@router.get(
    "/analytics/{table}.csv",
    summary="One analytics table as CSV (formula cells neutralised)",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}}},
)
async def analytics_csv(
    request: Request,
    table: Annotated[str, Path(pattern=TABLE_PATTERN)],
    who: Actor = OVERSEER,
    merchant_id: IdQuery = None,
    start: datetime | None = None,
    end: datetime | None = None,
    utc_offset_minutes: Offset = 480,
) -> Response:
    if table not in analytics.TABLES:
        raise not_found("analytics_table", table[:40])
    rng = _range(request, _merchant(who, merchant_id), start, end)
    result = await run_in_threadpool(_analytics, request, rng, utc_offset_minutes)
    return Response(
        analytics.to_csv(result.table(table)),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{table}.csv"'},
    )


def render_chart(result: analytics.Analytics, chart: str, lang: str) -> str:
    if chart == "heatmap":
        return charts.heat_map(result.failures, lang=lang)
    titles = {
        "by_hour": "Sales by hour",
        "by_day": "Sales by day",
        "by_method": "Sales by method",
        "by_product": "Sales by product",
    }
    return charts.bar_chart(titles[chart], getattr(result, chart))


@router.get(
    "/charts/{chart}.svg",
    summary="A chart as SVG (the heat map: cancellations and failures by reason x terminal x hour)",
    response_class=Response,
    responses={200: {"content": {"image/svg+xml": {}}}},
)
async def chart_svg(
    request: Request,
    chart: Annotated[str, Path(pattern=CHART_PATTERN)],
    who: Actor = OVERSEER,
    merchant_id: IdQuery = None,
    start: datetime | None = None,
    end: datetime | None = None,
    utc_offset_minutes: Offset = 480,
    lang: Annotated[str, Query(pattern="^(en|zh-CN)$")] = "en",
) -> Response:
    if chart not in ("by_hour", "by_day", "by_method", "by_product", "heatmap"):
        raise not_found("chart", chart[:40])
    rng = _range(request, _merchant(who, merchant_id), start, end)
    if chart == "heatmap":  # the heat map alone reads only the failed attempts and cancelled orders
        cells = await run_in_threadpool(_cells, request, rng, utc_offset_minutes)
        return Response(charts.heat_map(cells, lang=lang), media_type="image/svg+xml")
    result = await run_in_threadpool(_analytics, request, rng, utc_offset_minutes)
    return Response(render_chart(result, chart, lang), media_type="image/svg+xml")


def _cells(request: Request, rng: Range, offset: int) -> tuple[analytics.FailureCell, ...]:
    with container(request).db.read() as conn:
        return analytics.heat_map_cells(conn, rng, utc_offset_minutes=offset)


@router.get("/health", summary="Channel health per provider over sliding windows")
async def channel_health(
    request: Request,
    who: Actor = OVERSEER,
    merchant_id: IdQuery = None,
    provider: Annotated[str | None, Query(pattern="^(wechat|alipay)$")] = None,
    window: Annotated[
        list[int] | None, Query(description="Window lengths in minutes (default 5, 60, 1440)")
    ] = None,
) -> JSONResponse:
    windows = tuple(window or health.WINDOWS)
    if len(windows) > 5 or any(not 1 <= w <= health.MAX_WINDOW_MINUTES for w in windows):
        raise invalid(
            "health_window_invalid", f"At most 5 windows of 1..{health.MAX_WINDOW_MINUTES} minutes."
        )
    scope = None if who.role == "admin" and not merchant_id else _merchant(who, merchant_id)
    c = container(request)

    def read() -> list[health.ChannelHealth]:
        with c.db.read() as conn:
            return health.measure(
                conn, c.deps.clock.now(), merchant_id=scope, windows=windows, provider=provider
            )

    rows = await run_in_threadpool(read)
    return ok({"merchant_id": scope, "channels": [_json(asdict(r)) for r in rows]})


class RuleCreate(Strict):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    kind: Annotated[str, Field(pattern=KIND_PATTERN)]
    threshold: Annotated[
        int, Field(ge=0, le=MAX_THRESHOLD, description="‰ for rates, % of baseline for spikes")
    ]
    window_minutes: Annotated[int, Field(ge=1, le=MAX_WINDOW_MINUTES)] = 60
    min_attempts: Annotated[int, Field(ge=0, le=100000)] = 10
    provider: Annotated[str | None, Field(pattern="^(wechat|alipay)$")] = None
    channels: Annotated[list[Annotated[str, Field(min_length=3, max_length=200)]], Field(max_length=5)] = (
        Field(default_factory=list)
    )
    merchant_id: Annotated[UUIDStr | None, Field(description="Operators only")] = None
    locale: Annotated[str, Field(pattern="^(zh-CN|en)$", description="The language of the rule's mails")] = (
        "zh-CN"
    )


class RuleUpdate(Strict):
    """The settings to change (omitted ones stay); the kind is fixed. For a spike rule the threshold is
    the spike factor as a percentage of the usual rate (300: three times the usual failure rate)."""

    name: Annotated[str | None, Field(min_length=1, max_length=200)] = None
    threshold: Annotated[
        int | None, Field(ge=0, le=MAX_THRESHOLD, description="‰ for rates, % of baseline for spikes")
    ] = None
    window_minutes: Annotated[int | None, Field(ge=1, le=MAX_WINDOW_MINUTES)] = None
    min_attempts: Annotated[int | None, Field(ge=0, le=alerts.MAX_MIN_ATTEMPTS)] = None
    provider: Annotated[
        str | None, Field(pattern="^(wechat|alipay|all)$", description="`all`: every provider")
    ] = None
    channels: Annotated[
        list[Annotated[str, Field(min_length=3, max_length=200)]] | None, Field(max_length=5)
    ] = None
    locale: Annotated[str | None, Field(pattern="^(zh-CN|en)$")] = None
    merchant_id: Annotated[UUIDStr | None, Field(description="Operators only")] = None


class AlertAction(Strict):
    reason: Annotated[str, Field(min_length=1, max_length=500)]


@router.post("/alert-rules", status_code=201, summary="Create an alert rule")
def create_rule(
    body: RuleCreate, request: Request, who: Actor = OVERSEER, key: str | None = IDEMPOTENCY_HEADER
) -> Response:
    c = container(request)
    merchant_id = _merchant(who, body.merchant_id)

    def op(conn):  # type: ignore[no-untyped-def]
        rule = alerts.create_rule(
            conn,
            c.deps,
            merchant_id=merchant_id,
            name=body.name,
            kind=body.kind,
            threshold=body.threshold,
            window_minutes=body.window_minutes,
            min_attempts=body.min_attempts,
            provider=body.provider,
            channels=tuple(body.channels),
            locale=body.locale,
        )
        return 201, _json(asdict(rule))

    return idempotent(request, who, key, body.model_dump(), op)


@router.patch(
    "/alert-rules/{rule_id}",
    summary="Edit a rule: threshold (the spike factor), window, minimum attempts, provider, channels, "
    "language (every change audited)",
)
def update_rule(
    body: RuleUpdate,
    request: Request,
    rule_id: IdPath,
    who: Actor = OVERSEER,
    key: str | None = IDEMPOTENCY_HEADER,
) -> Response:
    c = container(request)
    merchant_id = _merchant(who, body.merchant_id)
    edit = alerts.RuleEdit(
        name=body.name,
        threshold=body.threshold,
        window_minutes=body.window_minutes,
        min_attempts=body.min_attempts,
        provider=None if body.provider is None else ("" if body.provider == "all" else body.provider),
        channels=None if body.channels is None else tuple(body.channels),
        locale=body.locale,
    )

    def op(conn):  # type: ignore[no-untyped-def]
        rule = alerts.update_rule(conn, c.deps, merchant_id, rule_id, edit, who.label)
        return 200, _json(asdict(rule))

    return idempotent(request, who, key, body.model_dump(), op)


@router.get("/alert-rules/{rule_id}/changes", summary="A rule's audit: who changed what, when, old and new")
def rule_changes(
    request: Request, rule_id: IdPath, who: Actor = OVERSEER, merchant_id: IdQuery = None
) -> JSONResponse:
    scope = _merchant(who, merchant_id)
    with container(request).db.read() as conn:
        rule = alerts.get_rule(conn, scope, rule_id)
        changes = alerts.rule_changes(conn, scope, rule_id)
    return ok({"rule": _json(asdict(rule)), "changes": [_json(asdict(ch)) for ch in changes]})


class RuleActive(Strict):
    active: bool
    merchant_id: Annotated[UUIDStr | None, Field(description="Operators only")] = None


@router.post(
    "/alert-rules/{rule_id}/active",
    summary="Switch a rule on or off (off resolves its open alerts)",
)
def set_rule_active(
    body: RuleActive,
    request: Request,
    rule_id: IdPath,
    who: Actor = OVERSEER,
    key: str | None = IDEMPOTENCY_HEADER,
) -> Response:
    c = container(request)
    merchant_id = _merchant(who, body.merchant_id)

    def op(conn):  # type: ignore[no-untyped-def]
        return 200, _json(
            asdict(alerts.set_active(conn, c.deps, merchant_id, rule_id, body.active, who.label))
        )

    return idempotent(request, who, key, body.model_dump(), op)


@router.get("/alert-rules", summary="The merchant's alert rules")
def list_rules(request: Request, who: Actor = OVERSEER, merchant_id: IdQuery = None) -> JSONResponse:
    scope = _merchant(who, merchant_id)
    with container(request).db.read() as conn:
        return ok({"rules": [_json(asdict(r)) for r in alerts.list_rules(conn, scope)]})


@router.get("/alerts", summary="Alerts, newest first (status: open, firing, acknowledged, resolved)")
def list_alerts(
    request: Request,
    who: Actor = OVERSEER,
    merchant_id: IdQuery = None,
    status: Annotated[str | None, Query(pattern="^(open|firing|acknowledged|resolved)$")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> JSONResponse:
    scope = _merchant(who, merchant_id)
    with container(request).db.read() as conn:
        return ok(
            {
                "alerts": [
                    _json(asdict(a)) for a in alerts.list_alerts(conn, scope, status=status, limit=limit)
                ]
            }
        )


@router.get("/alerts/{alert_id}", summary="One alert with its events")
def get_alert(
    request: Request, alert_id: IdPath, who: Actor = OVERSEER, merchant_id: IdQuery = None
) -> JSONResponse:
    scope = _merchant(who, merchant_id)
    with container(request).db.read() as conn:
        alert = alerts.get_alert(conn, scope, alert_id)
        events = alerts.alert_events_of(conn, scope, alert_id)
    return ok({**_json(asdict(alert)), "events": [_json(asdict(e)) for e in events]})


def _move(
    request: Request,
    who: Actor,
    key: str | None,
    alert_id: str,
    body: AlertAction,
    target: str,
    merchant_id: str | None,
) -> Response:
    c = container(request)
    scope = _merchant(who, merchant_id)

    def op(conn):  # type: ignore[no-untyped-def]
        return 200, _json(asdict(alerts.move(conn, c.deps, scope, alert_id, target, who.label, body.reason)))

    return idempotent(request, who, key, body.model_dump(), op)


@router.post("/alerts/{alert_id}/acknowledge", summary="Acknowledge a firing alert (seen, being handled)")
def acknowledge(
    body: AlertAction,
    request: Request,
    alert_id: IdPath,
    who: Actor = OVERSEER,
    key: str | None = IDEMPOTENCY_HEADER,
    merchant_id: IdQuery = None,
) -> Response:
    return _move(request, who, key, alert_id, body, "acknowledged", merchant_id)


@router.post("/alerts/{alert_id}/resolve", summary="Resolve an alert (with the reason, for the audit)")
def resolve(
    body: AlertAction,
    request: Request,
    alert_id: IdPath,
    who: Actor = OVERSEER,
    key: str | None = IDEMPOTENCY_HEADER,
    merchant_id: IdQuery = None,
) -> Response:
    return _move(request, who, key, alert_id, body, "resolved", merchant_id)


@metrics_router.get(
    "/metrics",
    summary="Prometheus metrics (admin key or the configured scrape token)",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}}, "4XX": {"model": ErrorOut}},
)
async def prometheus(
    request: Request,
    authorization: str | None = Header(default=None, description="`Bearer <admin key or scrape token>`"),
) -> Response:
    c = container(request)
    token = c.settings.metrics_token
    given = authorization[7:].strip() if authorization and authorization.startswith("Bearer ") else ""
    if not (token and given and hmac.compare_digest(given.encode(), token.encode())):
        who = await actor(request, authorization)
        if who.role != "admin":
            raise DomainError(
                "forbidden",
                "Metrics need an admin key or the scrape token.",
                ErrorKind.FORBIDDEN,
                {"role": who.role, "required": ["admin"]},
            )
    body = await run_in_threadpool(metrics.scrape, c.db, c.deps.clock)
    return Response(body, media_type=metrics.CONTENT_TYPE)
