"""The outbox sender, run by the resolver (worker.py) in every round beside its jobs.

Each round claims due messages under a lease — ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, the single
``BEGIN IMMEDIATE`` writer on SQLite — so two workers never hold one message at once; sends them
outside any transaction; then records every outcome in one transaction: ``sent``; a transient failure
retried after exponential backoff (``backoff_s * 2**(attempts-1)``, capped) until ``max_attempts``,
then ``dead``; a permanent failure ``dead`` at once; a recipient who opted out ``suppressed``.

Delivery is at least once: a worker that dies after the provider accepted a message but before the
outcome is written leaves the lease to expire and the message is sent again. Every channel carries
the dedup key (Message-ID, Idempotency-Key, Tillit-Message-Id) so the receiving side can drop it.
Messages for a channel that is not configured stay pending, untouched, until it is.
"""

from __future__ import annotations

import html as html_text
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import structlog
from sqlalchemy import Connection, and_, func, or_, select, tuple_, update

from tillit.adapters.db.engine import Database
from tillit.adapters.db.schema import outbox_consents, outbox_messages
from tillit.adapters.delivery import DeliveryError
from tillit.domain.errors import DomainError
from tillit.kernel.context import Deps, iso
from tillit.notifications import contacts, endpoints
from tillit.notifications.messages import MERCHANT_ENDPOINT as MERCHANT
from tillit.notifications.messages import check_params
from tillit.notifications.render import render

log = structlog.get_logger("tillit.outbox")
MAX_ERROR = 500
# Mail to the merchant's own staff (monitoring's alerts) has no customer consent to withdraw.
STAFF_TEMPLATES = frozenset({"alert"})
# ful21: customer messages about a fulfilment carry the link to the customer's order page (confirm
# receipt, open a dispute): ``order_url``, signed at send time like ``receipt_url``, never in a webhook.
ORDER_PAGE_TEMPLATES = frozenset(
    {"order_ready", "order_shipped", "order_delivered", "confirm_reminder", "dispute_update"}
)
UNSUBSCRIBE_LINE = {
    "zh-CN": "不想再收到此商户的邮件？退订：{link}",
    "en": "Don't want these e-mails from this shop? Unsubscribe: {link}",
}


class MailPort(Protocol):
    def send(
        self,
        to: str,
        subject: str,
        body: str,
        message_id: str,
        headers: dict[str, str] | None = None,
        html: str | None = None,
    ) -> None: ...
    def close(self) -> None: ...


class SmsPort(Protocol):
    def send(self, to: str, text: str, message_id: str) -> None: ...
    def close(self) -> None: ...


class WebhookPort(Protocol):
    def send(self, url: str, body: bytes, secret: bytes, timestamp: int, message_id: str) -> None: ...
    def close(self) -> None: ...


@dataclass
class Channels:
    email: MailPort | None = None
    sms: SmsPort | None = None
    webhook: WebhookPort | None = None

    def configured(self) -> list[str]:
        return [name for name in ("email", "sms", "webhook") if getattr(self, name) is not None]


@dataclass(frozen=True)
class SenderConfig:
    max_attempts: int = 8
    backoff_s: float = 30.0
    backoff_max_s: float = 3600.0
    batch: int = 50
    lease: timedelta = timedelta(seconds=120)


def backoff(cfg: SenderConfig, attempts: int) -> timedelta:
    """The wait after the ``attempts``-th failed try: 1x, 2x, 4x ... the base, never above the cap."""
    return timedelta(seconds=min(cfg.backoff_s * 2 ** max(0, attempts - 1), cfg.backoff_max_s))


@dataclass(frozen=True, slots=True)
class _Outcome:
    id: int
    status: str  # sent | retry | dead | suppressed
    error: str | None = None


