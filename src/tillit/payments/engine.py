"""The payment integrity engine: provider payments that never end unknown, double-charged or orphaned.

Attempt protocol (shared/reference/providers.md §0):
1. The attempt row (our id = the provider's out_trade_no, never reused) is committed, together with a
   safety-net recovery job, *before* the provider is called.
2. The provider's answer is classified SUCCESS / FAILED / UNKNOWN and applied in a second transaction.
3. UNKNOWN is resolved by the recovery jobs, on the provider's own schedule: query (WeChat: first after
   5 s, every 5 s, for 30 s after creation; see SCHEDULES), then reverse/cancel,
   repeated while the provider says so. A payment found paid while its order is still blocked by it is
   captured (attached); one found paid after it had been given up is refunded automatically.

Every step after the provider call is a compare-and-set on the payment's status, so a step that runs
twice (a worker crashed after the call, a notification raced a query) changes nothing the second time.
Pay is only ever called by the API request that created the attempt, never by a job.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import Connection, func, insert, select, update

from tillit.adapters.db.engine import Database
from tillit.adapters.db.schema import exceptions, payments, refunds
from tillit.domain.errors import conflict, invalid
from tillit.domain.fees import CARD_KINDS
from tillit.domain.ids import normalise_id
from tillit.domain.ledger import capture_postings, refund_postings
from tillit.domain.money import check_amount
from tillit.domain.provider import (
    Outcome,
    PaymentProvider,
    PayResult,
    RefundResult,
    RefundState,
    ReverseState,
    TradeState,
    detect_method,
    mask_code,
)
from tillit.exceptions import cases as exc_svc
from tillit.kernel import jobs
from tillit.kernel.context import Actor, Deps
from tillit.kernel.transitions import record_created, transition
from tillit.merchants import limits as merchant_limits
from tillit.payments.accounts import ProviderDirectory
from tillit.sales import ledger
from tillit.sales.orders import (
    in_flight_payment,
    lock_order,
    payment_in_progress,
    payment_view,
    refund_view,
)
from tillit.sales.payments import credit_order
from tillit.sales.refunds import add_refunded
from tillit.sales.views import PaymentView, RefundView

log = structlog.get_logger("tillit.engine")

SYSTEM = "system:engine"
NOT_FOUND_SEEN = "query: not_found"  # the resolve job's last_error after a "trade not found" answer


@dataclass(frozen=True)
class Schedule:
    """A provider's recovery rules, in provider-clock seconds."""

    first_query: float
    query_every: float
    window: float  # give up querying this long after the attempt was created
    reverse_not_before: float  # never reverse earlier than this after creation
    reverse_backoff: tuple[float, ...]
    reverse_alert_after: int  # open a 单边账 exception after this many failed reverse calls
    refund_first_query: float
    refund_backoff: tuple[float, ...]
    # A refund query (or re-sent refund) that got no verifiable answer is tried again this soon, by how
    # long ago the last checkpoint of the provider's pace was; after the last step, the next checkpoint.
    refund_retry: tuple[tuple[float, float], ...] = ((3, 1), (8, 2), (15, 3), (30, 5))
    refund_query_not_before: float = 0  # never query a refund earlier than this after it was sent
    # A query that got no verifiable answer (timeout, SYSTEMERROR, bad signature) is a read the provider
    # asks to repeat with the same parameters at once (providers.md §2.3): tried again this soon, not
    # at the polling pace, so a lost answer is settled by the first query the provider's rules allow.
    query_retry: float = 1
    # Where ``first_query`` counts from: WeChat waits 5 s after the unknown answer (§1.2); Alipay polls
    # from about 5 s after the trade was created (§2.3), so after a pay call that hung it asks at once.
    first_query_from_creation: bool = False
    # Two "trade not found" answers at least ``query_every`` apart, once a reverse is allowed: the pay
    # request never reached the provider (a replication lag lasts a moment, not two polls), so reverse
    # now instead of waiting out the window — the reverse also closes the out_trade_no for good.
    reverse_when_not_found: bool = True


# Query windows: WeChat auto-revokes an unpaid micropay 45 s after creation and its older pages advise
# querying for 30 s; Alipay's official F2F demo queries 5 x 5 s, then cancels (providers.md §1.2, §2.2).
# Giving up at 30 s leaves room for the reverse/cancel and its retries to finish inside the providers'
# own windows (45 s / 60 s), which bench/recovery.py measures.
SCHEDULES = {
    "wechat": Schedule(5, 5, 30, 15, (1, 2, 3, 5, 10, 30, 60, 120, 300), 8, 60, (60, 300, 600, 1200, 1800)),
    # Alipay: "query ≥ 10 s after the refund" (providers.md §2.5), so even a lost answer waits 10 s.
    "alipay": Schedule(
        5,
        5,
        30,
        0,
        (1, 2, 3, 5, 10, 30, 60, 120, 300),
        8,
        10,
        (10, 30, 60, 300, 600, 1800),
        refund_query_not_before=10,
        first_query_from_creation=True,
    ),
}


def first_query_due(sched: Schedule, created_at: datetime, answered_at: datetime) -> datetime:
    """When to ask first about an attempt whose pay answer (at ``answered_at``) left it unknown."""
    after_answer = answered_at + timedelta(seconds=sched.first_query)
    if not sched.first_query_from_creation:
        return after_answer
    from_creation = created_at + timedelta(seconds=sched.first_query)
    return max(from_creation, answered_at + timedelta(seconds=sched.query_retry))


