"""Qualification documents: validated, personal numbers kept masked + keyed hash, files content-addressed.

Every check runs before anything is written: a bad code, an oversized or wrong-type upload raises a
DomainError and leaves neither a row nor a file behind (the file is stored only after validation, and a
file without a row is harmless: content-addressed, unreferenced).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import Connection, insert, select, update

from tillit.adapters.db.schema import merchant_documents, merchant_profiles
from tillit.domain.errors import conflict, invalid, not_found
from tillit.domain.merchants import (
    DOCUMENT_KINDS,
    FILE_KINDS,
    mask,
    normalise_phone,
    sniff_type,
    validate_bank_account,
    validate_credit_code,
    validate_mcc,
    validate_resident_id,
)
from tillit.kernel.context import Deps, SecretBox, iso
from tillit.merchants import lifecycle
from tillit.merchants.ports import MerchantsConfig
from tillit.merchants.views import DocumentView

#: kinds whose row carries a file; store photos must, licences may
FILE_REQUIRED = frozenset({"store_photo", "special_licence"})
#: kinds that lapse: an expired one suspends provider payments (merchants/review.py)
EXPIRING = frozenset({"business_licence", "legal_rep_id", "special_licence"})
REQUIRED_FOR_REVIEW = ("business_licence", "legal_rep_id", "bank_account", "category")


@dataclass(frozen=True, slots=True)
class DocumentInput:
    """What a caller states about a document. ``number``: credit code, ID number, account number or
    MCC, by kind. ``bank_name`` goes with a bank account."""

    kind: str
    number: str | None = None
    holder_name: str | None = None
    bank_name: str | None = None
    expires_on: date | None = None


@dataclass(frozen=True, slots=True)
class StoredFile:
    sha256: str
    content_type: str
    size: int


def view(row: Any) -> DocumentView:
    return {
        "id": row.id,
        "merchant_id": row.merchant_id,
        "kind": row.kind,
        "status": row.status,
        "public_value": row.public_value,
        "holder_name": row.holder_name,
        "number_masked": row.number_masked,
        "file_sha256": row.file_sha256,
        "file_type": row.file_type,
        "file_size": row.file_size,
        "expires_on": row.expires_on.isoformat() if row.expires_on else None,
        "reject_reason": row.reject_reason,
        "reviewed_by": row.reviewed_by,
        "reviewed_at": iso(row.reviewed_at),
        "created_at": iso(row.created_at),
    }


def check_file(cfg: MerchantsConfig, kind: str, data: bytes) -> str:
    """The sniffed content type of an upload; raises before anything is stored."""
    if kind not in FILE_KINDS:
        raise invalid("document_kind_invalid", f"A {kind} document carries no file.", {"kind": kind})
    if not data:
        raise invalid("file_empty", "The upload is empty.")
    if len(data) > cfg.max_file_bytes:
        raise invalid(
            "file_too_large",
            f"A document file may have at most {cfg.max_file_bytes} bytes.",
            {"max_bytes": cfg.max_file_bytes, "size": len(data)},
        )
    content_type = sniff_type(data[:16])
    if content_type is None:
        raise invalid(
            "file_type_unsupported",
            "Only JPEG, PNG, BMP and PDF files are accepted (checked by content, not by name).",
            {"accepted": ["image/jpeg", "image/png", "image/bmp", "application/pdf"]},
        )
    return content_type


def sealed_key_ids(conn: Connection, box: SecretBox) -> set[str]:
    """Key ids that sealed document numbers need (payments/accounts.py keeps them from retirement)."""
    rows = conn.execute(
        select(merchant_documents.c.number_sealed).where(merchant_documents.c.number_sealed.is_not(None))
    )
    return {k for (value,) in rows if (k := box.key_id(value)) is not None}


def _sealed(conn: Connection, deps: Deps, merchant_id: str, kind: str, value: str) -> str | None:
    """The clear number sealed for the onboarding submission (None without a secret box). A fresh
    install gets its key here; a lost key is never silently replaced."""
    box = deps.secrets
    if box is None:
        return None
    if not box.has_key():
        if sealed_key_ids(conn, box):
            raise conflict("secret_key_missing", "Sealed document numbers exist but no key is available.")
        box.create_key()
    return box.seal(value, f"merchant_documents/{merchant_id}/{kind}")


def open_number(deps: Deps, row: Any) -> str | None:
    """The clear number of a document, for a provider onboarding request only."""
    if deps.secrets is None or not row.number_sealed:
        return None
    return deps.secrets.open(row.number_sealed, f"merchant_documents/{row.merchant_id}/{row.kind}")


def _validated(cfg: MerchantsConfig, doc: DocumentInput) -> dict[str, Any]:
    """Row values for a document's stated fields (no file); raises on any bad value."""
    if doc.kind not in DOCUMENT_KINDS:
        raise invalid(
            "document_kind_invalid", f"Unknown document kind {doc.kind!r}.", {"kinds": list(DOCUMENT_KINDS)}
        )
    values: dict[str, Any] = {"holder_name": doc.holder_name, "expires_on": doc.expires_on}
    if doc.kind in EXPIRING and doc.expires_on is None:
        raise invalid("expiry_required", f"A {doc.kind} needs its expiry date (expires_on).")
    number = (doc.number or "").strip()
    if doc.kind in ("business_licence", "legal_rep_id", "bank_account", "category") and not number:
        raise invalid("document_number_required", f"A {doc.kind} needs its number.")
    if doc.kind == "business_licence":
        values["public_value"] = validate_credit_code(number)
    elif doc.kind == "legal_rep_id":
        clean = validate_resident_id(number)
        values |= {
            "number_masked": mask(clean),
            "number_hash": cfg.hasher.digest(clean, "id_number"),
            "_clear": clean,
        }
    elif doc.kind == "bank_account":
        digits, _luhn = validate_bank_account(number)
        values |= {
            "number_masked": mask(digits, 4, 4),
            "number_hash": cfg.hasher.digest(digits, "bank_account"),
            "public_value": (doc.bank_name or "")[:200] or None,
            "_clear": digits,
        }
    elif doc.kind == "category":
        values["public_value"] = validate_mcc(number)
    return values


