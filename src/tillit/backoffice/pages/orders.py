"""Orders: search (receipt number, amount, time range, provider reference, payment code last 4), one order
with its timeline, and starting a refund through the same use case and idempotency record as the API."""

from __future__ import annotations

import json
import uuid
from typing import Any

from fastapi import APIRouter, Form, Query
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from tillit.access import idempotency
from tillit.backoffice.registry import STAFF, Page
from tillit.backoffice.web import CTX, Ctx, parse_local_time, parse_yuan
from tillit.domain.errors import DomainError, invalid, not_found
from tillit.domain.ids import normalise_id
from tillit.sales import orders, refunds, reports

router = APIRouter()
PAGE = Page(key="orders", label="Orders", path="/orders", roles=STAFF, router=router, order=20)
REFUND_PATH = "/v1/refunds"  # the API's path: a refund keyed here and there shares one idempotency scope


def _criteria(
    number: str, amount: str, since: str, until: str, provider_ref: str, last4: str
) -> reports.OrderSearch:
    num = number.strip()
    if num and (not num.isdigit() or len(num) > 18):
        raise invalid("invalid_number", "The receipt number is a whole number.", {"field": "number"})
    code = last4.strip()
    if code and (len(code) != 4 or not code.isdigit()):
        raise invalid("invalid_last4", "Enter the last 4 digits of the payment code.", {"field": "last4"})
    ref = provider_ref.strip()
    if len(ref) > 64:
        raise invalid("invalid_provider_ref", "A provider reference has at most 64 characters.")
    return reports.OrderSearch(
        number=int(num) if num else None,
        amount=parse_yuan(amount, "amount"),
        since=parse_local_time(since, "since"),
        until=parse_local_time(until, "until"),
        provider_ref=ref or None,
        code_last4=code or None,
    )


@router.get("/orders", response_class=HTMLResponse)
async def orders_page(
    ctx: Ctx = CTX,
    number: str = Query("", max_length=20),
    amount: str = Query("", max_length=20),
    since: str = Query("", max_length=30),
    until: str = Query("", max_length=30),
    provider_ref: str = Query("", max_length=64),
    last4: str = Query("", max_length=4),
) -> HTMLResponse:
    form = {
        "number": number,
        "amount": amount,
        "since": since,
        "until": until,
        "provider_ref": provider_ref,
        "last4": last4,
    }
    c, merchant_id = ctx.container, ctx.merchant_id
    try:
        criteria = _criteria(number, amount, since, until, provider_ref, last4)
    except DomainError as exc:
        return ctx.render(
            "pages/orders.html", 422, form=form, hits=[], message=exc.message, message_kind="error"
        )

    def load() -> list[reports.OrderHit]:
        with c.db.read() as conn:
            return reports.search_orders(conn, merchant_id, criteria)

    hits = await run_in_threadpool(load)
    return ctx.render("pages/orders.html", form=form, hits=hits)


def _order_page(ctx: Ctx, order_id: str, status: int = 200, **values: Any) -> HTMLResponse:
    c, merchant_id = ctx.container, ctx.merchant_id
    with c.db.read() as conn:
        order = orders.get_order(conn, merchant_id, order_id)
        timeline = orders.timeline(conn, merchant_id, order_id)
    refundable = {
        p["id"]: p["amount"]
        - p["refunded_amount"]
        - sum(
            r["amount"]
            for r in order["refunds"]
            if r["payment_id"] == p["id"] and r["status"] in ("pending", "processing")
        )
        for p in order["payments"]
        if p["status"] == "captured"
    }
    return ctx.render(
        "pages/order.html",
        status,
        order=order,
        timeline=timeline,
        refundable=refundable,
        refund_key=uuid.uuid4().hex,  # drawn with the form: a double submit replays the first answer
        **values,
    )


@router.get("/orders/{order_id}", response_class=HTMLResponse)
async def order_page(order_id: str, ctx: Ctx = CTX) -> HTMLResponse:
    oid = normalise_id(order_id, "order_id")
    return await run_in_threadpool(_order_page, ctx, oid)


@router.post("/orders/{order_id}/refund", response_class=HTMLResponse)
async def start_refund(
    order_id: str,
    ctx: Ctx = CTX,
    payment_id: str = Form(..., max_length=45),
    amount: str = Form("", max_length=20),
    reason: str = Form("", max_length=500),
    idempotency_key: str = Form(..., min_length=1, max_length=255),
) -> HTMLResponse:
    """Refund (part of) one of this order's captured payments: ``sales.refunds.create_refund`` under the
    idempotency record the API uses, so the rules, the provider call and the replay are the API's."""
    c, who = ctx.container, ctx.actor
    merchant_id = ctx.merchant_id
    oid = normalise_id(order_id, "order_id")
    pid = normalise_id(payment_id, "payment_id")

    def run() -> HTMLResponse:
        with c.db.read() as conn:
            order = orders.get_order(conn, merchant_id, oid)
        if pid not in {p["id"] for p in order["payments"]}:
            raise not_found("payment", pid)
        try:
            data = {
                "id": None,
                "payment_id": pid,
                "amount": parse_yuan(amount),
                "reason": reason.strip() or None,
            }
            stored = idempotency.run_phased(
                c.db,
                c.deps,
                who,
                idempotency_key,
                "POST",
                REFUND_PATH,
                data,
                lambda conn: refunds.create_refund(c.db, conn, c.deps, who, data, c.gateway),
                lambda conn, rid: refunds.refund_takeover(conn, merchant_id, rid),
            )
        except DomainError as exc:
            text = ctx.t("Refund refused ({code}): {message}", code=exc.code, message=exc.message)
            return _order_page(
                ctx, oid, 409 if exc.kind.value == "conflict" else 422, message=text, message_kind="error"
            )
        done = ctx.t("Refund started: {status}", status=ctx.t("status_" + _status_of(stored.body)))
        return _order_page(ctx, oid, message=done, message_kind="ok")

    return await run_in_threadpool(run)


def _status_of(body: bytes) -> str:
    return str(json.loads(body).get("status", "pending"))
