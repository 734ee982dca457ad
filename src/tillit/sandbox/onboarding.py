"""Emulated provider onboarding (进件): WeChat ``applyment4sub`` and Alipay 直付通 (ZFT).

Fields and states follow shared/reference/operations.md §5. What is emulated: submission keyed by the
caller's ``business_code`` (WeChat) / ``external_id`` (Alipay), a review that takes ``review_delay_s``
of sandbox time, rejections with per-field reasons (a licence number or name the control API marked,
or a name containing ``REJECT``/``驳回``), the account-verification step (待账户验证, confirmed through
the control API as the merchant's super-admin would via ``sign_url``), signing, and the sub-merchant id
(``sub_mchid`` / ``smid``) only from the states that carry it. A rejected application resubmitted with
the same code starts over. Not emulated: v3 request signing and sensitive-field encryption, image
upload (MediaIDs are taken as given), Alipay's gateway envelope (ZFT has its own JSON paths here).

State is kept per app in memory: a sandbox restart forgets applications.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from tillit.sandbox.runtime import runtime

router = APIRouter()


@dataclass
class Application:
    provider: str
    code: str
    number: int
    name: str
    licence: str
    submitted_at: datetime
    rejected: list[dict[str, str]] = field(default_factory=list)
    verified_at: datetime | None = None
    cancelled: bool = False


@dataclass
class OnboardingState:
    review_delay_s: float = 60.0
    sign_delay_s: float = 30.0
    reject_licences: set[str] = field(default_factory=set)
    apps: dict[tuple[str, str], Application] = field(default_factory=dict)
    counter: int = 2000000


def _state(request: Request) -> OnboardingState:
    st = getattr(request.app.state, "onboarding", None)
    if st is None:
        st = OnboardingState()
        request.app.state.onboarding = st
    return st


def _now(request: Request) -> datetime:
    return runtime(request).engine.now()


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=status)


def _reasons(st: OnboardingState, name: str, licence: str) -> list[dict[str, str]]:
    reasons = []
    if licence in st.reject_licences:
        reasons.append(
            {
                "field": "license_number",
                "field_name": "营业执照注册号",
                "reject_reason": "营业执照信息与登记机关不一致",
            }
        )
    if "REJECT" in name.upper() or "驳回" in name:
        reasons.append(
            {"field": "merchant_name", "field_name": "商户名称", "reject_reason": "商户名称与营业执照不一致"}
        )
    return reasons


def _phase(st: OnboardingState, app: Application, now: datetime) -> str:
    """auditing | rejected | to_be_confirmed | to_be_signed | finished | cancelled (sandbox-internal)."""
    if app.cancelled:
        return "cancelled"
    if now < app.submitted_at + timedelta(seconds=st.review_delay_s):
        return "auditing"
    if app.rejected:
        return "rejected"
    if app.verified_at is None:
        return "to_be_confirmed"
    if now < app.verified_at + timedelta(seconds=st.sign_delay_s):
        return "to_be_signed"
    return "finished"


def _submit(
    request: Request, provider: str, code: str, name: str, licence: str
) -> Application | JSONResponse:
    st = _state(request)
    now = _now(request)
    existing = st.apps.get((provider, code))
    if existing is not None and _phase(st, existing, now) not in ("rejected", "cancelled"):
        return _error(400, "PROCESSING", "an application with this code is in progress: query it")
    st.counter += 1
    app = Application(provider, code, st.counter, name, licence, now, _reasons(st, name, licence))
    st.apps[(provider, code)] = app
    return app


# --- WeChat applyment4sub ------------------------------------------------------------------------------

WECHAT_STATES = {
    "auditing": ("APPLYMENT_STATE_AUDITING", "审核中"),
    "rejected": ("APPLYMENT_STATE_REJECTED", "已驳回"),
    "to_be_confirmed": ("APPLYMENT_STATE_TO_BE_CONFIRMED", "待账户验证"),
    "to_be_signed": ("APPLYMENT_STATE_TO_BE_SIGNED", "待签约"),
    "finished": ("APPLYMENT_STATE_FINISHED", "已完成"),
    "cancelled": ("APPLYMENT_STATE_CANCELED", "已作废"),
}
WECHAT_REQUIRED = (
    "business_code",
    "contact_info",
    "subject_info",
    "business_info",
    "settlement_info",
    "bank_account_info",
)


@router.post("/v3/applyment4sub/applyment/")
async def wechat_submit(request: Request) -> Any:
    body = await request.json()
    if not isinstance(body, dict):
        return _error(400, "PARAM_ERROR", "body must be a JSON object")
    missing = [k for k in WECHAT_REQUIRED if not body.get(k)]
    if missing:
        return _error(400, "PARAM_ERROR", f"missing {', '.join(missing)}")
    code = str(body["business_code"])
    if len(code) > 124 or not code.replace("_", "").isalnum():
        return _error(400, "PARAM_ERROR", "business_code must be 1-124 of [0-9A-Za-z_]")
    licence_info = (body.get("subject_info") or {}).get("business_license_info") or {}
    name = str(
        licence_info.get("merchant_name") or (body.get("business_info") or {}).get("merchant_shortname") or ""
    )
    made = _submit(request, "wechat", code, name, str(licence_info.get("license_number") or ""))
    if isinstance(made, JSONResponse):
        return made
    return {"applyment_id": made.number}


@router.get("/v3/applyment4sub/applyment/business_code/{business_code}")
async def wechat_query(business_code: str, request: Request) -> Any:
    st = _state(request)
    app = st.apps.get(("wechat", business_code))
    if app is None:
        return _error(404, "RESOURCE_NOT_EXISTS", "no application with this business_code")
    phase = _phase(st, app, _now(request))
    state, msg = WECHAT_STATES[phase]
    out: dict[str, Any] = {
        "business_code": app.code,
        "applyment_id": app.number,
        "applyment_state": state,
        "applyment_state_msg": msg,
        "sign_url": f"https://pay.weixin.qq.com/public/apply4ec_sign/s?applymentId={app.number}",
    }
    if phase in ("to_be_signed", "finished"):
        out["sub_mchid"] = f"19{app.number:08d}"
    if phase == "rejected":
        out["audit_detail"] = app.rejected
    return out


# --- Alipay 直付通 ---------------------------------------------------------------------------------------

ALIPAY_STATUS = {
    "auditing": "031",
    "to_be_confirmed": "032",
    "to_be_signed": "032",
    "rejected": "-1",
    "finished": "99",
    "cancelled": "-2",
}


@router.post("/alipay/zft/create")
async def alipay_create(request: Request) -> Any:
    """``ant.merchant.expand.indirect.zft.create``: external_id, name, cert_no, legal_cert_no, mcc, ..."""
    body = await request.json()
    if not isinstance(body, dict):
        return _error(400, "PARAM_ERROR", "body must be a JSON object")
    if "out_biz_no" in body:
        return _error(400, "INVALID_PARAMETER", "out_biz_no is deprecated: use external_id")
    missing = [k for k in ("external_id", "name", "cert_no", "legal_cert_no", "mcc") if not body.get(k)]
    if missing:
        return _error(400, "MISSING_PARAMETER", f"missing {', '.join(missing)}")
    made = _submit(request, "alipay", str(body["external_id"]), str(body["name"]), str(body["cert_no"]))
    if isinstance(made, JSONResponse):
        return made
    return {"order_id": f"2026{made.number:012d}"}


@router.get("/alipay/zft/order")
async def alipay_query(external_id: str, request: Request) -> Any:
    """``ant.merchant.expand.order.query``: status, ip_role_id (smid) once passed, reason when rejected."""
    st = _state(request)
    app = st.apps.get(("alipay", external_id))
    if app is None:
        return _error(404, "ORDER_NOT_EXIST", "no order with this external_id")
    phase = _phase(st, app, _now(request))
    out: dict[str, Any] = {
        "external_id": app.code,
        "order_id": f"2026{app.number:012d}",
        "status": ALIPAY_STATUS[phase],
    }
    if phase == "finished":
        out["ip_role_id"] = f"2088{app.number:012d}"
        out["ext_info"] = {"smid": out["ip_role_id"], "cardAliasNo": f"c{app.number}"}
    if phase == "rejected":
        out["reason"] = "; ".join(r["reject_reason"] for r in app.rejected)
        out["audit_detail"] = app.rejected
    return out


# --- control ------------------------------------------------------------------------------------------


@router.post("/sandbox/onboarding/config")
async def configure(request: Request) -> Any:
    """``review_delay_s``, ``sign_delay_s`` (sandbox seconds) and ``reject_licences`` (list)."""
    body = await request.json()
    st = _state(request)
    if "review_delay_s" in body:
        st.review_delay_s = float(body["review_delay_s"])
    if "sign_delay_s" in body:
        st.sign_delay_s = float(body["sign_delay_s"])
    if "reject_licences" in body:
        st.reject_licences = {str(x) for x in body["reject_licences"]}
    return {
        "review_delay_s": st.review_delay_s,
        "sign_delay_s": st.sign_delay_s,
        "reject_licences": sorted(st.reject_licences),
    }


@router.post("/sandbox/onboarding/{provider}/{code}/verify")
async def verify(provider: str, code: str, request: Request) -> Any:
    """The merchant's super-admin confirms the account (WeChat 账户验证 via sign_url; Alipay card check)."""
    st = _state(request)
    app = st.apps.get((provider, code))
    if app is None:
        return _error(404, "not_found", "no such application")
    if _phase(st, app, _now(request)) != "to_be_confirmed":
        return _error(409, "not_waiting", "the application is not waiting for account verification")
    app.verified_at = _now(request)
    return {"verified_at": app.verified_at.isoformat()}
