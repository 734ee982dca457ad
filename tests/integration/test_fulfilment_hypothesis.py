"""Stateful property test over fulfilment orders through the API and the customer's actions, with the
resolver's timers driven by an injected clock (SQLite).

Rules declare orders for pickup or delivery and try every move in any order, the customer confirms or
disputes, the merchant resolves (re-delivery, partial cash refund) or cancels, and time jumps forward.
Invariants after every step: every answer is a success or a 4xx with an error code (never a 5xx); each
fulfilment's event chain is unbroken and strictly forward in the machine's order; the row's status is
its last event's; a refund never exceeds what was paid; the whole-database checks hold.
"""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, rule
from sqlalchemy import select

from tests.support.world import make_tenant
from tillit.adapters.db import migrate
from tillit.adapters.db.schema import events, fulfilments, orders
from tillit.api.app import create_app
from tillit.bootstrap import build
from tillit.config import Settings
from tillit.domain.clock import ManualClock
from tillit.domain.errors import DomainError
from tillit.domain.fulfilment import FULFILMENT
from tillit.fulfilment import keys, service
from tillit.fulfilment.links import OrderRef
from tillit.kernel.check import run_checks
from tillit.worker import drain


def _rank() -> dict[str, int]:
    rank = {s: 0 for s in FULFILMENT.statuses}
    for _ in FULFILMENT.statuses:
        for src, targets in FULFILMENT.moves.items():
            for dst in targets:
                rank[dst] = max(rank[dst], rank[src] + 1)
    return rank


RANK = _rank()


def test_fulfilment_machine_holds_under_any_sequence(tmp_path: Path) -> None:
    clock = ManualClock(datetime(2026, 12, 1, tzinfo=UTC))
    c = build(Settings(home=tmp_path, database_url=f"sqlite:///{tmp_path / 'f.sqlite'}"), clock=clock)
    migrate.upgrade(c.db)
    client = TestClient(create_app(c), raise_server_exceptions=False)
    assert c.engine is not None
    engine_cfg = c.engine

    class Fulfilments(RuleBasedStateMachine):
        ids = Bundle("fulfilments")

        @initialize()
        def setup(self) -> None:
            self.tenant = make_tenant(c, f"Prop {uuid.uuid4().hex[:8]}")

        def call(self, method: str, path: str, body: Any = None, role: str = "merchant") -> Any:
            headers = {**self.tenant.auth(role), "Idempotency-Key": uuid.uuid4().hex}
            r = client.request(method, path, json=body, headers=headers)
            assert r.status_code < 500, r.text
            if r.status_code >= 400:
                assert r.json()["error"]["code"], r.text
            return r

        @rule(target=ids, kind=st.sampled_from(["pickup", "delivery"]), pay=st.booleans())
        def declare(self, kind: str, pay: bool) -> str:
            order = self.call(
                "POST", "/v1/orders", {"lines": [{"sku": "WATER", "quantity": 2}]}, "terminal"
            ).json()
            if pay:
                self.call("POST", "/v1/payments", {"order_id": order["id"], "method": "cash"}, "terminal")
            body = {"kind": kind, "contact_phone": "13800000000", "address": "1 Road"}
            r = self.call("POST", f"/v1/orders/{order['id']}/fulfilment", body)
            assert r.status_code == 201, r.text
            return str(r.json()["id"])

        @rule(fid=ids, action=st.sampled_from(["ready", "ship", "deliver", "cancel"]))
        def merchant_move(self, fid: str, action: str) -> None:
            body = {"carrier": "SF", "tracking_number": "SF1"} if action == "ship" else {}
            self.call("POST", f"/v1/fulfilments/{fid}/{action}", body)

        @rule(fid=ids, amount=st.one_of(st.none(), st.integers(1, 700)), redeliver=st.booleans())
        def resolve(self, fid: str, amount: int | None, redeliver: bool) -> None:
            body: dict[str, Any] = (
                {"action": "redeliver", "carrier": "SF", "tracking_number": "SF2"}
                if redeliver
                else {"action": "refund", "amount": amount}
            )
            self.call("POST", f"/v1/fulfilments/{fid}/resolve", body)

        @rule(fid=ids, dispute=st.sampled_from([None, "not_received", "wrong_items", "damaged_items"]))
        def customer(self, fid: str, dispute: str | None) -> None:
            signer = keys.signer_for(c.db, c.deps)
            with c.db.read() as conn:
                row = service.row_of(conn, self.tenant.merchant_id, fid)
            ref = OrderRef(row.merchant_id, row.order_id)
            try:
                with c.db.transaction() as conn:
                    if dispute is None:
                        service.customer_confirm(c.db, conn, c.deps, signer, ref)
                    else:
                        service.open_dispute(c.db, conn, c.deps, signer, ref, dispute, None, None)
            except DomainError as exc:
                assert exc.kind in ("conflict", "invalid"), exc

        @rule(hours=st.integers(1, 24 * 12))
        def time_passes(self, hours: int) -> None:
            clock.advance(timedelta(hours=hours).total_seconds())
            drain(c.db, c.deps, engine_cfg, max_seconds=20)

        @invariant()
        def chains_go_forward(self) -> None:
            if not hasattr(self, "tenant"):
                return
            m = self.tenant.merchant_id
            with c.db.read() as conn:
                rows = conn.execute(
                    select(
                        fulfilments.c.id,
                        fulfilments.c.status,
                        fulfilments.c.refund_amount,
                        orders.c.paid_amount,
                    )
                    .join(
                        orders,
                        (orders.c.merchant_id == fulfilments.c.merchant_id)
                        & (orders.c.id == fulfilments.c.order_id),
                    )
                    .where(fulfilments.c.merchant_id == m)
                ).all()
                for row in rows:
                    chain = conn.execute(
                        select(events.c.from_status, events.c.to_status)
                        .where(
                            events.c.merchant_id == m,
                            events.c.entity_id == row.id,
                            events.c.entity == "fulfilment",
                        )
                        .order_by(events.c.id)
                    ).all()
                    assert chain[0].from_status is None and chain[0].to_status == "awaiting_fulfilment"
                    for before, after in itertools.pairwise(chain):
                        assert after.from_status == before.to_status
                        assert RANK[after.to_status] > RANK[before.to_status]
                    assert chain[-1].to_status == row.status
                    assert row.refund_amount is None or row.refund_amount <= row.paid_amount

    Fulfilments.TestCase.settings = settings(
        max_examples=5,
        stateful_step_count=10,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    try:
        Fulfilments.TestCase().runTest()
        with c.db.read() as conn:
            assert all(r.ok for r in run_checks(conn)), [r.violations for r in run_checks(conn) if not r.ok]
    finally:
        client.close()
        c.db.dispose()
