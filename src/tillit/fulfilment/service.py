"""Fulfilment use cases: declare an order for pickup or delivery, move it to confirmed receipt, dispute it,
resolve the dispute by re-delivery or a refund through the existing refund path.

Every move goes through ``kernel.transitions.transition`` (checked against ``domain.fulfilment.FULFILMENT``,
compare-and-set, one event row). Lock order: the order row first (``sales.orders.lock_order``), then the
fulfilment row, as the refund path does. Each move that the customer should hear about calls
``notify.send`` in the same transaction, and every change of a timer re-plans the merchant's timer job.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from tillit.access.idempotency import Call
from tillit.adapters.db.engine import Database
from tillit.adapters.db.schema import (
    events,
    fulfilment_photos,
    fulfilment_settings,
    fulfilments,
    merchants,
    order_lines,
    orders,
    payments,
    refunds,
)
from tillit.domain import fulfilment as rules
from tillit.domain.errors import DomainError, ErrorKind, conflict, invalid, not_found
from tillit.fulfilment import notify, outbox
from tillit.fulfilment.links import LinkSigner, OrderRef, customer_path
from tillit.fulfilment.views import CustomerOrderView, FulfilmentView, PeriodsView, TimelineEntry
from tillit.kernel import jobs
from tillit.kernel.context import Actor, Deps, iso
from tillit.kernel.transitions import record_created, transition
from tillit.sales import refunds as sales_refunds
from tillit.sales.gateway import ProviderGateway
from tillit.sales.orders import (
    in_flight_payment,
    lock_order,
    payment_in_progress,
    release_stock,
    reserved_refunds,
)

TIMER_JOB = "fulfilment_timers"
CUSTOMER = "customer:link"
SYSTEM = "system:fulfilment"
MAX_PAGE = 200
LANGUAGES = ("zh-CN", "en")
_PHONE = re.compile(r"^\+?[0-9][0-9 -]{4,30}$")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,189}\.[^@\s]{1,60}$")


# --- settings ----------------------------------------------------------------------------------------


def periods(conn: Connection, merchant_id: str) -> rules.Periods:
    row = conn.execute(
        select(fulfilment_settings).where(fulfilment_settings.c.merchant_id == merchant_id)
    ).first()
    if row is None:
        return rules.DEFAULT_PERIODS
    return rules.Periods(row.auto_confirm_days, row.reminder_hours, row.ship_sla_hours)


def get_settings(conn: Connection, merchant_id: str) -> PeriodsView:
    row = conn.execute(
        select(fulfilment_settings.c.merchant_id).where(fulfilment_settings.c.merchant_id == merchant_id)
    ).first()
    p = periods(conn, merchant_id)
    return {
        "auto_confirm_days": p.auto_confirm_days,
        "reminder_hours": p.reminder_hours,
        "ship_sla_hours": p.ship_sla_hours,
        "default": row is None,
    }


def put_settings(conn: Connection, deps: Deps, merchant_id: str, values: dict[str, int]) -> PeriodsView:
    """Set the merchant's periods (each within ``rules.LIMITS``); they apply to timers started after."""
    for name, (low, high) in rules.LIMITS.items():
        value = values[name]
        if not low <= value <= high:
            raise invalid("invalid_fulfilment_settings", f"{name} must be {low}-{high}.", {"field": name})
    now = deps.clock.now()
    changed = conn.execute(
        update(fulfilment_settings)
        .where(fulfilment_settings.c.merchant_id == merchant_id)
        .values(**values, updated_at=now)
    )
    if changed.rowcount == 0:
        conn.execute(insert(fulfilment_settings).values(merchant_id=merchant_id, **values, updated_at=now))
    return get_settings(conn, merchant_id)


# --- views -------------------------------------------------------------------------------------------


def _refund_of(conn: Connection, row: Any) -> Any:
    if row.refund_id is None:
        return None
    return conn.execute(
        select(refunds.c.id, refunds.c.amount, refunds.c.status).where(
            refunds.c.merchant_id == row.merchant_id, refunds.c.id == row.refund_id
        )
    ).first()


