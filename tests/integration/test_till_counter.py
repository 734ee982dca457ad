"""The counter's operations against a real server (SQLite and PostgreSQL): numpad discounts and price cuts
with the store's limit and a manager's PIN, order discount and 抹零 spread into the order the server
accepts, hold and recall across a till restart, the Z report's parked sales, returns by receipt."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tests.support.backoffice import BO, signin
from tests.support.live import live_server
from tests.support.world import Tenant
from tillit.adapters.db.schema import events, order_lines, orders, store_manager_pins
from tillit.bootstrap import Container
from tillit.domain.clock import ManualClock
from tillit.domain.shifts import chain_hash
from tillit.domain.tillrules import hash_pin_pbkdf2
from tillit.sales import reports
from tillit.till import counter
from tillit.till.client import ServerClient
from tillit.till.journal import Journal
from tillit.till.service import Till, TillError


def make_till(path: Path, base: str, tenant: Tenant) -> Till:
    return Till(Journal(path), ServerClient(base, tenant.cashier_key), terminal_id=tenant.terminal_id)


def drain(till: Till) -> None:
    for _ in range(50):
        till.sync_once()
        if till.journal.pending_count() == 0:
            return
    raise AssertionError("outbox did not drain")


def rules(client: TestClient, tenant: Tenant, rounding: str = "jiao") -> None:
    body = {"discount_limit_pct": 20, "rounding": rounding, "managers": [{"name": "Li", "pin": "8888"}]}
    r = client.put(f"/v1/stores/{tenant.store_id}/till-settings", json=body, headers=tenant.auth("merchant"))
    assert r.status_code == 200, r.text


def refused(reason: str, action: Any) -> None:
    with pytest.raises(TillError) as caught:
        action()
    assert caught.value.reason == reason


def test_numpad_limit_pin_order_discount_rounding_synced(
    container: Container, client: TestClient, tenant: Tenant, tmp_path: Path
) -> None:
    rules(client, tenant)
    with live_server(container) as base:
        till = make_till(tmp_path / "j.sqlite", base, tenant)
        till.refresh_catalogue()
        till.open_shift(0)
        till.add_item("LATTE", 2)  # 56.00
        till.add_item("CROIS")  # 15.00
        counter.set_line(till, 1, "disc_pct", 10)  # 5.60: within 20 %
        refused("approval_required", lambda: counter.set_line(till, 2, "price", 1000))  # a third off
        refused("wrong_pin", lambda: counter.set_line(till, 2, "price", 1000, counter.Approval("1234", "x")))
        refused(
            "approval_reason", lambda: counter.set_line(till, 2, "price", 1000, counter.Approval("8888", " "))
        )
        refused("price_above_catalogue", lambda: counter.set_line(till, 2, "price", 1600))
        counter.set_line(till, 2, "price", 1000, counter.Approval("8888", "day-old"))
        counter.set_line(till, 2, "qty", 2)  # the changed price scales: discount 2 × 5.00
        lines = till._sale_lines(till.open_sale()["id"])
        assert [(ln["quantity"], ln["discount"]) for ln in lines] == [(2, 560), (2, 1000)]
        counter.order_discount(till, "order_amt", 333)  # 50.40 + 20.00 − 3.33 = 67.07
        assert counter.round_down(till) == 7  # 抹零 to the jiao: 67.00
        sale = till.open_sale()
        assert sale["total"] == 6700
        assert counter.adjustments(till, sale["id"]) == {"order_discount": 333, "rounding": 7}
        # One latte: its discount stays 5.60 (a discount is an amount once given); 22.40 + 20.00 − 3.33
        # = 39.07, and 抹零 is worked out again: 39.00.
        counter.set_line(till, 1, "qty", 1)
        assert till.open_sale()["total"] == 3900
        result = till.pay_cash(5000)
        assert result["change_due"] == 1100
        drain(till)
    with container.db.read() as conn:
        order = conn.execute(select(orders).where(orders.c.id == result["sale_id"])).one()
        assert order.total == 3900 and order.discount_total == 560 + 1000 + 333 + 7
        served = (
            conn.execute(
                select(order_lines.c.discount)
                .where(order_lines.c.order_id == order.id)
                .order_by(order_lines.c.line_no)
            )
            .scalars()
            .all()
        )
        assert sum(served) == 1900
        noted = conn.execute(
            select(events.c.actor, events.c.reason).where(
                events.c.order_id == order.id, events.c.reason.like("approval%")
            )
        ).all()
    assert len(noted) == 1 and noted[0].actor.startswith("manager:Li via terminal:")
    assert "price_change line 2" in noted[0].reason and "day-old" in noted[0].reason


def test_hold_recall_survive_restart_and_z_report(
    container: Container, client: TestClient, tenant: Tenant, tmp_path: Path
) -> None:
    rules(client, tenant, rounding="none")
    with live_server(container) as base:
        till = make_till(tmp_path / "j.sqlite", base, tenant)
        till.refresh_catalogue()
        till.open_shift(0)
        refused("no_sale", lambda: counter.hold(till, "x"))
        till.add_item("LATTE")
        first = counter.hold(till, "table 4")
        assert till.open_sale() is None
        till.add_item("WATER", 2)
        refused("rounding_disabled", lambda: counter.round_down(till))
        second = counter.hold(till, "")
        till.journal._conn.close()  # the till restarts
        till = make_till(tmp_path / "j.sqlite", base, tenant)
        held = counter.held_sales(till)
        assert [(h["number"], h["hold_note"], h["items"], h["total"]) for h in held] == [
            (first, "table 4", 1, 2800),
            (second, None, 2, 600),
        ]
        till.add_item("CROIS")
        refused("sale_in_progress", lambda: counter.recall(till, held[0]["id"]))
        till.set_quantity(1, 0)  # the new sale is empty again: recalling drops it
        counter.recall(till, held[0]["id"])
        assert till.open_sale()["number"] == first
        refused("no_such_held", lambda: counter.recall(till, held[0]["id"]))
        till.pay_cash(None)
        drain(till)
        report = till.close_shift(2800)
        assert report["sales_count"] == 1
        assert [h["number"] for h in counter.held_sales(till)] == [second]
        # The Z report itself lists it, inside what is hashed and sent to the server.
        parked = held[1]["held_at"]
        assert report["held_sales"] == {
            "count": 1,
            "total": 600,
            "sales": [{"number": second, "held_at": parked, "total": 600}],
        }
        drain(till)
        stored = httpx.get(base + "/v1/shifts", headers=tenant.auth("merchant")).json()["data"]
        mine = [s for s in stored if s["terminal_id"] == tenant.terminal_id]
        assert mine[0]["report"]["held_sales"] == report["held_sales"]
        assert mine[0]["report_hash"] == chain_hash(mine[0]["prev_hash"], report)
    with container.db.read() as conn:
        assert reports.verify_chains(conn, tenant.merchant_id, tenant.terminal_id)[0]["ok"]
    signin(client, tenant.manager_key)
    page = client.get(f"{BO}/shifts/{mine[0]['id']}").text
    assert 'id="held-sales"' in page and f"#{second}" in page and "6.00" in page


def test_return_by_receipt_lines_and_tenders(
    container: Container, client: TestClient, tenant: Tenant, tmp_path: Path
) -> None:
    rules(client, tenant)
    with live_server(container) as base:
        till = make_till(tmp_path / "j.sqlite", base, tenant)
        till.refresh_catalogue()
        till.open_shift(0)
        till.add_item("LATTE", 3)  # 84.00
        till.add_item("CROIS")  # 15.00
        counter.order_discount(till, "order_amt", 100)  # 98.00, spread 0.85 / 0.15
        till.pay_cash(None, 4000)
        paid = till.pay_cash(None)
        sale_id = paid["sale_id"]
        refused("return_too_many", lambda: counter.return_items(till, sale_id, {1: 4}, "original", None))
        refused("nothing_to_return", lambda: counter.return_items(till, sale_id, {1: 0}, "original", None))
        refused("invalid_refund_to", lambda: counter.return_items(till, sale_id, {1: 1}, "card", None))
        done = counter.return_items(till, sale_id, {1: 2}, "original", "spilt")
        # two of three lattes: 2/3 of (84.00 − 0.85), from the first cash tender (40.00) then the second
        assert sum(r["amount"] for r in done) == 8315 * 2 // 3
        assert [r["amount"] for r in done] == [4000, 5543 - 4000]
        more = counter.return_items(till, sale_id, {1: 1, 2: 1}, "cash", None)
        assert sum(r["amount"] for r in done + more) == 9800  # everything, to the fen
        lines = counter.net_lines(till, sale_id)
        assert [ln["returned"] for ln in lines] == [3, 1]
        refused("return_too_many", lambda: counter.return_items(till, sale_id, {2: 1}, "cash", None))
        drain(till)
        order = httpx.get(f"{base}/v1/orders/{sale_id}", headers=tenant.auth()).json()
        assert order["refunded_amount"] == 9800


def test_manager_pins_never_on_the_till_disk_and_wrong_pins_lock_out(
    container: Container, client: TestClient, tenant: Tenant, tmp_path: Path
) -> None:
    """The stored form: the server keeps scrypt hashes; the till keeps them in memory only (an older
    journal's copy is scrubbed); five wrong PINs in a row lock PIN entry (recorded in the journal, across a
    restart) until the lock time has passed; a right PIN then works and resets the count."""
    rules(client, tenant, rounding="none")
    journal_path = tmp_path / "j.sqlite"
    with container.db.read() as conn:
        stored = (
            conn.execute(
                select(store_manager_pins.c.pin_hash).where(
                    store_manager_pins.c.merchant_id == tenant.merchant_id,
                    store_manager_pins.c.store_id == tenant.store_id,
                )
            )
            .scalars()
            .all()
        )
    assert stored and all(h.startswith("scrypt$32768$8$1$") for h in stored)

    # A journal written by an older till, with the hashes in it: the till scrubs them when it starts.
    old = Journal(journal_path)
    with old.tx() as conn:
        old.set_meta(
            conn,
            "till_settings",
            json.dumps(
                {
                    "discount_limit_pct": 20,
                    "manager_pins": [{"name": "Li", "pin_hash": hash_pin_pbkdf2("8888", "oldsalt")}],
                }
            ),
        )
    old._conn.close()
    clock = ManualClock(datetime(2026, 12, 3, 9, 0, tzinfo=UTC))

    def disk() -> bytes:
        return b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("j.sqlite"))

    with live_server(container) as base:
        till = Till(
            Journal(journal_path),
            ServerClient(base, tenant.cashier_key),
            terminal_id=tenant.terminal_id,
            clock=clock,
        )
        assert b"pbkdf2_sha256" not in disk() and b"oldsalt" not in disk()
        till.refresh_catalogue()
        assert till.settings()["manager_pins"][0]["pin_hash"] == stored[0]  # in memory
        assert b"scrypt$" not in disk() and b"pin_hash" not in disk() and stored[0].encode() not in disk()
        assert till.settings()["discount_limit_pct"] == 20  # the rules themselves are kept for offline use
        till.open_shift(0)
        till.add_item("CROIS")  # 15.00
        for left in (4, 3, 2, 1):
            with pytest.raises(TillError) as caught:
                counter.set_line(till, 1, "price", 500, counter.Approval("1111", "x"))
            assert (caught.value.reason, caught.value.params["left"]) == ("wrong_pin", left)
        refused("pin_locked", lambda: counter.set_line(till, 1, "price", 500, counter.Approval("1112", "x")))
        # Locked: even the right PIN is not checked, and nothing changed.
        refused("pin_locked", lambda: counter.set_line(till, 1, "price", 500, counter.Approval("8888", "x")))
        assert till._sale_lines(till.open_sale()["id"])[0]["discount"] == 0
        assert counter.pin_lock(till) == {"failures": 5, "locked_minutes": 5}
        rows = till.journal.query("SELECT ok, manager, locked_until FROM pin_attempts ORDER BY id")
        assert [r["ok"] for r in rows] == [0] * 5 and rows[-1]["locked_until"] is not None
        assert b"1111" not in disk() and b"1112" not in disk()  # attempts are recorded, PINs never
        till.journal._conn.close()  # a restart does not lift the lock
        till = Till(
            Journal(journal_path),
            ServerClient(base, tenant.cashier_key),
            terminal_id=tenant.terminal_id,
            clock=clock,
        )
        # After a restart the hashes are gone with the process: approvals wait for the server.
        refused("pin_locked", lambda: counter.set_line(till, 1, "price", 500, counter.Approval("8888", "x")))
        clock.advance(301)
        refused(
            "approvals_unavailable",
            lambda: counter.set_line(till, 1, "price", 500, counter.Approval("8888", "x")),
        )
        till.refresh_catalogue()
        counter.set_line(till, 1, "price", 500, counter.Approval("8888", "stale"))
        assert counter.pin_lock(till) == {"failures": 0, "locked_minutes": None}
        assert (
            till.journal.query("SELECT ok, manager FROM pin_attempts ORDER BY id DESC LIMIT 1")[0]["manager"]
            == "Li"
        )
