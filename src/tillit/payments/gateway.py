"""The integrity engine seen from sales: the implementation of sales.gateway.ProviderGateway."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from tillit.access.idempotency import Call
from tillit.adapters.db.engine import Database
from tillit.kernel.context import Actor, Deps
from tillit.payments import engine
from tillit.sales.payments import payment_finished
from tillit.sales.refunds import refund_finished
from tillit.sales.views import PaymentView


@dataclass(frozen=True, slots=True)
class EngineGateway:
    """Provider payments and refunds through the engine's three phases (payments/engine.py)."""

    config: engine.EngineConfig

    def start_payment(
        self, db: Database, conn: Connection, deps: Deps, actor: Actor, body: dict[str, Any]
    ) -> tuple[int, PaymentView] | Call:
        prepared = engine.prepare_provider_payment(db, conn, deps, self.config, actor, body)
        if len(prepared) == 2:  # (status, view): an existing attempt, nothing to send
            return prepared
        attempt, provider, number = prepared
        code = body["payment_code"]
        return Call(
            resource_id=attempt.id,
            run=lambda: engine.call_pay(provider, attempt, code, number),
            finish=lambda c, result: payment_finished(
                engine.apply_pay_result(
                    db, c, deps, attempt.id, result, actor.label, merchant_id=attempt.merchant_id
                )
            ),
        )

    def start_refund(
        self,
        db: Database,
        conn: Connection,
        deps: Deps,
        actor: Actor,
        order: Any,
        payment: Any,
        amount: int,
        reason: str | None,
        refund_id: str | None,
    ) -> Call:
        ref, provider = engine.prepare_provider_refund(
            db, conn, deps, self.config, actor, order, payment, amount, reason, refund_id
        )
        return Call(
            resource_id=ref.id,
            run=lambda: engine.call_refund(provider, ref, payment),
            finish=lambda c, result: refund_finished(
                engine.apply_refund_result(
                    db, c, deps, ref.id, result, actor.label, merchant_id=ref.merchant_id
                )
            ),
        )

    def queue_refund(
        self, conn: Connection, deps: Deps, actor: Actor, payment: Any, amount: int, reason: str | None
    ) -> str:
        return engine.queue_provider_refund(conn, deps, actor, payment, amount, reason)