def fulfilment_view(conn: Connection, signer: LinkSigner, row: Any) -> FulfilmentView:
    number = conn.execute(
        select(orders.c.number).where(orders.c.merchant_id == row.merchant_id, orders.c.id == row.order_id)
    ).scalar_one()
    photos = conn.execute(
        select(func.count())
        .select_from(fulfilment_photos)
        .where(
            fulfilment_photos.c.merchant_id == row.merchant_id, fulfilment_photos.c.fulfilment_id == row.id
        )
    ).scalar_one()
    ref = _refund_of(conn, row)
    return {
        "id": row.id,
        "order_id": row.order_id,
        "order_number": int(number),
        "kind": row.kind,
        "status": row.status,
        "contact_name": row.contact_name,
        "contact_phone": row.contact_phone,
        "contact_email": row.contact_email,
        "language": row.language,
        "address": row.address,
        "note": row.note,
        "carrier": row.carrier,
        "tracking_number": row.tracking_number,
        "confirmed_by": row.confirmed_by,
        "dispute_reason": row.dispute_reason,
        "dispute_note": row.dispute_note,
        "dispute_photos": int(photos),
        "resolution": row.resolution,
        "refund": {"id": ref.id, "amount": ref.amount, "status": ref.status} if ref is not None else None,
        "ship_due_at": iso(row.ship_due_at),
        "confirm_due_at": iso(row.confirm_due_at),
        "remind_at": iso(row.remind_at),
        "reminded_at": iso(row.reminded_at),
        "extended_at": iso(row.extended_at),
        "sla_exception_id": row.sla_exception_id,
        "customer_path": customer_path(signer, row.merchant_id, row.order_id),
        "version": row.version,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
    }


def row_of(conn: Connection, merchant_id: str, fulfilment_id: str) -> Any:
    row = conn.execute(
        select(fulfilments).where(fulfilments.c.merchant_id == merchant_id, fulfilments.c.id == fulfilment_id)
    ).first()
    if row is None:
        raise not_found("fulfilment", fulfilment_id)
    return row


def _row_for_order(conn: Connection, ref: OrderRef) -> Any:
    row = conn.execute(
        select(fulfilments).where(
            fulfilments.c.merchant_id == ref.merchant_id, fulfilments.c.order_id == ref.order_id
        )
    ).first()
    if row is None:
        raise not_found("fulfilment", ref.order_id)
    return row


def get_fulfilment(
    conn: Connection, signer: LinkSigner, merchant_id: str, fulfilment_id: str
) -> FulfilmentView:
    return fulfilment_view(conn, signer, row_of(conn, merchant_id, fulfilment_id))


def list_fulfilments(
    conn: Connection,
    signer: LinkSigner,
    merchant_id: str,
    *,
    limit: int,
    before: str | None = None,
    status: str | None = None,
    kind: str | None = None,
) -> list[FulfilmentView]:
    """Newest first, keyset-paginated by id (pass the last id seen as ``before``)."""
    query = (
        select(fulfilments)
        .where(fulfilments.c.merchant_id == merchant_id)
        .order_by(fulfilments.c.id.desc())
        .limit(min(limit, MAX_PAGE))
    )
    if before:
        query = query.where(fulfilments.c.id < before)
    if status:
        query = query.where(fulfilments.c.status == status)
    if kind:
        query = query.where(fulfilments.c.kind == kind)
    return [fulfilment_view(conn, signer, r) for r in conn.execute(query)]


# --- creation ----------------------------------------------------------------------------------------


def _text(body: dict[str, Any], name: str, limit: int) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    value = str(value).strip()
    if len(value) > limit:
        raise invalid("invalid_fulfilment", f"{name} is at most {limit} characters.", {"field": name})
    return value or None


