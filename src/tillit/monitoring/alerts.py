"""Alert rules and alerts: create and list rules, evaluate them (a due ``evaluate_alerts`` job per
merchant, run by the resolver), and move alerts through ``domain/alerts.ALERT`` with an event per move.

Deduplication: at most one open (firing or acknowledged) alert per rule and subject, enforced by the
unique index ``uq_alerts_one_open``; a rule that keeps breaking updates that alert (``occurrences``,
``last_seen_at``, ``value``) instead of opening another. A cleared condition resolves the alert
(actor ``system:alerts``); breaking again later opens a new one.

Delivery: when an alert opens, one ``AlertNotice`` per configured channel (``email:<address>``,
``webhook:<https url>``) is written to the notifications outbox (``notifications/outbox.enqueue``,
template ``alert``, event id ``alert:<id>``) in the same transaction, so a delivery is never lost nor
sent for an alert that was rolled back; the resolver sends it (SMTP, or a signed webhook with retries
and backoff: docs/notifications.md). Not-credited settlement days come from ``on_not_credited`` sources
(the settlement area); with none registered the count is 0.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import Connection, func, insert, select, update

from tillit.adapters.db.engine import Database
from tillit.adapters.db.schema import (
    alert_events,
    alert_rule_changes,
    alert_rules,
    alerts,
    exceptions,
    recon_discrepancies,
)
from tillit.domain import alerts as rules
from tillit.domain.errors import DomainError, conflict, invalid, not_found
from tillit.domain.ids import normalise_id
from tillit.kernel import jobs as job_queue
from tillit.kernel.context import Deps
from tillit.monitoring import health
from tillit.monitoring.i18n import translator
from tillit.notifications import outbox
from tillit.notifications.messages import LOCALES, Channel, Locale, Message, check_recipient

log = structlog.get_logger("tillit.monitoring.alerts")

KIND = "evaluate_alerts"
EVERY = timedelta(minutes=1)
SYSTEM = "system:alerts"
MAX_CHANNELS = 5
MAX_RULES_PER_MERCHANT = 100
MAX_MIN_ATTEMPTS = 100_000
_LONG_DIGITS = re.compile(r"[0-9]{16,}")


@dataclass(frozen=True, slots=True)
class RuleView:
    id: str
    merchant_id: str
    name: str
    kind: str
    provider: str | None
    threshold: int
    window_minutes: int
    min_attempts: int
    channels: tuple[str, ...]
    active: bool
    created_at: datetime
    locale: str  # the language of the rule's mails and webhook texts: zh-CN or en
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class AlertView:
    id: str
    merchant_id: str
    rule_id: str
    dedup_key: str
    status: str
    value: int
    threshold: int
    message: str
    occurrences: int
    opened_at: datetime
    last_seen_at: datetime
    resolved_at: datetime | None


@dataclass(frozen=True, slots=True)
class AlertEventView:
    from_status: str | None
    to_status: str
    actor: str
    reason: str | None
    at: datetime


@dataclass(frozen=True, slots=True)
class AlertNotice:
    """One delivery of an opened alert through one channel; ``event_id`` with the channel is the outbox's
    deduplication key, so the same alert is delivered once per channel."""

    merchant_id: str
    alert_id: str
    channel: str  # 'email' or 'webhook'
    target: str  # the address or URL
    subject: str
    body: str
    event_id: str
    locale: Locale = "zh-CN"  # the rule's language: the outbox renders the mail's frame in it too


#: Settlement days not credited for a merchant as of a time (the settlement area registers one).
NotCreditedSource = Callable[[Connection, str, datetime], int]

_NOT_CREDITED: list[NotCreditedSource] = []


def on_not_credited(source: NotCreditedSource) -> None:
    if source not in _NOT_CREDITED:
        _NOT_CREDITED.append(source)


# --- rules ----------------------------------------------------------------------------------------------


def _rule_view(r: Any) -> RuleView:
    return RuleView(
        r.id,
        r.merchant_id,
        r.name,
        r.kind,
        r.provider,
        int(r.threshold),
        int(r.window_minutes),
        int(r.min_attempts),
        tuple(c for c in r.channels.split(",") if c),
        bool(r.active),
        r.created_at,
        r.locale,
        r.updated_at,
    )


def check_channel(channel: str) -> str:
    """``email:<address>`` or ``webhook:<http(s) URL>``, with the recipient the outbox would accept."""
    kind, _, target = channel.partition(":")
    if kind in ("email", "webhook"):
        try:
            return f"{kind}:{check_recipient(kind, target)}"
        except DomainError:
            pass
    raise invalid(
        "alert_channel_invalid",
        "A channel is `email:<address>` or `webhook:<http(s) URL>`.",
        {"channel": channel[:200]},
    )


def create_rule(
    conn: Connection,
    deps: Deps,
    *,
    merchant_id: str,
    name: str,
    kind: str,
    threshold: int,
    window_minutes: int = 60,
    min_attempts: int = 10,
    provider: str | None = None,
    channels: tuple[str, ...] = (),
    locale: str = "zh-CN",
) -> RuleView:
    """A new active rule for ``merchant_id``; schedules the merchant's evaluation job."""
    checked = _check(
        name=name,
        kind=kind,
        threshold=threshold,
        window_minutes=window_minutes,
        min_attempts=min_attempts,
        provider=provider,
        channels=channels,
        locale=locale,
    )
    count = conn.execute(
        select(func.count()).select_from(alert_rules).where(alert_rules.c.merchant_id == merchant_id)
    ).scalar_one()
    if count >= MAX_RULES_PER_MERCHANT:
        raise conflict("alert_rules_limit", f"A merchant has at most {MAX_RULES_PER_MERCHANT} rules.")
    taken = conn.execute(
        select(alert_rules.c.id).where(alert_rules.c.merchant_id == merchant_id, alert_rules.c.name == name)
    ).first()
    if taken is not None:
        raise conflict("alert_rule_name_taken", "A rule with this name exists.", {"rule_id": taken.id})
    now = deps.clock.now()
    rule_id = deps.ids.new()
    conn.execute(
        insert(alert_rules).values(
            id=rule_id,
            merchant_id=merchant_id,
            name=name,
            kind=kind,
            provider=provider,
            threshold=threshold,
            window_minutes=window_minutes,
            min_attempts=min_attempts,
            channels=",".join(checked),
            active=1,
            created_at=now,
            updated_at=now,
            locale=locale,
        )
    )
    ensure_scheduled(conn, deps, merchant_id)
    return get_rule(conn, merchant_id, rule_id)


