"""Fulfilment through the API and the customer page, on SQLite and PostgreSQL, with an injected clock:
the delivery and pickup lifecycles, reminder and auto-confirm, the shipping SLA, disputes resolved by
re-delivery or a (partial) cash refund, cancel with stock released, and bad input on every new route."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, select

from tests.support.api import new_order, pay_cash, post
from tests.support.world import Tenant, make_tenant
from tillit.adapters.db import migrate
from tillit.adapters.db.schema import exceptions, jobs, outbox_messages, products
from tillit.api.app import create_app
from tillit.bootstrap import Container, build
from tillit.config import Settings
from tillit.domain.clock import ManualClock
from tillit.domain.errors import DomainError
from tillit.domain.fulfilment import MAX_PHOTO_BYTES
from tillit.fulfilment import keys, notify, service
from tillit.kernel.check import run_checks
from tillit.kernel.context import Deps
from tillit.worker import drain

T0 = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
HEARD: list[notify.FulfilmentMessage] = []
SQLITE_ONLY = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


def _hear(_conn: Connection, _deps: Deps, message: notify.FulfilmentMessage) -> None:
    HEARD.append(message)


notify.on_message(_hear)


@dataclass
class World:
    c: Container
    clock: ManualClock
    client: TestClient
    tenant: Tenant

    def advance(self, **delta: float) -> None:
        self.clock.advance(timedelta(**delta).total_seconds())
        assert self.c.engine is not None
        drain(self.c.db, self.c.deps, self.c.engine, max_seconds=20)

    def heard(self, order_id: str) -> list[str]:
        return [m.event for m in HEARD if m.order_id == order_id]

    def paid_order(self, sku: str = "WATER", qty: int = 2) -> dict[str, Any]:
        order = new_order(self.client, self.tenant, [{"sku": sku, "quantity": qty}])
        pay_cash(self.client, self.tenant, order["id"])
        return order

    def declare(self, order_id: str, kind: str = "delivery", **extra: Any) -> Any:
        body: dict[str, Any] = {"kind": kind, "contact_phone": "+86 138 0000 0000", "language": "en", **extra}
        if kind == "delivery":
            body.setdefault("address", "上海市 徐汇区 1 号")
        return post(self.client, f"/v1/orders/{order_id}/fulfilment", body, self.tenant)

    def act(self, fid: str, action: str, body: Any = None, role: str = "terminal") -> Any:
        return post(self.client, f"/v1/fulfilments/{fid}/{action}", body or {}, self.tenant, role=role)

    def get(self, fid: str) -> dict[str, Any]:
        r = self.client.get(f"/v1/fulfilments/{fid}", headers=self.tenant.auth())
        assert r.status_code == 200, r.text
        return dict(r.json())

    def page(self, path: str) -> tuple[str, dict[str, str]]:
        r = self.client.get(path)
        assert r.status_code == 200, r.text
        forms = dict(
            re.findall(
                r'action="(/c/[^"?]+)[^>]*>\s*<input type="hidden" name="csrf" value="([^"]+)"', r.text
            )
        )
        return r.text, {action.rsplit("/", 1)[-1]: value for action, value in forms.items()}

    def outbox(self, fid: str) -> list[tuple[str, str]]:
        """(template, channel) of the outbox rows this fulfilment wrote, in order."""
        with self.c.db.read() as conn:
            rows = conn.execute(
                select(outbox_messages.c.template, outbox_messages.c.channel)
                .where(
                    outbox_messages.c.merchant_id == self.tenant.merchant_id,
                    outbox_messages.c.event_id.like(f"ful:{fid}:%"),
                )
                .order_by(outbox_messages.c.id)
            )
            return [(r.template, r.channel) for r in rows]

    def stock(self, sku: str) -> int | None:
        with self.c.db.read() as conn:
            return conn.execute(
                select(products.c.stock).where(
                    products.c.merchant_id == self.tenant.merchant_id, products.c.sku == sku
                )
            ).scalar_one()


@pytest.fixture
def world(backend: str, request: pytest.FixtureRequest, sqlite_home: Path) -> Iterator[World]:
    clock = ManualClock(T0)
    url = (
        request.getfixturevalue("pg_url")
        if backend == "postgresql"
        else f"sqlite:///{sqlite_home / 'tillit.sqlite'}"
    )
    c = build(Settings(home=sqlite_home, database_url=url), clock=clock)
    migrate.upgrade(c.db)
    with TestClient(create_app(c), raise_server_exceptions=False) as client:
        yield World(c, clock, client, make_tenant(c, f"Ful {uuid.uuid4().hex[:8]}"))
    with c.db.read() as conn:
        assert all(r.ok for r in run_checks(conn)), [r.violations for r in run_checks(conn) if not r.ok]
    c.db.dispose()


def test_delivery_shipped_reminded_confirmed_by_the_customer(world: World) -> None:
    order = world.paid_order()
    r = world.declare(order["id"], contact_email="kehu@example.cn", opt_in=True)
    assert r.status_code == 201, r.text
    f = r.json()
    assert f["status"] == "awaiting_fulfilment" and f["ship_due_at"] and f["customer_path"].startswith("/c/")
    assert world.declare(order["id"]).status_code == 200  # declaring again answers the same order
    assert world.stock("WATER") == 8  # reserved (taken) at the sale
    r = world.act(f["id"], "ship", {"carrier": "SF Express", "tracking_number": "SF1234567890"})
    assert r.status_code == 200, r.text
    shipped = r.json()
    assert shipped["status"] == "shipped" and shipped["ship_due_at"] is None
    assert shipped["confirm_due_at"].startswith("2026-12-11")  # 10 days (operations.md §8.1)
    assert world.act(f["id"], "deliver").json()["status"] == "delivered"
    text, forms = world.page(f["customer_path"] + "?lang=en")
    assert "Delivered" in text and "SF1234567890" in text and set(forms) == {"confirm", "dispute"}
    r = world.client.post(
        f["customer_path"] + "/confirm", data={"csrf": forms["confirm"]}, follow_redirects=False
    )
    assert r.status_code == 303, r.text
    done = world.get(f["id"])
    assert (
        done["status"] == "confirmed"
        and done["confirmed_by"] == "customer"
        and done["confirm_due_at"] is None
    )
    assert world.heard(order["id"]) == ["shipped", "delivered"]
    assert world.outbox(f["id"]) == [  # in the moves' transactions, to each opted-in address
        ("order_shipped", "email"),
        ("order_shipped", "sms"),
        ("order_delivered", "email"),
        ("order_delivered", "sms"),
    ]
    events = world.client.get(f"/v1/orders/{order['id']}/events", headers=world.tenant.auth()).json()["data"]
    moves = [(e["from_status"], e["to_status"]) for e in events if e["entity"] == "fulfilment"]
    assert moves == [
        (None, "awaiting_fulfilment"),
        ("awaiting_fulfilment", "shipped"),
        ("shipped", "delivered"),
        ("delivered", "confirmed"),
    ]
    text, forms = world.page(f["customer_path"])
    assert forms == {} and "Received" in text  # nothing left to do; a confirmed order never moves again
    r = world.act(f["id"], "deliver")
    assert r.status_code == 409 and r.json()["error"]["code"] == "fulfilment_invalid_transition"


def test_reminder_then_auto_confirm_on_the_merchants_period(world: World) -> None:
    r = world.client.put(
        "/v1/fulfilment/settings",
        json={"auto_confirm_days": 3, "reminder_hours": 12, "ship_sla_hours": 24},
        headers=world.tenant.auth("merchant"),
    )
    assert r.status_code == 200 and r.json()["default"] is False
    order = world.paid_order()
    fid = world.declare(order["id"]).json()["id"]
    world.act(fid, "ship", {"carrier": "EMS", "tracking_number": "E1"})
    world.advance(days=2, hours=11)  # 13 h before the auto-confirm: nothing yet
    assert world.get(fid)["reminded_at"] is None and world.heard(order["id"]) == ["shipped"]
    world.advance(hours=1, seconds=1)  # 12 h before
    assert world.get(fid)["reminded_at"] is not None
    world.advance(hours=1)
    assert world.heard(order["id"]) == ["shipped", "reminder"]  # once
    assert world.outbox(fid) == []  # the customer did not opt in: nothing is sent
    world.advance(hours=11)
    f = world.get(fid)
    assert f["status"] == "confirmed" and f["confirmed_by"] == "auto"
    with world.c.db.read() as conn:
        pending = conn.execute(
            select(jobs.c.id).where(
                jobs.c.merchant_id == world.tenant.merchant_id,
                jobs.c.kind == "fulfilment_timers",
                jobs.c.state == "pending",
            )
        ).all()
    assert pending == []  # no timer left, no job left


def test_the_buyer_extends_the_auto_confirm_once_by_three_days(world: World) -> None:
    """operations.md §8.1: physical goods, once, +3 days, when at most 3 days remain; an event records
    it, the reminder and the auto-confirm move with it."""
    order = world.paid_order()
    f = world.declare(order["id"]).json()
    world.act(f["id"], "ship", {"carrier": "SF", "tracking_number": "SF1"})  # T0: due T0 + 10 d
    world.advance(days=6)  # 4 days left: too early, no button
    assert set(world.page(f["customer_path"])[1]) == {"confirm", "dispute"}
    world.advance(days=1, seconds=1)  # less than 3 days left
    text, forms = world.page(f["customer_path"] + "?lang=en")
    assert set(forms) == {"confirm", "dispute", "extend"} and "Extend by 3 days" in text
    r = world.client.post(
        f["customer_path"] + "/extend", data={"csrf": forms["extend"]}, follow_redirects=False
    )
    assert r.status_code == 303, r.text
    after = world.get(f["id"])
    assert after["confirm_due_at"].startswith("2026-12-14") and after["extended_at"] is not None
    assert after["remind_at"].startswith("2026-12-13") and after["reminded_at"] is None
    text, forms = world.page(f["customer_path"] + "?lang=en")
    assert "extend" not in forms and 'data-status="extended"' in text
    again = world.client.post(f["customer_path"] + "/extend", data={"csrf": forms["confirm"]})
    assert again.status_code == 403  # a form token is for its own form
    events = world.client.get(f"/v1/orders/{order['id']}/events", headers=world.tenant.auth()).json()["data"]
    extended = [e for e in events if e["entity"] == "fulfilment" and e["reason"] == "buyer_extended"]
    assert [(e["from_status"], e["to_status"], e["actor"]) for e in extended] == [
        ("shipped", "shipped", "customer:link")
    ]
    with world.c.db.transaction() as conn:  # once only, even straight through the service
        ref = keys.signer_for(world.c.db, world.c.deps).verify(f["customer_path"].rsplit("/", 1)[1])
        assert ref is not None
        with pytest.raises(DomainError) as refused:
            service.customer_extend(world.c.db, conn, world.c.deps, ref)
    assert refused.value.code == "already_extended"
    world.advance(days=3)  # past the original auto-confirm (T0 + 10 d): still waiting for the customer
    assert world.get(f["id"])["status"] == "shipped" and world.heard(order["id"]) == ["shipped"]
    world.advance(days=2)  # T0 + 12 d: the reminder, a day before the new date
    assert world.heard(order["id"]) == ["shipped", "reminder"]
    world.advance(days=1)  # T0 + 13 d
    done = world.get(f["id"])
    assert done["status"] == "confirmed" and done["confirmed_by"] == "auto"


def test_extension_refused_outside_its_window(world: World) -> None:
    order = world.paid_order()
    f = world.declare(order["id"]).json()
    with world.c.db.transaction() as conn:
        ref = keys.signer_for(world.c.db, world.c.deps).verify(f["customer_path"].rsplit("/", 1)[1])
        assert ref is not None
        with pytest.raises(DomainError) as not_yet:  # not shipped: no timer to extend
            service.customer_extend(world.c.db, conn, world.c.deps, ref)
    assert not_yet.value.code == "fulfilment_not_extendable"
    world.act(f["id"], "ship", {"carrier": "SF", "tracking_number": "SF2"})
    with world.c.db.transaction() as conn, pytest.raises(DomainError) as early:
        service.customer_extend(world.c.db, conn, world.c.deps, ref)
    assert early.value.code == "extension_too_early"
    assert world.get(f["id"])["extended_at"] is None


def test_a_dispute_stops_the_timer_and_redelivery_restarts_it(world: World) -> None:
    order = world.paid_order()
    f = world.declare(order["id"], contact_email="kehu@example.cn", opt_in=True).json()
    world.act(f["id"], "ship", {"carrier": "SF", "tracking_number": "SF1"})
    _, forms = world.page(f["customer_path"])
    r = world.client.post(
        f["customer_path"] + "/dispute",
        data={"csrf": forms["dispute"], "reason": "damaged_items", "note": "盒子压坏了"},
        files={"photo": ("box.png", PNG, "image/png")},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    disputed = world.get(f["id"])
    assert disputed["status"] == "disputed" and disputed["dispute_photos"] == 1
    photo = world.client.get(f"/v1/fulfilments/{f['id']}/photo", headers=world.tenant.auth("merchant"))
    assert photo.status_code == 200, photo.text
    assert photo.content == PNG and photo.headers["content-type"] == "image/png"
    world.advance(days=11)
    assert world.get(f["id"])["status"] == "disputed"  # a dispute pauses the auto-confirm
    r = world.act(
        f["id"], "resolve", {"action": "redeliver", "carrier": "SF", "tracking_number": "SF2"}, "merchant"
    )
    assert r.status_code == 200, r.text
    again = r.json()
    assert again["status"] == "redelivering" and again["confirm_due_at"].startswith("2026-12-22")
    world.advance(days=9, seconds=1)  # the reminder, 24 h before
    world.advance(days=1)
    assert world.get(f["id"])["status"] == "confirmed"
    assert world.heard(order["id"]) == ["shipped", "disputed", "resolved", "reminder"]
    mails = [template for template, channel in world.outbox(f["id"]) if channel == "email"]
    assert mails == ["order_shipped", "dispute_update", "dispute_update", "confirm_reminder"]


def test_dispute_ends_in_a_partial_cash_refund(world: World) -> None:
    order = world.paid_order(qty=3)  # 900
    f = world.declare(order["id"], contact_email="kehu@example.cn", opt_in=True).json()
    # a carrier number of 18 digits: the outbox refuses 16+ digits (payment codes), the move must not fail
    r = world.act(f["id"], "ship", {"carrier": "JD", "tracking_number": "123456789012345678"})
    assert r.status_code == 200, r.text
    assert ("order_shipped", "email") in world.outbox(f["id"])
    _, forms = world.page(f["customer_path"])
    world.client.post(
        f["customer_path"] + "/dispute", data={"csrf": forms["dispute"], "reason": "wrong_items"}
    )
    r = world.act(f["id"], "resolve", {"action": "refund", "amount": 300}, "merchant")
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["status"] == "refunded" and body["refund"]["amount"] == 300
    assert body["refund"]["status"] == "succeeded"
    got = world.client.get(f"/v1/orders/{order['id']}", headers=world.tenant.auth()).json()
    assert got["refunded_amount"] == 300 and got["status"] == "paid"
    assert world.stock("WATER") == 7  # wrong items were delivered: nothing comes back by default


def test_cancel_before_shipping_refunds_in_full_and_releases_stock(world: World) -> None:
    order = world.paid_order(qty=4)
    assert world.stock("WATER") == 6
    f = world.declare(order["id"]).json()
    r = world.act(f["id"], "cancel", role="merchant")
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "cancelled" and r.json()["refund"]["amount"] == 1200
    assert world.stock("WATER") == 10
    got = world.client.get(f"/v1/orders/{order['id']}", headers=world.tenant.auth()).json()
    assert got["status"] == "refunded"


@SQLITE_ONLY  # the database does not matter here; the lifecycle tests run on both
def test_pickup_ready_then_scanned_at_the_counter(world: World) -> None:
    order = world.paid_order()
    f = world.declare(order["id"], kind="pickup").json()
    r = world.act(f["id"], "ship", {"carrier": "SF", "tracking_number": "X"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "fulfilment_wrong_kind"
    assert world.act(f["id"], "ready").json()["status"] == "ready"
    code = "https://shop.example" + f["customer_path"]  # the QR holds the full link
    r = post(world.client, "/v1/fulfilments/pickup", {"code": code}, world.tenant)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "confirmed" and r.json()["confirmed_by"] == "cashier"
    assert world.heard(order["id"]) == ["ready"]


def test_not_shipped_within_the_sla_opens_one_exception(world: World) -> None:
    order = world.paid_order()
    f = world.declare(order["id"]).json()
    unpaid = new_order(world.client, world.tenant, [{"sku": "WATER", "quantity": 1}])
    f2 = world.declare(unpaid["id"], kind="pickup").json()
    r = world.act(f2["id"], "ready")
    assert r.status_code == 409 and r.json()["error"]["code"] == "order_not_paid"
    world.advance(hours=47)
    assert world.get(f["id"])["sla_exception_id"] is None
    world.advance(hours=1, seconds=1)
    late = world.get(f["id"])
    assert late["sla_exception_id"] and late["status"] == "awaiting_fulfilment"
    world.advance(hours=5)
    with world.c.db.read() as conn:
        rows = conn.execute(
            select(exceptions.c.order_id).where(
                exceptions.c.merchant_id == world.tenant.merchant_id,
                exceptions.c.kind == "fulfilment_sla_missed",
            )
        ).all()
    assert sorted(r.order_id for r in rows) == sorted([order["id"], unpaid["id"]])  # one each


@SQLITE_ONLY  # the database does not matter here; the lifecycle tests run on both
def test_bad_input_on_every_new_route(world: World, other: Tenant) -> None:
    order = world.paid_order()
    codes = {
        "kind": ({"kind": "drone", "contact_phone": "13800000000"}, 422, "validation_error"),
        "address": ({"kind": "delivery", "contact_phone": "13800000000"}, 422, "address_required"),
        "contact": ({"kind": "pickup"}, 422, "contact_required"),
        "phone": ({"kind": "pickup", "contact_phone": "call me"}, 422, "validation_error"),
        "extra": ({"kind": "pickup", "contact_phone": "13800000000", "x": 1}, 422, "validation_error"),
    }
    for name, (body, status, code) in codes.items():
        r = post(world.client, f"/v1/orders/{order['id']}/fulfilment", body, world.tenant)
        assert (r.status_code, r.json()["error"]["code"]) == (status, code), name
    f = world.declare(order["id"]).json()
    path = f["customer_path"]
    token = path.rsplit("/", 1)[-1]
    forged = [
        "/c/" + token[:-2] + ("AA" if token[-2:] != "AA" else "BB"),
        "/c/" + "A" * 64,
        "/c/short",
        "/c/" + token + "x",
    ]
    for bad in forged:
        assert world.client.get(bad).status_code == 404, bad
        assert world.client.post(bad + "/confirm", data={"csrf": "1.x"}).status_code == 404, bad
        assert world.client.post(bad + "/dispute", data={"reason": "not_received"}).status_code == 404, bad
    other_order = new_order(world.client, other, [{"sku": "WATER", "quantity": 1}])
    pay_cash(world.client, other, other_order["id"])
    other_f = post(
        world.client,
        f"/v1/orders/{other_order['id']}/fulfilment",
        {"kind": "pickup", "contact_email": "a@b.cn"},
        other,
    ).json()
    r = post(world.client, "/v1/fulfilments/pickup", {"code": other_f["customer_path"]}, world.tenant)
    assert r.status_code == 404 and r.json()["error"]["code"] == "code_not_found"  # another merchant's code
    assert world.act(other_f["id"], "ready").status_code == 404
    world.act(f["id"], "ship", {"carrier": "SF", "tracking_number": "SF9"})
    _, forms = world.page(path)
    r = world.client.post(path + "/confirm", data={"csrf": forms["dispute"]})  # a form token of another form
    assert r.status_code == 403
    r = world.client.post(
        path + "/confirm", data={"csrf": forms["confirm"]}, headers={"Origin": "https://evil.example"}
    )
    assert r.status_code == 403
    big = b"\xff\xd8\xff" + b"\x00" * MAX_PHOTO_BYTES
    r = world.client.post(
        path + "/dispute",
        data={"csrf": forms["dispute"], "reason": "damaged_items"},
        files={"photo": ("big.jpg", big, "image/jpeg")},
    )
    assert r.status_code == 413
    huge = b"\xff\xd8\xff" + b"\x00" * (MAX_PHOTO_BYTES + 128 * 1024)
    r = world.client.post(
        path + "/dispute",
        data={"csrf": forms["dispute"], "reason": "damaged_items"},
        files={"photo": ("huge.jpg", huge, "image/jpeg")},
    )
    assert r.status_code == 413  # refused by the body limit before it is read
    r = world.client.post(
        path + "/dispute",
        data={"csrf": forms["dispute"], "reason": "damaged_items"},
        files={"photo": ("fake.png", b"<svg onload=alert(1)>", "image/png")},
    )
    assert r.status_code == 415
    r = world.client.post(path + "/dispute", data={"csrf": forms["dispute"], "reason": "bored"})
    assert r.status_code == 422
    assert (
        world.get(f["id"])["status"] == "shipped" and world.get(f["id"])["dispute_photos"] == 0
    )  # nothing written
    r = world.client.get(f"/v1/fulfilments/{f['id']}/photo", headers=world.tenant.auth())
    assert r.status_code == 404 and r.json()["error"]["code"] == "dispute_photo_not_found"
    for body, code in (
        ({"action": "refund", "amount": 0}, "validation_error"),
        ({"action": "refund", "carrier": "SF"}, "invalid_resolution"),
        ({"action": "redeliver"}, "shipping_required"),
        ({"action": "refund", "amount": 100}, "fulfilment_invalid_transition"),
    ):
        r = world.act(f["id"], "resolve", body, "merchant")
        assert r.json()["error"]["code"] == code, (body, r.text)
    r = world.act(f["id"], "resolve", {"action": "refund"}, "terminal")
    assert r.status_code == 403
    r = world.client.put(
        "/v1/fulfilment/settings",
        json={"auto_confirm_days": 0, "reminder_hours": 1, "ship_sla_hours": 1},
        headers=world.tenant.auth("merchant"),
    )
    assert r.status_code == 422
    r = world.client.get("/v1/fulfilments", params={"status": "lost"}, headers=world.tenant.auth())
    assert r.status_code == 422
    listed = world.client.get("/v1/fulfilments", headers=world.tenant.auth()).json()["data"]
    assert [x["id"] for x in listed] == [f["id"]]  # never the other merchant's


@pytest.fixture
def other(world: World) -> Tenant:
    return make_tenant(world.c, f"Other {uuid.uuid4().hex[:8]}")
