"""`tillit fulfilment` in process (Typer's runner) on a SQLite home: list, ship, show, settings, refusals."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from tests.support.api import new_order, pay_cash, post
from tests.support.world import make_tenant
from tillit.adapters.db import migrate
from tillit.api.app import create_app
from tillit.bootstrap import build
from tillit.cli import app
from tillit.config import Settings


def test_fulfilment_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'tillit.sqlite'}"
    monkeypatch.setenv("TILLIT_HOME", str(tmp_path))
    monkeypatch.setenv("TILLIT_DATABASE_URL", url)
    c = build(Settings(home=tmp_path, database_url=url))
    migrate.upgrade(c.db)
    tenant = make_tenant(c, f"Cli {uuid.uuid4().hex[:6]}")
    with TestClient(create_app(c)) as client:
        order = new_order(client, tenant, [{"sku": "WATER", "quantity": 1}])
        pay_cash(client, tenant, order["id"])
        body = {"kind": "delivery", "address": "1 Road", "contact_email": "a@b.cn"}
        f = post(client, f"/v1/orders/{order['id']}/fulfilment", body, tenant).json()
    runner = CliRunner()
    m = ["--merchant", tenant.merchant_id]
    listed = runner.invoke(app, ["fulfilment", "list", *m, "--format", "json"])
    assert listed.exit_code == 0, listed.output
    assert [r["id"] for r in json.loads(listed.output)] == [f["id"]]
    shipped = runner.invoke(
        app, ["fulfilment", "ship", *m, f["id"], "--carrier", "SF", "--tracking", "SF5", "--format", "json"]
    )
    assert shipped.exit_code == 0, shipped.output
    assert json.loads(shipped.output)["status"] == "shipped"
    shown = runner.invoke(app, ["fulfilment", "show", *m, f["id"]])
    assert "status: shipped" in shown.output and f["customer_path"] in shown.output
    again = runner.invoke(app, ["fulfilment", "ready", *m, f["id"]])
    assert again.exit_code == 2 and "fulfilment_wrong_kind" in again.output
    other = runner.invoke(app, ["fulfilment", "show", "--merchant", uuid.uuid4().hex, f["id"]])
    assert other.exit_code == 2 and "fulfilment_not_found" in other.output  # another merchant: not found
    periods = ["--auto-confirm-days", "7", "--reminder-hours", "24", "--ship-sla-hours", "24"]
    put = runner.invoke(app, ["fulfilment", "settings", *m, *periods])
    assert put.exit_code == 0 and json.loads(put.output)["auto_confirm_days"] == 7
    bad = runner.invoke(
        app,
        [
            "fulfilment",
            "settings",
            *m,
            "--auto-confirm-days",
            "99",
            "--reminder-hours",
            "1",
            "--ship-sla-hours",
            "1",
        ],
    )
    assert bad.exit_code == 2 and "invalid_fulfilment_settings" in bad.output
    c.db.dispose()
