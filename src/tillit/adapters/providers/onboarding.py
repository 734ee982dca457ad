"""HTTP clients for the providers' onboarding APIs (进件), as the sandbox emulates them.

WeChat: ``POST /v3/applyment4sub/applyment/`` and ``GET …/business_code/{code}``. Alipay 直付通: the
sandbox's JSON paths for ``zft.create`` / ``order.query`` (sandbox/onboarding.py says what differs from
the live gateway: no v3 signing or field encryption, no Alipay gateway envelope). Errors the provider
states come back as ``OnboardingError`` with its code; transport failures as ``OnboardingError`` with
``code="NETWORK"`` (the poll job retries later).
"""

from __future__ import annotations

from typing import Any

import httpx


class OnboardingError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        raise OnboardingError("BAD_ANSWER", f"HTTP {response.status_code}, not JSON") from None
    if not isinstance(body, dict):
        raise OnboardingError("BAD_ANSWER", "answer is not a JSON object")
    if response.status_code >= 400:
        raise OnboardingError(str(body.get("code") or response.status_code), str(body.get("message") or ""))
    return body


class _Client:
    def __init__(
        self, base_url: str, timeout_s: float = 10.0, transport: httpx.BaseTransport | None = None
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.transport = transport

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            with httpx.Client(
                base_url=self.base_url, timeout=self.timeout_s, transport=self.transport
            ) as http:
                return _json(http.request(method, path, **kwargs))
        except httpx.HTTPError as exc:
            raise OnboardingError("NETWORK", type(exc).__name__) from None


class WeChatOnboarding(_Client):
    def submit(self, business_code: str, application: dict[str, object]) -> str:
        body = _json_ready(application) | {"business_code": business_code}
        return str(self._call("POST", "/v3/applyment4sub/applyment/", json=body)["applyment_id"])

    def query(self, business_code: str) -> dict[str, object]:
        answer = self._call("GET", f"/v3/applyment4sub/applyment/business_code/{business_code}")
        return {
            "state": str(answer.get("applyment_state") or ""),
            "state_msg": str(answer.get("applyment_state_msg") or ""),
            "sub_merchant_id": answer.get("sub_mchid"),
            "sign_url": answer.get("sign_url"),
            "reasons": list(answer.get("audit_detail") or []),
            "provider_ref": str(answer.get("applyment_id") or ""),
        }


class AlipayOnboarding(_Client):
    def submit(self, business_code: str, application: dict[str, object]) -> str:
        body = _json_ready(application) | {"external_id": business_code}
        return str(self._call("POST", "/alipay/zft/create", json=body)["order_id"])

    def query(self, business_code: str) -> dict[str, object]:
        answer = self._call("GET", "/alipay/zft/order", params={"external_id": business_code})
        return {
            "state": str(answer.get("status") or ""),
            "state_msg": str(answer.get("reason") or ""),
            "sub_merchant_id": answer.get("ip_role_id"),
            "sign_url": None,
            "reasons": list(answer.get("audit_detail") or []),
            "provider_ref": str(answer.get("order_id") or ""),
        }


def _json_ready(application: dict[str, object]) -> dict[str, Any]:
    return dict(application)