def create_fulfilment(
    db: Database,
    conn: Connection,
    deps: Deps,
    actor: Actor,
    signer: LinkSigner,
    order_id: str,
    body: dict[str, Any],
) -> tuple[int, FulfilmentView]:
    """Declare an open or paid order as a pickup or delivery order. One per order: the same request
    again answers 200 with the existing one; another kind answers 409 ``fulfilment_exists``.

    Validation: ``kind`` pickup|delivery; an address for delivery; a phone or an e-mail to reach the
    customer. The shipping SLA starts now (the merchant's ``ship_sla_hours``)."""
    merchant_id = actor.merchant()
    kind = body.get("kind")
    if kind not in rules.KINDS:
        raise invalid("invalid_fulfilment", "kind must be pickup or delivery.", {"field": "kind"})
    address = _text(body, "address", rules.MAX_ADDRESS)
    if kind == "delivery" and not address:
        raise invalid("address_required", "A delivery order needs the address to deliver to.")
    phone = _text(body, "contact_phone", 32)
    email = _text(body, "contact_email", 254)
    if phone is None and email is None:
        raise invalid("contact_required", "Give a phone number or an e-mail address to reach the customer.")
    if phone is not None and not _PHONE.match(phone):
        raise invalid(
            "invalid_fulfilment", "contact_phone is not a phone number.", {"field": "contact_phone"}
        )
    if email is not None and not _EMAIL.match(email):
        raise invalid(
            "invalid_fulfilment", "contact_email is not an e-mail address.", {"field": "contact_email"}
        )
    language = body.get("language") or "zh-CN"
    if language not in LANGUAGES:
        raise invalid("invalid_fulfilment", "language must be zh-CN or en.", {"field": "language"})
    order = lock_order(db, conn, merchant_id, order_id)
    existing = conn.execute(
        select(fulfilments).where(
            fulfilments.c.merchant_id == merchant_id, fulfilments.c.order_id == order_id
        )
    ).first()
    if existing is not None:
        if existing.kind != kind:
            raise conflict(
                "fulfilment_exists",
                f"This order is already a {existing.kind} order.",
                {"fulfilment_id": existing.id, "kind": existing.kind},
            )
        return 200, fulfilment_view(conn, signer, existing)
    if order.status not in ("open", "paid"):
        raise conflict(
            "order_not_fulfillable",
            f"Only an open or paid order can be picked up or delivered; this one is {order.status}.",
            {"status": order.status},
        )
    now = deps.clock.now()
    fid = deps.ids.new()
    record = {
        "id": fid,
        "merchant_id": merchant_id,
        "order_id": order_id,
        "kind": kind,
        "status": "awaiting_fulfilment",
        "version": 1,
        "contact_name": _text(body, "contact_name", rules.MAX_CONTACT),
        "contact_phone": phone,
        "contact_email": email,
        "language": language,
        "address": address,
        "note": _text(body, "note", rules.MAX_NOTE),
        "ship_due_at": rules.ship_due(now, periods(conn, merchant_id)),
        "created_at": now,
        "updated_at": now,
    }
    conn.execute(insert(fulfilments).values(**record))
    # The outbox reaches the order's customer: this contact becomes the order's unless it has one.
    outbox.attach_contact(
        conn, deps, merchant_id, order_id, outbox.contact_of(email, phone, language, bool(body.get("opt_in")))
    )
    record_created(
        conn,
        entity="fulfilment",
        entity_id=fid,
        status="awaiting_fulfilment",
        merchant_id=merchant_id,
        order_id=order_id,
        actor=actor.label,
        now=now,
        reason=kind,
    )
    reschedule(conn, deps, merchant_id)
    return 201, fulfilment_view(conn, signer, row_of(conn, merchant_id, fid))


# --- moves -------------------------------------------------------------------------------------------


def lock(db: Database, conn: Connection, merchant_id: str, fulfilment_id: str) -> tuple[Any, Any]:
    """The fulfilment and its order, both locked (order first)."""
    head = row_of(conn, merchant_id, fulfilment_id)
    order = lock_order(db, conn, merchant_id, head.order_id)
    query = select(fulfilments).where(
        fulfilments.c.merchant_id == merchant_id, fulfilments.c.id == fulfilment_id
    )
    if db.is_postgres:
        query = query.with_for_update()
    return conn.execute(query).one(), order


def move(
    conn: Connection,
    deps: Deps,
    signer: LinkSigner,
    row: Any,
    target: str,
    actor: str,
    *,
    reason: str | None = None,
    values: dict[str, Any] | None = None,
    message: str | None = None,
) -> Any:
    """Apply one move (event + compare-and-set), tell the customer if ``message``, re-plan the timers."""
    required = rules.KIND_ONLY.get(target)
    if required is not None and row.kind != required:
        raise conflict(
            "fulfilment_wrong_kind",
            f"A {row.kind} order cannot be {target}.",
            {"kind": row.kind, "to": target},
        )
    transition(
        conn,
        entity="fulfilment",
        entity_id=row.id,
        current=row.status,
        target=target,
        merchant_id=row.merchant_id,
        order_id=row.order_id,
        actor=actor,
        now=deps.clock.now(),
        reason=reason,
        values=values,
    )
    fresh = row_of(conn, row.merchant_id, row.id)
    if message is not None:
        tell(conn, deps, signer, fresh, message)
    reschedule(conn, deps, row.merchant_id)
    return fresh


