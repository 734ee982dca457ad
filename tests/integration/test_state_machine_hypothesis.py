"""Stateful property test over orders, payments, refunds and cancels through the API.

Rules create orders, pay them (split, over-, duplicate-keyed), refund, cancel and replay requests.
Invariants after every step: no status regression, refunds <= captured per payment and order, the
ledger balanced and equal to the model, replayed idempotent responses identical to the first.
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, precondition, rule
from sqlalchemy import func, select

from tests.support.world import make_tenant
from tillit.adapters.db.schema import ledger_postings, orders
from tillit.api.app import create_app
from tillit.bootstrap import Container
from tillit.domain.states import ORDER, PAYMENT
from tillit.kernel.check import run_checks


def make_machine(container: Container) -> type[RuleBasedStateMachine]:
    app = create_app(container)

    class SalesMachine(RuleBasedStateMachine):
        orders = Bundle("orders")
        payments = Bundle("payments")

        @initialize()
        def setup(self) -> None:
            self.client = TestClient(app)
            self.tenant = make_tenant(container, f"Prop {uuid.uuid4().hex[:8]}")
            self.model_paid: dict[str, int] = {}
            self.model_refunded: dict[str, int] = {}
            self.seen_status: dict[str, list[str]] = {}
            self.replays: list[tuple[str, dict[str, Any], str, bytes]] = []

        def post(self, path: str, body: dict[str, Any], key: str | None = None) -> Any:
            key = key or uuid.uuid4().hex
            r = self.client.post(path, json=body, headers={**self.tenant.auth(), "Idempotency-Key": key})
            if r.status_code < 300:
                self.replays.append((path, body, key, r.content))
            return r

        @rule(target=orders, qty=st.integers(1, 4), discount=st.integers(0, 600))
        def create_order(self, qty: int, discount: int) -> str:
            r = self.post(
                "/v1/orders",
                {
                    "lines": [
                        {"sku": "LATTE", "quantity": qty},
                        {"sku": "CROIS", "quantity": 1, "discount": discount},
                    ]
                },
            )
            assert r.status_code == 201, r.text
            oid = r.json()["id"]
            self.model_paid[oid] = 0
            self.model_refunded[oid] = 0
            return str(oid)

        @rule(target=payments, order_id=orders, fraction=st.sampled_from([1, 2, 3, None]))
        def pay(self, order_id: str, fraction: int | None) -> str:
            order = self.client.get(f"/v1/orders/{order_id}", headers=self.tenant.auth()).json()
            due = order["balance_due"]
            body: dict[str, Any] = {"order_id": order_id}
            if fraction is not None and due > 0:
                body["amount"] = max(1, due // fraction)
            r = self.post("/v1/payments", body)
            if order["status"] != "open" or due == 0:
                assert r.status_code == 409, r.text
                return "none"
            assert r.status_code == 201, r.text
            self.model_paid[order_id] += r.json()["amount"]
            return str(r.json()["id"])

        @rule(order_id=orders, extra=st.integers(1, 10_000))
        def overpay(self, order_id: str, extra: int) -> None:
            order = self.client.get(f"/v1/orders/{order_id}", headers=self.tenant.auth()).json()
            r = self.post("/v1/payments", {"order_id": order_id, "amount": order["balance_due"] + extra})
            assert r.status_code == 409

        @rule(payment_id=payments, amount=st.integers(1, 20_000))
        def refund(self, payment_id: str, amount: int) -> None:
            if payment_id == "none":
                return
            pay = self.client.get(f"/v1/payments/{payment_id}", headers=self.tenant.auth()).json()
            order = self.client.get(f"/v1/orders/{pay['order_id']}", headers=self.tenant.auth()).json()
            r = self.post("/v1/refunds", {"payment_id": payment_id, "amount": amount})
            refundable = pay["amount"] - pay["refunded_amount"]
            if order["status"] == "paid" and pay["status"] == "captured" and amount <= refundable:
                assert r.status_code == 201, r.text
                self.model_refunded[pay["order_id"]] += amount
            else:
                assert r.status_code == 409, r.text

        @rule(order_id=orders, reason=st.sampled_from(["customer_cancelled", "cashier_cancelled", "timeout"]))
        def cancel(self, order_id: str, reason: str) -> None:
            order = self.client.get(f"/v1/orders/{order_id}", headers=self.tenant.auth()).json()
            r = self.post(f"/v1/orders/{order_id}/cancel", {"reason": reason})
            if order["status"] == "open":
                assert r.status_code == 200, r.text
                self.model_refunded[order_id] = self.model_paid[order_id]
            else:
                assert r.status_code == 409

        @precondition(lambda self: bool(self.replays))
        @rule(data=st.data())
        def replay(self, data: st.DataObject) -> None:
            path, body, key, content = data.draw(st.sampled_from(self.replays))
            r = self.client.post(path, json=body, headers={**self.tenant.auth(), "Idempotency-Key": key})
            assert r.content == content and r.headers.get("Idempotent-Replayed") == "true"

        @invariant()
        def statuses_never_regress(self) -> None:
            listing = self.client.get("/v1/orders?limit=200", headers=self.tenant.auth()).json()["data"]
            for order in listing:
                history = self.seen_status.setdefault(order["id"], [])
                if history and history[-1] != order["status"]:
                    assert ORDER.can(history[-1], order["status"]), (history, order["status"])
                history.append(order["status"])
                assert order["paid_amount"] == self.model_paid[order["id"]]
                assert order["refunded_amount"] == self.model_refunded[order["id"]]
                assert order["refunded_amount"] <= order["paid_amount"] <= order["total"]
                for pay in order["payments"]:
                    assert pay["refunded_amount"] <= pay["amount"]
                    assert pay["status"] in PAYMENT.statuses

        @invariant()
        def ledger_matches_model(self) -> None:
            with container.db.read() as conn:
                ids = list(self.model_paid)
                if not ids:
                    return
                rows = conn.execute(
                    select(ledger_postings.c.order_id, func.sum(ledger_postings.c.amount))
                    .where(ledger_postings.c.order_id.in_(ids), ledger_postings.c.account.like("order:%"))
                    .group_by(ledger_postings.c.order_id)
                ).all()
                balance = {oid: -int(total) for oid, total in rows}
                for oid in ids:
                    assert balance.get(oid, 0) == self.model_paid[oid] - self.model_refunded[oid]
                total = conn.execute(
                    select(func.coalesce(func.sum(ledger_postings.c.amount), 0))
                ).scalar_one()
                assert total == 0
                assert conn.execute(select(func.count()).select_from(orders)).scalar_one() >= len(ids)

        def teardown(self) -> None:
            with container.db.read() as conn:
                assert all(r.ok for r in run_checks(conn)), [r.violations for r in run_checks(conn)]
            self.client.close()

    return SalesMachine


def test_sales_state_machine(container: Container) -> None:
    machine = make_machine(container)
    machine.TestCase.settings = settings(
        max_examples=25,
        stateful_step_count=25,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    machine.TestCase().runTest()
