"""Provider onboarding (进件): an approved merchant is submitted to WeChat ``applyment4sub`` / Alipay 直付通,
keyed by our own business code, and polled to completion by the resolver (job ``onboarding_poll``).

The request only writes the application row and schedules the poll: every provider call happens in the
job, outside any transaction, and is safe to repeat (the query is by business code; a submit the
provider already has answers PROCESSING, which is read as "submitted"). The raw provider state string
is kept verbatim; completion is never inferred without the sub-merchant id (operations.md §0 rule 7).
When it arrives, the hook registered by payments (``on_sub_merchant``) configures the merchant's
provider account.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, insert, select, update

from tillit.adapters.db.engine import Database
from tillit.adapters.db.schema import onboarding_applications
from tillit.adapters.providers.onboarding import OnboardingError
from tillit.domain.errors import conflict, invalid, not_found
from tillit.domain.merchants import is_individual_business
from tillit.exceptions import cases
from tillit.kernel import jobs
from tillit.kernel.context import Deps, iso
from tillit.merchants import documents, lifecycle
from tillit.merchants.ports import MerchantsConfig
from tillit.merchants.views import OnboardingView

JOB_KIND = "onboarding_poll"
FINAL = frozenset({"finished", "cancelled", "rejected"})
PROVIDERS = ("wechat", "alipay")

# raw provider state -> our status (operations.md §5.1 table; Alipay ZFT values as the sandbox emulates
# them: the live list is unconfirmed, §5.2)
WECHAT_STATUS = {
    "APPLYMENT_STATE_EDITTING": "submitted",
    "APPLYMENT_STATE_AUDITING": "auditing",
    "APPLYMENT_STATE_REJECTED": "rejected",
    "APPLYMENT_STATE_TO_BE_CONFIRMED": "to_be_confirmed",
    "APPLYMENT_STATE_TO_BE_SIGNED": "to_be_signed",
    "APPLYMENT_STATE_SIGNING": "to_be_signed",
    "APPLYMENT_STATE_FINISHED": "finished",
    "APPLYMENT_STATE_CANCELED": "cancelled",
}
ALIPAY_STATUS = {
    "031": "auditing",
    "032": "to_be_confirmed",
    "-1": "rejected",
    "99": "finished",
    "-2": "cancelled",
}

SubMerchantHandler = Callable[[Connection, Deps, str, str, str], None]
"""Told in the poll's transaction that a provider issued a sub-merchant id: (conn, deps, merchant id,
provider, sub-merchant id). payments/accounts.py registers it at the composition root."""

_SUB_MERCHANT_HANDLERS: list[SubMerchantHandler] = []
_CONFIG: list[MerchantsConfig] = []


def on_sub_merchant(handler: SubMerchantHandler) -> None:
    if handler not in _SUB_MERCHANT_HANDLERS:
        _SUB_MERCHANT_HANDLERS.append(handler)


def configure(cfg: MerchantsConfig) -> None:
    """The config the resolver's poll job uses (set by bootstrap.build; the last build wins)."""
    _CONFIG[:] = [cfg]


def _view(row: Any) -> OnboardingView:
    detail = json.loads(row.detail) if row.detail else {}
    return {
        "id": row.id,
        "merchant_id": row.merchant_id,
        "provider": row.provider,
        "business_code": row.business_code,
        "status": row.status,
        "raw_state": row.raw_state,
        "provider_ref": row.provider_ref,
        "sub_merchant_id": row.sub_merchant_id,
        "sign_url": row.sign_url,
        "reasons": list(detail.get("reasons") or []),
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
    }


def finished_sub_merchant(conn: Connection, merchant_id: str, provider: str) -> str | None:
    """The sub-merchant id of this merchant's finished 进件 at ``provider``, if any: an account
    connected after onboarding finished gets it too (payments/accounts.py ``set_account``)."""
    row = conn.execute(
        select(onboarding_applications.c.sub_merchant_id)
        .where(
            onboarding_applications.c.merchant_id == merchant_id,
            onboarding_applications.c.provider == provider,
            onboarding_applications.c.status == "finished",
        )
        .order_by(onboarding_applications.c.updated_at.desc())
        .limit(1)
    ).first()
    return str(row.sub_merchant_id) if row is not None and row.sub_merchant_id else None


def list_applications(conn: Connection, merchant_id: str) -> list[OnboardingView]:
    lifecycle.load(conn, merchant_id)
    rows = conn.execute(
        select(onboarding_applications)
        .where(onboarding_applications.c.merchant_id == merchant_id)
        .order_by(onboarding_applications.c.created_at)
    )
    return [_view(r) for r in rows]