def tell(conn: Connection, deps: Deps, signer: LinkSigner, row: Any, event: str) -> None:
    number = conn.execute(
        select(orders.c.number).where(orders.c.merchant_id == row.merchant_id, orders.c.id == row.order_id)
    ).scalar_one()
    notify.send(
        conn,
        deps,
        notify.FulfilmentMessage(
            event=event,
            merchant_id=row.merchant_id,
            order_id=row.order_id,
            fulfilment_id=row.id,
            order_number=int(number),
            language=row.language,
            contact_email=row.contact_email,
            contact_phone=row.contact_phone,
            customer_path=customer_path(signer, row.merchant_id, row.order_id),
            status=row.status,
            dispute_reason=row.dispute_reason,
            carrier=row.carrier,
            tracking_number=row.tracking_number,
            confirm_due_at=iso(row.confirm_due_at),
        ),
    )


def _require_paid(order: Any) -> None:
    if order.status != "paid":
        raise conflict(
            "order_not_paid",
            f"The order must be paid before it is handed over; it is {order.status}.",
            {"status": order.status},
        )


def _confirm_timer(conn: Connection, deps: Deps, merchant_id: str) -> dict[str, Any]:
    now = deps.clock.now()
    p = periods(conn, merchant_id)
    due = rules.confirm_due(now, p)
    return {"confirm_due_at": due, "remind_at": rules.remind_due(due, p, now), "reminded_at": None}


def mark_ready(
    db: Database, conn: Connection, deps: Deps, actor: Actor, signer: LinkSigner, fulfilment_id: str
) -> FulfilmentView:
    row, order = lock(db, conn, actor.merchant(), fulfilment_id)
    _require_paid(order)
    fresh = move(conn, deps, signer, row, "ready", actor.label, values={"ship_due_at": None}, message="ready")
    return fulfilment_view(conn, signer, fresh)


def _shipping(body: dict[str, Any]) -> dict[str, Any]:
    carrier = _text(body, "carrier", rules.MAX_CARRIER)
    tracking = _text(body, "tracking_number", rules.MAX_TRACKING)
    if not carrier or not tracking:
        raise invalid("shipping_required", "Shipping needs the carrier and the tracking number.")
    return {"carrier": carrier, "tracking_number": tracking}


def mark_shipped(
    db: Database,
    conn: Connection,
    deps: Deps,
    actor: Actor,
    signer: LinkSigner,
    fulfilment_id: str,
    body: dict[str, Any],
) -> FulfilmentView:
    """Hand a paid delivery order to the carrier: the auto-confirm timer starts (operations.md §8.1)."""
    shipping = _shipping(body)
    row, order = lock(db, conn, actor.merchant(), fulfilment_id)
    _require_paid(order)
    values = {**shipping, "ship_due_at": None, **_confirm_timer(conn, deps, row.merchant_id)}
    fresh = move(conn, deps, signer, row, "shipped", actor.label, values=values, message="shipped")
    return fulfilment_view(conn, signer, fresh)


def mark_delivered(
    db: Database, conn: Connection, deps: Deps, actor: Actor, signer: LinkSigner, fulfilment_id: str
) -> FulfilmentView:
    """The carrier reports delivery (the timer keeps running from shipping; a re-delivery ends here too)."""
    row, _order = lock(db, conn, actor.merchant(), fulfilment_id)
    target = "redelivered" if row.status == "redelivering" else "delivered"
    fresh = move(conn, deps, signer, row, target, actor.label, message="delivered")
    return fulfilment_view(conn, signer, fresh)


def confirm(conn: Connection, deps: Deps, signer: LinkSigner, row: Any, by: str, actor: str) -> Any:
    values = {"confirmed_by": by, "confirm_due_at": None, "remind_at": None, "ship_due_at": None}
    return move(conn, deps, signer, row, "confirmed", actor, reason=f"confirmed_by_{by}", values=values)


