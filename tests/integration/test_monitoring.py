"""Monitoring through the real API, the production adapters and the sandbox: a day with planted
failures and cancels shows in the analytics tables, the heat map and the CSV export; a planted failure
spike against the same hour of the last four weeks raises one alert (deduplicated, acknowledged,
resolved when it clears); /metrics shows what the database holds. Provider time moves by hand."""

from __future__ import annotations

import json
import re
import shutil
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from tests.support import pg
from tests.support.live import live_server
from tests.support.mailbox import Mailbox, start_smtp
from tests.support.sandbox import START, Accounts, SandboxControl, running_sandbox
from tests.support.sandbox import provider_accounts as account_settings
from tests.support.world import Tenant, make_admin_key, make_tenant
from tillit.access import keys, merchants
from tillit.adapters.db import migrate
from tillit.adapters.db.schema import payments
from tillit.adapters.webhook import SIGNATURE_HEADER, verify
from tillit.bootstrap import Container, build
from tillit.config import Settings
from tillit.domain.clock import ManualClock
from tillit.domain.links import webhook_secret
from tillit.payments import accounts as provider_accounts
from tillit.sales import catalog
from tillit.worker import drain

SCRAPE_TOKEN = "scrape-" + uuid.uuid4().hex
WEEK = timedelta(days=7)


