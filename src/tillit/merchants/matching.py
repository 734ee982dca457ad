"""Which blacklist entries a merchant's documents match (read only)."""

from __future__ import annotations

from sqlalchemy import Connection, and_, or_, select

from tillit.adapters.db.schema import blacklist_entries, merchant_documents, merchant_profiles
from tillit.merchants.views import BlacklistHit

# blacklist kind -> (document kind, document column holding the match key)
MATCHED_BY = {
    "credit_code": ("business_licence", merchant_documents.c.public_value),
    "id_number": ("legal_rep_id", merchant_documents.c.number_hash),
    "bank_account": ("bank_account", merchant_documents.c.number_hash),
}


def hits_for(conn: Connection, merchant_id: str) -> list[BlacklistHit]:
    """Active blacklist entries matching any of the merchant's documents or its contact phone."""
    conds = []
    for kind, (doc_kind, column) in MATCHED_BY.items():
        keys = select(column).where(
            merchant_documents.c.merchant_id == merchant_id,
            merchant_documents.c.kind == doc_kind,
            column.is_not(None),
        )
        conds.append(and_(blacklist_entries.c.kind == kind, blacklist_entries.c.match_key.in_(keys)))
    phone = select(merchant_profiles.c.contact_phone_hash).where(
        merchant_profiles.c.merchant_id == merchant_id
    )
    conds.append(and_(blacklist_entries.c.kind == "phone", blacklist_entries.c.match_key.in_(phone)))
    rows = conn.execute(
        select(blacklist_entries)
        .where(blacklist_entries.c.removed_at.is_(None), or_(*conds))
        .order_by(blacklist_entries.c.created_at)
        .limit(100)
    )
    return [
        {"entry_id": r.id, "kind": r.kind, "shown": r.shown, "source": r.source, "reason": r.reason}
        for r in rows
    ]


def merchants_matching(conn: Connection, kind: str, match_key: str) -> list[str]:
    """Merchant ids whose documents (or contact phone) carry ``match_key`` of ``kind``."""
    if kind == "phone":
        rows = conn.execute(
            select(merchant_profiles.c.merchant_id).where(merchant_profiles.c.contact_phone_hash == match_key)
        )
    else:
        doc_kind, column = MATCHED_BY[kind]
        rows = conn.execute(
            select(merchant_documents.c.merchant_id)
            .where(merchant_documents.c.kind == doc_kind, column == match_key)
            .distinct()
        )
    return sorted(str(r[0]) for r in rows)