class OutboxSender:
    """Sends due outbox messages through ``channels``. ``receipt_url(merchant_id, order_id)`` builds the
    signed e-receipt link; ``webhook_secret(merchant_id)`` the key a merchant's webhooks are signed with.
    One sender may be shared by threads: rounds are serialised (adapters keep connections)."""

    def __init__(
        self,
        channels: Channels,
        config: SenderConfig,
        receipt_url: Callable[[str, str], str],
        webhook_secret: Callable[[str], bytes],
        open_secret: Callable[[str, str], bytes] | None = None,
        unsubscribe_url: Callable[[str, str], str] | None = None,
        order_url: Callable[[str, str], str] | None = None,
    ) -> None:
        self.channels, self.config = channels, config
        self.receipt_url, self.webhook_secret = receipt_url, webhook_secret
        # (merchant, sealed secret) -> the merchant endpoint's secret in clear (notifications/endpoints.py)
        self.open_secret = open_secret
        # (merchant, address) -> the signed unsubscribe link every customer e-mail carries
        self.unsubscribe_url = unsubscribe_url
        # (merchant, order) -> the signed link to the customer's order page (ORDER_PAGE_TEMPLATES)
        self.order_url = order_url
        self._endpoints: dict[str, tuple[str, str]] = {}
        self._orders: dict[tuple[str, str], contacts.OrderFacts] = {}
        self._lock = threading.Lock()

    def send_due(self, db: Database, deps: Deps, worker: str) -> int:
        """One round: claim, send, record. Returns how many messages were claimed."""
        with self._lock:
            rows = self._claim(db, deps, worker)
            if not rows:
                return 0
            outcomes = [
                _Outcome(row.id, "suppressed", "recipient opted out") if out else self._send(deps, row)
                for row, out in rows
            ]
            self._endpoints, self._orders = {}, {}
            with db.transaction() as conn:
                self._record_sent(conn, deps, worker, [o.id for o in outcomes if o.status == "sent"])
                for outcome, (row, _) in zip(outcomes, rows, strict=True):
                    if outcome.status != "sent":
                        self._record(conn, deps, worker, row, outcome)
            return len(rows)

    def close(self) -> None:
        for name in self.channels.configured():
            port = getattr(self.channels, name)
            port.close()

    def _claim(self, db: Database, deps: Deps, worker: str) -> list[tuple[Any, bool]]:
        """The claimed rows, each with whether its recipient has opted out since it was enqueued."""
        configured = self.channels.configured()
        if not configured:
            return []
        now = deps.clock.now()
        m = outbox_messages
        due = (
            m.c.status == "pending",
            m.c.next_attempt_at <= now,
            m.c.channel.in_(configured),
            or_(m.c.lease_until.is_(None), m.c.lease_until < now),
        )
        # A read first: an idle resolver polls often, and on SQLite a write transaction takes the
        # database's single writer lock away from the sales.
        with db.read() as conn:
            if conn.execute(select(m.c.id).where(*due).limit(1)).first() is None:
                return []
        with db.transaction() as conn:
            query = select(m).where(*due).order_by(m.c.next_attempt_at, m.c.id).limit(self.config.batch)
            if db.is_postgres:
                query = query.with_for_update(skip_locked=True)
            rows = list(conn.execute(query))
            if not rows:
                return []
            conn.execute(
                update(m)
                .where(m.c.id.in_([r.id for r in rows]))
                .values(
                    lease_until=now + self.config.lease,
                    leased_by=worker[:64],
                    attempts=m.c.attempts + 1,
                    updated_at=now,
                )
            )
            opted_out = self._opted_out(conn, rows)
            self._endpoints = endpoints.endpoints_of(
                conn, {r.merchant_id for r in rows if r.channel == "webhook" and r.recipient == MERCHANT}
            )
            # The shop's names and the order's number, for the customer messages of this batch: read here,
            # once per batch, rather than by each sale that wrote a message.
            self._orders = contacts.order_facts(conn, {k for k in map(_customer_order, rows) if k})
        return [(r, (r.merchant_id, r.channel, r.recipient) in opted_out) for r in rows]

    @staticmethod
    def _opted_out(conn: Connection, rows: list[Any]) -> set[tuple[str, str, str]]:
        keys = [(r.merchant_id, r.channel, r.recipient) for r in rows if r.channel != "webhook"]
        if not keys:
            return set()
        c = outbox_consents
        found = conn.execute(
            select(c.c.merchant_id, c.c.channel, c.c.recipient).where(
                and_(tuple_(c.c.merchant_id, c.c.channel, c.c.recipient).in_(keys), c.c.opted_in == 0)
            )
        )
        return {(r.merchant_id, r.channel, r.recipient) for r in found}

    def _params(self, row: Any) -> dict[str, Any]:
        """The message's parameters, with the order's facts added to a customer message and checked
        again (no payment code leaves in a message, whoever wrote the name); then the signed link."""
        params: dict[str, Any] = json.loads(row.params)
        key = _customer_order(row)
        if key is not None:
            for name, value in self._orders.get(key, {}).items():
                params.setdefault(name, value)
            check_params(params)
        if params.get("order_id"):
            params["receipt_url"] = self.receipt_url(row.merchant_id, str(params["order_id"]))
            if (
                self.order_url is not None
                and row.channel != "webhook"  # the customer's link, not the merchant's system's
                and row.template in ORDER_PAGE_TEMPLATES
            ):
                params["order_url"] = self.order_url(row.merchant_id, str(params["order_id"]))
        return params

    def _send(self, deps: Deps, row: Any) -> _Outcome:
        dedup = f"{row.merchant_id}:{row.event_id}:{row.channel}"
        try:
            params = self._params(row)
            if row.channel == "email" and self.channels.email is not None:
                text = render(row.template, row.locale, params)
                mail_body, headers, footer = text.body, None, ""
                if self.unsubscribe_url is not None and row.template not in STAFF_TEMPLATES:
                    link = self.unsubscribe_url(row.merchant_id, row.recipient)
                    mail_body += "\n\n--\n" + UNSUBSCRIBE_LINE[row.locale].format(link=link)
                    footer = _html_footer(UNSUBSCRIBE_LINE[row.locale], link)
                    headers = {
                        "List-Unsubscribe": f"<{link}>",
                        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
                    }
                html = None if text.html is None else _html_document(row.locale, text.html, footer)
                self.channels.email.send(row.recipient, text.subject, mail_body, dedup, headers, html)
            elif row.channel == "sms" and self.channels.sms is not None:
                text = render(row.template, row.locale, params)
                self.channels.sms.send(row.recipient, text.body, dedup)
            elif row.channel == "webhook" and self.channels.webhook is not None:
                body = json.dumps(
                    {
                        "id": dedup,
                        "merchant_id": row.merchant_id,
                        "event_id": row.event_id,
                        "template": row.template,
                        "locale": row.locale,
                        "params": params,
                        "created_at": iso(row.created_at),
                    },
                    ensure_ascii=False,
                    sort_keys=True,
                ).encode()
                now = int(deps.clock.now().timestamp())
                url, secret = row.recipient, None
                if row.recipient == MERCHANT:  # the merchant's own endpoint, as it is now
                    endpoint = self._endpoints.get(row.merchant_id)
                    if endpoint is None:
                        return _Outcome(row.id, "suppressed", "the merchant has no enabled webhook endpoint")
                    if self.open_secret is None:
                        return _Outcome(row.id, "retry", "no secret box to open the endpoint's secret")
                    url, secret = endpoint[0], self.open_secret(row.merchant_id, endpoint[1])
                self.channels.webhook.send(
                    url, body, secret or self.webhook_secret(row.merchant_id), now, dedup
                )
        except DomainError as exc:  # the message itself cannot go out (it would carry a payment code)
            log.warning("outbox_message_refused", message=row.id, channel=row.channel, code=exc.code)
            return _Outcome(row.id, "dead", f"{exc.code}: {exc.message}")
        except DeliveryError as exc:
            log.info("outbox_send_failed", message=row.id, channel=row.channel, error=str(exc))
            return _Outcome(row.id, "dead" if exc.permanent else "retry", str(exc))
        except Exception as exc:  # a bug in a template or adapter: retried, and visible in last_error
            log.warning("outbox_send_error", message=row.id, channel=row.channel, error=type(exc).__name__)
            return _Outcome(row.id, "retry", f"{type(exc).__name__}: {exc}")
        return _Outcome(row.id, "sent")

    @staticmethod
    def _record_sent(conn: Connection, deps: Deps, worker: str, ids: list[int]) -> None:
        """The common case in one statement: sent, while this worker still holds the lease."""
        if not ids:
            return
        now = deps.clock.now()
        m = outbox_messages
        conn.execute(
            update(m)
            .where(m.c.id.in_(ids), m.c.leased_by == worker[:64], m.c.status == "pending")
            .values(status="sent", sent_at=now, lease_until=None, updated_at=now)
        )

    def _record(self, conn: Connection, deps: Deps, worker: str, row: Any, outcome: _Outcome) -> None:
        now = deps.clock.now()
        attempts = row.attempts + 1
        m = outbox_messages
        values: dict[str, Any] = {"lease_until": None, "updated_at": now}
        if outcome.error is not None:
            values["last_error"] = outcome.error[:MAX_ERROR]
        if outcome.status == "sent":
            values.update(status="sent", sent_at=now)
        elif outcome.status == "retry" and attempts < self.config.max_attempts:
            values["next_attempt_at"] = now + backoff(self.config, attempts)
        elif outcome.status == "suppressed":
            values["status"] = "suppressed"
        else:
            values["status"] = "dead"
        # Only while this worker still holds the lease: a taken-over message is the new holder's.
        conn.execute(
            update(m)
            .where(m.c.id == outcome.id, m.c.leased_by == worker[:64], m.c.status == "pending")
            .values(**values)
        )