def _check(
    *,
    name: str,
    kind: str,
    threshold: int,
    window_minutes: int,
    min_attempts: int,
    provider: str | None,
    channels: tuple[str, ...],
    locale: str,
) -> list[str]:
    """Every bound a rule's settings keep (on creation and on every edit); the channels normalised."""
    if not name.strip() or _LONG_DIGITS.search(name):  # the outbox refuses what looks like a payment code
        raise invalid("alert_rule_name_invalid", "A rule name is non-empty and holds no long digit run.")
    if len(name) > 200:
        raise invalid("alert_rule_name_invalid", "A rule name is at most 200 characters.")
    if kind not in rules.RULE_KINDS:
        raise invalid(
            "alert_rule_kind_invalid", f"Unknown rule kind {kind!r}.", {"kinds": sorted(rules.RULE_KINDS)}
        )
    if provider is not None and provider not in ("wechat", "alipay"):
        raise invalid("alert_rule_provider_invalid", "provider is wechat or alipay (or omitted: every one).")
    if not 0 <= threshold <= rules.MAX_THRESHOLD:
        raise invalid("alert_rule_threshold_invalid", f"threshold is 0..{rules.MAX_THRESHOLD}.")
    if not 1 <= window_minutes <= rules.MAX_WINDOW_MINUTES:
        raise invalid("alert_rule_window_invalid", f"window_minutes is 1..{rules.MAX_WINDOW_MINUTES}.")
    if not 0 <= min_attempts <= MAX_MIN_ATTEMPTS:
        raise invalid("alert_rule_min_attempts_invalid", f"min_attempts is 0..{MAX_MIN_ATTEMPTS}.")
    if locale not in LOCALES:
        raise invalid("alert_rule_locale_invalid", "locale is zh-CN or en.", {"locales": list(LOCALES)})
    if len(channels) > MAX_CHANNELS:
        raise invalid("alert_channel_invalid", f"At most {MAX_CHANNELS} channels.")
    checked = [check_channel(c) for c in channels]
    if len(",".join(checked)) > 200:
        raise invalid("alert_channel_invalid", "The channels together are at most 200 characters.")
    return checked


