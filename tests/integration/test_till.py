"""The till against a real server (SQLite and PostgreSQL): journal first, offline cash, lost answers,
shifts, bad input. Provider payments use the sandbox."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from tests.support.live import free_port, live_server
from tests.support.sandbox import Accounts, running_sandbox
from tests.support.sandbox import provider_accounts as account_settings
from tests.support.world import Tenant
from tillit.adapters.db.schema import orders, till_sync_reports
from tillit.bootstrap import Container
from tillit.payments import accounts as provider_accounts
from tillit.till.client import LinkDown, ServerClient
from tillit.till.journal import Journal
from tillit.till.service import Till, TillError


def make_till(path: Path, base: str, tenant: Tenant, transport: httpx.BaseTransport | None = None) -> Till:
    till = Till(
        Journal(path),
        ServerClient(base, tenant.cashier_key, transport=transport),
        terminal_id=tenant.terminal_id,
    )
    return till


def drain(till: Till, rounds: int = 100) -> None:
    for _ in range(rounds):
        till.sync_once()
        till.resolve_in_flight()
        if till.journal.pending_count() == 0:
            return
    raise AssertionError("outbox did not drain")


def server_order(container: Container, order_id: str) -> Any:
    with container.db.read() as conn:
        return conn.execute(select(orders).where(orders.c.id == order_id)).first()


def test_cash_sale_journal_first_then_synced(container: Container, tenant: Tenant, tmp_path: Path) -> None:
    with live_server(container) as base:
        till = make_till(tmp_path / "j.sqlite", base, tenant)
        assert till.refresh_catalogue() == 3
        till.open_shift(10000)
        till.add_item("LATTE", 2)
        till.add_item("CROIS")
        till.set_discount(2, 500)
        result = till.pay_cash(10000)
        assert result["change_due"] == 10000 - (2 * 2800 + 1000)
        sale = till.journal.one("SELECT * FROM sales WHERE id = ?", (result["sale_id"],))
        assert sale["status"] == "completed" and till.journal.pending_count() == 2
        drain(till)
        order = server_order(container, result["sale_id"])
        assert order.status == "paid" and order.total == 6600 and order.paid_amount == 6600
        assert (
            till.journal.one("SELECT server_number FROM sales WHERE id = ?", (result["sale_id"],))[0]
            == order.number
        )


def test_thousand_offline_cash_sales_sync_exactly_once(
    container: Container, tenant: Tenant, tmp_path: Path
) -> None:
    port = free_port()
    till = make_till(tmp_path / "j.sqlite", f"http://127.0.0.1:{port}", tenant)
    with live_server(container) as base:  # the catalogue was loaded while the link was up
        make_till(tmp_path / "j.sqlite", base, tenant).refresh_catalogue()
    till.open_shift(0)
    ids = []
    for i in range(1000):
        till.add_item(("LATTE", "CROIS", "WATER")[i % 3], 1 + i % 2)
        ids.append(till.pay_cash(None)["sale_id"])
    with pytest.raises(LinkDown):
        till.sync_once()
    assert till.journal.unsynced_sales() == 1000
    with pytest.raises(TillError) as refused:
        till.close_shift(0)
    assert refused.value.reason == "close_refused"
    with live_server(container, port=port):
        till.sync_once()  # one pass: 500 of the 2,000 journal entries (SYNC_MAX_ENTRIES)
        with container.db.read() as conn:  # the till said how many it still holds: the backlog is exact
            reported = conn.execute(
                select(till_sync_reports.c.queued).where(
                    till_sync_reports.c.terminal_id == tenant.terminal_id
                )
            ).scalar_one()
        assert reported == till.journal.pending_count() == 1500
        drain(till, rounds=50)
        drain(till, rounds=1)  # a second pass sends nothing new
    with container.db.read() as conn:
        assert (
            conn.execute(
                select(till_sync_reports.c.queued).where(
                    till_sync_reports.c.terminal_id == tenant.terminal_id
                )
            ).scalar_one()
            == 0
        )
    with container.db.read() as conn:
        count = conn.execute(
            select(func.count()).select_from(orders).where(orders.c.id.in_(ids))
        ).scalar_one()
        paid = conn.execute(
            select(func.count()).select_from(orders).where(orders.c.id.in_(ids), orders.c.status == "paid")
        ).scalar_one()
    assert count == paid == 1000
    assert till.journal.one("SELECT COUNT(*) FROM outbox WHERE state <> 'done'")[0] == 0


class DropFirstAnswer(httpx.HTTPTransport):
    """Forwards every request, but loses the answer of the first one to ``path``: the request was
    processed by the server, the till never hears back (a cable pulled at the worst moment)."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self.dropped = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if request.url.path == self.path and request.method == "POST" and not self.dropped:
            self.dropped += 1
            response.read()
            raise httpx.ReadError("connection reset after the server answered")
        return response


