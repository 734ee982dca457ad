"""The blacklist: entries by credit code, legal person ID, bank account or phone, with source and reason.

Personal values are hashed with the matching key at once (never stored); a credit code is public. A new
entry that matches an active merchant suspends it and opens a ``merchant_blacklisted`` exception.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, insert, select, update

from tillit.adapters.db.engine import Database
from tillit.adapters.db.schema import blacklist_entries
from tillit.domain.errors import conflict, invalid, not_found
from tillit.domain.merchants import (
    mask,
    normalise_phone,
    validate_bank_account,
    validate_credit_code,
    validate_resident_id,
)
from tillit.exceptions import cases
from tillit.kernel.context import Deps, iso
from tillit.merchants import lifecycle
from tillit.merchants.matching import merchants_matching
from tillit.merchants.ports import MerchantsConfig
from tillit.merchants.views import BlacklistEntryView

KINDS = ("credit_code", "id_number", "bank_account", "phone")


def match_key(cfg: MerchantsConfig, kind: str, value: str) -> tuple[str, str]:
    """(match key, masked display) of a value; raises on a malformed one."""
    if kind == "credit_code":
        code = validate_credit_code(value)
        return code, code
    if kind == "id_number":
        number = validate_resident_id(value)
        return cfg.hasher.digest(number, "id_number"), mask(number)
    if kind == "bank_account":
        digits, _ = validate_bank_account(value)
        return cfg.hasher.digest(digits, "bank_account"), mask(digits, 4, 4)
    if kind == "phone":
        phone = normalise_phone(value)
        return cfg.hasher.digest(phone, "phone"), mask(phone, 3, 2)
    raise invalid("blacklist_kind_invalid", f"Unknown blacklist kind {kind!r}.", {"kinds": list(KINDS)})


def _view(row: Any, suspended: list[str]) -> BlacklistEntryView:
    return {
        "id": row.id,
        "kind": row.kind,
        "shown": row.shown,
        "source": row.source,
        "reason": row.reason,
        "created_by": row.created_by,
        "created_at": iso(row.created_at),
        "removed_at": iso(row.removed_at),
        "suspended_merchants": suspended,
    }


def add_entry(
    db: Database,
    conn: Connection,
    deps: Deps,
    cfg: MerchantsConfig,
    *,
    kind: str,
    value: str,
    source: str,
    reason: str,
    actor: str,
) -> BlacklistEntryView:
    key, shown = match_key(cfg, kind, value)
    existing = conn.execute(
        select(blacklist_entries.c.id).where(
            blacklist_entries.c.kind == kind,
            blacklist_entries.c.match_key == key,
            blacklist_entries.c.removed_at.is_(None),
        )
    ).first()
    if existing is not None:
        raise conflict("blacklist_entry_exists", "This value is already blacklisted.", {"id": existing.id})
    entry_id = deps.ids.new()
    now = deps.clock.now()
    conn.execute(
        insert(blacklist_entries).values(
            id=entry_id,
            kind=kind,
            match_key=key,
            shown=shown,
            source=source,
            reason=reason,
            created_by=actor,
            created_at=now,
        )
    )
    suspended = []
    for merchant_id in merchants_matching(conn, kind, key):
        why = f"blacklist match ({kind}, {source}): {reason}"
        if lifecycle.suspend_if_active(db, conn, deps, merchant_id, actor, why[:500]):
            suspended.append(merchant_id)
            cases.open_exception(
                conn,
                deps,
                kind="merchant_blacklisted",
                merchant_id=merchant_id,
                provider_ref=entry_id,
                details={
                    "entry_id": entry_id,
                    "kind": kind,
                    "shown": shown,
                    "source": source,
                    "reason": reason,
                },
            )
    row = conn.execute(select(blacklist_entries).where(blacklist_entries.c.id == entry_id)).one()
    return _view(row, suspended)


def remove_entry(conn: Connection, deps: Deps, entry_id: str, actor: str) -> BlacklistEntryView:
    row = conn.execute(select(blacklist_entries).where(blacklist_entries.c.id == entry_id)).first()
    if row is None:
        raise not_found("blacklist_entry", entry_id)
    if row.removed_at is None:
        conn.execute(
            update(blacklist_entries)
            .where(blacklist_entries.c.id == entry_id)
            .values(removed_at=deps.clock.now(), removed_by=actor)
        )
    return _view(conn.execute(select(blacklist_entries).where(blacklist_entries.c.id == entry_id)).one(), [])


def list_entries(conn: Connection, *, include_removed: bool, limit: int) -> list[BlacklistEntryView]:
    query = select(blacklist_entries).order_by(blacklist_entries.c.created_at.desc()).limit(limit)
    if not include_removed:
        query = query.where(blacklist_entries.c.removed_at.is_(None))
    return [_view(r, []) for r in conn.execute(query)]