@dataclass(frozen=True, slots=True)
class RuleEdit:
    """The fields an edit sets; None leaves a field as it is (``provider=""`` means every provider).
    The kind stays: a different kind is a different rule."""

    name: str | None = None
    threshold: int | None = None
    window_minutes: int | None = None
    min_attempts: int | None = None
    provider: str | None = None
    channels: tuple[str, ...] | None = None
    locale: str | None = None


@dataclass(frozen=True, slots=True)
class RuleChangeView:
    field: str
    old_value: str | None
    new_value: str | None
    actor: str
    at: datetime


def _stored(rule: RuleView, field: str) -> str | None:
    value = getattr(rule, field)
    if field == "channels":
        return ",".join(value)
    return None if value is None else str(value)


def update_rule(
    conn: Connection, deps: Deps, merchant_id: str, rule_id: str, edit: RuleEdit, actor: str
) -> RuleView:
    """Change a rule's settings within the same bounds as on creation; one audit row per changed field
    (who, when, old, new). Open alerts stay open and the rule is evaluated again at once with its new
    settings (a condition that no longer breaks resolves them there)."""
    rule = get_rule(conn, merchant_id, rule_id)
    values: dict[str, Any] = {
        "name": rule.name if edit.name is None else edit.name,
        "threshold": rule.threshold if edit.threshold is None else edit.threshold,
        "window_minutes": rule.window_minutes if edit.window_minutes is None else edit.window_minutes,
        "min_attempts": rule.min_attempts if edit.min_attempts is None else edit.min_attempts,
        "provider": rule.provider if edit.provider is None else (edit.provider or None),
        "channels": rule.channels if edit.channels is None else tuple(edit.channels),
        "locale": rule.locale if edit.locale is None else edit.locale,
    }
    checked = _check(kind=rule.kind, **values)
    values["channels"] = ",".join(checked)
    changed = {f: v for f, v in values.items() if _stored(rule, f) != (None if v is None else str(v))}
    if not changed:
        return rule
    if "name" in changed:
        taken = conn.execute(
            select(alert_rules.c.id).where(
                alert_rules.c.merchant_id == merchant_id,
                alert_rules.c.name == changed["name"],
                alert_rules.c.id != rule.id,
            )
        ).first()
        if taken is not None:
            raise conflict("alert_rule_name_taken", "A rule with this name exists.", {"rule_id": taken.id})
    now = deps.clock.now()
    done = conn.execute(
        update(alert_rules)
        .where(
            alert_rules.c.merchant_id == merchant_id,
            alert_rules.c.id == rule.id,
            alert_rules.c.updated_at == rule.updated_at,
        )
        .values(**changed, updated_at=now)
    )
    if done.rowcount != 1:
        raise conflict("alert_rule_changed", "The rule changed meanwhile; read it again.")
    for field, new in changed.items():
        conn.execute(
            insert(alert_rule_changes).values(
                merchant_id=merchant_id,
                rule_id=rule.id,
                field=field,
                old_value=_stored(rule, field),
                new_value=None if new is None else str(new)[:200],
                actor=actor[:100],
                at=now,
            )
        )
    log.info("alert_rule_changed", merchant_id=merchant_id, rule=rule.id, fields=sorted(changed), actor=actor)
    if rule.active:
        ensure_scheduled(conn, deps, merchant_id)
    return get_rule(conn, merchant_id, rule.id)


def rule_changes(conn: Connection, merchant_id: str, rule_id: str) -> list[RuleChangeView]:
    """The rule's audit, oldest first."""
    rule = get_rule(conn, merchant_id, rule_id)
    rows = conn.execute(
        select(alert_rule_changes)
        .where(alert_rule_changes.c.merchant_id == merchant_id, alert_rule_changes.c.rule_id == rule.id)
        .order_by(alert_rule_changes.c.id)
    )
    return [RuleChangeView(r.field, r.old_value, r.new_value, r.actor, r.at) for r in rows]


def get_rule(conn: Connection, merchant_id: str, rule_id: str) -> RuleView:
    rule_id = normalise_id(rule_id, "rule_id")
    row = conn.execute(
        select(alert_rules).where(alert_rules.c.merchant_id == merchant_id, alert_rules.c.id == rule_id)
    ).first()
    if row is None:
        raise not_found("alert_rule", rule_id)
    return _rule_view(row)


def list_rules(conn: Connection, merchant_id: str) -> list[RuleView]:
    rows = conn.execute(
        select(alert_rules).where(alert_rules.c.merchant_id == merchant_id).order_by(alert_rules.c.created_at)
    )
    return [_rule_view(r) for r in rows]