def submit(
    conn: Connection, deps: Deps, cfg: MerchantsConfig, merchant_id: str, provider: str
) -> OnboardingView:
    """Queue the merchant's onboarding at ``provider`` (again, after a rejection: same business code)."""
    if provider not in PROVIDERS:
        raise invalid("invalid_provider", "provider must be wechat or alipay.", {"provider": provider})
    if provider not in cfg.onboarding:
        raise conflict("onboarding_not_configured", f"No {provider} onboarding endpoint is configured.")
    row = lifecycle.load(conn, merchant_id)
    if row.status != "active":
        raise conflict(
            "merchant_not_active", "Only an approved (active) merchant is onboarded.", {"status": row.status}
        )
    now = deps.clock.now()
    existing = conn.execute(
        select(onboarding_applications).where(
            onboarding_applications.c.merchant_id == merchant_id,
            onboarding_applications.c.provider == provider,
        )
    ).first()
    if existing is not None:
        if existing.status not in ("rejected", "cancelled"):
            raise conflict(
                "onboarding_in_progress", "An onboarding application is open.", {"id": existing.id}
            )
        conn.execute(
            update(onboarding_applications)
            .where(onboarding_applications.c.id == existing.id)
            .values(status="submitted", provider_ref=None, raw_state=None, detail=None, updated_at=now)
        )
        app_id = existing.id
    else:
        app_id = deps.ids.new()
        conn.execute(
            insert(onboarding_applications).values(
                id=app_id,
                merchant_id=merchant_id,
                provider=provider,
                business_code=f"TL{merchant_id}{provider[:2].upper()}",
                status="submitted",
                created_at=now,
                updated_at=now,
            )
        )
    jobs.schedule(conn, deps, kind=JOB_KIND, merchant_id=merchant_id, due_at=now)
    return _view(
        conn.execute(select(onboarding_applications).where(onboarding_applications.c.id == app_id)).one()
    )


def build_application(conn: Connection, deps: Deps, merchant_id: str, provider: str) -> dict[str, object]:
    """The provider's request body from the approved documents (clear numbers opened only here)."""
    profile = lifecycle.load(conn, merchant_id)
    current = {k: rows[-1] for k, rows in documents.current_documents(conn, merchant_id).items()}
    licence, person, account, category = (current.get(k) for k in documents.REQUIRED_FOR_REVIEW)
    if licence is None or person is None or account is None or category is None:
        raise conflict("documents_missing", "The merchant lacks a required document.")
    id_number = documents.open_number(deps, person) or ""
    account_number = documents.open_number(deps, account) or ""
    individual = is_individual_business(str(licence.public_value))
    if provider == "wechat":
        return {
            "contact_info": {
                "contact_type": "LEGAL",
                "contact_name": person.holder_name,
                "contact_id_number": id_number,
            },
            "subject_info": {
                "subject_type": "SUBJECT_TYPE_INDIVIDUAL" if individual else "SUBJECT_TYPE_ENTERPRISE",
                "business_license_info": {
                    "license_number": licence.public_value,
                    "merchant_name": licence.holder_name or profile.name,
                    "legal_person": person.holder_name,
                    "period_end": licence.expires_on.isoformat() if licence.expires_on else "长期",
                },
                "identity_info": {
                    "id_doc_type": "IDENTIFICATION_TYPE_MAINLAND_IDCARD",
                    "id_card_info": {
                        "id_card_name": person.holder_name,
                        "id_card_number": id_number,
                        "card_period_end": person.expires_on.isoformat() if person.expires_on else "长期",
                    },
                },
            },
            "business_info": {"merchant_shortname": profile.name},
            "settlement_info": {"qualification_type": category.public_value},
            "bank_account_info": {
                "bank_account_type": "ACCOUNT_TYPE_PRIVATE" if individual else "ACCOUNT_TYPE_BUSINESS",
                "account_name": account.holder_name,
                "account_bank": account.public_value,
                "account_number": account_number,
            },
        }
    return {
        "merchant_type": "07" if individual else "01",
        "cert_type": "201",
        "cert_no": licence.public_value,
        "name": licence.holder_name or profile.name,
        "alias_name": profile.name,
        "mcc": category.public_value,
        "legal_name": person.holder_name,
        "legal_cert_type": "100",
        "legal_cert_no": id_number,
        "biz_cards": [
            {
                "account_no": account_number,
                "account_holder_name": account.holder_name,
                "account_type": "DC",
                "usage_type": "02" if individual else "01",
                "bank_name": account.public_value,
            }
        ],
        "default_settle_rule": {"default_settle_type": "bankCard"},
    }