def confirm_pickup(
    db: Database, conn: Connection, deps: Deps, actor: Actor, signer: LinkSigner, code: str
) -> FulfilmentView:
    """The cashier scans the order's code (the customer link or its QR) at handover. A code that does
    not verify, or names another merchant's order, answers 404 like an unknown code."""
    merchant_id = actor.merchant()
    token = code.strip().rstrip("/").rsplit("/", 1)[-1]
    ref = signer.verify(token)
    if ref is None or ref.merchant_id != merchant_id:
        raise DomainError("code_not_found", "This code names no order of this merchant.", ErrorKind.NOT_FOUND)
    head = _row_for_order(conn, ref)
    row, order = lock(db, conn, merchant_id, head.id)
    if row.kind != "pickup":
        raise conflict("fulfilment_wrong_kind", "This is a delivery order, not a pickup.", {"kind": row.kind})
    _require_paid(order)
    fresh = confirm(conn, deps, signer, row, "cashier", actor.label)
    return fulfilment_view(conn, signer, fresh)


def customer_confirm(db: Database, conn: Connection, deps: Deps, signer: LinkSigner, ref: OrderRef) -> Any:
    """The customer confirms receipt on the page (the link proves who they are)."""
    head = _row_for_order(conn, ref)
    row, order = lock(db, conn, ref.merchant_id, head.id)
    if row.status not in rules.CUSTOMER_CONFIRMABLE:
        raise conflict("fulfilment_not_confirmable", f"This order is {row.status}.", {"status": row.status})
    _require_paid(order)
    return confirm(conn, deps, signer, row, "customer", CUSTOMER)


def customer_extend(db: Database, conn: Connection, deps: Deps, ref: OrderRef) -> Any:
    """The buyer extends the auto-confirm once by ``BUYER_EXTENSION`` when at most ``EXTEND_WHEN_LEFT``
    remains (operations.md §8.1): the due date (and a reminder not yet sent) move by 3 days, an event
    records it (same status, reason ``buyer_extended``) and the timer job is re-planned."""
    head = _row_for_order(conn, ref)
    row, order = lock(db, conn, ref.merchant_id, head.id)
    _require_paid(order)
    now = deps.clock.now()
    refusal = rules.extension_refusal(row.status, row.confirm_due_at, row.extended_at is not None, now)
    left = (row.confirm_due_at - now).total_seconds() if row.confirm_due_at is not None else None
    details = {"status": row.status, "seconds_left": left}
    if refusal == "already_extended":
        raise conflict("already_extended", "The auto-confirm was already extended once.", details)
    if refusal == "extension_too_early":
        raise conflict("extension_too_early", "The auto-confirm can be extended in its last 3 days.", details)
    if refusal is not None:
        raise conflict("fulfilment_not_extendable", f"This order is {row.status}.", details)
    values: dict[str, Any] = {
        "confirm_due_at": row.confirm_due_at + rules.BUYER_EXTENSION,
        "extended_at": now,
        "updated_at": now,
        "version": fulfilments.c.version + 1,
    }
    if row.reminded_at is None and row.remind_at is not None:
        values["remind_at"] = row.remind_at + rules.BUYER_EXTENSION
    done = conn.execute(
        update(fulfilments)
        .where(
            fulfilments.c.merchant_id == row.merchant_id,
            fulfilments.c.id == row.id,
            fulfilments.c.version == row.version,
            fulfilments.c.extended_at.is_(None),
        )
        .values(**values)
    )
    if done.rowcount != 1:
        raise conflict("already_extended", "The auto-confirm was already extended.")
    conn.execute(
        insert(events).values(
            merchant_id=row.merchant_id,
            order_id=row.order_id,
            entity="fulfilment",
            entity_id=row.id,
            from_status=row.status,
            to_status=row.status,
            actor=CUSTOMER,
            reason=rules.EXTENDED_REASON,
            at=now,
        )
    )
    reschedule(conn, deps, row.merchant_id)
    return row_of(conn, row.merchant_id, row.id)