def _html_footer(line: str, link: str) -> str:
    before, _, after = line.partition("{link}")
    href = html_text.escape(link, quote=True)
    return (
        f'<hr><p style="color:#666;font-size:12px">{html_text.escape(before)}'
        f'<a href="{href}">{html_text.escape(link)}</a>{html_text.escape(after)}</p>'
    )


def _html_document(locale: str, fragment: str, footer: str) -> str:
    """The HTML part of a mail: the template's (autoescaped) fragment and the unsubscribe footer."""
    return (
        f'<!doctype html>\n<html lang="{html_text.escape(locale)}"><head><meta charset="utf-8"></head>'
        f"<body>\n{fragment}\n{footer}\n</body></html>\n"
    )


def _customer_order(row: Any) -> tuple[str, str] | None:
    """(merchant, order) of a customer message about an order (e-mail or SMS), else None."""
    if row.channel not in ("email", "sms") or '"order_id"' not in row.params:
        return None
    order_id = json.loads(row.params).get("order_id")
    return (row.merchant_id, str(order_id)) if order_id else None


def due_count(conn: Connection, now: datetime) -> int:
    """Messages waiting to be sent now (monitoring reads this)."""
    m = outbox_messages
    return int(
        conn.execute(
            select(func.count()).select_from(m).where(m.c.status == "pending", m.c.next_attempt_at <= now)
        ).scalar_one()
    )