def _apply_answer(conn: Connection, deps: Deps, row: Any, answer: dict[str, object]) -> str:
    raw = str(answer.get("state") or "")
    table = WECHAT_STATUS if row.provider == "wechat" else ALIPAY_STATUS
    status = str(table.get(raw, row.status))
    sub_id = answer.get("sub_merchant_id")
    if status == "finished" and not sub_id:
        status = row.status  # never complete without the sub-merchant id
    reasons = answer.get("reasons") or []
    values: dict[str, Any] = {
        "status": status,
        "raw_state": raw[:64] or None,
        "provider_ref": str(answer.get("provider_ref") or row.provider_ref or "")[:64] or None,
        "sign_url": (str(answer["sign_url"])[:500] if answer.get("sign_url") else None),
        "detail": json.dumps({"reasons": reasons, "state_msg": answer.get("state_msg")}, ensure_ascii=False),
        "updated_at": deps.clock.now(),
    }
    if sub_id:
        values["sub_merchant_id"] = str(sub_id)[:64]
    conn.execute(
        update(onboarding_applications).where(onboarding_applications.c.id == row.id).values(**values)
    )
    # The id configures the merchant's provider account once the sub-merchant can take payments
    # (finished): a 待签约 sub-merchant id sent with a payment is refused by the provider.
    if (
        status == "finished"
        and sub_id
        and (row.status != "finished" or row.sub_merchant_id != str(sub_id)[:64])
    ):
        for handler in _SUB_MERCHANT_HANDLERS:
            handler(conn, deps, row.merchant_id, row.provider, str(sub_id)[:64])
    if status == "rejected" and row.status != "rejected":
        cases.open_exception(
            conn,
            deps,
            kind="onboarding_rejected",
            merchant_id=row.merchant_id,
            provider=row.provider,
            provider_ref=row.business_code,
            details={"business_code": row.business_code, "raw_state": raw, "reasons": reasons},
        )
    return status


def run_poll(db: Database, deps: Deps, _engine_cfg: object, job: jobs.Job) -> None:
    """The resolver's ``onboarding_poll``: submit what the provider has not got yet, query the rest."""
    cfg = _CONFIG[0] if _CONFIG else None
    with db.read() as conn:
        rows = list(
            conn.execute(
                select(onboarding_applications).where(
                    onboarding_applications.c.merchant_id == job.merchant_id,
                    onboarding_applications.c.status.not_in(FINAL),
                )
            )
        )
        bodies = {
            r.id: build_application(conn, deps, r.merchant_id, r.provider)
            for r in rows
            if r.provider_ref is None
        }
    open_left = False
    for row in rows:
        client = cfg.onboarding.get(row.provider) if cfg else None
        if client is None:
            open_left = True
            continue
        try:
            if row.provider_ref is None:
                try:
                    client.submit(row.business_code, bodies[row.id])
                except OnboardingError as exc:
                    if exc.code != "PROCESSING":  # PROCESSING: the provider has it already
                        raise
            answer = client.query(row.business_code)
        except OnboardingError as exc:
            with db.transaction() as conn:
                definite = exc.code not in ("NETWORK", "SYSTEM_ERROR", "RATE_LIMITED", "BAD_ANSWER")
                status = "rejected" if definite else row.status
                conn.execute(
                    update(onboarding_applications)
                    .where(onboarding_applications.c.id == row.id)
                    .values(
                        status=status,
                        raw_state=exc.code[:64],
                        detail=json.dumps({"reasons": [{"field": "", "reject_reason": exc.message[:300]}]}),
                        updated_at=deps.clock.now(),
                    )
                )
            open_left = open_left or not definite
            continue
        with db.transaction() as conn:
            current = conn.execute(
                select(onboarding_applications).where(onboarding_applications.c.id == row.id)
            ).one()
            status = _apply_answer(conn, deps, current, answer)
        open_left = open_left or status not in FINAL
    with db.transaction() as conn:
        if open_left:
            poll = timedelta(seconds=cfg.onboarding_poll_s if cfg else 60.0)
            jobs.retry_later(conn, deps, job.id, deps.clock.now() + poll)
        else:
            jobs.finish(conn, deps, job.id)


def get_application(conn: Connection, merchant_id: str, application_id: str) -> OnboardingView:
    row = conn.execute(
        select(onboarding_applications).where(
            onboarding_applications.c.merchant_id == merchant_id,
            onboarding_applications.c.id == application_id,
        )
    ).first()
    if row is None:
        raise not_found("onboarding_application", application_id)
    return _view(row)