def open_dispute(
    db: Database,
    conn: Connection,
    deps: Deps,
    signer: LinkSigner,
    ref: OrderRef,
    reason: str,
    note: str | None,
    photo: bytes | None,
) -> Any:
    """The customer reports a problem: not received, wrong or damaged items, with an optional photo
    (JPEG, PNG or WebP by its bytes, at most ``MAX_PHOTO_BYTES``). The auto-confirm timer stops."""
    if reason not in rules.DISPUTE_REASONS:
        raise invalid(
            "invalid_dispute_reason", f"reason must be one of {', '.join(sorted(rules.DISPUTE_REASONS))}."
        )
    if note is not None and len(note) > rules.MAX_NOTE:
        raise invalid("invalid_dispute", f"The note is at most {rules.MAX_NOTE} characters.")
    media = None
    if photo:
        if len(photo) > rules.MAX_PHOTO_BYTES:
            raise DomainError("photo_too_large", "The photo is larger than 2 MiB.", ErrorKind.INVALID)
        media = rules.sniff_photo(photo)
        if media is None:
            raise invalid("photo_type", "The photo must be a JPEG, PNG or WebP image.")
    head = _row_for_order(conn, ref)
    row, _order = lock(db, conn, ref.merchant_id, head.id)
    if row.status not in rules.DISPUTABLE:
        raise conflict("fulfilment_not_disputable", f"This order is {row.status}.", {"status": row.status})
    now = deps.clock.now()
    if photo and media:
        conn.execute(
            insert(fulfilment_photos).values(
                id=deps.ids.new(),
                merchant_id=row.merchant_id,
                fulfilment_id=row.id,
                media_type=media,
                size=len(photo),
                data=photo,
                created_at=now,
            )
        )
    values = {"dispute_reason": reason, "dispute_note": (note or "").strip() or None, "remind_at": None}
    return move(
        conn, deps, signer, row, "disputed", CUSTOMER, reason=reason, values=values, message="disputed"
    )


def resolve_redeliver(
    db: Database,
    conn: Connection,
    deps: Deps,
    actor: Actor,
    signer: LinkSigner,
    fulfilment_id: str,
    body: dict[str, Any],
) -> FulfilmentView:
    """Resolve a dispute by sending the goods again (carrier, tracking number): a fresh auto-confirm timer."""
    shipping = _shipping(body)
    row, _order = lock(db, conn, actor.merchant(), fulfilment_id)
    values = {**shipping, "resolution": "redeliver", **_confirm_timer(conn, deps, row.merchant_id)}
    fresh = move(
        conn,
        deps,
        signer,
        row,
        "redelivering",
        actor.label,
        reason="redeliver",
        values=values,
        message="resolved",
    )
    return fulfilment_view(conn, signer, fresh)


def _refund_payment(conn: Connection, order: Any, amount: int | None) -> tuple[Any, int]:
    """The captured payment a fulfilment refund comes from and the amount: the last captured payment
    that can cover it alone (a refund is one provider call on one payment)."""
    captured = list(
        conn.execute(
            select(payments)
            .where(
                payments.c.merchant_id == order.merchant_id,
                payments.c.order_id == order.id,
                payments.c.status == "captured",
            )
            .order_by(payments.c.created_at.desc(), payments.c.id.desc())
        )
    )
    left = [
        (p, p.amount - p.refunded_amount - reserved_refunds(conn, p.id, merchant_id=order.merchant_id))
        for p in captured
    ]
    left = [(p, n) for p, n in left if n > 0]
    if not left:
        raise conflict("nothing_to_refund", "This order has no captured payment left to refund.")
    if amount is None:
        if len(left) > 1:
            raise conflict(
                "refund_needs_one_payment",
                "This order was paid in several payments: refund each with POST /v1/refunds.",
                {"payments": [p.id for p, _ in left]},
            )
        return left[0]
    for p, n in left:
        if n >= amount:
            return p, amount
    raise conflict(
        "refund_exceeds_captured",
        f"At most {max(n for _, n in left)} can be refunded from one payment of this order.",
        {"refundable": max(n for _, n in left), "amount": amount},
    )


def _start_refund(
    db: Database,
    conn: Connection,
    deps: Deps,
    actor: Actor,
    order: Any,
    amount: int | None,
    reason: str,
    gateway: ProviderGateway | None,
) -> tuple[str, int, Call | None]:
    """Phase 1 of the refund through sales/refunds (cash at once, provider money through the engine):
    (refund id, amount, the provider call to make or None)."""
    payment, chosen = _refund_payment(conn, order, amount)
    outcome = sales_refunds.create_refund(
        db, conn, deps, actor, {"payment_id": payment.id, "amount": chosen, "reason": reason}, gateway
    )
    if isinstance(outcome, Call):
        return outcome.resource_id, chosen, outcome
    return outcome[1]["id"], chosen, None


