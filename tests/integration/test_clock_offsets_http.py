"""Issue #9, defect 11, end to end: a server whose clock starts at 2026-11-20T16:00:00+08:00 (as `tillit
chaos` passes the sandbox's time) records an order and a cash payment at the true instant, 08:00Z — not
16:00Z (the offset dropped) and not 00:00Z (the offset applied twice) — on SQLite and PostgreSQL, through
a live uvicorn server and a real `tillit serve` process with TILLIT_CLOCK_START. GET /v1/orders?since=
&until= (its only time filters) select by the true instant whatever offset the query carries.

Checked against each fix reverted: without the clock fix the in-process server's clock reads +08:00 and
`tillit serve` on SQLite answers 16:00Z; without the UtcDateTime column the offset filters select the
wrong orders on SQLite. (On PostgreSQL timestamptz masks both: there the tests guard against regressions.)
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import pg
from tests.support.live import free_port, live_server
from tests.support.world import Tenant, make_tenant
from tillit.adapters.db import migrate
from tillit.bootstrap import Container, build
from tillit.config import Settings
from tillit.domain.clock import ScaledClock

CN = timezone(timedelta(hours=8))
START = "2026-11-20T16:00:00+08:00"
TRUE_INSTANT = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


@pytest.fixture
def database(backend: str, tmp_path: Path) -> Iterator[str]:
    """A database of this test's own: its orders are dated 2026-11-20 by a clock of its own."""
    if backend == "postgresql":
        url = pg.create_database("tillit_clock")
        yield url
        pg.drop_database(url)
    else:
        yield f"sqlite:///{tmp_path / 'clock.sqlite'}"


def settings(database: str, home: Path) -> Settings:
    return Settings(home=home, database_url=database)


def post(http: httpx.Client, path: str, body: Any, tenant: Tenant) -> Any:
    r = http.post(path, json=body, headers={**tenant.auth(), "Idempotency-Key": uuid.uuid4().hex})
    assert r.status_code == 201, r.text
    return r.json()


def read_time(value: str) -> datetime:
    """An API timestamp: ISO 8601 UTC with a Z suffix, within minutes after the clock's start."""
    assert value.endswith("Z"), value
    at = datetime.fromisoformat(value)
    assert at.utcoffset() == timedelta(0)
    assert TRUE_INSTANT <= at < TRUE_INSTANT + timedelta(minutes=10), value  # not 16:00Z, not 00:00Z
    return at


def check_sale(http: httpx.Client, tenant: Tenant) -> None:
    order = post(http, "/v1/orders", {"lines": [{"sku": "LATTE", "quantity": 1}]}, tenant)
    created = read_time(order["created_at"])
    read_time(order["updated_at"])
    payment = post(http, "/v1/payments", {"order_id": order["id"], "method": "cash"}, tenant)
    read_time(payment["created_at"])
    read_time(payment["updated_at"])
    again = http.get(f"/v1/orders/{order['id']}", headers=tenant.auth()).json()
    assert again["status"] == "paid"
    assert read_time(again["created_at"]) == created
    assert read_time(again["updated_at"]) >= created
    for p in again["payments"]:
        read_time(p["created_at"])
    events = http.get(f"/v1/orders/{order['id']}/events", headers=tenant.auth()).json()["data"]
    assert len(events) >= 2
    for e in events:
        assert read_time(e["at"]) >= created

    def listed(**window: datetime) -> set[str]:
        params = {k: v.isoformat() for k, v in window.items()}
        r = http.get("/v1/orders", params=params, headers=tenant.auth())
        assert r.status_code == 200, r.text
        return {o["id"] for o in r.json()["data"]}

    one_min = timedelta(minutes=1)
    before, after = created - one_min, created + one_min
    for zone in (UTC, CN, timezone(timedelta(hours=-5))):  # the same instants written three ways
        assert listed(since=before.astimezone(zone)) == {order["id"]}, zone
        assert listed(until=after.astimezone(zone)) == {order["id"]}, zone
        assert listed(since=before.astimezone(zone), until=after.astimezone(zone)) == {order["id"]}, zone
        assert listed(since=after.astimezone(zone)) == set(), zone
        assert listed(until=before.astimezone(zone)) == set(), zone
    # The wall-clock reading in China taken as UTC (16:00Z) is eight hours after the sale: nothing then.
    assert listed(since=datetime(2026, 11, 20, 15, 59, tzinfo=UTC)) == set()


def test_live_server_with_offset_clock(database: str, tmp_path: Path) -> None:
    clock = ScaledClock(1.0, time.time(), datetime.fromisoformat(START))
    c: Container = build(settings(database, tmp_path / "home"), clock=clock)
    try:
        migrate.upgrade(c.db)
        assert c.deps.clock.now().utcoffset() == timedelta(0)  # the clock itself reads UTC
        tenant = make_tenant(c, "Clock shop")
        with live_server(c) as base, httpx.Client(base_url=base, timeout=30) as http:
            check_sale(http, tenant)
    finally:
        c.db.dispose()


def test_tillit_serve_with_clock_start(database: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    c = build(settings(database, home))
    try:
        migrate.upgrade(c.db)
        tenant = make_tenant(c, "Serve clock shop")
    finally:
        c.db.dispose()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TILLIT_")}
    env.update(
        {
            "TILLIT_HOME": str(home),
            "TILLIT_DATABASE_URL": database,
            "TILLIT_CLOCK_START": START,
            "NO_COLOR": "1",
        }
    )
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tillit.cli", "serve", "--port", str(port), "--no-access-log", "--no-worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise AssertionError(f"server did not start: {proc.communicate()[1]!r}")
            time.sleep(0.1)
        with httpx.Client(base_url=base, timeout=30) as http:
            check_sale(http, tenant)
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
