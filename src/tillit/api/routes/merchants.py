"""Merchants-area routes (issue 12): applications, documents, review, lifecycle, blacklist, limits, 进件.

Operators (admin keys) review, approve, suspend, keep the blacklist and set limits; a merchant key works
on its own application and documents and reads its own limits and onboarding. Another merchant's id
answers exactly like an unknown one (404).
"""

from __future__ import annotations

import hashlib
from datetime import date
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from tillit.api.deps import (
    ADMIN,
    IDEMPOTENCY_HEADER,
    OVERSEER,
    UUID_PATTERN,
    IdPath,
    container,
    idempotent,
    ok,
)
from tillit.api.schemas import Amount, Currency, ErrorOut, Name, Strict
from tillit.bootstrap import Container
from tillit.domain.errors import conflict, invalid
from tillit.domain.ids import normalise_id
from tillit.domain.merchants import DOCUMENT_KINDS, MAX_FILE_BYTES
from tillit.kernel.context import Actor
from tillit.merchants import blacklist, documents, lifecycle, limits, onboarding, review
from tillit.merchants.ports import MerchantsConfig

router = APIRouter(prefix="/v1", tags=["merchants"], responses={"4XX": {"model": ErrorOut}})

#: Document files have their own body limit (the JSON limit is 64 KiB), a little over the file limit
#: so an oversized file is refused with ``file_too_large`` rather than a bare 413.
UPLOAD_PATH = "/v1/merchant-documents/files"
UPLOAD_MAX_BYTES = MAX_FILE_BYTES + 64 * 1024

Reason = Annotated[str, Field(min_length=3, max_length=500, description="Why, for the audit trail")]
DocumentKind = Literal[
    "business_licence", "legal_rep_id", "bank_account", "category", "store_photo", "special_licence"
]
FileKind = Literal["business_licence", "legal_rep_id", "store_photo", "special_licence"]
assert set(DocumentKind.__args__) == set(DOCUMENT_KINDS)  # type: ignore[attr-defined]


class ApplicationCreate(Strict):
    name: Name
    currency: Currency = "CNY"
    timezone: Annotated[str, Field(min_length=1, max_length=64)] = "Asia/Shanghai"
    contact_phone: Annotated[str | None, Field(max_length=24)] = None


class DocumentCreate(Strict):
    kind: DocumentKind
    number: Annotated[
        str | None, Field(max_length=64, description="Credit code, ID number, account or MCC")
    ] = None
    holder_name: Annotated[str | None, Field(max_length=200)] = None
    bank_name: Annotated[str | None, Field(max_length=200)] = None
    expires_on: Annotated[str | None, Field(pattern=r"^\d{4}-\d{2}-\d{2}$", description="YYYY-MM-DD")] = None


class DocumentDecision(Strict):
    decision: Literal["approve", "reject"]
    reason: Annotated[str | None, Field(max_length=500, description="Required to reject")] = None


class ApproveBody(Strict):
    reason: Annotated[str | None, Field(max_length=500)] = None
    override_reason: Annotated[
        str | None, Field(max_length=500, description="Required when the application matches the blacklist")
    ] = None


class ReasonBody(Strict):
    reason: Reason


class RereviewBody(Strict):
    note: Reason


class SettingsBody(Strict):
    timezone: Annotated[str | None, Field(min_length=1, max_length=64)] = None
    cash_when_suspended: bool | None = None


class BlacklistCreate(Strict):
    kind: Literal["credit_code", "id_number", "bank_account", "phone"]
    value: Annotated[str, Field(min_length=1, max_length=64)]
    source: Annotated[str, Field(min_length=1, max_length=100, description="Who reported it (e.g. CPCA)")]
    reason: Reason


class LimitSet(Strict):
    scope: Annotated[
        str,
        Field(
            max_length=36,
            pattern=r"^(merchant|[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12})$",
            description="`merchant` or a terminal id",
        ),
    ]
    method: Literal["wechat", "alipay"]
    single_max: Amount | None = None
    daily_max: Amount | None = None
    monthly_max: Amount | None = None
    reason: Reason