def _with_call(
    conn: Connection, signer: LinkSigner, row: Any, call: Call | None
) -> tuple[int, FulfilmentView] | Call:
    """Answer now (cash refunds, or nothing to refund), or wrap the provider call so that its finish
    answers with the fulfilment (201 settled, 202 while the provider processes the refund)."""
    if call is None:
        return 201, fulfilment_view(conn, signer, row)
    merchant_id, fid = row.merchant_id, row.id

    def finish(c: Connection, answer: Any) -> tuple[int, FulfilmentView]:
        status, _refund = call.finish(c, answer)
        return status, get_fulfilment(c, signer, merchant_id, fid)

    return Call(resource_id=call.resource_id, run=call.run, finish=finish)


def takeover(
    conn: Connection, signer: LinkSigner, merchant_id: str, fulfilment_id: str
) -> tuple[int, FulfilmentView]:
    """A retried refund whose first request died mid-call: answer from the current state."""
    view = get_fulfilment(conn, signer, merchant_id, fulfilment_id)
    refund = view["refund"]
    return (202 if refund is not None and refund["status"] in ("pending", "processing") else 201), view


def resolve_refund(
    db: Database,
    conn: Connection,
    deps: Deps,
    actor: Actor,
    signer: LinkSigner,
    fulfilment_id: str,
    amount: int | None,
    restock: bool | None,
    gateway: ProviderGateway | None,
) -> tuple[int, FulfilmentView] | Call:
    """Resolve a dispute with a full (``amount`` None) or partial refund through the existing refund path.

    Stock comes back when the goods never reached the customer: by default for a ``not_received``
    dispute refunded in full; ``restock`` overrides the default."""
    row, order = lock(db, conn, actor.merchant(), fulfilment_id)
    machine_check(row.status, "refunded")
    refund_id, refunded, call = _start_refund(
        db, conn, deps, actor, order, amount, "fulfilment_dispute", gateway
    )
    full = amount is None
    if restock if restock is not None else (full and row.dispute_reason == "not_received"):
        release_stock(conn, order.id, merchant_id=order.merchant_id)
    values = {
        "resolution": "refund",
        "refund_id": refund_id,
        "refund_amount": refunded,
        "confirm_due_at": None,
        "remind_at": None,
    }
    fresh = move(
        conn, deps, signer, row, "refunded", actor.label, reason="refund", values=values, message="resolved"
    )
    return _with_call(conn, signer, fresh, call)


def cancel_fulfilment(
    db: Database,
    conn: Connection,
    deps: Deps,
    actor: Actor,
    signer: LinkSigner,
    fulfilment_id: str,
    gateway: ProviderGateway | None,
) -> tuple[int, FulfilmentView] | Call:
    """Cancel before handover (awaiting or ready). A paid order is refunded in full and its stock
    released; an open order is left for the cashier to cancel (POST /v1/orders/{id}/cancel)."""
    row, order = lock(db, conn, actor.merchant(), fulfilment_id)
    machine_check(row.status, "cancelled")
    flight = in_flight_payment(conn, order.id, merchant_id=order.merchant_id)
    if flight is not None:  # it may still capture: settle it first, then cancel (and refund)
        raise payment_in_progress(flight)
    call: Call | None = None
    values: dict[str, Any] = {"resolution": "cancel", "ship_due_at": None}
    if order.status == "paid":
        refund_id, refunded, call = _start_refund(
            db, conn, deps, actor, order, None, "fulfilment_cancelled", gateway
        )
        values.update(refund_id=refund_id, refund_amount=refunded)
        release_stock(conn, order.id, merchant_id=order.merchant_id)
    fresh = move(
        conn,
        deps,
        signer,
        row,
        "cancelled",
        actor.label,
        reason="cancelled",
        values=values,
        message=None,
    )
    return _with_call(conn, signer, fresh, call)


def machine_check(current: str, target: str) -> None:
    """Refuse an impossible move before any money moves (the transition checks again when it applies)."""
    rules.FULFILMENT.check(current, target)


def dispute_photo(conn: Connection, merchant_id: str, fulfilment_id: str) -> tuple[str, bytes]:
    """The dispute's photo (media type, bytes) for the merchant; 404 when there is none."""
    row_of(conn, merchant_id, fulfilment_id)
    photo = conn.execute(
        select(fulfilment_photos.c.media_type, fulfilment_photos.c.data)
        .where(
            fulfilment_photos.c.merchant_id == merchant_id,
            fulfilment_photos.c.fulfilment_id == fulfilment_id,
        )
        .order_by(fulfilment_photos.c.created_at.desc(), fulfilment_photos.c.id.desc())
        .limit(1)
    ).first()
    if photo is None:
        raise not_found("dispute_photo", fulfilment_id)
    return str(photo.media_type), bytes(photo.data)