class _Hooks(BaseHTTPRequestHandler):
    """A local webhook receiver: keeps every POST (headers, raw body)."""

    got: list[tuple[dict[str, str], bytes]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.got.append((dict(self.headers), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@dataclass
class World:
    c: Container
    clock: ManualClock
    sbx: SandboxControl
    tenant: Tenant
    other: Tenant
    till2_key: str
    till2_id: str
    admin_key: str
    base: str
    http: httpx.Client
    mailbox: Mailbox
    hook_url: str
    hooks: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    def advance(self, seconds: float) -> None:
        """Move time on both sides, then let the resolver run what is due (jobs and the outbox)."""
        self.clock.advance(seconds)
        self.sbx.advance(seconds)
        assert self.c.engine is not None
        drain(self.c.db, self.c.deps, self.c.engine, max_seconds=30, outbox=self.c.outbox)

    def post(self, path: str, body: Any, key: str) -> httpx.Response:
        return self.http.post(
            path, json=body, headers={"Authorization": f"Bearer {key}", "Idempotency-Key": uuid.uuid4().hex}
        )

    def get(self, path: str, key: str | None = None, **params: Any) -> httpx.Response:
        return self.http.get(path, params=params, headers={"Authorization": f"Bearer {key or self.manager}"})

    @property
    def manager(self) -> str:
        return self.tenant.manager_key

    def sale(self, code: str, *, key: str | None = None, sku: str = "LATTE") -> httpx.Response:
        key = key or self.tenant.cashier_key
        order = self.post("/v1/orders", {"lines": [{"sku": sku, "quantity": 1}]}, key)
        assert order.status_code == 201, order.text
        return self.post("/v1/payments", {"order_id": order.json()["id"], "payment_code": code}, key)

    def paid(self, provider: str = "wechat", key: str | None = None) -> None:
        r = self.sale(self.sbx.code(self.sbx.wallet(provider)), key=key)
        assert r.status_code == 201 and r.json()["status"] == "captured", r.text

    def declined(self, provider: str = "wechat", key: str | None = None) -> str:
        """A payment the provider refuses at once (balance too low: NOTENOUGH / BUYER_BALANCE_NOT_ENOUGH)."""
        r = self.sale(self.sbx.code(self.sbx.wallet(provider, balance_fen=100)), key=key)
        assert r.status_code in (200, 201, 402, 409, 422) and r.json().get("status", "failed") == "failed", (
            r.text
        )
        return str(r.json().get("order_id") or "")

    def cancelled(self, key: str | None = None) -> None:
        key = key or self.tenant.cashier_key
        order = self.post("/v1/orders", {"lines": [{"sku": "CROIS", "quantity": 1}]}, key)
        r = self.post(f"/v1/orders/{order.json()['id']}/cancel", {"reason": "customer_cancelled"}, key)
        assert r.status_code == 200, r.text


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    home = tmp_path_factory.mktemp("mon")
    own_database = None
    if request.param == "postgresql":
        request.node.add_marker(pytest.mark.pg)
        # A database of its own: this module's home has its own keyring, and the run's shared database
        # holds provider secrets sealed with the shared home's key.
        url = own_database = pg.create_database("tillit_mon")
    else:
        url = f"sqlite:///{home / 'tillit.sqlite'}"
    # Four weeks of history first: the clock starts 28 days before the sandbox's day.
    clock = ManualClock((START - 4 * WEEK).astimezone(UTC))
    smtp, mailbox = start_smtp()
    hooks: list[tuple[dict[str, str], bytes]] = []
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), type("Hooks", (_Hooks,), {"got": hooks}))
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    settings = Settings(
        home=home,
        database_url=url,
        provider_timeout_s=3.0,
        metrics_token=SCRAPE_TOKEN,
        smtp_host="127.0.0.1",
        smtp_port=smtp.port,
        outbox_backoff_s=1.0,
    )
    c = build(settings, clock=clock)
    migrate.upgrade(c.db)
    accounts = Accounts.fresh()
    with running_sandbox(home / "sandbox", accounts) as sbx, live_server(c) as base:
        sbx.advance(-0.0)
        tenant = make_tenant(c, f"Mon {uuid.uuid4().hex[:8]}")
        other = make_tenant(c, f"Other {uuid.uuid4().hex[:8]}")
        with c.db.transaction() as conn:
            for provider, settings in account_settings(accounts, sbx.url).items():
                provider_accounts.set_account(conn, c.deps, tenant.merchant_id, provider, settings)
            till2 = merchants.create_terminal(conn, c.deps, store_id=tenant.store_id, name="Till 2")
            _, till2_key = keys.create_key(conn, c.deps, role="terminal", name="t2", terminal_id=till2["id"])
            catalog.create_product(
                conn,
                c.deps,
                merchant_id=tenant.merchant_id,
                merchant_currency="CNY",
                sku="EVIL",
                name='=HYPERLINK("http://x")',
                price=100,
                barcode=None,
                stock=None,
            )
        with httpx.Client(base_url=base, timeout=30) as http:
            hook_url = f"http://127.0.0.1:{receiver.server_address[1]}/alerts"
            yield World(
                c,
                clock,
                sbx,
                tenant,
                other,
                till2_key,
                till2["id"],
                make_admin_key(c),
                base,
                http,
                mailbox,
                hook_url,
                hooks,
            )
    c.db.dispose()
    if own_database is not None:
        pg.drop_database(own_database)
    if c.outbox is not None:
        c.outbox.close()
    smtp.stop()
    receiver.shutdown()
    receiver.server_close()


def _spike_day(world: World) -> None:
    """Week 0 (the sandbox's day, 09:xx China time): 3 paid, 5 declined at till 1, 2 declined at till 2,
    one declined Alipay payment, 2 orders the customer cancelled at till 2, and one EVIL sale."""
    for _ in range(3):
        world.paid()
    for _ in range(5):
        world.declined()
    for _ in range(2):
        world.declined(key=world.till2_key)
    world.declined("alipay")
    for _ in range(2):
        world.cancelled(key=world.till2_key)
    r = world.sale(world.sbx.code(world.sbx.wallet("wechat")), sku="EVIL")
    assert r.status_code == 201, r.text


@pytest.fixture(scope="module")
def history(world: World) -> World:
    """Four baseline weeks (4 paid, 1 declined each, same hour), then the spike day."""
    for _week in range(4):
        for _ in range(4):
            world.paid()
        world.declined()
        world.clock.advance(WEEK.total_seconds())
    assert world.clock.now() == START.astimezone(UTC)
    _spike_day(world)
    return world


def _day(world: World) -> dict[str, str]:
    start = world.clock.now().replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(hours=8)
    return {"start": start.isoformat(), "end": (start + timedelta(days=1)).isoformat()}


def test_analytics_and_heat_map(history: World) -> None:
    w = history
    r = w.get("/v1/monitoring/analytics", **_day(w))
    assert r.status_code == 200, r.text
    body = r.json()
    cells = {(f["reason"], f["terminal_id"], f["hour"]): f["count"] for f in body["failures"]}
    till1, till2 = w.tenant.terminal_id, w.till2_id
    # 09:xx China time; declined WeChat and Alipay payments both read "insufficient balance" to the cashier.
    assert cells == {
        ("insufficient_balance", till1, 9): 6,
        ("insufficient_balance", till2, 9): 2,
        ("order:customer_cancelled", till2, 9): 2,
    }
    label = next(f for f in body["failures"] if f["reason"] == "insufficient_balance")
    assert label["message_zh"] == "顾客余额不足，请让顾客更换支付方式。" and label["terminal"] == "Till 1"
    s = body["summary"]
    assert s["paid_orders"] == 4 and s["cancelled_orders"] == 2 and s["provider_attempts"] == 12
    assert s["failed_attempts"] == 8 and s["refund_rate_permille"] == 0 and s["avg_time_to_pay_ms"] == 0
    assert {b["bucket"]: b["orders"] for b in body["by_hour"]} == {"09": 4}
    assert {b["bucket"] for b in body["by_product"]} == {"LATTE", "EVIL"}

    svg = w.get("/v1/monitoring/charts/heatmap.svg", lang="zh-CN", **_day(w))
    assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
    text = svg.text
    assert (
        text.startswith("<svg")
        and "<script" not in text
        and "http" not in text.replace("http://www.w3.org/2000/svg", "")
    )
    shown = {
        (m[0], m[1], int(m[2])): int(m[3])
        for m in re.findall(
            r'data-reason="([^"]+)" data-terminal="([^"]*)" data-hour="(\d+)" data-count="(\d+)"', text
        )
    }
    assert {k: v for k, v in shown.items() if v} == cells
    assert "Till 2 · 顾客已取消支付" in text and 'data-max="6"' in text

    csv_text = w.get("/v1/monitoring/analytics/by_product.csv", **_day(w)).text
    assert csv_text.splitlines()[0] == "bucket,label,orders,sales,refunds"
    assert "'=HYPERLINK" in csv_text and ",=HYPERLINK" not in csv_text
    failures_csv = w.get("/v1/monitoring/analytics/failures.csv", **_day(w)).text
    assert len(failures_csv.splitlines()) == 1 + len(cells)
    # Tenant isolation: another merchant's id answers 404, its own analytics hold none of this.
    assert (
        w.get(
            "/v1/monitoring/analytics", merchant_id=w.tenant.merchant_id, key=w.other.manager_key, **_day(w)
        ).status_code
        == 404
    )
    assert w.get("/v1/monitoring/analytics", key=w.other.manager_key, **_day(w)).json()["failures"] == []


def test_channel_health(history: World) -> None:
    r = history.get("/v1/monitoring/health", window=[60])
    assert r.status_code == 200, r.text
    by_provider = {c["provider"]: c for c in r.json()["channels"]}
    wechat = by_provider["wechat"]
    assert wechat["attempts"] == 11 and wechat["captured"] == 4 and wechat["failure_rate_permille"] == 636
    assert wechat["errors"] == [{"code": "NOTENOUGH", "count": 7}]
    assert wechat["latency_p50_ms"] is not None and wechat["latency_p50_ms"] >= 0
    assert by_provider["alipay"]["attempts"] == 1 and by_provider["alipay"]["success_rate_permille"] == 0
    # An operator sees every merchant's channels; a cashier sees none.
    assert history.get("/v1/monitoring/health", key=history.admin_key).status_code == 200
    assert history.get("/v1/monitoring/health", key=history.tenant.cashier_key).status_code == 403


def test_spike_raises_one_alert_acknowledged_then_resolved(history: World) -> None:
    w = history
    rule = w.post(
        "/v1/monitoring/alert-rules",
        {
            "name": "wechat spike",
            "kind": "failure_spike",
            "threshold": 300,
            "window_minutes": 60,
            "min_attempts": 5,
            "provider": "wechat",
            "channels": ["email:ops@example.com", f"webhook:{w.hook_url}"],
            "locale": "en",
        },
        w.manager,
    )
    assert rule.status_code == 201, rule.text
    bad = w.post(
        "/v1/monitoring/alert-rules",
        {"name": "x", "kind": "failure_rate", "threshold": 1, "channels": ["sms:123"]},
        w.manager,
    )
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "alert_channel_invalid"
    w.advance(0)  # the resolver runs the due evaluation
    alerts = w.get("/v1/monitoring/alerts", status="open").json()["alerts"]
    # Baseline 200 per mille (1 in 5 each week), now 7 in 11 = 636 per mille: 318 % of the usual rate.
    assert [(a["status"], a["value"], a["dedup_key"].split(":")[1]) for a in alerts] == [
        ("firing", 318, "wechat")
    ]
    alert_id = alerts[0]["id"]
    # Delivered through the notifications outbox: a mail to the local SMTP server, a signed webhook.
    mails = w.mailbox.to("ops@example.com")
    assert len(mails) == 1 and "wechat spike: wechat" in mails[0]["Subject"]
    assert "318% of the usual rate" in mails[0].get_content()
    assert len(w.hooks) == 1
    headers, raw = w.hooks[0]
    assert w.c.signing_key is not None
    secret = webhook_secret(w.c.signing_key, w.tenant.merchant_id)
    assert verify(secret, headers[SIGNATURE_HEADER], raw, int(w.clock.now().timestamp()))
    assert json.loads(raw)["event_id"] == f"alert:{alert_id}"
    w.advance(61)  # evaluated again: the same alert, seen twice
    again = w.get("/v1/monitoring/alerts", status="open").json()["alerts"]
    assert [(a["id"], a["occurrences"]) for a in again] == [(alert_id, 2)]
    assert len(w.mailbox.to("ops@example.com")) == 1 and len(w.hooks) == 1  # deduplicated: no second send
    assert w.get(f"/v1/monitoring/alerts/{alert_id}", key=w.other.manager_key).status_code == 404
    ack = w.post(f"/v1/monitoring/alerts/{alert_id}/acknowledge", {"reason": "looking"}, w.manager)
    assert ack.status_code == 200 and ack.json()["status"] == "acknowledged", ack.text
    twice = w.post(f"/v1/monitoring/alerts/{alert_id}/acknowledge", {"reason": "again"}, w.manager)
    assert twice.status_code == 409
    w.advance(2 * 3600)  # the hour passes with no failures: the evaluator resolves it
    done = w.get(f"/v1/monitoring/alerts/{alert_id}").json()
    assert done["status"] == "resolved" and [e["to_status"] for e in done["events"]] == [
        "firing",
        "acknowledged",
        "resolved",
    ]
    assert done["events"][2]["actor"] == "system:alerts"


def _samples(text: str, name: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line.startswith(name + "{"):
            labels, value = line.rsplit(" ", 1)
            out[labels[len(name) :]] = float(value)
    return out


def test_metrics_show_what_the_database_holds(history: World) -> None:
    w = history
    assert w.get("/metrics", key=w.manager).status_code == 403
    assert w.http.get("/metrics").status_code == 401
    before = w.http.get("/metrics", headers={"Authorization": f"Bearer {SCRAPE_TOKEN}"})
    assert before.status_code == 200 and before.headers["content-type"].startswith("text/plain")
    w.paid()
    text = w.get("/metrics", key=w.admin_key).text
    with w.c.db.read() as conn:
        held = {
            (m, p or "", s): n
            for m, p, s, n in conn.execute(
                select(payments.c.method, payments.c.provider, payments.c.status, func.count()).group_by(
                    payments.c.method, payments.c.provider, payments.c.status
                )
            )
        }
    shown = _samples(text, "tillit_payments")
    assert {k: int(v) for k, v in shown.items()} == {
        f'{{method="{m}",provider="{p}",status="{s}"}}': n for (m, p, s), n in held.items()
    }
    route = '{method="POST",route="/v1/payments",status="201"}'
    grew = (
        _samples(text, "tillit_http_requests_total")[route]
        - _samples(before.text, "tillit_http_requests_total")[route]
    )
    assert grew == 1
    assert 'tillit_http_request_duration_seconds_bucket{le="0.005",method="POST",route="/v1/orders"}' in text
    assert "tillit_recovery_jobs_due" in text and "tillit_till_sync_age_seconds" in text
    assert w.tenant.terminal_id in text


CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "monitoring"


def test_heat_map_page_in_a_browser(history: World) -> None:
    """The back office's analytics page in Debian's chromium: the heat map's cells hold the planted
    counts, labelled in Chinese; the channel-health and alerts pages open from the navigation."""
    w = history
    if w.c.db.is_postgres:
        pytest.skip("one browser run (SQLite): the pages read the same use cases on both databases")
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        pytest.skip("no chromium here")
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            page.set_default_timeout(20_000)
            page.goto(f"{w.base}/backoffice/signin")
            page.fill("#api_key", w.manager)
            page.click("#signin")
            page.wait_for_selector("#nav-analytics")
            page.click("#nav-analytics")
            page.goto(f"{w.base}/backoffice/analytics?day=2026-11-20&days=1")
            cell = page.locator(
                'svg.heat-map rect[data-reason="insufficient_balance"]'
                f'[data-terminal="{w.tenant.terminal_id}"][data-hour="9"]'
            )
            assert cell.get_attribute("data-count") == "6"
            cancels = page.locator('svg.heat-map rect[data-reason="order:customer_cancelled"][data-hour="9"]')
            assert cancels.get_attribute("data-count") == "2"
            assert "顾客余额不足" in page.locator("svg.heat-map").inner_html()
            assert page.locator("#failed-attempts").inner_text() == "8"
            page.screenshot(path=str(ARTIFACTS / "analytics-heat-map.png"), full_page=True)
            with page.expect_download() as download:
                page.click("#csv-failures")
            lines = Path(download.value.path()).read_text(encoding="utf-8").splitlines()
            assert lines[0].startswith("reason,") and len(lines) == 4
            page.click("#nav-channel-health")
            assert page.locator('#channel-health tr[data-provider="wechat"][data-window="60"]').count() == 1
            page.click("#nav-alerts")
            assert page.locator("#alerts tr[data-status]").count() >= 1
            page.screenshot(path=str(ARTIFACTS / "alerts.png"), full_page=True)
        finally:
            browser.close()


def test_alert_acknowledged_on_the_back_office_with_csrf(history: World) -> None:
    w = history
    r = w.post(
        "/v1/monitoring/alert-rules",
        {
            "name": "any wechat failure today",
            "kind": "failure_rate",
            "threshold": 1,
            "window_minutes": 1440,
            "min_attempts": 1,
            "provider": "wechat",
        },
        w.manager,
    )
    assert r.status_code == 201, r.text
    w.advance(0)
    firing = [
        a
        for a in w.get("/v1/monitoring/alerts", status="firing").json()["alerts"]
        if a["rule_id"] == r.json()["id"]
    ]
    assert len(firing) == 1
    alert_id = firing[0]["id"]
    with httpx.Client(base_url=w.base + "/backoffice", timeout=30, follow_redirects=True) as bo:
        form = bo.get("/signin").text
        token = re.search(r'name="csrf_token" value="([^"]+)"', form)
        assert token is not None
        assert (
            bo.post("/signin", data={"api_key": w.manager, "csrf_token": token.group(1)}).status_code == 200
        )
        page = bo.get("/alerts").text
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert csrf is not None and f'data-alert="{alert_id}" data-status="firing"' in page
        forged = bo.post(f"/alerts/{alert_id}/acknowledge", data={"csrf_token": "forged"})
        assert forged.status_code == 403
        assert w.get(f"/v1/monitoring/alerts/{alert_id}").json()["status"] == "firing"  # nothing written
        done = bo.post(
            f"/alerts/{alert_id}/acknowledge", data={"csrf_token": csrf.group(1), "reason": "on it"}
        )
        assert done.status_code == 200 and f'data-alert="{alert_id}" data-status="acknowledged"' in done.text
    events = w.get(f"/v1/monitoring/alerts/{alert_id}").json()["events"]
    assert events[-1]["to_status"] == "acknowledged" and events[-1]["actor"].startswith("merchant:")
    # Another merchant's manager: the same id is simply not there.
    with httpx.Client(base_url=w.base + "/backoffice", timeout=30, follow_redirects=True) as bo:
        token = re.search(r'name="csrf_token" value="([^"]+)"', bo.get("/signin").text)
        assert token is not None
        bo.post("/signin", data={"api_key": w.other.manager_key, "csrf_token": token.group(1)})
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', bo.get("/alerts").text)
        assert csrf is not None
        other = bo.post(f"/alerts/{alert_id}/resolve", data={"csrf_token": csrf.group(1)})
        assert other.status_code == 404
        other = bo.post(f"/alerts/{alert_id}/acknowledge", data={"csrf_token": csrf.group(1), "reason": "x"})
        assert other.status_code == 404
    assert w.get(f"/v1/monitoring/alerts/{alert_id}").json()["status"] == "acknowledged"
    # Switching the rule off resolves its open alert; another merchant cannot switch it.
    rule_id = r.json()["id"]
    assert (
        w.post(
            f"/v1/monitoring/alert-rules/{rule_id}/active", {"active": False}, w.other.manager_key
        ).status_code
        == 404
    )
    off = w.post(f"/v1/monitoring/alert-rules/{rule_id}/active", {"active": False}, w.manager)
    assert off.status_code == 200 and off.json()["active"] is False, off.text
    assert w.get(f"/v1/monitoring/alerts/{alert_id}").json()["status"] == "resolved"


def _rule(w: World, key: str | None = None, **fields: Any) -> httpx.Response:
    body = {"name": f"rule {uuid.uuid4().hex[:6]}", "kind": "failure_rate", "threshold": 500, **fields}
    return w.post("/v1/monitoring/alert-rules", body, key or w.manager)


def _patch(w: World, rule_id: str, body: Any, key: str | None = None) -> httpx.Response:
    return w.http.patch(
        f"/v1/monitoring/alert-rules/{rule_id}",
        json=body,
        headers={"Authorization": f"Bearer {key or w.manager}", "Idempotency-Key": uuid.uuid4().hex},
    )


def test_rule_thresholds_window_spike_factor_and_channels_are_edited_and_audited(history: World) -> None:
    w = history
    spike = _rule(w, kind="failure_spike", threshold=300, window_minutes=60, provider="wechat", locale="en")
    assert spike.status_code == 201, spike.text
    rule_id = spike.json()["id"]
    r = _patch(
        w,
        rule_id,
        {
            "threshold": 450,  # the spike factor: 4.5 times the usual rate
            "window_minutes": 30,
            "min_attempts": 3,
            "provider": "all",
            "channels": ["email:Boss@Example.com", f"webhook:{w.hook_url}"],
            "locale": "zh-CN",
        },
    )
    assert r.status_code == 200, r.text
    edited = r.json()
    assert (edited["threshold"], edited["window_minutes"], edited["min_attempts"]) == (450, 30, 3)
    assert edited["provider"] is None and edited["locale"] == "zh-CN" and edited["kind"] == "failure_spike"
    assert edited["channels"] == ["email:boss@example.com", f"webhook:{w.hook_url}"]
    audit = w.get(f"/v1/monitoring/alert-rules/{rule_id}/changes").json()
    changes = {c["field"]: (c["old_value"], c["new_value"]) for c in audit["changes"]}
    assert changes == {
        "threshold": ("300", "450"),
        "window_minutes": ("60", "30"),
        "min_attempts": ("10", "3"),
        "provider": ("wechat", None),
        "channels": ("", f"email:boss@example.com,webhook:{w.hook_url}"),
        "locale": ("en", "zh-CN"),
    }
    assert all(c["actor"].startswith("merchant:") for c in audit["changes"])
    assert len({c["at"] for c in audit["changes"]}) == 1
    # The same values again change nothing and add no audit row.
    assert _patch(w, rule_id, {"threshold": 450}).status_code == 200
    assert len(w.get(f"/v1/monitoring/alert-rules/{rule_id}/changes").json()["changes"]) == 6
    # Out of bounds: refused with a stable code, nothing written.
    for body, code in (
        ({"threshold": -1}, "validation_error"),
        ({"threshold": 1_000_001}, "validation_error"),
        ({"window_minutes": 0}, "validation_error"),
        ({"window_minutes": 7 * 24 * 60 + 1}, "validation_error"),
        ({"channels": ["sms:13800000000"]}, "alert_channel_invalid"),
        ({"channels": ["email:a@example.com"] * 6}, "validation_error"),
        ({"name": "card 6222020200112233445"}, "alert_rule_name_invalid"),
        ({"locale": "fr"}, "validation_error"),
        ({"kind": "unknown_rate"}, "validation_error"),
    ):
        bad = _patch(w, rule_id, body)
        assert bad.status_code == 422, (body, bad.text)
        assert bad.json()["error"]["code"] == code, (body, bad.text)
    assert len(w.get(f"/v1/monitoring/alert-rules/{rule_id}/changes").json()["changes"]) == 6
    taken = _rule(w)
    assert (
        _patch(w, rule_id, {"name": taken.json()["name"]}).json()["error"]["code"] == "alert_rule_name_taken"
    )
    # Another merchant: the rule is not there, to edit or to read; an operator names the merchant.
    assert _patch(w, rule_id, {"threshold": 1}, key=w.other.manager_key).status_code == 404
    assert w.get(f"/v1/monitoring/alert-rules/{rule_id}/changes", key=w.other.manager_key).status_code == 404
    assert _patch(w, rule_id, {"threshold": 1}, key=w.admin_key).json()["error"]["code"] == (
        "merchant_id_required"
    )
    by_operator = _patch(w, rule_id, {"threshold": 500, "merchant_id": w.tenant.merchant_id}, key=w.admin_key)
    assert by_operator.status_code == 200 and by_operator.json()["threshold"] == 500
    last = w.get(f"/v1/monitoring/alert-rules/{rule_id}/changes").json()["changes"][-1]
    assert last["field"] == "threshold" and last["actor"].startswith("admin:")
    assert w.get("/v1/monitoring/alert-rules").json()["rules"][-2]["threshold"] == 500
    for rid in (rule_id, taken.json()["id"]):
        assert (
            w.post(f"/v1/monitoring/alert-rules/{rid}/active", {"active": False}, w.manager).status_code
            == 200
        )


def test_alert_mail_and_webhook_text_in_the_rules_language(history: World) -> None:
    """The same breach mailed (local SMTP server) and posted (webhook) in zh-CN for one rule and in en
    for another: subject and body from the catalogues in monitoring/locales."""
    w = history
    w.declined()  # a wechat failure now, so a 24-hour failure-rate rule breaks
    made = {}
    for locale in ("zh-CN", "en"):
        r = _rule(
            w,
            name=f"failures {locale}",
            threshold=1,
            window_minutes=1440,
            min_attempts=1,
            provider="wechat",
            channels=[f"email:mail-{locale.lower()}@example.com"],
            locale=locale,
        )
        assert r.status_code == 201, r.text
        made[locale] = r.json()["id"]
    hooks_before = len(w.hooks)
    # The Chinese rule's webhook is added by an edit: channels are editable and the edit is audited.
    edited = _patch(w, made["zh-CN"], {"channels": ["email:mail-zh-cn@example.com", f"webhook:{w.hook_url}"]})
    assert edited.status_code == 200, edited.text
    w.advance(0)
    zh = w.mailbox.to("mail-zh-cn@example.com")
    en = w.mailbox.to("mail-en@example.com")
    assert len(zh) == 1 and len(en) == 1
    assert zh[0]["Subject"].startswith("【告警】[Tillit 告警] failures zh-CN：微信支付"), zh[0]["Subject"]
    body = zh[0].get_content()
    assert "时间窗内失败、冲正或取消的支付" in body and "阈值 0.1%" in body and "最近 1440 分钟" in body
    assert en[0]["Subject"].startswith("[alert] [Tillit alert] failures en: wechat"), en[0]["Subject"]
    en_body = en[0].get_content()
    assert "failed, reversed or cancelled attempts in the window" in en_body and "last 1440 min" in en_body
    new_hooks = w.hooks[hooks_before:]
    assert len(new_hooks) == 1
    sent = json.loads(new_hooks[0][1])
    assert sent["event_id"].startswith("alert:") and sent.get("locale", "zh-CN") == "zh-CN"
    assert "微信支付" in json.dumps(sent, ensure_ascii=False)
    # The alert shown on the pages reads in the rule's language too.
    shown = {
        a["rule_id"]: a["message"] for a in w.get("/v1/monitoring/alerts", status="firing").json()["alerts"]
    }
    assert "微信支付" in shown[made["zh-CN"]] and "wechat at" in shown[made["en"]]
    for rid in made.values():
        assert (
            w.post(f"/v1/monitoring/alert-rules/{rid}/active", {"active": False}, w.manager).status_code
            == 200
        )


def test_rule_edited_in_a_browser_with_csrf(history: World) -> None:
    """The back office's rule page in chromium: the spike factor, window and channels are changed, the
    audit shows who changed what; a forged token is refused and writes nothing."""
    w = history
    if w.c.db.is_postgres:
        pytest.skip("one browser run (SQLite): the page reads the same use cases on both databases")
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        pytest.skip("no chromium here")
    from playwright.sync_api import sync_playwright

    made = _rule(w, name="lunch spike", kind="failure_spike", threshold=300, window_minutes=60, locale="en")
    assert made.status_code == 201, made.text
    rule_id = made.json()["id"]
    with httpx.Client(base_url=w.base + "/backoffice", timeout=30, follow_redirects=True) as bo:
        token = re.search(r'name="csrf_token" value="([^"]+)"', bo.get("/signin").text)
        assert token is not None
        bo.post("/signin", data={"api_key": w.manager, "csrf_token": token.group(1)})
        forged = bo.post(
            f"/alerts/rules/{rule_id}",
            data={
                "csrf_token": "forged",
                "name": "x",
                "threshold": "1",
                "window_minutes": "1",
                "min_attempts": "1",
            },
        )
        assert forged.status_code == 403
    assert w.get(f"/v1/monitoring/alert-rules/{rule_id}/changes").json()["changes"] == []
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            page.set_default_timeout(20_000)
            page.goto(f"{w.base}/backoffice/signin")
            page.fill("#api_key", w.manager)
            page.click("#signin")
            page.wait_for_selector("#nav-alerts")
            page.click("#nav-alerts")
            page.click(f"#rule-{rule_id}")
            assert page.locator("#r-threshold").input_value() == "300"
            page.fill("#r-threshold", "250")
            page.fill("#r-window", "45")
            page.fill("#r-channels", "email:lunch@example.com")
            page.select_option("#r-locale", "zh-CN")
            page.click("#r-save")
            assert page.locator("#message").get_attribute("class") == "msg ok"
            rows = page.locator("#rule-changes tr[data-field]")
            assert rows.count() == 4
            threshold = page.locator('#rule-changes tr[data-field="threshold"]')
            assert threshold.locator(".old").inner_text() == "300"
            assert threshold.locator(".new").inner_text() == "250"
            # Out of bounds on the page: refused with its code, nothing written.
            page.fill("#r-window", "99999")
            page.click("#r-save")
            assert "alert_rule_window_invalid" in page.locator("#message").inner_text()
            assert page.locator("#rule-changes tr[data-field]").count() == 4
            page.screenshot(path=str(ARTIFACTS / "alert-rule-edit.png"), full_page=True)
        finally:
            browser.close()
    rule = next(r for r in w.get("/v1/monitoring/alert-rules").json()["rules"] if r["id"] == rule_id)
    assert (rule["threshold"], rule["window_minutes"], rule["locale"]) == (250, 45, "zh-CN")
    assert rule["channels"] == ["email:lunch@example.com"]
    actors = {c["actor"] for c in w.get(f"/v1/monitoring/alert-rules/{rule_id}/changes").json()["changes"]}
    assert len(actors) == 1 and actors.pop().startswith("merchant:")
    assert (
        w.post(f"/v1/monitoring/alert-rules/{rule_id}/active", {"active": False}, w.manager).status_code
        == 200
    )
