"""Applications and their review: submit, a queue, per-document decisions, approval (four-eyes, blacklist
override), rejection with reasons, and the periodic re-review as resolver jobs.

The re-review job of a merchant is due at the earliest of: its next periodic review date (default every
12 months), 30 days before any document expires, and the day a document expires. On the expiry day an
active merchant is suspended (provider payments stop) and a ``merchant_document_expired`` exception
opens; otherwise a ``merchant_review_due`` exception asks a person to re-review.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Connection, update

from tillit.access.merchants import create_merchant
from tillit.adapters.db.engine import Database
from tillit.adapters.db.schema import merchant_documents, merchant_profiles
from tillit.domain.errors import DomainError, ErrorKind, conflict, invalid
from tillit.domain.merchants import EXPIRY_NOTICE_DAYS, add_months, zone
from tillit.exceptions import cases
from tillit.kernel import jobs
from tillit.kernel.context import Deps
from tillit.merchants import documents, lifecycle
from tillit.merchants.matching import hits_for
from tillit.merchants.ports import MerchantsConfig
from tillit.merchants.views import ProfileView

JOB_KIND = "merchant_review"
SYSTEM = "system:merchants"


def apply(
    conn: Connection,
    deps: Deps,
    cfg: MerchantsConfig,
    *,
    name: str,
    currency: str,
    timezone: str,
    contact_phone: str | None,
    actor: str,
) -> ProfileView:
    """A new merchant in ``applied``: it may add documents, then submit them for review."""
    zone(timezone)
    merchant = create_merchant(conn, deps, name=name, currency=currency, lifecycle="applied", actor=actor)
    conn.execute(
        update(merchant_profiles)
        .where(merchant_profiles.c.merchant_id == merchant["id"])
        .values(timezone=timezone)
    )
    if contact_phone:
        documents.set_contact_phone(conn, cfg, merchant["id"], contact_phone)
    return lifecycle.view(conn, lifecycle.load(conn, merchant["id"]))


def submit(db: Database, conn: Connection, deps: Deps, merchant_id: str, actor: str) -> ProfileView:
    """Send the application (again, after a rejection) for review; needs every required document, none
    of them rejected."""
    current = documents.current_documents(conn, merchant_id)
    missing = [k for k in documents.REQUIRED_FOR_REVIEW if k not in current]
    if missing:
        raise invalid(
            "documents_missing", "Add the missing documents before submitting.", {"missing": missing}
        )
    rejected = [r.kind for rows in current.values() for r in rows if r.status == "rejected"]
    if rejected:
        raise conflict(
            "documents_rejected",
            "Replace the rejected documents before submitting again.",
            {"rejected": rejected},
        )
    row = lifecycle.move(
        db,
        conn,
        deps,
        merchant_id,
        "under_review",
        actor,
        "submitted for review",
        submitted_by=actor,
        submitted_at=deps.clock.now(),
    )
    return lifecycle.view(conn, row)


def queue(conn: Connection, *, limit: int) -> list[ProfileView]:
    """Applications waiting for a reviewer, oldest submission first."""
    rows = conn.execute(
        lifecycle.profile_query()
        .where(merchant_profiles.c.status == "under_review")
        .order_by(merchant_profiles.c.submitted_at, merchant_profiles.c.merchant_id)
        .limit(limit)
    )
    return [lifecycle.view(conn, r) for r in rows]


def review_document(
    conn: Connection,
    deps: Deps,
    merchant_id: str,
    document_id: str,
    *,
    approve: bool,
    reason: str | None,
    actor: str,
) -> Any:
    """Approve or reject one document (a rejection names its reason); only while it can be reviewed."""
    status = lifecycle.load(conn, merchant_id).status
    if status not in ("under_review", "active", "suspended"):
        raise conflict(
            "merchant_not_under_review", f"The merchant is {status}: nothing to review.", {"status": status}
        )
    row = documents.get_document(conn, merchant_id, document_id)
    if not approve and not (reason or "").strip():
        raise invalid(
            "reject_reason_required", "A rejected document needs the reason the merchant will read."
        )
    conn.execute(
        update(merchant_documents)
        .where(merchant_documents.c.merchant_id == merchant_id, merchant_documents.c.id == row.id)
        .values(
            status="approved" if approve else "rejected",
            reject_reason=None if approve else (reason or "").strip()[:500],
            reviewed_by=actor,
            reviewed_at=deps.clock.now(),
        )
    )
    return documents.view(documents.get_document(conn, merchant_id, document_id))


def _four_eyes(cfg: MerchantsConfig, row: Any, actor: str) -> None:
    if cfg.four_eyes and row.submitted_by == actor:
        raise DomainError(
            "four_eyes_required",
            "You submitted this application: another reviewer must approve it.",
            ErrorKind.FORBIDDEN,
            {"submitted_by": row.submitted_by},
        )


def approve(
    db: Database,
    conn: Connection,
    deps: Deps,
    cfg: MerchantsConfig,
    merchant_id: str,
    *,
    actor: str,
    reason: str | None,
    override_reason: str | None,
) -> ProfileView:
    """``under_review -> active`` once every document in force is approved; a blacklist match needs an
    ``override_reason`` (kept in the event); four-eyes: not by the submitter."""
    row = lifecycle.load(conn, merchant_id, db=db)
    if row.status != "under_review":
        raise conflict("merchant_not_under_review", f"The merchant is {row.status}.", {"status": row.status})
    _four_eyes(cfg, row, actor)
    pending = [
        r.kind
        for rows in documents.current_documents(conn, merchant_id).values()
        for r in rows
        if r.status != "approved"
    ]
    if pending:
        raise conflict("documents_not_approved", "Approve every document first.", {"documents": pending})
    hits = hits_for(conn, merchant_id)
    why = reason or "approved"
    if hits:
        if not (override_reason or "").strip():
            raise conflict(
                "blacklist_override_required",
                "The application matches the blacklist: approving it needs an override reason.",
                {"hits": hits},
            )
        why = f"{why}; blacklist override: {(override_reason or '').strip()}"
    today = _local_today(deps.clock.now(), row.timezone)
    moved = lifecycle.move(
        db,
        conn,
        deps,
        merchant_id,
        "active",
        actor,
        why,
        reviewed_at=deps.clock.now(),
        next_review_on=add_months(today, cfg.review_interval_months),
    )
    schedule_review(conn, deps, merchant_id)
    return lifecycle.view(conn, moved)


def reject(
    db: Database,
    conn: Connection,
    deps: Deps,
    cfg: MerchantsConfig,
    merchant_id: str,
    *,
    actor: str,
    reason: str,
) -> ProfileView:
    """``under_review -> rejected``; at least one document must carry its rejection reason."""
    row = lifecycle.load(conn, merchant_id, db=db)
    if row.status != "under_review":
        raise conflict("merchant_not_under_review", f"The merchant is {row.status}.", {"status": row.status})
    current = documents.current_documents(conn, merchant_id)
    if not any(r.status == "rejected" for rows in current.values() for r in rows):
        raise conflict("reject_needs_document_reason", "Reject at least one document with its reason first.")
    return lifecycle.view(conn, lifecycle.move(db, conn, deps, merchant_id, "rejected", actor, reason))


def complete_rereview(
    conn: Connection, deps: Deps, cfg: MerchantsConfig, merchant_id: str, *, actor: str, note: str
) -> ProfileView:
    """A person re-reviewed the merchant: the next periodic review is an interval from today."""
    row = lifecycle.load(conn, merchant_id)
    if row.status not in ("active", "suspended"):
        raise conflict("merchant_not_active", f"The merchant is {row.status}.", {"status": row.status})
    today = _local_today(deps.clock.now(), row.timezone)
    conn.execute(
        update(merchant_profiles)
        .where(merchant_profiles.c.merchant_id == merchant_id)
        .values(
            reviewed_at=deps.clock.now(),
            next_review_on=add_months(today, cfg.review_interval_months),
            updated_at=deps.clock.now(),
            status_reason=f"re-reviewed by {actor}: {note}"[:500],
        )
    )
    schedule_review(conn, deps, merchant_id)
    return lifecycle.view(conn, lifecycle.load(conn, merchant_id))


# --- the re-review job ------------------------------------------------------------------------------


def _local_today(now: datetime, tz_name: str) -> date:
    return now.astimezone(zone(tz_name)).date()


def _at_local_midnight(day: date, tz_name: str) -> datetime:
    return datetime.combine(day, time(0, 0), tzinfo=zone(tz_name))


def _expiring(conn: Connection, merchant_id: str) -> list[Any]:
    return [
        r
        for kind, rows in documents.current_documents(conn, merchant_id).items()
        if kind in documents.EXPIRING
        for r in rows
        if r.expires_on is not None and r.status != "rejected"
    ]


def schedule_review(conn: Connection, deps: Deps, merchant_id: str, after: datetime | None = None) -> None:
    """(Re)schedule the merchant's re-review job at its next due time after ``after`` (default: now)."""
    row = lifecycle.load(conn, merchant_id)
    if row.status not in ("active", "suspended"):
        return
    now = after or deps.clock.now()
    candidates: list[datetime] = []
    if row.next_review_on is not None:
        candidates.append(_at_local_midnight(row.next_review_on, row.timezone))
    for doc in _expiring(conn, merchant_id):
        candidates.append(
            _at_local_midnight(doc.expires_on - timedelta(days=EXPIRY_NOTICE_DAYS), row.timezone)
        )
        candidates.append(_at_local_midnight(doc.expires_on, row.timezone))
    future = [c for c in candidates if c > now]
    if future:
        jobs.schedule(conn, deps, kind=JOB_KIND, merchant_id=merchant_id, due_at=min(future))


