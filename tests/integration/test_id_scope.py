"""Client-chosen ids are unique per merchant only (issue #9, defect 7: the existence oracle).

Merchant B posting an order, cash payment, provider payment, refund or shift report with an id that
merchant A already uses gets exactly what a fresh id gets (201 and its own object), never 409
id_conflict; A's object is untouched; A reusing its own id keeps the replay / 409 rules. Real HTTP to
a live server, the production provider adapters against the sandbox, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from tests.support.live import live_server
from tests.support.sandbox import START, Accounts, SandboxControl, free_socket, sandbox_config
from tests.support.sandbox import provider_accounts as account_settings
from tests.support.world import Tenant, make_tenant
from tillit.adapters.db import migrate
from tillit.bootstrap import Container, build
from tillit.config import Settings
from tillit.domain.clock import ManualClock
from tillit.domain.shifts import GENESIS, ShiftTotals, chain_hash
from tillit.kernel.check import run_checks
from tillit.payments import accounts as provider_accounts
from tillit.sandbox.app import create_app as create_sandbox
from tillit.sandbox.clock import SandboxClock


@dataclass
class Side:
    tenant: Tenant
    http: httpx.Client

    def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        # A new Idempotency-Key every time: these requests exercise the id rules, not key replay.
        return self.http.post(path, json=body, headers={"Idempotency-Key": uuid.uuid4().hex})

    def get(self, path: str) -> dict[str, Any]:
        r = self.http.get(path)
        assert r.status_code == 200, r.text
        return dict(r.json())

    def order(self, order_id: str | None = None) -> dict[str, Any]:
        r = self.post(
            "/v1/orders",
            {**({"id": order_id} if order_id else {}), "lines": [{"sku": "LATTE", "quantity": 1}]},
        )
        assert r.status_code == 201, r.text
        return dict(r.json())

    def cash(self, order_id: str, payment_id: str | None = None) -> httpx.Response:
        return self.post(
            "/v1/payments",
            {"order_id": order_id, "method": "cash", **({"id": payment_id} if payment_id else {})},
        )


@dataclass
class Pair:
    c: Container
    sbx: SandboxControl
    a: Side
    b: Side


@pytest.fixture
def pair(backend: str, request: pytest.FixtureRequest, tmp_path: Path, sqlite_home: Path) -> Iterator[Pair]:
    url = (
        request.getfixturevalue("pg_url")
        if backend == "postgresql"
        else f"sqlite:///{sqlite_home / 'tillit.sqlite'}"
    )
    c = build(
        Settings(home=sqlite_home, database_url=url, provider_timeout_s=3.0),
        clock=ManualClock(START.astimezone(UTC)),
    )
    migrate.upgrade(c.db)
    acc_a, acc_b = Accounts.fresh(), Accounts.fresh()
    # One sandbox serving both merchants' WeChat accounts: trades are the provider's per account.
    one, two = sandbox_config(acc_a), sandbox_config(acc_b)
    config = replace(one, wechat=one.wechat + two.wechat, alipay=one.alipay + two.alipay)
    app = create_sandbox(config, tmp_path / "sandbox", clock=SandboxClock(start=START, speed=0), seed=7)
    sock = free_socket()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "sandbox did not start"
        time.sleep(0.005)
    sbx = SandboxControl(f"http://127.0.0.1:{sock.getsockname()[1]}")
    try:
        with live_server(c) as base:
            sides = []
            for name, acc in (("A", acc_a), ("B", acc_b)):
                tenant = make_tenant(c, f"Scope {name} {uuid.uuid4().hex[:8]}")
                with c.db.transaction() as conn:
                    settings = account_settings(acc, sbx.url)["wechat"]
                    provider_accounts.set_account(conn, c.deps, tenant.merchant_id, "wechat", settings)
                sides.append(Side(tenant, httpx.Client(base_url=base, headers=tenant.auth(), timeout=30)))
            try:
                yield Pair(c, sbx, sides[0], sides[1])
            finally:
                for side in sides:
                    side.http.close()
            with c.db.read() as conn:
                checks = run_checks(conn)
            assert all(r.ok for r in checks), [r.violations for r in checks if not r.ok]
    finally:
        sbx.http.close()
        server.should_exit = True
        thread.join(10)
        c.db.dispose()


def _same_shape(taken: httpx.Response, fresh: httpx.Response) -> None:
    """B's answer for A's id is the answer for an unused id: same status, same fields, no conflict."""
    assert taken.status_code == fresh.status_code, (taken.text, fresh.text)
    assert set(taken.json()) == set(fresh.json())
    assert "id_conflict" not in taken.text


def test_order_id_of_another_merchant_is_unused(pair: Pair) -> None:
    taken_id = uuid.uuid4().hex
    mine = pair.a.order(taken_id)
    r = pair.b.post("/v1/orders", {"id": taken_id, "lines": [{"sku": "CROIS", "quantity": 2}]})
    fresh = pair.b.post("/v1/orders", {"id": uuid.uuid4().hex, "lines": [{"sku": "CROIS", "quantity": 2}]})
    _same_shape(r, fresh)
    assert r.status_code == 201
    theirs = r.json()
    assert theirs["id"] == taken_id and theirs["store_id"] == pair.b.tenant.store_id
    assert theirs["total"] == 3000 and theirs["number"] == fresh.json()["number"] - 1
    assert pair.a.get(f"/v1/orders/{taken_id}") == mine
    assert pair.b.get(f"/v1/orders/{taken_id}") == theirs
    assert [e["entity_id"] for e in pair.b.get(f"/v1/orders/{taken_id}/events")["data"]] == [taken_id]
    # Both pay: each order, payments and ledger stay its merchant's (the fixture's integrity checks).
    assert pair.a.cash(taken_id).status_code == 201 and pair.b.cash(taken_id).status_code == 201
    assert pair.a.get(f"/v1/orders/{taken_id}")["paid_amount"] == mine["total"]
    assert pair.b.get(f"/v1/orders/{taken_id}")["paid_amount"] == theirs["total"]
    mine = pair.a.get(f"/v1/orders/{taken_id}")
    # A's own id still replays (200, the same order), as before.
    again = pair.a.post("/v1/orders", {"id": taken_id, "lines": [{"sku": "LATTE", "quantity": 1}]})
    assert again.status_code == 200 and again.json() == mine


def test_cash_payment_id_of_another_merchant_is_unused(pair: Pair) -> None:
    pay_id = uuid.uuid4().hex
    a_order = pair.a.order()
    a_pay = pair.a.cash(a_order["id"], pay_id)
    assert a_pay.status_code == 201, a_pay.text
    b_order, b_other = pair.b.order(), pair.b.order()
    r = pair.b.cash(b_order["id"], pay_id)
    _same_shape(r, pair.b.cash(b_other["id"], uuid.uuid4().hex))
    assert r.status_code == 201 and r.json()["id"] == pay_id and r.json()["order_id"] == b_order["id"]
    assert pair.b.get(f"/v1/orders/{b_order['id']}")["status"] == "paid"
    assert pair.a.get(f"/v1/payments/{pay_id}") == a_pay.json()
    assert pair.a.get(f"/v1/orders/{a_order['id']}")["payments"] == [a_pay.json()]
    # A's own rules: the same id for the same order replays; for another order it is a conflict.
    again = pair.a.cash(a_order["id"], pay_id)
    assert again.status_code == 200 and again.json() == a_pay.json()
    clash = pair.a.cash(pair.a.order()["id"], pay_id)
    assert clash.status_code == 409 and clash.json()["error"]["code"] == "id_conflict"


def test_refund_id_of_another_merchant_is_unused(pair: Pair) -> None:
    refund_id = uuid.uuid4().hex
    a_pay = pair.a.cash(pair.a.order()["id"]).json()
    a_ref = pair.a.post("/v1/refunds", {"payment_id": a_pay["id"], "amount": 100, "id": refund_id})
    assert a_ref.status_code == 201, a_ref.text
    b_pay = pair.b.cash(pair.b.order()["id"]).json()
    r = pair.b.post("/v1/refunds", {"payment_id": b_pay["id"], "amount": 200, "id": refund_id})
    fresh = pair.b.post("/v1/refunds", {"payment_id": b_pay["id"], "amount": 200, "id": uuid.uuid4().hex})
    _same_shape(r, fresh)
    assert r.status_code == 201 and r.json()["id"] == refund_id and r.json()["payment_id"] == b_pay["id"]
    assert pair.b.get(f"/v1/payments/{b_pay['id']}")["refunded_amount"] == 400
    assert pair.a.get(f"/v1/refunds/{refund_id}") == a_ref.json()
    assert pair.a.get(f"/v1/payments/{a_pay['id']}")["refunded_amount"] == 100
    again = pair.a.post("/v1/refunds", {"payment_id": a_pay["id"], "amount": 100, "id": refund_id})
    assert again.status_code == 200 and again.json() == a_ref.json()
    other = pair.a.cash(pair.a.order()["id"]).json()
    clash = pair.a.post("/v1/refunds", {"payment_id": other["id"], "amount": 100, "id": refund_id})
    assert clash.status_code == 409 and clash.json()["error"]["code"] == "id_conflict"


def test_provider_payment_and_refund_ids_of_another_merchant_are_unused(pair: Pair) -> None:
    pay_id, refund_id = uuid.uuid4().hex, uuid.uuid4().hex
    wallets = {side.tenant.merchant_id: pair.sbx.wallet("wechat") for side in (pair.a, pair.b)}

    def scan(side: Side, order_id: str, payment_id: str) -> httpx.Response:
        code = pair.sbx.code(wallets[side.tenant.merchant_id])
        return side.post("/v1/payments", {"order_id": order_id, "payment_code": code, "id": payment_id})

    a_order = pair.a.order()
    a_pay = scan(pair.a, a_order["id"], pay_id)
    assert a_pay.status_code == 201 and a_pay.json()["status"] == "captured", a_pay.text
    b_order = pair.b.order()
    r = scan(pair.b, b_order["id"], pay_id)
    _same_shape(r, scan(pair.b, pair.b.order()["id"], uuid.uuid4().hex))
    assert r.status_code == 201 and r.json()["status"] == "captured", r.text
    assert r.json()["id"] == pay_id and r.json()["order_id"] == b_order["id"]
    assert pair.a.get(f"/v1/payments/{pay_id}") == a_pay.json()
    assert pair.sbx.net_debited(wallets[pair.a.tenant.merchant_id]) == a_order["total"]
    # Refunds of the two payments under one refund number, each at its own provider account.
    a_ref = pair.a.post("/v1/refunds", {"payment_id": pay_id, "amount": 500, "id": refund_id})
    b_ref = pair.b.post("/v1/refunds", {"payment_id": pay_id, "amount": 700, "id": refund_id})
    assert a_ref.status_code == b_ref.status_code and a_ref.status_code in (201, 202), (
        a_ref.text,
        b_ref.text,
    )
    assert b_ref.json()["amount"] == 700 and b_ref.json()["payment_id"] == pay_id
    assert pair.a.get(f"/v1/refunds/{refund_id}")["amount"] == 500
    assert pair.sbx.net_debited(wallets[pair.b.tenant.merchant_id]) == 2 * b_order["total"] - 700
    clash = scan(pair.a, pair.a.order()["id"], pay_id)
    assert clash.status_code == 409 and clash.json()["error"]["code"] == "id_conflict"


def _shift(side: Side, shift_id: str, number: int, prev: str, counted: int) -> tuple[httpx.Response, str]:
    report = ShiftTotals(opening_float=0).report(
        number=number,
        terminal_id=side.tenant.terminal_id,
        opened_at="2026-11-20T08:00:00+00:00",
        closed_at="2026-11-20T18:00:00+00:00",
        counted_cash=counted,
    )
    digest = chain_hash(prev, report)
    body = {"id": shift_id, "number": number, "prev_hash": prev, "report_hash": digest, "report": report}
    return side.post("/v1/shifts", body), digest


def test_shift_id_of_another_merchant_is_unused(pair: Pair) -> None:
    shift_id = uuid.uuid4().hex
    a_shift, a_hash = _shift(pair.a, shift_id, 1, GENESIS, 0)
    assert a_shift.status_code == 201, a_shift.text
    r, b_hash = _shift(pair.b, shift_id, 1, GENESIS, 500)
    fresh, _ = _shift(pair.b, uuid.uuid4().hex, 2, b_hash, 0)
    _same_shape(r, fresh)
    assert (
        r.status_code == 201
        and r.json()["id"] == shift_id
        and r.json()["terminal_id"] == pair.b.tenant.terminal_id
    )
    assert pair.a.get("/v1/shifts")["data"] == [a_shift.json()]
    again, _ = _shift(pair.a, shift_id, 1, GENESIS, 0)
    assert again.status_code == 200 and again.json() == a_shift.json()
    clash, _ = _shift(pair.a, shift_id, 2, a_hash, 0)
    assert clash.status_code == 409 and clash.json()["error"]["code"] == "id_conflict"