def set_active(
    conn: Connection, deps: Deps, merchant_id: str, rule_id: str, active: bool, actor: str = SYSTEM
) -> RuleView:
    """Switch a rule on or off. Switching it off resolves its open alerts (nobody is told of them any
    more); switching it on has it evaluated at once."""
    rule = get_rule(conn, merchant_id, rule_id)
    conn.execute(
        update(alert_rules)
        .where(alert_rules.c.merchant_id == merchant_id, alert_rules.c.id == rule.id)
        .values(active=int(active), updated_at=deps.clock.now())
    )
    if active:
        ensure_scheduled(conn, deps, merchant_id)
    else:
        for row in conn.execute(
            select(alerts.c.id).where(
                alerts.c.merchant_id == merchant_id,
                alerts.c.rule_id == rule.id,
                alerts.c.status.in_(tuple(rules.ALERT_OPEN)),
            )
        ).all():
            move(conn, deps, merchant_id, row.id, "resolved", actor, "rule switched off")
    return get_rule(conn, merchant_id, rule.id)


# --- alerts ---------------------------------------------------------------------------------------------


def _alert_view(r: Any) -> AlertView:
    return AlertView(
        r.id,
        r.merchant_id,
        r.rule_id,
        r.dedup_key,
        r.status,
        int(r.value),
        int(r.threshold),
        r.message,
        int(r.occurrences),
        r.opened_at,
        r.last_seen_at,
        r.resolved_at,
    )


def get_alert(conn: Connection, merchant_id: str, alert_id: str) -> AlertView:
    alert_id = normalise_id(alert_id, "alert_id")
    row = conn.execute(
        select(alerts).where(alerts.c.merchant_id == merchant_id, alerts.c.id == alert_id)
    ).first()
    if row is None:
        raise not_found("alert", alert_id)
    return _alert_view(row)


def list_alerts(
    conn: Connection, merchant_id: str, *, status: str | None = None, limit: int = 100
) -> list[AlertView]:
    query = select(alerts).where(alerts.c.merchant_id == merchant_id)
    if status == "open":
        query = query.where(alerts.c.status.in_(tuple(rules.ALERT_OPEN)))
    elif status is not None:
        query = query.where(alerts.c.status == status)
    rows = conn.execute(query.order_by(alerts.c.opened_at.desc(), alerts.c.id).limit(limit))
    return [_alert_view(r) for r in rows]


def alert_events_of(conn: Connection, merchant_id: str, alert_id: str) -> list[AlertEventView]:
    alert = get_alert(conn, merchant_id, alert_id)
    rows = conn.execute(
        select(alert_events)
        .where(alert_events.c.merchant_id == merchant_id, alert_events.c.alert_id == alert.id)
        .order_by(alert_events.c.id)
    )
    return [AlertEventView(r.from_status, r.to_status, r.actor, r.reason, r.at) for r in rows]


def _event(
    conn: Connection,
    merchant_id: str,
    alert_id: str,
    frm: str | None,
    to: str,
    actor: str,
    reason: str,
    now: datetime,
) -> None:
    conn.execute(
        insert(alert_events).values(
            merchant_id=merchant_id,
            alert_id=alert_id,
            from_status=frm,
            to_status=to,
            actor=actor[:100],
            reason=reason[:500],
            at=now,
        )
    )


def move(
    conn: Connection, deps: Deps, merchant_id: str, alert_id: str, target: str, actor: str, reason: str
) -> AlertView:
    """The one way an alert's status changes: checked against ALERT, compare-and-set, one event."""
    alert = get_alert(conn, merchant_id, alert_id)
    rules.ALERT.check(alert.status, target)
    now = deps.clock.now()
    values: dict[str, Any] = {"status": target, "updated_at": now}
    if target == "resolved":
        values["resolved_at"] = now
    done = conn.execute(
        update(alerts)
        .where(alerts.c.merchant_id == merchant_id, alerts.c.id == alert.id, alerts.c.status == alert.status)
        .values(**values)
    )
    if done.rowcount != 1:
        raise conflict("alert_changed", "The alert changed meanwhile; read it again.")
    _event(conn, merchant_id, alert.id, alert.status, target, actor, reason, now)
    return get_alert(conn, merchant_id, alert.id)


