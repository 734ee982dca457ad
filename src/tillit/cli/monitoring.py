"""`tillit analytics`, `tillit health` and `tillit alerts …`: the monitoring area from the command line
(the same use cases as /v1/monitoring and the back-office pages)."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Annotated

import typer
from rich.table import Table

from tillit.bootstrap import build
from tillit.cli.output import console, exit_on_refusal
from tillit.domain.alerts import RULE_KINDS
from tillit.monitoring import alerts, analytics, health
from tillit.monitoring.frames import Range

app = typer.Typer()  # `analytics` and `health` sit at the top of `tillit`
alerts_app = typer.Typer(help="Alert rules and alerts: list, add a rule, evaluate, acknowledge, resolve.")
ACTOR = "cli:operator"


@app.command("analytics")
def analytics_cmd(
    merchant_id: str,
    table: Annotated[str, typer.Option(help=", ".join(analytics.TABLES))] = "failures",
    days: Annotated[int, typer.Option(min=1, max=400)] = 1,
    end: Annotated[str | None, typer.Option(help="ISO time with zone (default now)")] = None,
    utc_offset_minutes: int = 480,
    output: Annotated[str, typer.Option("--format", help="table, csv or json")] = "table",
) -> None:
    """One analytics table (sales by hour/day/method/product, failures heat map cells, summary)."""
    if table not in analytics.TABLES:
        console.print(f"[red]unknown table[/red] {table}: one of {', '.join(analytics.TABLES)}")
        raise typer.Exit(2)
    c = build()
    until = datetime.fromisoformat(end) if end else c.deps.clock.now()
    with c.db.read() as conn:
        result = analytics.compute(
            conn,
            Range(merchant_id, until - timedelta(days=days), until),
            utc_offset_minutes=utc_offset_minutes,
        ).table(table)
    if output == "csv":
        print(analytics.to_csv(result), end="")
    elif output == "json":
        print(
            json.dumps(
                [dict(zip(result.columns, row, strict=True)) for row in result.rows], ensure_ascii=False
            )
        )
    else:
        shown = Table(title=f"{table} ({len(result.rows)} rows)")
        for col in result.columns:
            shown.add_column(col, overflow="fold")
        for row in result.rows:
            shown.add_row(*(str(v) for v in row))
        console.print(shown)


@app.command("health")
def health_cmd(
    merchant_id: Annotated[str | None, typer.Option(help="default: every merchant")] = None,
    output: Annotated[str, typer.Option("--format", help="table or json")] = "table",
) -> None:
    """Channel health per provider over the last 5 minutes, hour and day."""
    c = build()
    with c.db.read() as conn:
        rows = health.measure(conn, c.deps.clock.now(), merchant_id=merchant_id)
    if output == "json":
        print(json.dumps([asdict(r) for r in rows], default=str))
        return
    shown = Table(title="channel health")
    for col in (
        "provider",
        "window",
        "attempts",
        "success ‰",
        "unknown ‰",
        "reversed ‰",
        "p50/p95/p99 ms",
        "errors",
    ):
        shown.add_column(col)
    for r in rows:
        shown.add_row(
            r.provider,
            str(r.window_minutes),
            str(r.attempts),
            str(r.success_rate_permille),
            str(r.unknown_rate_permille),
            str(r.reversal_rate_permille),
            f"{r.latency_p50_ms}/{r.latency_p95_ms}/{r.latency_p99_ms}",
            ", ".join(f"{e.code}×{e.count}" for e in r.errors),
        )
    console.print(shown)


@alerts_app.command("list")
def alerts_list(merchant_id: str, status: Annotated[str | None, typer.Option()] = "open") -> None:
    """The merchant's alerts (status: open, firing, acknowledged, resolved)."""
    c = build()
    with c.db.read() as conn:
        found = alerts.list_alerts(conn, merchant_id, status=status)
    print(json.dumps([asdict(a) for a in found], default=str, ensure_ascii=False))


@alerts_app.command("rules")
def alerts_rules(merchant_id: str) -> None:
    c = build()
    with c.db.read() as conn:
        print(json.dumps([asdict(r) for r in alerts.list_rules(conn, merchant_id)], default=str))


@alerts_app.command("rule-add")
def rule_add(
    merchant_id: str,
    name: str,
    kind: Annotated[str, typer.Option(help=", ".join(sorted(RULE_KINDS)))],
    threshold: int,
    window_minutes: int = 60,
    min_attempts: int = 10,
    provider: str | None = None,
    channel: Annotated[
        list[str] | None, typer.Option(help="email:<addr> or webhook:<url>; repeatable")
    ] = None,
    locale: Annotated[str, typer.Option(help="language of the alert mails: zh-CN or en")] = "zh-CN",
) -> None:
    """Add an alert rule (evaluated by the resolver at once, then every minute)."""
    c = build()
    with exit_on_refusal(), c.db.transaction() as conn:
        rule = alerts.create_rule(
            conn,
            c.deps,
            merchant_id=merchant_id,
            name=name,
            kind=kind,
            threshold=threshold,
            window_minutes=window_minutes,
            min_attempts=min_attempts,
            provider=provider,
            channels=tuple(channel or ()),
            locale=locale,
        )
    print(json.dumps(asdict(rule), default=str))


@alerts_app.command("rule-active")
def rule_active(
    merchant_id: str, rule_id: str, active: Annotated[bool, typer.Option("--on/--off")] = True
) -> None:
    """Switch a rule on (evaluated at once) or off (its open alerts are resolved)."""
    c = build()
    with exit_on_refusal(), c.db.transaction() as conn:
        rule = alerts.set_active(conn, c.deps, merchant_id, rule_id, active, ACTOR)
    print(json.dumps(asdict(rule), default=str))


@alerts_app.command("evaluate")
def evaluate(merchant_id: str) -> None:
    """Evaluate the merchant's rules now (what the resolver's job does)."""
    c = build()
    with exit_on_refusal(), c.db.transaction() as conn:
        result = alerts.evaluate(conn, c.deps, merchant_id)
    print(json.dumps(asdict(result)))


def _move(merchant_id: str, alert_id: str, target: str, reason: str) -> None:
    c = build()
    with exit_on_refusal(), c.db.transaction() as conn:
        alert = alerts.move(conn, c.deps, merchant_id, alert_id, target, ACTOR, reason)
    print(json.dumps(asdict(alert), default=str, ensure_ascii=False))


@alerts_app.command("ack")
def ack(merchant_id: str, alert_id: str, reason: str = "acknowledged from the CLI") -> None:
    _move(merchant_id, alert_id, "acknowledged", reason)


@alerts_app.command("resolve")
def resolve(merchant_id: str, alert_id: str, reason: str = "resolved from the CLI") -> None:
    _move(merchant_id, alert_id, "resolved", reason)
