"""Set-based writes for a till's offline cash sales (issue 11.5): the plain cases of a sync batch.

A till that was offline sends its journal as batches of ``order`` and cash ``payment`` entries. Run one
by one, each entry costs its own reads, statements, savepoint and idempotency record. ``BulkSales`` takes
the entries that are certainly plain — a new order with known products and no customer contact, a cash
payment of an order created by this same bulk run — checks them in memory against what it read for the
whole batch in a handful of statements, and writes them per table with one ``executemany`` each.

Its answers are exactly those of the single routes: the same rows, events (in the same order), ledger
postings, receipt numbers, idempotency records and response bytes. Anything it cannot be sure of (a
replayed or reused key, an existing id, a validation problem, a customer contact, a zero total, an order
it did not create) it declines: the caller writes what was taken so far (``flush``) and runs that entry
through the single route's code, which gives the exact answer, error included. Order is kept: entries
taken are answered in the batch's order, and nothing taken after a declined entry is written before it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, select

from tillit.access import idempotency
from tillit.adapters.db.engine import Database
from tillit.adapters.db.many import ManyRows
from tillit.adapters.db.schema import (
    events,
    idempotency_keys,
    ledger_postings,
    merchants,
    order_lines,
    orders,
    payments,
    products,
    stores,
)
from tillit.domain.errors import DomainError
from tillit.domain.ids import normalise_id
from tillit.domain.ledger import capture_postings
from tillit.domain.money import MAX_AMOUNT, check_amount
from tillit.domain.pricing import MAX_LINES, price_order
from tillit.kernel.context import Actor, Deps
from tillit.kernel.transitions import event_row
from tillit.notifications import contacts
from tillit.sales.ledger import posting_rows
from tillit.sales.orders import (
    approval_events,
    next_numbers,
    order_rows,
    order_view,
    payment_view,
    priced_lines,
    stored_time,
    take_stock,
)
from tillit.sales.payments import CashGate, cash_payment_record
from tillit.sales.views import SyncAnswer

ORDER_PATH = "/v1/orders"
PAYMENT_PATH = "/v1/payments"

_KEYS = select(idempotency_keys.c.key, idempotency_keys.c.request_hash, idempotency_keys.c.status).where(
    idempotency_keys.c.scope == bindparam("b_scope"),
    idempotency_keys.c.key.in_(bindparam("b_keys", expanding=True)),
)
_ORDER_IDS = select(orders.c.id).where(orders.c.id.in_(bindparam("b_ids", expanding=True)))
_PAYMENT_IDS = select(payments.c.id).where(payments.c.id.in_(bindparam("b_ids", expanding=True)))
_CURRENCY = select(merchants.c.currency).where(merchants.c.id == bindparam("b_merchant"))
_STORES = select(stores.c.id, stores.c.merchant_id).where(stores.c.id.in_(bindparam("b_ids", expanding=True)))
_PRODUCTS = select(
    products.c.id, products.c.sku, products.c.name, products.c.price, products.c.currency, products.c.active
).where(products.c.merchant_id == bindparam("b_merchant"))
_PRODUCTS_BY_ID = _PRODUCTS.where(products.c.id.in_(bindparam("b_ids", expanding=True)))
_PRODUCTS_BY_SKU = _PRODUCTS.where(products.c.sku.in_(bindparam("b_skus", expanding=True)))
# Each table's rows go to the driver's executemany as plain tuples (adapters/db/many.py).
_ORDERS = ManyRows(
    orders,
    (
        "id",
        "merchant_id",
        "store_id",
        "terminal_id",
        "number",
        "status",
        "currency",
        "subtotal",
        "discount_total",
        "total",
        "paid_amount",
        "refunded_amount",
        "note",
        "version",
        "created_at",
        "updated_at",
    ),
)
_LINES = ManyRows(
    order_lines,
    (
        "merchant_id",
        "order_id",
        "line_no",
        "product_id",
        "sku",
        "name",
        "unit_price",
        "quantity",
        "discount",
        "amount",
    ),
)
_EVENTS = ManyRows(
    events,
    (
        "merchant_id",
        "order_id",
        "entity",
        "entity_id",
        "from_status",
        "to_status",
        "actor",
        "reason",
        "provider_ref",
        "at",
    ),
)
_PAYMENTS = ManyRows(
    payments,
    (
        "id",
        "merchant_id",
        "order_id",
        "terminal_id",
        "method",
        "provider",
        "amount",
        "currency",
        "status",
        "tendered",
        "change_due",
        "refunded_amount",
        "provider_ref",
        "payment_code_masked",
        "failure_code",
        "failure_message",
        "version",
        "created_at",
        "updated_at",
        "resolved_at",
    ),
)
_POSTINGS = ManyRows(
    ledger_postings,
    (
        "txn_id",
        "merchant_id",
        "order_id",
        "payment_id",
        "refund_id",
        "account",
        "amount",
        "currency",
        "kind",
        "created_at",
    ),
)
_IDEMPOTENCY = ManyRows(
    idempotency_keys,
    (
        "scope",
        "key",
        "method",
        "path",
        "request_hash",
        "status",
        "response_status",
        "response_body",
        "created_at",
        "locked_at",
    ),
)


@dataclass
class _Order:
    """An order this run created: its row as it will be written (kept current as payments come)."""

    record: dict[str, Any]
    lines: list[dict[str, Any]]
    index: int  # the entry that created it, whose answer waits for the receipt number
    view_written: dict[str, Any]  # the row as the creating request saw it (open, version 1)
    sold: list[tuple[str, int]]


@dataclass
class _Answer:
    index: int
    key: str
    digest: str
    path: str
    now: datetime
    status: int
    view: Any = None  # the response body; an order's is built at flush, once it has its number


@dataclass
class _Pending:
    answers: list[_Answer] = field(default_factory=list)
    new_orders: list[_Order] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    payments: list[dict[str, Any]] = field(default_factory=list)
    postings: list[dict[str, Any]] = field(default_factory=list)
    paid: list[tuple[str, int]] = field(default_factory=list)
    sold: dict[str, int] = field(default_factory=dict)


class BulkSales:
    """The plain cash sales of one sync batch, checked in memory and written per table.

    Use: ``prepare`` once with the whole batch; then for each entry in order ``take`` (True: it is
    answered at the next ``flush``) or, when it declines, ``flush`` and run the entry the single way,
    telling ``ran_single`` which key and ids it used. ``flush`` at the end. All in the caller's
    transaction; ``flush`` raises IntegrityError (nothing of it written, the caller's savepoint) when
    another transaction wrote one of the same ids meanwhile, and the caller then runs them singly."""

    def __init__(self, db: Database, deps: Deps, actor: Actor, cash_gates: list[CashGate]) -> None:
        self.db, self.deps, self.actor = db, deps, actor
        self.merchant_id = actor.merchant()
        self.cash_gates = cash_gates
        self.scope = actor.merchant_id or "admin"
        self.pending = _Pending()
        self.orders: dict[str, _Order] = {}  # orders created by this run, as long as nobody else touched them
        self.used_keys: set[str] = set()
        self.used_ids: set[str] = set()
        self.busy_keys: set[str] = set()
        self.known_keys: set[str] = set()
        self.existing_ids: set[str] = set()
        self.stores: dict[str, str] = {}
        self.by_id: dict[str, Any] = {}
        self.by_sku: dict[str, Any] = {}
        self.currency: str | None = None
        self._gate_ok: bool | None = None

    # --- reading what the batch needs, once ------------------------------------------------------------
    def prepare(self, conn: Connection, entries: list[tuple[str, str, dict[str, Any] | None]]) -> None:
        keys = sorted({key for _, key, data in entries if data is not None})
        order_ids: set[str] = set()
        payment_ids: set[str] = set()
        store_ids: set[str] = set()
        skus: set[str] = set()
        product_ids: set[str] = set()
        for op, _, data in entries:
            if data is None:
                continue
            if op == "order":
                _add_id(order_ids, data.get("id"))
                _add_id(store_ids, data.get("store_id") or self.actor.store_id)
                for line in data.get("lines") or []:
                    if line.get("product_id"):
                        _add_id(product_ids, line["product_id"])
                    elif line.get("sku"):
                        skus.add(line["sku"])
            elif op == "payment":
                _add_id(payment_ids, data.get("id"))
        if keys:
            self.known_keys = {r.key for r in conn.execute(_KEYS, {"b_scope": self.scope, "b_keys": keys})}
            names = {f"idem:{self.scope}:{k}": k for k in keys}  # idempotency._existing's lock names
            self.busy_keys = {names[n] for n in self.db.try_advisory_locks(conn, names)}
        # Any merchant's ids: an id in use anywhere is left to the single route, which knows what to say.
        if order_ids:
            self.existing_ids |= set(conn.execute(_ORDER_IDS, {"b_ids": sorted(order_ids)}).scalars())
        if payment_ids:
            self.existing_ids |= set(conn.execute(_PAYMENT_IDS, {"b_ids": sorted(payment_ids)}).scalars())
        if store_ids:
            self.stores = {r.id: r.merchant_id for r in conn.execute(_STORES, {"b_ids": sorted(store_ids)})}
        scope = {"b_merchant": self.merchant_id}
        if product_ids:
            for row in conn.execute(_PRODUCTS_BY_ID, {**scope, "b_ids": sorted(product_ids)}):
                self.by_id[row.id] = row
        if skus:
            for row in conn.execute(_PRODUCTS_BY_SKU, {**scope, "b_skus": sorted(skus)}):
                self.by_sku[row.sku] = row
        self.currency = conn.execute(_CURRENCY, scope).scalar()

    # --- taking entries --------------------------------------------------------------------------------
    def take(self, conn: Connection, index: int, op: str, key: str, data: dict[str, Any] | None) -> bool:
        """Answer the entry at the next flush if it is certainly plain; False leaves it to the caller."""
        if data is None or not self._fresh_key(key):
            return False
        try:
            if op == "order":
                return self._take_order(index, key, data)
            if op == "payment":
                return self._take_payment(conn, index, key, data)
        except DomainError:  # the single route gives the exact answer
            return False
        return False

    def ran_single(self, key: str, data: dict[str, Any] | None) -> None:
        """An entry ran the single way (after a flush): its key and ids are taken, and orders this run
        created may have changed, so their payments go the single way from now on."""
        self.used_keys.add(key)
        if data:
            _add_id(self.used_ids, data.get("id"))
        self.orders.clear()

    def _fresh_key(self, key: str) -> bool:
        try:
            idempotency.check_key(key)
        except DomainError:
            return False
        return key not in self.known_keys and key not in self.busy_keys and key not in self.used_keys

    def _fresh_id(self, raw: Any) -> str | None:
        if not raw:
            return self.deps.ids.new()
        oid = normalise_id(raw)
        if oid in self.existing_ids or oid in self.used_ids:
            return None
        return oid

    def _take_order(self, index: int, key: str, data: dict[str, Any]) -> bool:
        if data.get("customer") or self.currency is None:
            return False
        if (data.get("currency") or self.currency) != self.currency:
            return False
        order_id = self._fresh_id(data.get("id"))
        if order_id is None:
            return False
        store_id = data.get("store_id") or self.actor.store_id
        if store_id is None:
            return False
        store_id = normalise_id(store_id, "store_id")
        if self.stores.get(store_id) != self.merchant_id:
            return False
        if self.actor.store_id is not None and store_id != self.actor.store_id:
            return False
        lines_in = data.get("lines") or []
        if not lines_in or len(lines_in) > MAX_LINES:
            return False
        found: dict[tuple[str, str], Any] = {}
        refs = []
        for line in lines_in:
            if line.get("product_id"):
                product_id = normalise_id(line["product_id"], "product_id")
                refs.append({**line, "product_id": product_id})
                if product_id in self.by_id:
                    found[("id", product_id)] = self.by_id[product_id]
            else:
                refs.append(line)
                if line.get("sku") in self.by_sku:
                    found[("sku", line["sku"])] = self.by_sku[line["sku"]]
        priced = priced_lines(found, self.currency, refs)  # raises (declines) as the single route would
        totals = price_order(priced, data.get("total"))
        if totals.total == 0:
            return False
        now = self.deps.clock.now()
        merchant_id, actor = self.merchant_id, self.actor.label
        record, lines = order_rows(
            order_id=order_id,
            merchant_id=merchant_id,
            store_id=store_id,
            terminal_id=self.actor.terminal_id,
            currency=self.currency,
            priced=priced,
            totals=totals,
            note=data.get("note"),
            now=now,
            number=None,  # allocated at flush, in the batch's order
        )
        order = _Order(
            record=record,
            lines=lines,
            index=index,
            view_written=dict(record),
            sold=[(line.product_id, line.quantity) for line in priced],
        )
        p = self.pending
        p.events.append(_event(merchant_id, order_id, "order", order_id, None, "open", actor, now))
        p.events += approval_events(merchant_id, order_id, actor, data.get("approvals") or [], now)
        p.new_orders.append(order)
        p.answers.append(
            _Answer(index, key, idempotency.request_hash("POST", ORDER_PATH, data), ORDER_PATH, now, 201)
        )
        self.orders[order_id] = order
        self.used_keys.add(key)
        self.used_ids.add(order_id)
        return True

    def _take_payment(self, conn: Connection, index: int, key: str, data: dict[str, Any]) -> bool:
        if data.get("payment_code") or (data.get("method") or "cash") != "cash":
            return False
        order = self.orders.get(normalise_id(data["order_id"], "order_id"))
        if order is None or order.record["status"] != "open":
            return False
        payment_id = self._fresh_id(data.get("id"))
        if payment_id is None:
            return False
        o = order.record
        if (data.get("currency") or o["currency"]) != o["currency"] or not self._gate_passes(conn):
            return False
        balance = o["total"] - o["paid_amount"]
        amount = balance if data.get("amount") is None else check_amount(data["amount"])
        if amount > balance:
            return False
        tendered = data.get("tendered")
        change_due = None
        if tendered is not None:
            check_amount(tendered, "tendered")
            if tendered < amount or tendered > MAX_AMOUNT:
                return False
            change_due = tendered - amount
        now = self.deps.clock.now()
        merchant_id, order_id, actor = self.merchant_id, o["id"], self.actor.label
        record = cash_payment_record(
            payment_id=payment_id,
            merchant_id=merchant_id,
            order_id=order_id,
            terminal_id=self.actor.terminal_id,
            amount=amount,
            currency=o["currency"],
            tendered=tendered,
            change_due=change_due,
            now=now,
        )
        p = self.pending
        p.payments.append(record)
        p.events.append(
            _event(
                merchant_id, order_id, "payment", payment_id, None, "captured", actor, now, "cash received"
            )
        )
        p.postings += posting_rows(
            txn_id=self.deps.ids.new(),
            merchant_id=merchant_id,
            order_id=order_id,
            currency=o["currency"],
            kind="capture",
            postings=capture_postings(order_id, "cash", amount),
            now=now,
            payment_id=payment_id,
        )
        # As payments.credit_order moves the order: paid when nothing is due, else its paid amount.
        o["paid_amount"] += amount
        o["version"] += 1
        o["updated_at"] = now
        if o["paid_amount"] == o["total"]:
            o["status"] = "paid"
            p.events.append(
                _event(merchant_id, order_id, "order", order_id, "open", "paid", actor, now, "fully paid")
            )
            for product_id, quantity in order.sold:
                p.sold[product_id] = p.sold.get(product_id, 0) + quantity
            p.paid.append((order_id, o["paid_amount"]))
        p.answers.append(
            _Answer(
                index,
                key,
                idempotency.request_hash("POST", PAYMENT_PATH, data),
                PAYMENT_PATH,
                now,
                201,
                payment_view(record),
            )
        )
        self.used_keys.add(key)
        self.used_ids.add(payment_id)
        return True

    def _gate_passes(self, conn: Connection) -> bool:
        """The merchants area's cash rule, asked once per batch (it reads the merchant, which does not
        change inside this transaction); a refusal is left to the single route to report."""
        if self._gate_ok is None:
            try:
                for gate in self.cash_gates:
                    gate(conn, self.merchant_id)
                self._gate_ok = True
            except DomainError:
                self._gate_ok = False
        return self._gate_ok

    # --- writing ---------------------------------------------------------------------------------------
    def flush(self, conn: Connection) -> list[tuple[int, SyncAnswer]]:
        """Write every entry taken since the last flush; returns ``(entry index, result)`` pairs."""
        p = self.pending
        if not p.answers:
            return []
        merchant_id = self.merchant_id
        if p.new_orders:
            n = len(p.new_orders)
            last = next_numbers(conn, merchant_id, "order", n)
            by_index: dict[int, _Order] = {}
            for number, order in zip(range(last - n + 1, last + 1), p.new_orders, strict=True):
                order.record["number"] = order.view_written["number"] = number
                by_index[order.index] = order
            _ORDERS.insert(conn, [o.record for o in p.new_orders])
            _LINES.insert(conn, [line for o in p.new_orders for line in o.lines])
            for answer in p.answers:
                created = by_index.get(answer.index)
                if created is not None:
                    written = {**created.view_written, "cancel_reason": None}
                    written["created_at"] = written["updated_at"] = stored_time(conn, answer.now)
                    answer.view = order_view(written, created.lines, [], [])
        _EVENTS.insert(conn, p.events)
        if p.payments:
            _PAYMENTS.insert(conn, p.payments)
            _POSTINGS.insert(conn, p.postings)
        take_stock(conn, p.sold)
        results: list[tuple[int, SyncAnswer]] = []
        keys: list[dict[str, Any]] = []
        for answer in p.answers:
            payload = idempotency.encode(answer.view)
            keys.append(
                idempotency.done_record(
                    self.scope,
                    answer.key,
                    "POST",
                    answer.path,
                    answer.digest,
                    answer.status,
                    payload,
                    answer.now,
                )
            )
            results.append((answer.index, SyncAnswer(answer.key, answer.status, False, payload)))
        _IDEMPOTENCY.insert(conn, keys)
        if p.paid:  # at the time of the last entry taken, as the single route's messages would be
            contacts.notify_paid_contactless(conn, p.answers[-1].now, merchant_id, p.paid)
        # Written: what comes next starts afresh (an order written here takes no more bulk payments).
        self.pending = _Pending()
        self.orders.clear()
        return results

    def discard(self) -> list[int]:
        """Forget what was taken since the last flush (its flush failed and was rolled back); returns the
        entry indexes, for the caller to run the single way. Orders created by this run are forgotten."""
        indexes = [a.index for a in self.pending.answers]
        self.pending = _Pending()
        self.orders.clear()
        return indexes


def _add_id(into: set[str], raw: Any) -> None:
    """Add ``raw`` in its stored form when it is an id at all (a bad one is the single route's to report)."""
    if raw:
        with contextlib.suppress(DomainError):
            into.add(normalise_id(raw))


def _event(
    merchant_id: str,
    order_id: str,
    entity: str,
    entity_id: str,
    from_status: str | None,
    to_status: str,
    actor: str,
    now: datetime,
    reason: str | None = None,
) -> dict[str, Any]:
    return event_row(
        merchant_id=merchant_id,
        order_id=order_id,
        entity=entity,
        entity_id=entity_id,
        from_status=from_status,
        to_status=to_status,
        actor=actor,
        now=now,
        reason=reason,
    )