# --- evaluation -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Evaluation:
    opened: tuple[str, ...]
    updated: tuple[str, ...]
    resolved: tuple[str, ...]


def _rates(conn: Connection, now: datetime, rule: RuleView, end: datetime | None = None) -> list[Any]:
    return health.measure(
        conn,
        now,
        merchant_id=rule.merchant_id,
        windows=(rule.window_minutes,),
        provider=rule.provider,
        end=end,
    )


def measure(conn: Connection, now: datetime, rule: RuleView) -> list[rules.Measurement]:
    """What ``rule`` looks at now, one measurement per subject (a provider, or 'merchant')."""
    kind = rule.kind
    if kind in ("failure_rate", "unknown_rate", "provider_errors"):
        out = []
        for h in _rates(conn, now, rule):
            if kind == "failure_rate":
                out.append(rules.Measurement(h.provider, h.failure_rate_permille, h.attempts))
            elif kind == "unknown_rate":
                out.append(rules.Measurement(h.provider, h.unknown_rate_permille, h.attempts))
            else:
                errors = sum(e.count for e in h.errors if e.code != "USERPAYING")
                out.append(rules.Measurement(h.provider, errors, errors))
        return out
    if kind == "failure_spike":
        out = []
        for h in _rates(conn, now, rule):
            weeks = []
            for week in range(1, rules.SPIKE_WEEKS + 1):
                past = _rates(conn, now, rule, end=now - timedelta(days=7 * week))
                weeks += [
                    p.failure_rate_permille
                    for p in past
                    if p.provider == h.provider and p.attempts >= max(rule.min_attempts, 1)
                ]
            out.append(
                rules.Measurement(h.provider, rules.spike_percent(h.failure_rate_permille, weeks), h.attempts)
            )
        return out
    if kind == "open_exceptions":
        n = conn.execute(
            select(func.count())
            .select_from(exceptions)
            .where(
                exceptions.c.merchant_id == rule.merchant_id,
                exceptions.c.status == "open",
                exceptions.c.created_at < now - timedelta(minutes=rule.window_minutes),
            )
        ).scalar_one()
        return [rules.Measurement("merchant", int(n), int(n))]
    if kind == "recon_differences":
        n = conn.execute(
            select(func.count())
            .select_from(recon_discrepancies)
            .where(
                recon_discrepancies.c.merchant_id == rule.merchant_id, recon_discrepancies.c.status == "open"
            )
        ).scalar_one()
        return [rules.Measurement("merchant", int(n), int(n))]
    n = sum(source(conn, rule.merchant_id, now) for source in _NOT_CREDITED)
    return [rules.Measurement("merchant", int(n), int(n))]


def _message(rule: RuleView, m: rules.Measurement) -> str:
    """The alert's text in the rule's language (monitoring/locales): shown on the pages, mailed, and the
    webhook's ``alert_detail``."""
    t = translator(rule.locale)
    unit = rules.RULE_KINDS[rule.kind].unit
    shown = {
        "permille": f"{m.value / 10:.1f}%",
        "percent_of_baseline": t("{pct}% of the usual rate", pct=m.value),
    }
    limit = {"permille": f"{rule.threshold / 10:.1f}%", "percent_of_baseline": f"{rule.threshold}%"}
    return t(
        "{name}: {description} — {subject} at {value} (threshold {limit}, last {window} min,"
        " {attempts} behind it)",
        name=rule.name,
        description=t(rules.RULE_KINDS[rule.kind].description),
        subject=t(m.subject),
        value=shown.get(unit, m.value),
        limit=limit.get(unit, rule.threshold),
        window=rule.window_minutes,
        attempts=m.attempts,
    )[:500]


def _notices(rule: RuleView, alert_id: str, m: rules.Measurement, message: str) -> list[AlertNotice]:
    t = translator(rule.locale)
    out = []
    for channel in rule.channels:
        kind, _, target = channel.partition(":")
        out.append(
            AlertNotice(
                merchant_id=rule.merchant_id,
                alert_id=alert_id,
                channel=kind,
                target=target,
                subject=t("[Tillit alert] {name}: {subject}", name=rule.name, subject=t(m.subject))[:200],
                body=message,
                event_id=f"alert:{alert_id}",
                locale="en" if rule.locale == "en" else "zh-CN",
            )
        )
    return out