class OnboardingCreate(Strict):
    provider: Literal["wechat", "alipay"]


def _cfg(c: Container) -> MerchantsConfig:
    if c.merchants is None:
        raise conflict("merchants_not_configured", "The merchants area is not configured.")
    return c.merchants


def _own(who: Actor, merchant_id: str) -> str:
    return lifecycle.scoped(who, normalise_id(merchant_id, "merchant_id"))


def _shielded(c: Container, body: dict[str, object], field: str) -> dict[str, object]:
    """The request as the idempotency record fingerprints it: a personal number replaced by its keyed hash
    (the record keeps only an unkeyed SHA-256 of the request, which must not be reversible)."""
    value = body.get(field)
    if isinstance(value, str):
        return body | {field: _cfg(c).hasher.digest(value, "request")}
    return body


def _day(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise invalid("invalid_date", "expires_on must be a calendar date (YYYY-MM-DD).") from None


# --- applications and documents -------------------------------------------------------------------


@router.post("/merchant-applications", status_code=201, summary="Open a merchant application (operator)")
def create_application(
    body: ApplicationCreate, request: Request, who: Actor = ADMIN, key: str | None = IDEMPOTENCY_HEADER
) -> Response:
    c = container(request)
    return idempotent(
        request,
        who,
        key,
        body.model_dump(),
        lambda conn: (
            201,
            review.apply(
                conn,
                c.deps,
                _cfg(c),
                name=body.name,
                currency=body.currency,
                timezone=body.timezone,
                contact_phone=body.contact_phone,
                actor=who.label,
            ),
        ),
    )


@router.get("/merchant-profiles", summary="List merchants with their lifecycle status (operator)")
def list_profiles(
    request: Request,
    who: Actor = ADMIN,
    status: Annotated[
        str | None, Query(pattern="^(applied|under_review|active|rejected|suspended|terminated)$")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    after: Annotated[str | None, Query(max_length=36)] = None,
) -> JSONResponse:
    with container(request).db.read() as conn:
        rows = lifecycle.list_profiles(conn, status=status, limit=limit, after=after)
    return ok({"data": rows, "next": rows[-1]["merchant_id"] if len(rows) == limit else None})


@router.get(
    "/merchants/{merchant_id}/profile", summary="A merchant's lifecycle status, settings, blacklist hits"
)
def get_profile(merchant_id: IdPath, request: Request, who: Actor = OVERSEER) -> JSONResponse:
    with container(request).db.read() as conn:
        return ok(lifecycle.get_profile(conn, who, normalise_id(merchant_id)))


@router.get("/merchants/{merchant_id}/events", summary="A merchant's lifecycle events (who, when, why)")
def get_events(merchant_id: IdPath, request: Request, who: Actor = OVERSEER) -> JSONResponse:
    with container(request).db.read() as conn:
        return ok({"data": lifecycle.history(conn, who, normalise_id(merchant_id))})


@router.get("/merchants/{merchant_id}/documents", summary="A merchant's qualification documents")
def get_documents(merchant_id: IdPath, request: Request, who: Actor = OVERSEER) -> JSONResponse:
    with container(request).db.read() as conn:
        mid = _own(who, merchant_id)
        lifecycle.load(conn, mid)
        return ok({"data": documents.list_documents(conn, mid)})


@router.post("/merchants/{merchant_id}/documents", status_code=201, summary="Add a qualification document")
def add_document(
    merchant_id: IdPath,
    body: DocumentCreate,
    request: Request,
    who: Actor = OVERSEER,
    key: str | None = IDEMPOTENCY_HEADER,
) -> Response:
    c = container(request)
    mid = _own(who, merchant_id)
    doc = documents.DocumentInput(
        kind=body.kind,
        number=body.number,
        holder_name=body.holder_name,
        bank_name=body.bank_name,
        expires_on=_day(body.expires_on),
    )
    return idempotent(
        request,
        who,
        key,
        _shielded(c, body.model_dump(), "number"),
        lambda conn: (201, documents.add_document(conn, c.deps, _cfg(c), mid, doc, who.label)),
    )


@router.post(
    "/merchant-documents/files",
    status_code=201,
    summary="Upload a document file (store photo, licence scan): raw body",
    description=(
        f"The body is the file itself (JPEG, PNG, BMP or PDF, sniffed from its content), at most "
        f"{MAX_FILE_BYTES} bytes. The file is stored content-addressed; the answer is the new document."
    ),
)
async def upload_document(
    request: Request,
    merchant_id: Annotated[str, Query(pattern=UUID_PATTERN, max_length=45, description="A UUID")],
    kind: FileKind,
    who: Actor = OVERSEER,
    key: str | None = IDEMPOTENCY_HEADER,
    expires_on: Annotated[str | None, Query(pattern=r"^\d{4}-\d{2}-\d{2}$")] = None,
    number: Annotated[str | None, Query(max_length=64)] = None,
    holder_name: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    c = container(request)
    mid = _own(who, merchant_id)
    data = await request.body()
    doc = documents.DocumentInput(
        kind=kind, number=number, holder_name=holder_name, expires_on=_day(expires_on)
    )
    fingerprint = _shielded(
        c,
        {
            "sha256": hashlib.sha256(data).hexdigest(),
            "kind": kind,
            "expires_on": expires_on,
            "number": number,
        },
        "number",
    )
    return await run_in_threadpool(
        idempotent,
        request,
        who,
        key,
        fingerprint,
        lambda conn: (201, documents.add_file_document(conn, c.deps, _cfg(c), mid, doc, data, who.label)),
    )


@router.get("/merchants/{merchant_id}/documents/{document_id}/file", summary="Download a document's file")
def get_document_file(
    merchant_id: IdPath, document_id: IdPath, request: Request, who: Actor = OVERSEER
) -> Response:
    c = container(request)
    with c.db.read() as conn:
        mid = _own(who, merchant_id)
        data, content_type = documents.read_file(conn, _cfg(c), mid, normalise_id(document_id))
    return Response(data, media_type=content_type, headers={"X-Content-Type-Options": "nosniff"})


@router.post("/merchants/{merchant_id}/submit", summary="Submit the application for review")
def submit_application(
    merchant_id: IdPath, request: Request, who: Actor = OVERSEER, key: str | None = IDEMPOTENCY_HEADER
) -> Response:
    c = container(request)
    mid = _own(who, merchant_id)
    return idempotent(
        request, who, key, {}, lambda conn: (200, review.submit(c.db, conn, c.deps, mid, who.label))
    )


# --- review (operator) ------------------------------------------------------------------------------


@router.get("/review-queue", summary="Applications waiting for review, oldest first (operator)")
def review_queue(
    request: Request, who: Actor = ADMIN, limit: Annotated[int, Query(ge=1, le=200)] = 50
) -> JSONResponse:
    with container(request).db.read() as conn:
        return ok({"data": review.queue(conn, limit=limit)})


@router.post(
    "/merchants/{merchant_id}/documents/{document_id}/review", summary="Approve or reject a document"
)
def review_document(
    merchant_id: IdPath,
    document_id: IdPath,
    body: DocumentDecision,
    request: Request,
    who: Actor = ADMIN,
    key: str | None = IDEMPOTENCY_HEADER,
) -> Response:
    c = container(request)
    mid, did = normalise_id(merchant_id), normalise_id(document_id)
    return idempotent(
        request,
        who,
        key,
        body.model_dump(),
        lambda conn: (
            200,
            review.review_document(
                conn,
                c.deps,
                mid,
                did,
                approve=body.decision == "approve",
                reason=body.reason,
                actor=who.label,
            ),
        ),
    )


@router.post(
    "/merchants/{merchant_id}/approve", summary="Approve the application: the merchant becomes active"
)
def approve(
    merchant_id: IdPath,
    body: ApproveBody,
    request: Request,
    who: Actor = ADMIN,
    key: str | None = IDEMPOTENCY_HEADER,
) -> Response:
    c = container(request)
    mid = normalise_id(merchant_id)
    return idempotent(
        request,
        who,
        key,
        body.model_dump(),
        lambda conn: (
            200,
            review.approve(
                c.db,
                conn,
                c.deps,
                _cfg(c),
                mid,
                actor=who.label,
                reason=body.reason,
                override_reason=body.override_reason,
            ),
        ),
    )


@router.post(
    "/merchants/{merchant_id}/reject", summary="Reject the application (documents carry the reasons)"
)
def reject(
    merchant_id: IdPath,
    body: ReasonBody,
    request: Request,
    who: Actor = ADMIN,
    key: str | None = IDEMPOTENCY_HEADER,
) -> Response:
    c = container(request)
    mid = normalise_id(merchant_id)
    return idempotent(
        request,
        who,
        key,
        body.model_dump(),
        lambda conn: (
            200,
            review.reject(c.db, conn, c.deps, _cfg(c), mid, actor=who.label, reason=body.reason),
        ),
    )


def _lifecycle_route(action: str, summary: str) -> None:
    move = {"suspend": lifecycle.suspend, "resume": lifecycle.resume, "terminate": lifecycle.terminate}[
        action
    ]

    @router.post(f"/merchants/{{merchant_id}}/{action}", summary=summary, name=f"merchant_{action}")
    def handler(
        merchant_id: IdPath,
        body: ReasonBody,
        request: Request,
        who: Actor = ADMIN,
        key: str | None = IDEMPOTENCY_HEADER,
    ) -> Response:
        c = container(request)
        mid = normalise_id(merchant_id)
        return idempotent(
            request,
            who,
            key,
            body.model_dump(),
            lambda conn: (200, move(c.db, conn, c.deps, mid, who.label, body.reason)),
        )


_lifecycle_route("suspend", "Suspend a merchant: provider payments stop (operator)")
_lifecycle_route("resume", "Lift a suspension (operator)")
_lifecycle_route("terminate", "Terminate a merchant for good (operator)")


@router.post("/merchants/{merchant_id}/rereview", summary="Record a completed periodic re-review (operator)")
def rereview(
    merchant_id: IdPath,
    body: RereviewBody,
    request: Request,
    who: Actor = ADMIN,
    key: str | None = IDEMPOTENCY_HEADER,
) -> Response:
    c = container(request)
    mid = normalise_id(merchant_id)
    return idempotent(
        request,
        who,
        key,
        body.model_dump(),
        lambda conn: (
            200,
            review.complete_rereview(conn, c.deps, _cfg(c), mid, actor=who.label, note=body.note),
        ),
    )


@router.patch("/merchants/{merchant_id}/settings", summary="Time zone and cash-while-suspended (operator)")
def update_settings(
    merchant_id: IdPath, body: SettingsBody, request: Request, who: Actor = ADMIN
) -> JSONResponse:
    c = container(request)
    with c.db.transaction() as conn:
        return ok(
            lifecycle.update_settings(
                conn,
                c.deps,
                normalise_id(merchant_id),
                timezone=body.timezone,
                cash_when_suspended=body.cash_when_suspended,
            )
        )


# --- blacklist (operator) ---------------------------------------------------------------------------


@router.get("/blacklist", summary="Blacklist entries (operator)")
def list_blacklist(
    request: Request,
    who: Actor = ADMIN,
    include_removed: bool = False,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> JSONResponse:
    with container(request).db.read() as conn:
        return ok({"data": blacklist.list_entries(conn, include_removed=include_removed, limit=limit)})


@router.post(
    "/blacklist", status_code=201, summary="Add a blacklist entry; matching active merchants are suspended"
)
def add_blacklist(
    body: BlacklistCreate, request: Request, who: Actor = ADMIN, key: str | None = IDEMPOTENCY_HEADER
) -> Response:
    c = container(request)
    return idempotent(
        request,
        who,
        key,
        _shielded(c, body.model_dump(), "value"),
        lambda conn: (
            201,
            blacklist.add_entry(
                c.db,
                conn,
                c.deps,
                _cfg(c),
                kind=body.kind,
                value=body.value,
                source=body.source,
                reason=body.reason,
                actor=who.label,
            ),
        ),
    )


@router.post("/blacklist/{entry_id}/remove", summary="Remove a blacklist entry (kept for the audit)")
def remove_blacklist(
    entry_id: IdPath, request: Request, who: Actor = ADMIN, key: str | None = IDEMPOTENCY_HEADER
) -> Response:
    c = container(request)
    eid = normalise_id(entry_id)
    return idempotent(
        request, who, key, {}, lambda conn: (200, blacklist.remove_entry(conn, c.deps, eid, who.label))
    )


# --- limits -----------------------------------------------------------------------------------------


@router.get("/limit-tiers", summary="The default limit tiers offered (PBoC barcode-payment levels)")
def limit_tiers(who: Actor = ADMIN) -> JSONResponse:
    return ok({"data": limits.tiers()})


@router.get("/merchants/{merchant_id}/limits", summary="A merchant's limits and today's / this month's usage")
def get_limits(merchant_id: IdPath, request: Request, who: Actor = OVERSEER) -> JSONResponse:
    c = container(request)
    with c.db.read() as conn:
        return ok({"data": limits.list_limits(conn, c.deps, _own(who, merchant_id))})


@router.put("/merchants/{merchant_id}/limits", summary="Set a limit (all amounts null removes it); audited")
def set_limit(
    merchant_id: IdPath,
    body: LimitSet,
    request: Request,
    who: Actor = ADMIN,
    key: str | None = IDEMPOTENCY_HEADER,
) -> Response:
    c = container(request)
    mid = normalise_id(merchant_id)
    scope = body.scope if body.scope == "merchant" else normalise_id(body.scope, "scope")
    return idempotent(
        request,
        who,
        key,
        body.model_dump(),
        lambda conn: (
            200,
            limits.set_limit(
                conn,
                c.deps,
                mid,
                scope=scope,
                method=body.method,
                single_max=body.single_max,
                daily_max=body.daily_max,
                monthly_max=body.monthly_max,
                actor=who.label,
                reason=body.reason,
            ),
        ),
    )


@router.get(
    "/merchants/{merchant_id}/limits/changes", summary="The audit trail of a merchant's limit changes"
)
def limit_history(
    merchant_id: IdPath,
    request: Request,
    who: Actor = OVERSEER,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> JSONResponse:
    with container(request).db.read() as conn:
        return ok({"data": limits.list_changes(conn, _own(who, merchant_id), limit=limit)})


# --- provider onboarding ----------------------------------------------------------------------------


@router.get("/merchants/{merchant_id}/onboarding", summary="The merchant's provider onboarding applications")
def get_onboarding(merchant_id: IdPath, request: Request, who: Actor = OVERSEER) -> JSONResponse:
    with container(request).db.read() as conn:
        return ok({"data": onboarding.list_applications(conn, _own(who, merchant_id))})


@router.post(
    "/merchants/{merchant_id}/onboarding",
    status_code=202,
    summary="Submit an approved merchant to a provider",
)
def submit_onboarding(
    merchant_id: IdPath,
    body: OnboardingCreate,
    request: Request,
    who: Actor = ADMIN,
    key: str | None = IDEMPOTENCY_HEADER,
) -> Response:
    c = container(request)
    mid = normalise_id(merchant_id)
    return idempotent(
        request,
        who,
        key,
        body.model_dump(),
        lambda conn: (202, onboarding.submit(conn, c.deps, _cfg(c), mid, body.provider)),
    )
