"""Emulated provider onboarding (进件): WeChat ``applyment4sub`` and Alipay 直付通 (ZFT).

Fields and states follow shared/reference/operations.md §5. What is emulated: submission keyed by the
caller's ``business_code`` (WeChat) / ``external_id`` (Alipay), a review that takes ``review_delay_s``
of sandbox time, rejections with per-field reasons (a licence number or name the control API marked,
or a name containing ``REJECT``/``驳回``), the account-verification step (待账户验证, confirmed through
the control API as the merchant's super-admin would via ``sign_url``), signing, and the sub-merchant id
(``sub_mchid`` / ``smid``) only from the states that carry it. A rejected application resubmitted with
the same code starts over. Not emulated: v3 request signing and sensitive-field encryption, image
upload (MediaIDs are taken as given), Alipay's gateway envelope (ZFT has its own JSON paths here).

Applications and the control knobs are kept in the sandbox's state file (``sandbox.sqlite``, meta key
``onboarding``), written after every change: a restarted sandbox still knows every application, its
clock-relative phase and the sub-merchants it issued (docs/sandbox.md).

Payments name a sub-merchant (WeChat ``sub_mch_id``, Alipay ``sub_merchant.merchant_id``): the gateway
asks :func:`sub_merchant_status` whether it exists and is active (finished, not frozen) and refuses it
otherwise with the provider's own code (wechat.py, alipay.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from tillit.sandbox.runtime import runtime
from tillit.sandbox.store import Store, set_meta

#: The state file's meta key holding the onboarding state (applications and knobs) across restarts.
ONBOARDING_META = "onboarding"

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
    frozen: bool = False  # the provider froze the sub-merchant (control API): payments are refused

    def to_json(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "code": self.code,
            "number": self.number,
            "name": self.name,
            "licence": self.licence,
            "submitted_at": self.submitted_at.isoformat(),
            "rejected": self.rejected,
            "verified_at": self.verified_at.isoformat() if self.verified_at else None,
            "cancelled": self.cancelled,
            "frozen": self.frozen,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Application:
        return cls(
            provider=str(d["provider"]),
            code=str(d["code"]),
            number=int(d["number"]),
            name=str(d["name"]),
            licence=str(d["licence"]),
            submitted_at=datetime.fromisoformat(d["submitted_at"]),
            rejected=[dict(r) for r in d.get("rejected") or []],
            verified_at=datetime.fromisoformat(d["verified_at"]) if d.get("verified_at") else None,
            cancelled=bool(d.get("cancelled")),
            frozen=bool(d.get("frozen")),
        )

    def sub_merchant_id(self) -> str:
        """The id this application's sub-merchant gets (WeChat ``sub_mchid``, Alipay ``smid``)."""
        return f"19{self.number:08d}" if self.provider == "wechat" else f"2088{self.number:012d}"


@dataclass
class OnboardingState:
    review_delay_s: float = 60.0
    sign_delay_s: float = 30.0
    reject_licences: set[str] = field(default_factory=set)
    apps: dict[tuple[str, str], Application] = field(default_factory=dict)
    counter: int = 2000000

    def to_json(self) -> str:
        return json.dumps(
            {
                "review_delay_s": self.review_delay_s,
                "sign_delay_s": self.sign_delay_s,
                "reject_licences": sorted(self.reject_licences),
                "counter": self.counter,
                "apps": [a.to_json() for a in self.apps.values()],
            },
            ensure_ascii=False,
        )


def restored(saved: str | None) -> OnboardingState:
    """The onboarding state kept in the state file (a fresh one when there is none)."""
    if not saved:
        return OnboardingState()
    data = json.loads(saved)
    apps = [Application.from_json(a) for a in data.get("apps") or []]
    return OnboardingState(
        review_delay_s=float(data.get("review_delay_s", 60.0)),
        sign_delay_s=float(data.get("sign_delay_s", 30.0)),
        reject_licences={str(x) for x in data.get("reject_licences") or []},
        apps={(a.provider, a.code): a for a in apps},
        counter=int(data.get("counter", 2000000)),
    )


def _state(request: Request) -> OnboardingState:
    st = getattr(request.app.state, "onboarding", None)
    if st is None:
        st = OnboardingState()
        request.app.state.onboarding = st
    return st


def _save(request: Request) -> None:
    """Write the onboarding state to the state file (after every change)."""
    store: Store = request.app.state.store
    with store.tx() as conn:
        set_meta(conn, ONBOARDING_META, _state(request).to_json())


SubMerchantStatus = Literal["active", "inactive", "unknown"]


def sub_merchant_status(request: Request, provider: str, sub_merchant_id: str) -> SubMerchantStatus:
    """Whether ``sub_merchant_id`` was issued by this sandbox's 进件 and may take payments now: active
    once the application is finished and not frozen; inactive while it is still being signed, or when
    frozen or cancelled; unknown when no application issued it."""
    st = _state(request)
    now = _now(request)
    for app in st.apps.values():
        if app.provider == provider and app.sub_merchant_id() == sub_merchant_id:
            phase = _phase(st, app, now)
            return "active" if phase == "finished" and not app.frozen else "inactive"
    return "unknown"


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
    _save(request)
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
        out["sub_mchid"] = app.sub_merchant_id()
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
        out["ip_role_id"] = app.sub_merchant_id()
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
    _save(request)
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
    _save(request)
    return {"verified_at": app.verified_at.isoformat()}


@router.post("/sandbox/onboarding/{provider}/{code}/freeze")
async def freeze(provider: str, code: str, request: Request) -> Any:
    """The provider freezes (``{"frozen": true}``) or releases a sub-merchant: a frozen one's payments
    are refused (WeChat ``NOAUTH``, Alipay ``ACQ.SECONDARY_MERCHANT_STATUS_ERROR``)."""
    body = await request.json()
    st = _state(request)
    app = st.apps.get((provider, code))
    if app is None:
        return _error(404, "not_found", "no such application")
    app.frozen = bool(body.get("frozen", True)) if isinstance(body, dict) else True
    _save(request)
    return {"sub_merchant_id": app.sub_merchant_id(), "frozen": app.frozen}


@router.get("/sandbox/onboarding")
async def applications(request: Request) -> Any:
    """Every application the sandbox holds, with its phase now and its sub-merchant id once issued."""
    st = _state(request)
    now = _now(request)
    out = []
    for app in st.apps.values():
        phase = _phase(st, app, now)
        item = {**app.to_json(), "phase": phase}
        if phase in ("to_be_signed", "finished"):
            item["sub_merchant_id"] = app.sub_merchant_id()
        out.append(item)
    return {"applications": out}