def deliver(conn: Connection, deps: Deps, notice: AlertNotice) -> bool:
    """Write the notice to the outbox (in the caller's transaction); False if it was already there."""
    channel: Channel = "email" if notice.channel == "email" else "webhook"
    return outbox.enqueue(
        conn,
        deps,
        Message(
            merchant_id=notice.merchant_id,
            event_id=notice.event_id,
            channel=channel,
            recipient=notice.target,
            template="alert",
            locale=notice.locale,
            params={
                "alert_title": notice.subject,
                "alert_detail": notice.body,
                "severity": translator(notice.locale)("alert"),
            },
        ),
    )


def evaluate(conn: Connection, deps: Deps, merchant_id: str) -> Evaluation:
    """Evaluate every active rule of the merchant now: open, update or resolve its alerts."""
    now = deps.clock.now()
    opened: list[str] = []
    updated: list[str] = []
    resolved: list[str] = []
    for rule in list_rules(conn, merchant_id):
        if not rule.active:
            continue
        breaking: dict[str, rules.Measurement] = {
            m.subject: m
            for m in measure(conn, now, rule)
            if rules.breaches(rule.kind, rule.threshold, rule.min_attempts, m)
        }
        open_rows = {
            r.dedup_key: r
            for r in conn.execute(
                select(alerts).where(
                    alerts.c.merchant_id == merchant_id,
                    alerts.c.rule_id == rule.id,
                    alerts.c.status.in_(tuple(rules.ALERT_OPEN)),
                )
            )
        }
        for subject, m in breaking.items():
            key = rules.dedup_key(rule.id, subject)
            message = _message(rule, m)
            existing = open_rows.pop(key, None)
            if existing is not None:
                conn.execute(
                    update(alerts)
                    .where(alerts.c.merchant_id == merchant_id, alerts.c.id == existing.id)
                    .values(
                        value=m.value,
                        message=message,
                        occurrences=alerts.c.occurrences + 1,
                        last_seen_at=now,
                        updated_at=now,
                    )
                )
                updated.append(existing.id)
                continue
            alert_id = deps.ids.new()
            conn.execute(
                insert(alerts).values(
                    id=alert_id,
                    merchant_id=merchant_id,
                    rule_id=rule.id,
                    dedup_key=key,
                    status="firing",
                    value=m.value,
                    threshold=rule.threshold,
                    message=message,
                    occurrences=1,
                    opened_at=now,
                    last_seen_at=now,
                    updated_at=now,
                    resolved_at=None,
                )
            )
            _event(conn, merchant_id, alert_id, None, "firing", SYSTEM, message, now)
            for notice in _notices(rule, alert_id, m, message):
                deliver(conn, deps, notice)
            opened.append(alert_id)
            log.info("alert_opened", merchant_id=merchant_id, alert=alert_id, rule=rule.id, kind=rule.kind)
        for row in open_rows.values():  # open alerts whose condition cleared
            move(conn, deps, merchant_id, row.id, "resolved", SYSTEM, "condition cleared")
            resolved.append(row.id)
    return Evaluation(tuple(opened), tuple(updated), tuple(resolved))


def ensure_scheduled(conn: Connection, deps: Deps, merchant_id: str) -> str:
    """The merchant's one pending evaluation job, due now (a new or changed rule is evaluated at once)."""
    return job_queue.schedule(conn, deps, kind=KIND, merchant_id=merchant_id, due_at=deps.clock.now())


def ensure_all(db: Database, deps: Deps) -> int:
    """An evaluation job for every merchant with an active rule (run when a worker starts)."""
    with db.transaction() as conn:
        merchants = [
            r[0]
            for r in conn.execute(
                select(alert_rules.c.merchant_id).where(alert_rules.c.active == 1).distinct()
            )
        ]
        for merchant_id in merchants:
            ensure_scheduled(conn, deps, merchant_id)
    return len(merchants)


def run_evaluation(db: Database, deps: Deps, cfg: Any, job: job_queue.Job) -> None:
    """The ``evaluate_alerts`` job: evaluate, then come back in EVERY (while the merchant has rules)."""
    with db.transaction() as conn:
        evaluate(conn, deps, job.merchant_id)
        has_rules = conn.execute(
            select(alert_rules.c.id).where(
                alert_rules.c.merchant_id == job.merchant_id, alert_rules.c.active == 1
            )
        ).first()
        if has_rules is None:
            job_queue.finish(conn, deps, job.id)
        else:
            job_queue.retry_later(conn, deps, job.id, deps.clock.now() + EVERY)