def _writable(conn: Connection, merchant_id: str) -> None:
    status = lifecycle.load(conn, merchant_id).status
    if status == "terminated":
        raise conflict("merchant_terminated", "A terminated merchant takes no documents.")


def add_document(
    conn: Connection,
    deps: Deps,
    cfg: MerchantsConfig,
    merchant_id: str,
    doc: DocumentInput,
    actor: str,
    file: StoredFile | None = None,
) -> DocumentView:
    """A new document (pending review). A later document of the same kind supersedes earlier ones."""
    values = _validated(cfg, doc)
    if doc.kind in FILE_REQUIRED and file is None:
        raise invalid("file_required", f"A {doc.kind} is an uploaded file: use the file upload.")
    _writable(conn, merchant_id)
    clear = values.pop("_clear", None)
    if clear is not None:
        values["number_sealed"] = _sealed(conn, deps, merchant_id, doc.kind, clear)
    record = {
        "id": deps.ids.new(),
        "merchant_id": merchant_id,
        "kind": doc.kind,
        "status": "pending",
        "created_by": actor,
        "created_at": deps.clock.now(),
        **values,
    }
    if file is not None:
        record |= {"file_sha256": file.sha256, "file_type": file.content_type, "file_size": file.size}
    conn.execute(insert(merchant_documents).values(**record))
    return view(conn.execute(select(merchant_documents).where(merchant_documents.c.id == record["id"])).one())


def add_file_document(
    conn: Connection,
    deps: Deps,
    cfg: MerchantsConfig,
    merchant_id: str,
    doc: DocumentInput,
    data: bytes,
    actor: str,
) -> DocumentView:
    """Validate everything, then store the file, then write the row (same transaction as the caller's)."""
    content_type = check_file(cfg, doc.kind, data)
    _validated(cfg, doc)
    _writable(conn, merchant_id)
    sha = cfg.files.put(merchant_id, data)
    return add_document(conn, deps, cfg, merchant_id, doc, actor, StoredFile(sha, content_type, len(data)))


def set_contact_phone(conn: Connection, cfg: MerchantsConfig, merchant_id: str, phone: str) -> None:
    digest = cfg.hasher.digest(normalise_phone(phone), "phone")
    conn.execute(
        update(merchant_profiles)
        .where(merchant_profiles.c.merchant_id == merchant_id)
        .values(contact_phone_hash=digest)
    )


def list_documents(conn: Connection, merchant_id: str) -> list[DocumentView]:
    rows = conn.execute(
        select(merchant_documents)
        .where(merchant_documents.c.merchant_id == merchant_id)
        .order_by(merchant_documents.c.created_at, merchant_documents.c.id)
        .limit(500)
    )
    return [view(r) for r in rows]


def current_documents(conn: Connection, merchant_id: str) -> dict[str, list[Any]]:
    """Per kind, the rows in force: the latest for single kinds; every photo / special licence."""
    rows = list(
        conn.execute(
            select(merchant_documents)
            .where(merchant_documents.c.merchant_id == merchant_id)
            .order_by(merchant_documents.c.created_at, merchant_documents.c.id)
        )
    )
    current: dict[str, list[Any]] = {}
    for row in rows:
        if row.kind in ("store_photo", "special_licence"):
            current.setdefault(row.kind, []).append(row)
        else:
            current[row.kind] = [row]
    return current


def get_document(conn: Connection, merchant_id: str, document_id: str) -> Any:
    row = conn.execute(
        select(merchant_documents).where(
            merchant_documents.c.merchant_id == merchant_id, merchant_documents.c.id == document_id
        )
    ).first()
    if row is None:
        raise not_found("document", document_id)
    return row


def read_file(
    conn: Connection, cfg: MerchantsConfig, merchant_id: str, document_id: str
) -> tuple[bytes, str]:
    row = get_document(conn, merchant_id, document_id)
    data = cfg.files.get(merchant_id, row.file_sha256) if row.file_sha256 else None
    if data is None:
        raise not_found("document_file", document_id)
    return data, str(row.file_type)
