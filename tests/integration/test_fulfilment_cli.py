"""`tillit fulfilment` in process (Typer's runner) on the shared SQLite database: list, ship, show, settings,
refusals."""

from __future__ import annotations

import json
import uuid

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from tests.support.api import new_order, pay_cash, post
from tests.support.world import make_tenant
from tillit.api.app import create_app
from tillit.bootstrap import Container
from tillit.cli import app
from tillit.cli import fulfilment as fulfilment_cli


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_fulfilment_commands(container: Container, monkeypatch: pytest.MonkeyPatch) -> None:
    c = container
    tenant = make_tenant(c, f"Cli {uuid.uuid4().hex[:6]}")
    with TestClient(create_app(c)) as client:
        order = new_order(client, tenant, [{"sku": "WATER", "quantity": 1}])
        pay_cash(client, tenant, order["id"])
        body = {"kind": "delivery", "address": "1 Road", "contact_email": "a@b.cn"}
        f = post(client, f"/v1/orders/{order['id']}/fulfilment", body, tenant).json()
    # The commands run on this container (one engine for the test) instead of building one per command.
    monkeypatch.setattr(fulfilment_cli, "build", lambda: c)
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
