"""Batched journal sync from tills: many keyed requests applied in one transaction.

Each entry is exactly the request its single route would receive (same path, body and Idempotency-Key),
so an entry is applied once however it arrives. Entries run in order, each in a savepoint: a failing
entry is reported and leaves nothing behind. Provider payments are never batched: they must be sent one
at a time so the cashier sees the provider's answer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, insert, update
from sqlalchemy.exc import IntegrityError

from tillit.access import idempotency
from tillit.adapters.db.engine import Database
from tillit.adapters.db.schema import till_sync_reports
from tillit.domain.errors import DomainError, invalid
from tillit.domain.ids import normalise_id
from tillit.kernel.context import Actor, Deps
from tillit.sales import bulk, cancel, orders, payments, refunds
from tillit.sales.gateway import ProviderGateway
from tillit.sales.views import SyncAnswer

PATHS = {
    "order": "/v1/orders",
    "payment": "/v1/payments",
    "refund": "/v1/refunds",
    "cancel": "/v1/orders/{order_id}/cancel",
}
Operation = Callable[[Connection], tuple[int, Any]]
BatchEntry = tuple[str, str, dict[str, Any] | None, str | None, DomainError | None]
"""One journal entry as the API validated it: (op, Idempotency-Key, request body or None, the order id of a
cancel, the validation error that stops it or None)."""


def _operation(
    db: Database,
    deps: Deps,
    actor: Actor,
    op: str,
    data: dict[str, Any],
    order_id: str | None,
    gateway: ProviderGateway | None,
) -> Operation:
    if op == "order":
        order_data = dict(data)
        if order_data.get("store_id"):
            order_data["store_id"] = normalise_id(order_data["store_id"], "store_id")
        order_data["lines"] = [
            {**line, "product_id": normalise_id(line["product_id"], "product_id")}
            if line.get("product_id")
            else line
            for line in order_data["lines"]
        ]
        return lambda conn: orders.create_order(conn, deps, actor, order_data)
    if op == "payment":
        if data.get("payment_code"):
            raise invalid(
                "provider_payment_not_batchable",
                "Provider payments are sent one at a time (POST /v1/payments), never in a batch.",
            )
        return lambda conn: payments.create_payment(db, conn, deps, actor, data)
    if op == "refund":

        def refund(conn: Connection) -> tuple[int, Any]:
            outcome = refunds.create_refund(db, conn, deps, actor, data, None)
            assert not isinstance(outcome, idempotency.Call), "no engine: provider refunds are refused"
            return outcome

        return refund
    if order_id is None:
        raise invalid("order_required", "A cancel entry needs order_id.")
    oid = normalise_id(order_id, "order_id")
    return lambda conn: (
        200,
        cancel.cancel_order(db, conn, deps, actor, oid, data["reason"], data.get("note"), gateway),
    )


def report_queue(conn: Connection, deps: Deps, actor: Actor, queued: int) -> None:
    """Record what a till says of its journal: ``queued`` entries still waiting there (after the batch
    it sent with it). Only a terminal key speaks for a till; the latest report wins."""
    if actor.terminal_id is None or actor.merchant_id is None:
        return
    now = deps.clock.now()
    done = conn.execute(
        update(till_sync_reports)
        .where(
            till_sync_reports.c.merchant_id == actor.merchant_id,
            till_sync_reports.c.terminal_id == actor.terminal_id,
        )
        .values(queued=queued, reported_at=now)
    )
    if done.rowcount == 0:
        try:
            with conn.begin_nested():
                conn.execute(
                    insert(till_sync_reports).values(
                        merchant_id=actor.merchant_id,
                        terminal_id=actor.terminal_id,
                        queued=queued,
                        reported_at=now,
                    )
                )
        except IntegrityError:  # the same till's other batch wrote its first report meanwhile
            conn.execute(
                update(till_sync_reports)
                .where(
                    till_sync_reports.c.merchant_id == actor.merchant_id,
                    till_sync_reports.c.terminal_id == actor.terminal_id,
                )
                .values(queued=queued, reported_at=now)
            )


#: Answers after which a till keeps an entry in its journal to send again (till/service.py); after any
#: other answer the entry leaves the till's queue (done, or rejected for a person to see).
RETRIED = frozenset({"idempotency_key_in_flight", "order_changed", "payment_changed"})


def apply_batch(
    db: Database,
    deps: Deps,
    actor: Actor,
    entries: list[BatchEntry],
    status_of: Callable[[DomainError], int],
    gateway: ProviderGateway | None = None,
    queued: int | None = None,
    *,
    bulk_writes: bool = True,
) -> list[SyncAnswer]:
    """Apply ``(op, key, validated body, order_id, validation error)`` entries; one result per entry.
    ``queued``: the till's journal entries waiting, this batch included (the till says it); what stays
    after the entries applied here is recorded for the sync backlog metric.

    The plain cash sales go through ``bulk.BulkSales`` (set-based writes); every other entry, and any
    entry it declines, runs exactly as its single route would, after what was taken before it is written.
    ``bulk_writes=False`` runs every entry the single way (the tests compare the two)."""
    results: list[SyncAnswer | None] = [None] * len(entries)
    with db.transaction() as conn:
        sales = (
            bulk.BulkSales(db, deps, actor, payments.cash_gates())
            if actor.merchant_id and bulk_writes
            else None
        )
        if sales is not None:
            sales.prepare(
                conn, [(op, key, data if error is None else None) for op, key, data, _, error in entries]
            )

        def write_taken() -> None:
            assert sales is not None
            try:
                with conn.begin_nested():
                    done = sales.flush(conn)
            except IntegrityError:  # another transaction wrote one of these ids meanwhile: one by one
                for index in sales.discard():
                    results[index] = _apply_one(db, deps, actor, conn, entries[index], status_of, gateway)
                return
            for index, result in done:
                results[index] = result

        for index, entry in enumerate(entries):
            op, key, data, _, error = entry
            if sales is not None and error is None and sales.take(conn, index, op, key, data):
                continue
            if sales is not None:
                write_taken()
                sales.ran_single(key, data)
            results[index] = _apply_one(db, deps, actor, conn, entry, status_of, gateway)
        if sales is not None:
            write_taken()
        answered = [r for r in results if r is not None]
        assert len(answered) == len(entries), "every entry has its answer"
        if queued is not None:
            kept = sum(
                1 for r in answered if r.status == 409 and r.error is not None and r.error["code"] in RETRIED
            )
            report_queue(conn, deps, actor, max(queued - len(answered) + kept, 0))
    return answered


def _apply_one(
    db: Database,
    deps: Deps,
    actor: Actor,
    conn: Connection,
    entry: BatchEntry,
    status_of: Callable[[DomainError], int],
    gateway: ProviderGateway | None,
) -> SyncAnswer:
    """One entry exactly as its single route applies it, in its own savepoint."""
    op, key, data, order_id, error = entry
    try:
        if error is not None:
            raise error
        assert data is not None
        path = PATHS[op].format(order_id=order_id)
        operation = _operation(db, deps, actor, op, data, order_id, gateway)
        with conn.begin_nested():
            stored = idempotency.run_in(conn, db, deps, actor, key, "POST", path, data, operation)
        return SyncAnswer(key, stored.status, stored.replayed, stored.body)
    except DomainError as exc:
        return SyncAnswer(
            key, status_of(exc), error={"code": exc.code, "message": exc.message, "details": exc.details}
        )