def run_review(db: Database, deps: Deps, _engine_cfg: object, job: jobs.Job) -> None:
    """The resolver's ``merchant_review`` job: suspend on an expired document, else ask for a re-review."""
    with db.transaction() as conn:
        row = lifecycle.load(conn, job.merchant_id, db=db)
        now = deps.clock.now()
        today = _local_today(now, row.timezone)
        if row.status in ("active", "suspended"):
            expired = [d for d in _expiring(conn, job.merchant_id) if d.expires_on <= today]
            soon = [
                d
                for d in _expiring(conn, job.merchant_id)
                if d.expires_on - timedelta(days=EXPIRY_NOTICE_DAYS) <= today
            ]
            if expired:
                names = ", ".join(sorted({d.kind for d in expired}))
                lifecycle.suspend_if_active(
                    db, conn, deps, job.merchant_id, SYSTEM, f"document expired: {names}"
                )
                for doc in expired:
                    cases.open_exception(
                        conn,
                        deps,
                        kind="merchant_document_expired",
                        merchant_id=job.merchant_id,
                        provider_ref=doc.id,
                        details={
                            "document_id": doc.id,
                            "kind": doc.kind,
                            "expired_on": doc.expires_on.isoformat(),
                        },
                    )
            elif soon or (row.next_review_on is not None and row.next_review_on <= today):
                cases.open_exception(
                    conn,
                    deps,
                    kind="merchant_review_due",
                    merchant_id=job.merchant_id,
                    provider_ref=f"review:{today.isoformat()[:7]}",
                    details={
                        "next_review_on": row.next_review_on.isoformat() if row.next_review_on else None,
                        "expiring": [{"kind": d.kind, "expires_on": d.expires_on.isoformat()} for d in soon],
                    },
                )
        jobs.finish(conn, deps, job.id)
        schedule_review(conn, deps, job.merchant_id, after=now)


def documents_need(conn: Connection, merchant_id: str) -> list[str]:
    """Required kinds missing from the merchant's documents (for pages and the CLI)."""
    current = documents.current_documents(conn, merchant_id)
    return [k for k in documents.REQUIRED_FOR_REVIEW if k not in current]


def expiring_documents(conn: Connection, merchant_id: str) -> list[Any]:
    return _expiring(conn, merchant_id)
