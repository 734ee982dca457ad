"""What sales needs from the provider engine, as a protocol: sales sits below payments and never imports it.

payments/gateway.py implements it over the integrity engine; bootstrap.py hands the implementation to the
entry points, which pass it to the sales use cases. ``None`` where no provider integration is configured:
then provider payments and refunds are refused with ``method_not_enabled``.
"""

from __future__ import annotations

from typing import Any, Protocol

from sqlalchemy import Connection

from tillit.access.idempotency import Call
from tillit.adapters.db.engine import Database
from tillit.kernel.context import Actor, Deps
from tillit.sales.views import PaymentView


class ProviderGateway(Protocol):
    def start_payment(
        self, db: Database, conn: Connection, deps: Deps, actor: Actor, body: dict[str, Any]
    ) -> tuple[int, PaymentView] | Call:
        """Record a provider attempt for a scanned payment code (phase 1) and return the call that sends it,
        or the finished answer when nothing needs sending (e.g. a replayed attempt)."""
        ...

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
        """Record a provider refund of a captured provider payment and return the call that sends it."""
        ...

    def queue_refund(
        self, conn: Connection, deps: Deps, actor: Actor, payment: Any, amount: int, reason: str | None
    ) -> str:
        """Write a pending provider refund that the resolver sends and confirms; returns the refund id."""
        ...
