"""`tillit merchants …`: the operator's side of the merchants area (applications, documents, review,
lifecycle, blacklist, limits, provider onboarding). Each command is one use case; answers print as JSON."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer

from tillit.bootstrap import Container, build
from tillit.cli.output import console, exit_on_refusal
from tillit.kernel.context import SYSTEM
from tillit.merchants import blacklist, documents, lifecycle, limits, onboarding, review
from tillit.merchants.ports import MerchantsConfig

app = typer.Typer(
    help="Merchant applications, review, lifecycle, blacklist, limits and 进件.", no_args_is_help=True
)
blacklist_app = typer.Typer(help="The merchant blacklist.", no_args_is_help=True)
limits_app = typer.Typer(help="Per-merchant and per-terminal limits.", no_args_is_help=True)
app.add_typer(blacklist_app, name="blacklist")
app.add_typer(limits_app, name="limits")

ACTOR = "cli:operator"
Actor = Annotated[str, typer.Option("--as", help="Who acts, for the audit trail (four-eyes compares it)")]


def _show(value: Any) -> None:
    console.print_json(json.dumps(value, ensure_ascii=False, default=str))


def _cfg(c: Container) -> MerchantsConfig:
    assert c.merchants is not None
    return c.merchants


@app.command("apply")
def apply_cmd(
    name: Annotated[str, typer.Option(help="The merchant's name")],
    currency: str = "CNY",
    timezone: str = "Asia/Shanghai",
    phone: Annotated[str | None, typer.Option(help="Contact phone (kept as a keyed hash)")] = None,
    actor: Actor = ACTOR,
) -> None:
    """Open an application: a merchant in `applied`."""
    c = build()
    with exit_on_refusal(), c.db.transaction() as conn:
        _show(
            review.apply(
                conn,
                c.deps,
                _cfg(c),
                name=name,
                currency=currency,
                timezone=timezone,
                contact_phone=phone,
                actor=actor,
            )
        )


@app.command("add-document")
def add_document_cmd(
    merchant_id: str,
    kind: Annotated[str, typer.Option(help="business_licence, legal_rep_id, bank_account, category, ...")],
    number: Annotated[str | None, typer.Option(help="Credit code, ID number, account number or MCC")] = None,
    holder: Annotated[str | None, typer.Option(help="Name on the document")] = None,
    bank: Annotated[str | None, typer.Option(help="Bank name (bank accounts)")] = None,
    expires: Annotated[str | None, typer.Option(help="Expiry date YYYY-MM-DD")] = None,
    file: Annotated[Path | None, typer.Option(help="A JPEG/PNG/BMP/PDF file (photos, licences)")] = None,
    actor: Actor = ACTOR,
) -> None:
    """Add a qualification document (a later one of the same kind supersedes earlier ones)."""
    c = build()
    doc = documents.DocumentInput(
        kind=kind,
        number=number,
        holder_name=holder,
        bank_name=bank,
        expires_on=date.fromisoformat(expires) if expires else None,
    )
    with exit_on_refusal(), c.db.transaction() as conn:
        if file is not None:
            _show(
                documents.add_file_document(conn, c.deps, _cfg(c), merchant_id, doc, file.read_bytes(), actor)
            )
        else:
            _show(documents.add_document(conn, c.deps, _cfg(c), merchant_id, doc, actor))


@app.command("submit")
def submit_cmd(merchant_id: str, actor: Actor = ACTOR) -> None:
    """Send the application for review."""
    c = build()
    with exit_on_refusal(), c.db.transaction() as conn:
        _show(review.submit(c.db, conn, c.deps, merchant_id, actor))


@app.command("queue")
def queue_cmd(limit: int = 50) -> None:
    """Applications waiting for review, oldest first."""
    c = build()
    with c.db.read() as conn:
        _show(review.queue(conn, limit=limit))


@app.command("show")
def show_cmd(merchant_id: str) -> None:
    """Profile, documents, events, limits and onboarding of one merchant."""
    c = build()
    with exit_on_refusal(), c.db.read() as conn:
        row = lifecycle.load(conn, merchant_id)
        _show(
            {
                "profile": lifecycle.view(conn, row),
                "documents": documents.list_documents(conn, merchant_id),
                "events": lifecycle.history(conn, _operator(), merchant_id),
                "limits": limits.list_limits(conn, c.deps, merchant_id),
                "onboarding": onboarding.list_applications(conn, merchant_id),
            }
        )


def _operator() -> Any:
    return SYSTEM


@app.command("review-document")
def review_document_cmd(
    merchant_id: str,
    document_id: str,
    reject: Annotated[str | None, typer.Option(help="Reject with this reason (default: approve)")] = None,
    actor: Actor = ACTOR,
) -> None:
    """Approve a document, or reject it with the reason the merchant will read."""
    c = build()
    with exit_on_refusal(), c.db.transaction() as conn:
        _show(
            review.review_document(
                conn, c.deps, merchant_id, document_id, approve=reject is None, reason=reject, actor=actor
            )
        )


@app.command("approve")
def approve_cmd(
    merchant_id: str,
    reason: str | None = None,
    override: Annotated[str | None, typer.Option(help="Override reason for a blacklist match")] = None,
    actor: Actor = ACTOR,
) -> None:
    """Approve the application: the merchant becomes active."""
    c = build()
    with exit_on_refusal(), c.db.transaction() as conn:
        _show(
            review.approve(
                c.db, conn, c.deps, _cfg(c), merchant_id, actor=actor, reason=reason, override_reason=override
            )
        )


@app.command("reject")
def reject_cmd(merchant_id: str, reason: str, actor: Actor = ACTOR) -> None:
    """Reject the application (reject its documents with reasons first)."""
    c = build()
    with exit_on_refusal(), c.db.transaction() as conn:
        _show(review.reject(c.db, conn, c.deps, _cfg(c), merchant_id, actor=actor, reason=reason))


@app.command("suspend")
def suspend_cmd(merchant_id: str, reason: str, actor: Actor = ACTOR) -> None:
    """Suspend: provider payments stop (cash per the merchant's setting)."""
    c = build()
    with exit_on_refusal(), c.db.transaction() as conn:
        _show(lifecycle.suspend(c.db, conn, c.deps, merchant_id, actor, reason))


@app.command("resume")
def resume_cmd(merchant_id: str, reason: str, actor: Actor = ACTOR) -> None:
    """Lift a suspension."""
    c = build()
    with exit_on_refusal(), c.db.transaction() as conn:
        _show(lifecycle.resume(c.db, conn, c.deps, merchant_id, actor, reason))


@app.command("terminate")
def terminate_cmd(merchant_id: str, reason: str, actor: Actor = ACTOR) -> None:
    """Terminate a merchant for good."""
    c = build()
    with exit_on_refusal(), c.db.transaction() as conn:
        _show(lifecycle.terminate(c.db, conn, c.deps, merchant_id, actor, reason))


@app.command("rereview")
def rereview_cmd(merchant_id: str, note: str, actor: Actor = ACTOR) -> None:
    """Record a completed periodic re-review (the next one is due an interval from today)."""
    c = build()
    with exit_on_refusal(), c.db.transaction() as conn:
        _show(review.complete_rereview(conn, c.deps, _cfg(c), merchant_id, actor=actor, note=note))


@app.command("onboard")
def onboard_cmd(merchant_id: str, provider: str) -> None:
    """Submit an approved merchant to a provider's onboarding (the resolver polls it to completion)."""
    c = build()
    with exit_on_refusal(), c.db.transaction() as conn:
        _show(onboarding.submit(conn, c.deps, _cfg(c), merchant_id, provider))


@blacklist_app.command("add")
def blacklist_add(
    kind: Annotated[str, typer.Option(help="credit_code, id_number, bank_account or phone")],
    value: Annotated[str, typer.Option(help="The value (personal ones are hashed at once)")],
    source: str,
    reason: str,
    actor: Actor = ACTOR,
) -> None:
    """Add an entry; matching active merchants are suspended, each with an exception."""
    c = build()
    with exit_on_refusal(), c.db.transaction() as conn:
        _show(
            blacklist.add_entry(
                c.db, conn, c.deps, _cfg(c), kind=kind, value=value, source=source, reason=reason, actor=actor
            )
        )


@blacklist_app.command("list")
def blacklist_list(include_removed: bool = False, limit: int = 100) -> None:
    c = build()
    with c.db.read() as conn:
        _show(blacklist.list_entries(conn, include_removed=include_removed, limit=limit))


@blacklist_app.command("remove")
def blacklist_remove(entry_id: str, actor: Actor = ACTOR) -> None:
    c = build()
    with exit_on_refusal(), c.db.transaction() as conn:
        _show(blacklist.remove_entry(conn, c.deps, entry_id, actor))


@limits_app.command("set")
def limits_set(
    merchant_id: str,
    method: Annotated[str, typer.Option(help="wechat or alipay")],
    reason: Annotated[str, typer.Option(help="Why, for the audit trail")],
    scope: Annotated[str, typer.Option(help="merchant, or a terminal id")] = "merchant",
    single: Annotated[int | None, typer.Option(help="Single-payment maximum, fen")] = None,
    daily: Annotated[int | None, typer.Option(help="Daily total, fen")] = None,
    monthly: Annotated[int | None, typer.Option(help="Monthly total, fen")] = None,
    tier: Annotated[str | None, typer.Option(help="B, C or D: the PBoC barcode daily tier")] = None,
    actor: Actor = ACTOR,
) -> None:
    """Set a limit (no amounts: remove it). Audited."""
    if tier is not None:
        daily = {t["name"]: t["daily_max"] for t in limits.tiers()}[tier.upper()]
    c = build()
    with exit_on_refusal(), c.db.transaction() as conn:
        _show(
            limits.set_limit(
                conn,
                c.deps,
                merchant_id,
                scope=scope,
                method=method,
                single_max=single,
                daily_max=daily,
                monthly_max=monthly,
                actor=actor,
                reason=reason,
            )
        )


@limits_app.command("show")
def limits_show(merchant_id: str) -> None:
    c = build()
    with exit_on_refusal(), c.db.read() as conn:
        _show(
            {
                "limits": limits.list_limits(conn, c.deps, merchant_id),
                "changes": limits.list_changes(conn, merchant_id, limit=50),
            }
        )


@limits_app.command("tiers")
def limits_tiers() -> None:
    """The default tiers offered (operations.md §7.1)."""
    _show(limits.tiers())
