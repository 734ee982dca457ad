"""A delivery paid by WeChat Pay at the sandbox, disputed on the customer page over real HTTP, resolved by a
partial refund that travels the existing refund path (sales/refunds -> EngineGateway -> the production
WeChat adapter -> the sandbox). The sandbox's own ledger says how much went back to the wallet."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path

import httpx
import pytest

from tests.support.live import live_server
from tests.support.sandbox import START, Accounts, SandboxControl, running_sandbox
from tests.support.sandbox import provider_accounts as account_settings
from tests.support.world import Tenant, make_tenant
from tillit.adapters.db import migrate
from tillit.bootstrap import Container, build
from tillit.config import Settings
from tillit.domain.clock import ManualClock
from tillit.payments import accounts as provider_accounts
from tillit.worker import drain


@pytest.fixture
def shop(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, sqlite_home: Path
) -> Iterator[tuple[Container, ManualClock, SandboxControl, Tenant, httpx.Client]]:
    clock = ManualClock(START.astimezone(UTC))
    url = (
        request.getfixturevalue("pg_url")
        if backend == "postgresql"
        else f"sqlite:///{sqlite_home / 'tillit.sqlite'}"
    )
    c = build(Settings(home=sqlite_home, database_url=url, provider_timeout_s=3.0), clock=clock)
    migrate.upgrade(c.db)
    accounts = Accounts.fresh()
    with running_sandbox(tmp_path / "sandbox", accounts) as sbx, live_server(c) as base:
        tenant = make_tenant(c, f"Sbx {uuid.uuid4().hex[:8]}")
        with c.db.transaction() as conn:
            for provider, settings in account_settings(accounts, sbx.url).items():
                provider_accounts.set_account(conn, c.deps, tenant.merchant_id, provider, settings)
        with httpx.Client(base_url=base, timeout=30) as http:
            yield c, clock, sbx, tenant, http
    c.db.dispose()


# The provider refund path itself runs on both databases in test_engine.py; here it is the fulfilment's use.
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_dispute_ends_in_a_partial_provider_refund(
    shop: tuple[Container, ManualClock, SandboxControl, Tenant, httpx.Client],
) -> None:
    c, clock, sbx, tenant, http = shop

    def post(path: str, body: object, role: str = "terminal") -> httpx.Response:
        headers = {**tenant.auth(role), "Idempotency-Key": uuid.uuid4().hex}
        return http.post(path, json=body, headers=headers)

    wallet = sbx.wallet("wechat")
    order = post("/v1/orders", {"lines": [{"sku": "LATTE", "quantity": 2}]}).json()  # 5600
    paid = post("/v1/payments", {"order_id": order["id"], "payment_code": sbx.code(wallet)})
    assert paid.status_code == 201 and paid.json()["status"] == "captured", paid.text
    f = post(
        f"/v1/orders/{order['id']}/fulfilment",
        {"kind": "delivery", "address": "北京市 朝阳区 2 号", "contact_email": "kehu@example.cn"},
    ).json()
    post(f"/v1/fulfilments/{f['id']}/ship", {"carrier": "SF", "tracking_number": "SF77"})
    page = http.get(f["customer_path"])
    csrf = re.search(r'/dispute[^>]*>\s*<input type="hidden" name="csrf" value="([^"]+)"', page.text)
    assert csrf is not None, page.text
    r = http.post(
        f["customer_path"] + "/dispute",
        data={"csrf": csrf.group(1), "reason": "damaged_items", "note": "one cup broken"},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    r = post(f"/v1/fulfilments/{f['id']}/resolve", {"action": "refund", "amount": 2800}, role="merchant")
    assert r.status_code in (201, 202), r.text
    resolved = r.json()
    assert resolved["status"] == "refunded" and resolved["refund"]["amount"] == 2800
    clock.advance(61)
    sbx.advance(61)
    assert c.engine is not None
    drain(c.db, c.deps, c.engine, max_seconds=20)
    after = http.get(f"/v1/fulfilments/{f['id']}", headers=tenant.auth()).json()
    assert after["refund"]["status"] == "succeeded"
    assert sbx.ledger(wallet)["total_refunded_fen"] == 2800  # the provider moved exactly that much back
    got = http.get(f"/v1/orders/{order['id']}", headers=tenant.auth()).json()
    assert got["refunded_amount"] == 2800 and got["status"] == "paid"
    again = post(f"/v1/fulfilments/{f['id']}/resolve", {"action": "refund", "amount": 100}, role="merchant")
    assert again.status_code == 409  # refunded is terminal: no second refund through the dispute
