"""Shapes the merchants area hands the entry points (TypedDicts: plain dicts at run time)."""

from __future__ import annotations

from typing import TypedDict


class ProfileView(TypedDict):
    merchant_id: str
    name: str
    status: str
    timezone: str
    cash_when_suspended: bool
    status_reason: str | None
    submitted_by: str | None
    submitted_at: str | None
    reviewed_at: str | None
    next_review_on: str | None
    blacklist_hits: list[BlacklistHit]


class MerchantEventView(TypedDict):
    from_status: str | None
    to_status: str
    actor: str
    reason: str | None
    at: str


class DocumentView(TypedDict):
    id: str
    merchant_id: str
    kind: str
    status: str
    public_value: str | None
    holder_name: str | None
    number_masked: str | None
    file_sha256: str | None
    file_type: str | None
    file_size: int | None
    expires_on: str | None
    reject_reason: str | None
    reviewed_by: str | None
    reviewed_at: str | None
    created_at: str


class BlacklistHit(TypedDict):
    entry_id: str
    kind: str
    shown: str
    source: str
    reason: str


class BlacklistEntryView(TypedDict):
    id: str
    kind: str
    shown: str
    source: str
    reason: str
    created_by: str
    created_at: str
    removed_at: str | None
    suspended_merchants: list[str]


class LimitView(TypedDict):
    merchant_id: str
    scope: str
    method: str
    single_max: int | None
    daily_max: int | None
    monthly_max: int | None
    daily_used: int
    monthly_used: int
    updated_by: str
    updated_at: str


class LimitChangeView(TypedDict):
    scope: str
    method: str
    before: dict[str, int | None] | None
    after: dict[str, int | None] | None
    actor: str
    reason: str
    at: str


class OnboardingView(TypedDict):
    id: str
    merchant_id: str
    provider: str
    business_code: str
    status: str
    raw_state: str | None
    provider_ref: str | None
    sub_merchant_id: str | None
    sign_url: str | None
    reasons: list[dict[str, str]]
    created_at: str
    updated_at: str