def refund_checkpoints(sched: Schedule) -> list[float]:
    """Seconds after a refund was sent at which the provider's own pace has us look at it again
    (WeChat: 1 min, then longer while it says PROCESSING; providers.md §1.5 and §2.5)."""
    points = [sched.refund_first_query]
    for step in sched.refund_backoff:
        points.append(points[-1] + step)
    return points


def next_refund_check(sched: Schedule, sent_at: datetime, now: datetime, *, answered: bool) -> datetime:
    """When to look at a refund again.

    ``answered``: the provider gave a verifiable answer (PROCESSING, ABNORMAL): follow its pace, the next
    checkpoint after ``now`` (after the last one, every last step). Not answered (the call or query failed:
    HTTP error, timeout, SYSTEMERROR, bad signature): try again in seconds, for a bounded while after the
    last checkpoint (``refund_retry``), so a refund the provider completed is confirmed as soon as one query
    gets through instead of a whole back-off step later; past that while, the next checkpoint. Never
    earlier than ``refund_query_not_before`` after the refund was sent."""
    elapsed = (now - sent_at).total_seconds()
    points = refund_checkpoints(sched)
    later = [p for p in points if p > elapsed]
    if later:
        following = later[0]
    else:
        last_step = sched.refund_backoff[-1] if sched.refund_backoff else sched.refund_first_query
        following = points[-1] + last_step * (1 + int((elapsed - points[-1]) // last_step))
    due = following
    if not answered:
        earlier = [p for p in points if p <= elapsed]
        since = elapsed - (earlier[-1] if earlier else 0.0)
        step = next((delay for within, delay in sched.refund_retry if since < within), None)
        if step is not None:
            due = min(following, elapsed + step)
    due = max(due, sched.refund_query_not_before, elapsed + 1)
    return sent_at + timedelta(seconds=due)


@dataclass(frozen=True)
class LatePaymentOutcome:
    """What the engine finally did with an attempt someone asked it to look at (``trigger_resolution``).

    ``result``: ``captured`` (paid: attached to its order), ``not_paid`` (the provider has no money for
    it: closed, reversed or never paid), ``refunded`` (a late payment refunded in full),
    ``refund_failed`` (that refund was refused), ``refund_skipped`` (a manager resolved the late payment
    first: no refund). ``detail`` is a short human reason, never a secret.
    """

    merchant_id: str
    payment_id: str
    result: str
    detail: str


#: Told in the engine's own transaction, after the outcome is written; must not call the provider.
LatePaymentHandler = Callable[[Connection, LatePaymentOutcome], None]


@dataclass
class EngineConfig:
    providers: ProviderDirectory
    # How long (provider clock) before the safety-net job looks at an attempt whose API request may
    # have died mid-call; must exceed the adapters' pay timeout as seen on the provider clock.
    pay_guard: timedelta = timedelta(seconds=30)
    #: Who wants to know how a looked-at attempt ended (reconciliation's attach/refund_late); filled at
    #: the composition root so the engine imports none of them.
    on_late_payment_outcome: list[LatePaymentHandler] = field(default_factory=list)


def _tell(conn: Connection, cfg: EngineConfig, pay: Any, result: str, detail: str) -> None:
    outcome = LatePaymentOutcome(str(pay.merchant_id), str(pay.id), result, detail[:200])
    for handler in cfg.on_late_payment_outcome:
        handler(conn, outcome)


def _settled_result(status: str) -> str | None:
    """The outcome an attempt already in a final state stands for (None: not final)."""
    if status in ("captured", "refunded"):
        return "captured"
    if status in ("failed", "reversed"):
        return "not_paid"
    return None


def _backoff(steps: tuple[float, ...], attempt: int) -> timedelta:
    return timedelta(seconds=steps[min(max(attempt - 1, 0), len(steps) - 1)])


def _aware(value: datetime, like: datetime) -> datetime:
    """SQLite returns naive UTC datetimes; compare them with aware ones."""
    if value.tzinfo is None and like.tzinfo is not None:
        return value.replace(tzinfo=like.tzinfo)
    return value


# --- starting a payment (API) ---------------------------------------------------------------------


def prepare_provider_payment(
    db: Database, conn: Connection, deps: Deps, cfg: EngineConfig, actor: Actor, body: dict[str, Any]
) -> tuple[Any, PaymentProvider, int] | tuple[int, PaymentView]:
    """Phase 1, inside the caller's transaction: validate, lock the order, insert the pending attempt
    and its safety-net job. Returns (attempt row, provider), or (status, view) for an existing id."""
    merchant_id = actor.merchant()
    code = (body.get("payment_code") or "").strip()
    method = body.get("method") or detect_method(code)
    if method is None:
        raise invalid(
            "unsupported_code", "This code belongs to no supported provider.", {"reason": "unsupported_code"}
        )
    if method not in ("wechat", "alipay"):
        raise invalid("payment_code_unexpected", "A payment code is only used with wechat or alipay.")
    order_id = normalise_id(body["order_id"], "order_id")
    payment_id = normalise_id(body["id"]) if body.get("id") else deps.ids.new()
    order = lock_order(db, conn, merchant_id, order_id)
    if body.get("id"):
        # Only this merchant's payments: another merchant's id is an unused id here.
        existing = conn.execute(
            select(payments).where(payments.c.merchant_id == merchant_id, payments.c.id == payment_id)
        ).first()
        if existing is not None:
            if existing.order_id != order_id:
                raise conflict("id_conflict", "This id is already in use; generate a new one.")
            return 200, payment_view(existing)
    if order.status != "open":
        raise conflict(
            "order_not_open",
            f"The order is {order.status}; it takes no more payments.",
            {"status": order.status},
        )
    flight = in_flight_payment(conn, order_id, merchant_id=merchant_id)
    if flight is not None:
        raise payment_in_progress(flight)
    same_code = conn.execute(
        select(payments.c.id, payments.c.status).where(
            payments.c.merchant_id == merchant_id,
            payments.c.order_id == order_id,
            payments.c.payment_code_masked == mask_code(code),
            payments.c.status == "captured",
        )
    ).first()
    if same_code is not None and order.paid_amount >= order.total:
        raise payment_in_progress(same_code)
    # merchants area: only an active merchant takes provider payments (the refusal carries the cashier's
    # message); the same statement reads its limits, reserved below, in this transaction, before the
    # provider is ever called.
    admission = merchant_limits.admit(conn, merchant_id, actor.terminal_id, method)
    provider = cfg.providers.get(conn, merchant_id, method)
    balance = order.total - order.paid_amount
    amount = balance if body.get("amount") is None else check_amount(body["amount"])
    if amount > balance:
        raise conflict(
            "amount_exceeds_balance", f"Only {balance} is due on this order.", {"balance_due": balance}
        )
    merchant_limits.reserve(
        db,
        conn,
        deps,
        admission,
        merchant_id=merchant_id,
        method=method,
        payment_id=payment_id,
        amount=amount,
    )
    now = deps.clock.now()
    record = {
        "id": payment_id,
        "merchant_id": merchant_id,
        "order_id": order_id,
        "terminal_id": actor.terminal_id,
        "method": method,
        "provider": method,
        "amount": amount,
        "currency": order.currency,
        "status": "pending",
        "tendered": None,
        "change_due": None,
        "refunded_amount": 0,
        "provider_ref": None,
        "payment_code_masked": mask_code(code),
        "failure_code": None,
        "failure_message": None,
        "version": 1,
        "created_at": now,
        "updated_at": now,
        "resolved_at": None,
    }
    conn.execute(insert(payments).values(**record))
    record_created(
        conn,
        entity="payment",
        entity_id=payment_id,
        status="pending",
        merchant_id=merchant_id,
        order_id=order_id,
        actor=actor.label,
        now=now,
        reason=f"{method} code scanned",
    )
    jobs.schedule(
        conn,
        deps,
        kind="resolve_payment",
        merchant_id=merchant_id,
        payment_id=payment_id,
        due_at=now + cfg.pay_guard,
    )
    attempt = _lock_payment(db, conn, payment_id, merchant_id=merchant_id)
    return attempt, provider, order.number


def call_pay(provider: PaymentProvider, attempt: Any, payment_code: str, order_number: int) -> PayResult:
    """The pay call, timed on the monotonic clock (real elapsed time, whatever the business clock says);
    the latency travels in the result to ``apply_pay_result``, which records it for channel health."""
    started = time.perf_counter()
    result = provider.pay(
        out_trade_no=attempt.id,
        auth_code=payment_code,
        amount=attempt.amount,
        currency=attempt.currency,
        description=f"Tillit order {order_number}",
    )
    latency_ms = round((time.perf_counter() - started) * 1000)
    log.info(
        "provider_call",
        op="pay",
        provider=attempt.method,
        payment=attempt.id,
        outcome=str(result.outcome),
        code=result.code,
        latency_ms=latency_ms,
    )
    return replace(result, latency_ms=latency_ms)


def apply_pay_result(
    db: Database,
    conn: Connection,
    deps: Deps,
    attempt_id: str,
    result: PayResult,
    actor: str,
    *,
    merchant_id: str,
) -> PaymentView:
    """Phase 3: record what the pay call said. Only moves an attempt that is still pending/unknown.
    The attempt is ``merchant_id``'s: ids (out_trade_no) are unique per merchant only."""
    mine = select(payments).where(payments.c.merchant_id == merchant_id, payments.c.id == attempt_id)
    pay = conn.execute(mine).one()
    order = lock_order(db, conn, pay.merchant_id, pay.order_id)
    pay = _lock_payment(db, conn, attempt_id, merchant_id=merchant_id)
    now = deps.clock.now()
    sched = SCHEDULES[pay.method]
    if result.latency_ms is not None and pay.pay_latency_ms is None:  # monitoring: channel latency
        conn.execute(
            update(payments)
            .where(payments.c.merchant_id == merchant_id, payments.c.id == attempt_id)
            .values(pay_latency_ms=min(result.latency_ms, 2**31 - 1))
        )
    if pay.status not in ("pending", "unknown"):
        return payment_view(pay)
    if result.outcome is Outcome.SUCCESS:
        _capture(conn, deps, order, pay, result.provider_ref, actor, "paid", card_kind=result.card_kind)
    elif result.outcome is Outcome.FAILED:
        _fail(conn, deps, pay, result.code, result.message, actor)
    else:
        if pay.status == "pending":
            transition(
                conn,
                entity="payment",
                entity_id=pay.id,
                current="pending",
                target="unknown",
                merchant_id=pay.merchant_id,
                order_id=pay.order_id,
                actor=actor,
                now=now,
                reason=result.code or "no answer",
                values={"failure_code": "USERPAYING" if result.user_paying else result.code},
            )
        jobs.schedule(
            conn,
            deps,
            kind="resolve_payment",
            merchant_id=pay.merchant_id,
            payment_id=pay.id,
            due_at=first_query_due(sched, _aware(pay.created_at, now), now),
        )
    return payment_view(conn.execute(mine).one())


# --- state changes ----------------------------------------------------------------------------------


def _lock_payment(db: Database, conn: Connection, payment_id: str, *, merchant_id: str) -> Any:
    query = select(payments).where(payments.c.merchant_id == merchant_id, payments.c.id == payment_id)
    if db.is_postgres:
        query = query.with_for_update()
    return conn.execute(query).one()


def _capture(
    conn: Connection,
    deps: Deps,
    order: Any,
    pay: Any,
    provider_ref: str | None,
    actor: str,
    reason: str,
    *,
    card_kind: str | None = None,
) -> None:
    now = deps.clock.now()
    # The card kind the paid answer named (settlement's expected fee per card-kind contract).
    kind = {"card_kind": card_kind} if card_kind in CARD_KINDS and card_kind != "any" else {}
    transition(
        conn,
        entity="payment",
        entity_id=pay.id,
        current=pay.status,
        target="captured",
        merchant_id=pay.merchant_id,
        order_id=pay.order_id,
        actor=actor,
        now=now,
        reason=reason,
        provider_ref=provider_ref,
        values={
            "provider_ref": provider_ref or pay.provider_ref,
            "resolved_at": now,
            "failure_code": None,
            "failure_message": None,
            **kind,
        },
    )
    ledger.post(
        conn,
        txn_id=deps.ids.new(),
        merchant_id=pay.merchant_id,
        order_id=pay.order_id,
        currency=pay.currency,
        kind="capture",
        postings=capture_postings(pay.order_id, pay.method, pay.amount),
        now=now,
        payment_id=pay.id,
    )
    credit_order(conn, order, pay.amount, actor, now)
    jobs.finish_for(conn, deps, kind="resolve_payment", merchant_id=pay.merchant_id, payment_id=pay.id)
    jobs.finish_for(conn, deps, kind="reverse_payment", merchant_id=pay.merchant_id, payment_id=pay.id)


def _fail(
    conn: Connection,
    deps: Deps,
    pay: Any,
    code: str | None,
    message: str | None,
    actor: str,
    target: str = "failed",
) -> None:
    now = deps.clock.now()
    transition(
        conn,
        entity="payment",
        entity_id=pay.id,
        current=pay.status,
        target=target,
        merchant_id=pay.merchant_id,
        order_id=pay.order_id,
        actor=actor,
        now=now,
        reason=code,
        values={"failure_code": code, "failure_message": (message or "")[:500] or None, "resolved_at": now},
    )
    merchant_limits.give_back(conn, merchant_id=pay.merchant_id, payment_id=pay.id)  # no money: limit freed
    jobs.finish_for(conn, deps, kind="resolve_payment", merchant_id=pay.merchant_id, payment_id=pay.id)
    jobs.finish_for(conn, deps, kind="reverse_payment", merchant_id=pay.merchant_id, payment_id=pay.id)


def _start_reverse(conn: Connection, deps: Deps, pay: Any, reason: str, code: str) -> None:
    """Give up on the attempt and reverse it; ``code`` (PAYERROR, TIMEOUT, ...) stays as the reason the
    cashier sees once the reverse is done."""
    now = deps.clock.now()
    sched = SCHEDULES[pay.method]
    transition(
        conn,
        entity="payment",
        entity_id=pay.id,
        current=pay.status,
        target="reversing",
        merchant_id=pay.merchant_id,
        order_id=pay.order_id,
        actor=SYSTEM,
        now=now,
        reason=reason,
        values={"failure_code": code},
    )
    jobs.finish_for(conn, deps, kind="resolve_payment", merchant_id=pay.merchant_id, payment_id=pay.id)
    not_before = _aware(pay.created_at, now) + timedelta(seconds=sched.reverse_not_before)
    jobs.schedule(
        conn,
        deps,
        kind="reverse_payment",
        merchant_id=pay.merchant_id,
        payment_id=pay.id,
        due_at=max(now, not_before),
    )


# --- recovery jobs ----------------------------------------------------------------------------------


def run_job(db: Database, deps: Deps, cfg: EngineConfig, job: jobs.Job) -> None:
    handler = HANDLERS[job.kind]
    log.info("job_run", kind=job.kind, payment=job.payment_id, attempt=job.attempts)  # ids only, no secret
    handler(db, deps, cfg, job)


def _load(db: Database, payment_id: str, *, merchant_id: str) -> Any:
    with db.read() as conn:
        return conn.execute(
            select(payments).where(payments.c.merchant_id == merchant_id, payments.c.id == payment_id)
        ).one()


def _provider(db: Database, cfg: EngineConfig, merchant_id: str, method: str) -> PaymentProvider:
    with db.read() as conn:
        return cfg.providers.get(conn, merchant_id, method)


def resolve_payment(db: Database, deps: Deps, cfg: EngineConfig, job: jobs.Job) -> None:
    """Query an attempt whose outcome is unknown and act on the answer (providers.md §1.2, §2.2)."""
    assert job.payment_id is not None
    pay = _load(db, job.payment_id, merchant_id=job.merchant_id)
    if pay.status not in ("pending", "unknown", "failed"):
        with db.transaction() as conn:
            settled = _settled_result(pay.status)
            if settled is not None:
                _tell(conn, cfg, pay, settled, f"already {pay.status}")
            jobs.finish(conn, deps, job.id)
        return
    provider = _provider(db, cfg, pay.merchant_id, pay.method)
    answer = provider.query(pay.id)
    sched = SCHEDULES[pay.method]
    with db.transaction() as conn:
        order = lock_order(db, conn, pay.merchant_id, pay.order_id)
        pay = _lock_payment(db, conn, pay.id, merchant_id=pay.merchant_id)
        now = deps.clock.now()
        if pay.status == "failed":
            # Only reached for a notification about a payment already given up: was it paid after all?
            if answer.state is TradeState.PAID:
                _late_payment(conn, deps, pay, answer.provider_ref)  # the refund job tells the outcome
            else:
                _tell(conn, cfg, pay, "not_paid", f"query: {answer.raw_state or answer.state.value}")
            jobs.finish(conn, deps, job.id)
            return
        if pay.status not in ("pending", "unknown"):
            settled = _settled_result(pay.status)
            if settled is not None:
                _tell(conn, cfg, pay, settled, f"already {pay.status}")
            jobs.finish(conn, deps, job.id)
            return
        state = answer.state
        if state is TradeState.PAID:
            _capture(
                conn,
                deps,
                order,
                pay,
                answer.provider_ref,
                SYSTEM,
                f"query: {answer.raw_state}",
                card_kind=answer.card_kind,
            )
            _tell(conn, cfg, pay, "captured", f"query: {answer.raw_state}")
        elif state is TradeState.CLOSED:
            _fail(conn, deps, pay, answer.raw_state or "CLOSED", "closed at the provider", SYSTEM)
            _tell(conn, cfg, pay, "not_paid", f"query: {answer.raw_state or 'CLOSED'}")
        elif state is TradeState.REFUNDED:
            exc_svc.open_exception(
                conn,
                deps,
                kind="refunded_at_provider",
                merchant_id=pay.merchant_id,
                order_id=pay.order_id,
                payment_id=pay.id,
                provider=pay.method,
                provider_ref=answer.provider_ref,
                amount=pay.amount,
            )
            _start_reverse(conn, deps, pay, "query: REFUND", "REFUND")
        elif state is TradeState.PAY_ERROR:
            # PAYERROR does not prove that no money moved: always reverse (providers.md §1.3).
            _start_reverse(conn, deps, pay, "query: PAYERROR", "PAYERROR")
        else:
            deadline = _aware(pay.created_at, now) + timedelta(seconds=sched.window)
            if pay.status == "pending":
                transition(
                    conn,
                    entity="payment",
                    entity_id=pay.id,
                    current="pending",
                    target="unknown",
                    merchant_id=pay.merchant_id,
                    order_id=pay.order_id,
                    actor=SYSTEM,
                    now=now,
                    reason=f"query: {answer.raw_state or state.value}",
                )
                # Re-read: the next step compares-and-sets against the status it is given.
                pay = _lock_payment(db, conn, pay.id, merchant_id=pay.merchant_id)
            reverse_allowed = _aware(pay.created_at, now) + timedelta(seconds=sched.reverse_not_before)
            never_arrived = (
                sched.reverse_when_not_found
                and state is TradeState.NOT_FOUND
                and job.last_error == NOT_FOUND_SEEN
                and now >= reverse_allowed
            )
            if now >= deadline:
                _start_reverse(conn, deps, pay, f"not paid within {int(sched.window)} s", "TIMEOUT")
            elif never_arrived:
                _start_reverse(conn, deps, pay, "not at the provider (two queries)", "TIMEOUT")
            else:
                if answer.raw_state in ("USERPAYING", "WAIT_BUYER_PAY"):
                    conn.execute(
                        update(payments)
                        .where(payments.c.merchant_id == pay.merchant_id, payments.c.id == pay.id)
                        .values(failure_code="USERPAYING")
                    )
                pause = sched.query_retry if state is TradeState.ERROR else sched.query_every
                if state is TradeState.NOT_FOUND and job.last_error == NOT_FOUND_SEEN:
                    # Seen twice but a reverse is not allowed yet (WeChat: 15 s): look when it is.
                    pause = max(sched.query_retry, (reverse_allowed - now).total_seconds())
                jobs.retry_later(
                    conn,
                    deps,
                    job.id,
                    min(deadline, now + timedelta(seconds=pause)),
                    NOT_FOUND_SEEN if state is TradeState.NOT_FOUND else f"query: {state.value}",
                )


def reverse_payment(db: Database, deps: Deps, cfg: EngineConfig, job: jobs.Job) -> None:
    """Reverse (WeChat) / cancel (Alipay) an attempt that was not paid in time, while the provider asks."""
    assert job.payment_id is not None
    pay = _load(db, job.payment_id, merchant_id=job.merchant_id)
    if pay.status != "reversing":
        with db.transaction() as conn:
            jobs.finish(conn, deps, job.id)
        return
    provider = _provider(db, cfg, pay.merchant_id, pay.method)
    result = provider.reverse(pay.id)
    answer = None
    if result.state in (ReverseState.EXPIRED, ReverseState.FAILED):
        answer = provider.query(pay.id)  # the trade's own state decides what the refusal meant
    sched = SCHEDULES[pay.method]
    with db.transaction() as conn:
        order = lock_order(db, conn, pay.merchant_id, pay.order_id)
        pay = _lock_payment(db, conn, pay.id, merchant_id=pay.merchant_id)
        if pay.status != "reversing":
            jobs.finish(conn, deps, job.id)
            return
        now = deps.clock.now()
        if result.state is ReverseState.DONE or (
            answer is not None and answer.state in (TradeState.PAID, TradeState.CLOSED, TradeState.NOT_FOUND)
        ):
            # The reverse is over one way or the other: its 单边账 warning has nothing left to warn of.
            exc_svc.resolve_settled(
                conn,
                deps,
                merchant_id=pay.merchant_id,
                payment_id=pay.id,
                kind="reverse_failing",
                resolution=f"the reverse finished ({result.state.value}"
                + (f", trade {answer.state.value})" if answer is not None else ")"),
            )
        if result.state is ReverseState.DONE:
            _fail(
                conn,
                deps,
                pay,
                pay.failure_code or "REVERSED",
                f"reversed ({result.action or 'closed'})",
                SYSTEM,
                target="reversed",
            )
            _tell(conn, cfg, pay, "not_paid", f"reversed ({result.action or 'closed'})")
            return
        if answer is not None:
            if answer.state is TradeState.PAID:
                # Too late to reverse and the customer paid: the order is still blocked by this attempt,
                # so attach the money to it.
                _capture(
                    conn,
                    deps,
                    order,
                    pay,
                    answer.provider_ref,
                    SYSTEM,
                    f"paid; reverse refused ({result.code})",
                    card_kind=answer.card_kind,
                )
                _tell(conn, cfg, pay, "captured", f"paid; reverse refused ({result.code})")
                return
            if answer.state in (TradeState.CLOSED, TradeState.NOT_FOUND):
                target = "reversed" if answer.state is TradeState.CLOSED else "failed"
                _fail(
                    conn, deps, pay, answer.raw_state or result.code, "no money taken", SYSTEM, target=target
                )
                _tell(conn, cfg, pay, "not_paid", f"query: {answer.raw_state or answer.state.value}")
                return
        if job.attempts >= sched.reverse_alert_after:
            exc_svc.open_exception(
                conn,
                deps,
                kind="reverse_failing",
                merchant_id=pay.merchant_id,
                order_id=pay.order_id,
                payment_id=pay.id,
                provider=pay.method,
                amount=pay.amount,
                details={"last_code": result.code, "attempts": job.attempts},
            )
        jobs.retry_later(
            conn,
            deps,
            job.id,
            now + _backoff(sched.reverse_backoff, job.attempts),
            f"reverse: {result.state.value} {result.code or ''}",
        )


def _late_payment(conn: Connection, deps: Deps, pay: Any, provider_ref: str | None) -> None:
    """The provider took money for an attempt Tillit had already given up: refund it automatically."""
    exc_id = exc_svc.open_exception(
        conn,
        deps,
        kind="late_payment",
        merchant_id=pay.merchant_id,
        order_id=pay.order_id,
        payment_id=pay.id,
        provider=pay.method,
        provider_ref=provider_ref,
        amount=pay.amount,
        details={"out_refund_no": deps.ids.new()},
    )
    jobs.schedule(
        conn,
        deps,
        kind="refund_unattached",
        merchant_id=pay.merchant_id,
        payment_id=pay.id,
        exception_id=exc_id,
        due_at=deps.clock.now(),
    )


def _unattached(exc: Any) -> Any:
    """A provider payment with no attempt row (an unrecognised payment found in a bill): what the refund
    needs, from its exception (docs/reconciliation.md)."""
    import json
    from types import SimpleNamespace

    out_trade_no = json.loads(exc.details)["out_trade_no"]
    return SimpleNamespace(
        id=out_trade_no, amount=exc.amount, method=exc.provider, merchant_id=exc.merchant_id, order_id=None
    )


def refund_unattached(db: Database, deps: Deps, cfg: EngineConfig, job: jobs.Job) -> None:
    """Refund a late payment (or a bill's unrecognised payment) in full, reusing one out_refund_no for
    every retry."""
    import json

    assert job.exception_id is not None
    with db.read() as conn:
        exc = conn.execute(select(exceptions).where(exceptions.c.id == job.exception_id)).one()
    pay = _load(db, job.payment_id, merchant_id=job.merchant_id) if job.payment_id else _unattached(exc)
    if exc.status != "open":
        with db.transaction() as conn:
            if job.payment_id:
                _tell(conn, cfg, pay, "refund_skipped", "the late payment was resolved before the refund")
            jobs.finish(conn, deps, job.id)
        return
    refund_no = json.loads(exc.details)["out_refund_no"]
    provider = _provider(db, cfg, pay.merchant_id, pay.method)
    result = provider.refund(
        out_trade_no=pay.id,
        out_refund_no=refund_no,
        total_amount=pay.amount,
        refund_amount=pay.amount,
        reason="payment taken after it was abandoned",
    )
    if result.state in (RefundState.PROCESSING, RefundState.UNKNOWN):
        result = provider.refund_query(out_trade_no=pay.id, out_refund_no=refund_no)
    with db.transaction() as conn:
        if result.state is RefundState.SUCCESS:
            exc_svc.resolve(conn, deps, None, exc.id, f"refunded automatically ({refund_no})", None)
            if job.payment_id:
                _tell(conn, cfg, pay, "refunded", f"refunded automatically ({refund_no})")
            jobs.finish(conn, deps, job.id)
        elif result.state in (RefundState.FAILED, RefundState.ABNORMAL):
            exc_svc.open_exception(
                conn,
                deps,
                kind="late_payment_refund_failed",
                merchant_id=pay.merchant_id,
                order_id=pay.order_id,
                payment_id=pay.id,
                provider=pay.method,
                amount=pay.amount,
                details={"code": result.code},
            )
            if job.payment_id:
                _tell(conn, cfg, pay, "refund_failed", f"refund refused ({result.code})")
            jobs.finish(conn, deps, job.id)
        else:
            jobs.retry_later(
                conn,
                deps,
                job.id,
                deps.clock.now() + _backoff(SCHEDULES[pay.method].refund_backoff, job.attempts),
                f"refund: {result.state.value}",
            )


# --- refunds ------------------------------------------------------------------------------------------


def prepare_provider_refund(
    db: Database,
    conn: Connection,
    deps: Deps,
    cfg: EngineConfig,
    actor: Actor,
    order: Any,
    pay: Any,
    amount: int,
    reason: str | None,
    refund_id: str | None,
) -> tuple[Any, PaymentProvider]:
    """Phase 1 of a provider refund: reserve the amount with a pending refund row (our refund id is the
    provider's out_refund_no / out_request_no, reused on every retry) and a safety-net job."""
    provider = cfg.providers.get(conn, pay.merchant_id, pay.method)
    reserved = conn.execute(
        select(func.coalesce(func.sum(refunds.c.amount), 0)).where(
            refunds.c.merchant_id == pay.merchant_id,
            refunds.c.payment_id == pay.id,
            refunds.c.status.in_(("pending", "processing")),
        )
    ).scalar_one()
    refundable = pay.amount - pay.refunded_amount - int(reserved)
    if amount > refundable:
        raise conflict(
            "refund_exceeds_captured",
            f"At most {refundable} of this payment can still be refunded.",
            {"refundable": refundable, "amount": amount},
        )
    refund_id = queue_provider_refund(
        conn, deps, actor, pay, amount, reason, refund_id=refund_id, look_after=cfg.pay_guard
    )
    return (
        conn.execute(
            select(refunds).where(refunds.c.merchant_id == pay.merchant_id, refunds.c.id == refund_id)
        ).one(),
        provider,
    )


def queue_provider_refund(
    conn: Connection,
    deps: Deps,
    actor: Actor,
    pay: Any,
    amount: int,
    reason: str | None,
    *,
    refund_id: str | None = None,
    look_after: timedelta = timedelta(0),
) -> str:
    """Insert a pending provider refund (our id is its out_refund_no / out_request_no) with the job that
    sends or confirms it ``look_after`` from now. The API request sends it at once and the job is its
    safety net; a cancelled order's refunds are sent by the job alone (``look_after`` 0)."""
    now = deps.clock.now()
    refund_id = refund_id or deps.ids.new()
    conn.execute(
        insert(refunds).values(
            id=refund_id,
            merchant_id=pay.merchant_id,
            order_id=pay.order_id,
            payment_id=pay.id,
            amount=amount,
            currency=pay.currency,
            status="pending",
            reason=reason,
            provider_ref=None,
            created_at=now,
            updated_at=now,
        )
    )
    record_created(
        conn,
        entity="refund",
        entity_id=refund_id,
        status="pending",
        merchant_id=pay.merchant_id,
        order_id=pay.order_id,
        actor=actor.label,
        now=now,
        reason=reason,
    )
    jobs.schedule(
        conn,
        deps,
        kind="confirm_refund",
        merchant_id=pay.merchant_id,
        payment_id=pay.id,
        refund_id=refund_id,
        due_at=now + look_after,
    )
    return refund_id


def call_refund(provider: PaymentProvider, refund: Any, pay: Any) -> RefundResult:
    return provider.refund(
        out_trade_no=pay.id,
        out_refund_no=refund.id,
        total_amount=pay.amount,
        refund_amount=refund.amount,
        reason=refund.reason,
    )


def apply_refund_result(
    db: Database,
    conn: Connection,
    deps: Deps,
    refund_id: str,
    result: RefundResult,
    actor: str,
    *,
    merchant_id: str,
) -> RefundView:
    """Record what a refund call said about ``merchant_id``'s refund ``refund_id``."""
    mine = select(refunds).where(refunds.c.merchant_id == merchant_id, refunds.c.id == refund_id)
    ref = conn.execute(mine).one()
    order = lock_order(db, conn, ref.merchant_id, ref.order_id)
    pay = _lock_payment(db, conn, ref.payment_id, merchant_id=merchant_id)
    ref = conn.execute(mine).one()
    now = deps.clock.now()
    sched = SCHEDULES[pay.method]
    if ref.status not in ("pending", "processing"):
        return refund_view(ref)
    if result.state is RefundState.SUCCESS:
        succeed_refund(conn, deps, order, pay, ref, result.provider_ref, actor)
    elif result.state is RefundState.FAILED:
        transition(
            conn,
            entity="refund",
            entity_id=ref.id,
            current=ref.status,
            target="failed",
            merchant_id=ref.merchant_id,
            order_id=ref.order_id,
            actor=actor,
            now=now,
            reason=result.code,
        )
        jobs.finish_for(
            conn,
            deps,
            kind="confirm_refund",
            merchant_id=pay.merchant_id,
            payment_id=pay.id,
            refund_id=ref.id,
        )
    else:
        if ref.status == "pending":
            transition(
                conn,
                entity="refund",
                entity_id=ref.id,
                current="pending",
                target="processing",
                merchant_id=ref.merchant_id,
                order_id=ref.order_id,
                actor=actor,
                now=now,
                reason=result.code or result.state.value,
            )
        if result.state is RefundState.ABNORMAL:
            exc_svc.open_exception(
                conn,
                deps,
                kind="refund_abnormal",
                merchant_id=ref.merchant_id,
                order_id=ref.order_id,
                payment_id=pay.id,
                refund_id=ref.id,
                provider=pay.method,
                amount=ref.amount,
                details={"code": result.code},
            )
        jobs.schedule(
            conn,
            deps,
            kind="confirm_refund",
            merchant_id=pay.merchant_id,
            payment_id=pay.id,
            refund_id=ref.id,
            due_at=next_refund_check(
                sched, _aware(ref.created_at, now), now, answered=result.state is not RefundState.UNKNOWN
            ),
        )
    return refund_view(conn.execute(mine).one())


def succeed_refund(
    conn: Connection, deps: Deps, order: Any, pay: Any, ref: Any, provider_ref: str | None, actor: str
) -> None:
    """Money went back to the customer: ledger entries and the payment's and order's refunded totals."""
    now = deps.clock.now()
    transition(
        conn,
        entity="refund",
        entity_id=ref.id,
        current=ref.status,
        target="succeeded",
        merchant_id=ref.merchant_id,
        order_id=ref.order_id,
        actor=actor,
        now=now,
        reason=ref.reason,
        provider_ref=provider_ref,
        values={"provider_ref": provider_ref},
    )
    ledger.post(
        conn,
        txn_id=deps.ids.new(),
        merchant_id=ref.merchant_id,
        order_id=ref.order_id,
        currency=ref.currency,
        kind="refund",
        postings=refund_postings(ref.order_id, pay.method, ref.amount),
        now=now,
        payment_id=pay.id,
        refund_id=ref.id,
    )
    add_refunded(conn, order, pay, ref.amount, actor, ref.reason, now, refund_id=ref.id)
    merchant_limits.give_back(conn, merchant_id=pay.merchant_id, payment_id=pay.id, amount=ref.amount)
    jobs.finish_for(
        conn, deps, kind="confirm_refund", merchant_id=pay.merchant_id, payment_id=pay.id, refund_id=ref.id
    )


def confirm_refund(db: Database, deps: Deps, cfg: EngineConfig, job: jobs.Job) -> None:
    """Settle a refund whose answer was lost or is still processing: re-send it if the provider never
    saw it (same refund number, so never twice), else query it."""
    assert job.refund_id is not None and job.payment_id is not None
    with db.read() as conn:
        ref = conn.execute(
            select(refunds).where(refunds.c.merchant_id == job.merchant_id, refunds.c.id == job.refund_id)
        ).one()
        pay = conn.execute(
            select(payments).where(payments.c.merchant_id == job.merchant_id, payments.c.id == job.payment_id)
        ).one()
    if ref.status not in ("pending", "processing"):
        with db.transaction() as conn:
            jobs.finish(conn, deps, job.id)
        return
    provider = _provider(db, cfg, pay.merchant_id, pay.method)
    result = provider.refund_query(out_trade_no=pay.id, out_refund_no=ref.id)
    if result.state is RefundState.NOT_FOUND:
        result = call_refund(provider, ref, pay)
    with db.transaction() as conn:
        apply_refund_result(db, conn, deps, ref.id, result, SYSTEM, merchant_id=ref.merchant_id)
        fresh = conn.execute(
            select(refunds.c.status).where(refunds.c.merchant_id == ref.merchant_id, refunds.c.id == ref.id)
        ).scalar_one()
        if fresh in ("pending", "processing"):
            now = deps.clock.now()
            answered = result.state is not RefundState.UNKNOWN
            sent_at = _aware(ref.created_at, now)
            due = next_refund_check(SCHEDULES[pay.method], sent_at, now, answered=answered)
            jobs.retry_later(conn, deps, job.id, due, f"refund: {result.state.value}")
        else:
            jobs.finish(conn, deps, job.id)


JobHandler = Callable[[Database, Deps, "EngineConfig", jobs.Job], None]

HANDLERS: dict[str, JobHandler] = {
    "resolve_payment": resolve_payment,
    "reverse_payment": reverse_payment,
    "confirm_refund": confirm_refund,
    "refund_unattached": refund_unattached,
}
"""Job kinds the resolver runs. Higher areas add theirs at the composition root (register_job_handler):
reconciliation's daily bill fetch is one."""


def register_job_handler(kind: str, handler: JobHandler) -> None:
    """Run jobs of ``kind`` with ``handler``; a kind has exactly one handler."""
    existing = HANDLERS.get(kind)
    if existing is not None and existing is not handler:
        raise ValueError(f"job kind {kind!r} already has a handler")
    HANDLERS[kind] = handler


def trigger_resolution(conn: Connection, deps: Deps, pay: Any) -> None:
    """Something (a notification) says the provider's view changed: look at the attempt now."""
    if pay.status in ("pending", "unknown", "failed"):
        jobs.schedule(
            conn,
            deps,
            kind="resolve_payment",
            merchant_id=pay.merchant_id,
            payment_id=pay.id,
            due_at=deps.clock.now(),
        )