@pytest.fixture
def sandbox_till(
    container: Container, tenant: Tenant, tmp_path: Path
) -> Iterator[tuple[Till, Any, DropFirstAnswer]]:
    accounts = Accounts.fresh()
    with running_sandbox(tmp_path / "sbx", accounts) as sbx, live_server(container) as base:
        with container.db.transaction() as conn:
            for provider, settings in account_settings(accounts, sbx.url).items():
                provider_accounts.set_account(conn, container.deps, tenant.merchant_id, provider, settings)
        transport = DropFirstAnswer("/v1/payments")
        till = make_till(tmp_path / "j.sqlite", base, tenant, transport)
        till.refresh_catalogue()
        till.open_shift(0)
        yield till, sbx, transport


def test_lost_payment_answer_shows_checking_then_settles_without_a_second_charge(
    sandbox_till: tuple[Till, Any, DropFirstAnswer], container: Container
) -> None:
    till, sbx, transport = sandbox_till
    wallet = sbx.wallet("wechat")
    till.add_item("LATTE")
    tender = till.pay_code(sbx.code(wallet))
    assert transport.dropped == 1
    assert tender["status"] == "unknown"  # never "failed" while unknown
    with pytest.raises(TillError) as again:
        till.pay_code(sbx.code(wallet))
    assert again.value.reason == "payment_in_progress"
    drain(till)
    final = till.tender(tender["id"])
    assert final["status"] == "captured"
    assert sbx.net_debited(wallet) == 2800  # charged once
    sale = till.journal.one("SELECT status FROM sales WHERE id = ?", (final["sale_id"],))
    assert sale["status"] == "completed"


def test_split_cash_and_alipay_then_refund(
    sandbox_till: tuple[Till, Any, DropFirstAnswer], container: Container
) -> None:
    till, sbx, transport = sandbox_till
    transport.dropped = 1  # no lost answers in this test
    wallet = sbx.wallet("alipay")
    till.add_item("LATTE", 2)
    till.pay_cash(2000, amount=2000)
    tender = till.pay_code(sbx.code(wallet))
    assert tender["status"] == "captured" and tender["amount"] == 3600
    drain(till)
    order = server_order(container, tender["sale_id"])
    assert order.status == "paid" and order.paid_amount == 5600
    refund = till.refund(tender["id"], 1000, "cold")
    assert refund["status"] in ("succeeded", "processing", "pending")
    with pytest.raises(TillError) as too_much:
        till.refund(tender["id"], 3000, None)
    assert too_much.value.reason == "refund_too_large"


def test_bad_input_changes_nothing(container: Container, tenant: Tenant, tmp_path: Path) -> None:
    with live_server(container) as base:
        till = make_till(tmp_path / "j.sqlite", base, tenant)
        till.refresh_catalogue()
        till.open_shift(0)
        till.add_item("LATTE")
        snapshot = [
            till.journal.query(f"SELECT * FROM {t}") for t in ("sales", "sale_lines", "tenders", "outbox")
        ]
        cases = [
            (lambda: till.add_item("0000000000000"), "unknown_barcode"),
            (lambda: till.add_item("LATTE", 0), "invalid_quantity"),
            (lambda: till.set_quantity(1, 10000), "invalid_quantity"),
            (lambda: till.set_discount(1, 2801), "invalid_discount"),
            (lambda: till.pay_code("999999999999"), "unsupported_code"),
            (lambda: till.pay_cash(100), "insufficient_tender"),
            (lambda: till.pay_cash(None, amount=999999), "invalid_tender_amount"),
        ]
        for action, reason in cases:
            with pytest.raises(TillError) as err:
                action()
            assert err.value.reason == reason
        after = [
            till.journal.query(f"SELECT * FROM {t}") for t in ("sales", "sale_lines", "tenders", "outbox")
        ]
        assert [[tuple(r) for r in rows] for rows in after] == [[tuple(r) for r in rows] for rows in snapshot]


def test_shift_close_report_chain_reaches_the_server(
    container: Container, tenant: Tenant, tmp_path: Path
) -> None:
    with live_server(container) as base:
        till = make_till(tmp_path / "j.sqlite", base, tenant)
        till.refresh_catalogue()
        till.open_shift(10000)
        till.add_item("LATTE")
        till.pay_cash(5000)
        till.add_item("WATER")
        till.pay_cash(None)
        till.add_item("CROIS")
        till.cancel_sale("customer_cancelled")
        drain(till)
        report = till.close_shift(13000)
        assert report["sales_by_method"] == {"cash": 3100} and report["expected_cash"] == 13100
        assert report["difference"] == -100 and report["cancels_by_reason"] == {"customer_cancelled": 1}
        drain(till)
        till.open_shift(13000)
        drain(till)
        second = till.close_shift(13000)
        drain(till)
        listed = httpx.get(base + "/v1/shifts", headers=tenant.auth("merchant")).json()["data"]
        mine = [s for s in listed if s["terminal_id"] == tenant.terminal_id]
        assert [s["number"] for s in mine] == [2, 1]
        assert (
            mine[0]["prev_hash"] == mine[1]["report_hash"] and mine[0]["report"]["number"] == second["number"]
        )
        assert uuid.UUID(mine[0]["id"])