# --- the customer page -------------------------------------------------------------------------------


def _timeline_status(e: Any) -> str:
    if e.entity != "fulfilment":
        return f"order_{e.to_status}"
    return "extended" if e.reason == rules.EXTENDED_REASON else str(e.to_status)


def customer_order(conn: Connection, ref: OrderRef, now: datetime) -> CustomerOrderView:
    """What the customer page shows for a verified link; 404 when the order is not a fulfilment order."""
    row = _row_for_order(conn, ref)
    order = conn.execute(
        select(orders, merchants.c.name.label("merchant_name"))
        .join(merchants, merchants.c.id == orders.c.merchant_id)
        .where(orders.c.merchant_id == ref.merchant_id, orders.c.id == ref.order_id)
    ).one()
    lines = conn.execute(
        select(order_lines.c.name, order_lines.c.quantity, order_lines.c.amount)
        .where(order_lines.c.merchant_id == ref.merchant_id, order_lines.c.order_id == ref.order_id)
        .order_by(order_lines.c.line_no)
    )
    timeline: list[TimelineEntry] = [
        {"status": _timeline_status(e), "at": iso(e.at)}
        for e in conn.execute(
            select(events.c.entity, events.c.to_status, events.c.reason, events.c.at)
            .where(
                events.c.merchant_id == ref.merchant_id,
                events.c.order_id == ref.order_id,
                events.c.entity.in_(("fulfilment", "order")),
            )
            .order_by(events.c.id)
        )
        if e.entity == "fulfilment" or e.to_status in ("paid", "refunded")
    ]
    paid = order.status in ("paid", "refunded")
    return {
        "merchant_name": order.merchant_name,
        "order_number": int(order.number),
        "kind": row.kind,
        "status": row.status,
        "total": int(order.total),
        "currency": order.currency,
        "paid": paid,
        "lines": [{"name": ln.name, "quantity": ln.quantity, "amount": ln.amount} for ln in lines],
        "carrier": row.carrier,
        "tracking_number": row.tracking_number,
        "confirm_due_at": iso(row.confirm_due_at),
        "can_confirm": row.status in rules.CUSTOMER_CONFIRMABLE and order.status == "paid",
        "can_dispute": row.status in rules.DISPUTABLE,
        "can_extend": order.status == "paid"
        and rules.extension_refusal(row.status, row.confirm_due_at, row.extended_at is not None, now) is None,
        "dispute_reason": row.dispute_reason,
        "timeline": timeline,
        "language": row.language,
    }


# --- timers ------------------------------------------------------------------------------------------


def next_timer(conn: Connection, merchant_id: str) -> datetime | None:
    """The earliest pending timer of the merchant: a shipping SLA, a reminder or an auto-confirm."""
    active = sorted(rules.AUTO_CONFIRM_FROM)
    candidates = [
        conn.execute(
            select(func.min(fulfilments.c.ship_due_at)).where(
                fulfilments.c.merchant_id == merchant_id,
                fulfilments.c.status.in_(sorted(rules.SLA_RUNS_IN)),
                fulfilments.c.sla_exception_id.is_(None),
            )
        ).scalar(),
        conn.execute(
            select(func.min(fulfilments.c.remind_at)).where(
                fulfilments.c.merchant_id == merchant_id,
                fulfilments.c.status.in_(active),
                fulfilments.c.reminded_at.is_(None),
            )
        ).scalar(),
        conn.execute(
            select(func.min(fulfilments.c.confirm_due_at)).where(
                fulfilments.c.merchant_id == merchant_id, fulfilments.c.status.in_(active)
            )
        ).scalar(),
    ]
    found = [c for c in candidates if c is not None]  # func.min keeps the column's UTC type
    return min(found) if found else None


def reschedule(conn: Connection, deps: Deps, merchant_id: str) -> None:
    """Keep exactly one pending timer job per merchant, due at its earliest timer (or none)."""
    due = next_timer(conn, merchant_id)
    if due is None:
        jobs.finish_for(conn, deps, kind=TIMER_JOB, merchant_id=merchant_id)
    else:
        jobs.schedule(conn, deps, kind=TIMER_JOB, merchant_id=merchant_id, due_at=due)
