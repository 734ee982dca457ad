"""Provider onboarding (进件) end to end against the sandbox's emulation of WeChat ``applyment4sub`` and
Alipay 直付通: review delay, rejection with reasons and resubmission under the same business code, the
account-verification step, the sub-merchant id configuring the merchant's provider account."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tests.integration.test_merchants import _admin, apply_with_documents, approve_all_documents, call
from tests.support.sandbox import Accounts, SandboxControl, running_sandbox
from tillit.adapters.db.schema import exceptions, jobs, provider_accounts
from tillit.adapters.providers.onboarding import AlipayOnboarding, WeChatOnboarding
from tillit.bootstrap import Container
from tillit.kernel import jobs as job_queue
from tillit.merchants import onboarding
from tillit.payments import accounts


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxControl]:
    with running_sandbox(tmp_path_factory.mktemp("onboarding-sandbox"), Accounts.fresh()) as sbx:
        yield sbx


def poll(c: Container, merchant_id: str) -> None:
    """Run this merchant's pending onboarding_poll job once, as the resolver would."""
    with c.db.read() as conn:
        row = conn.execute(
            select(jobs).where(
                jobs.c.merchant_id == merchant_id, jobs.c.kind == "onboarding_poll", jobs.c.state == "pending"
            )
        ).one()
    onboarding.run_poll(
        c.db,
        c.deps,
        None,
        job_queue.Job(row.id, row.kind, row.merchant_id, None, None, None, 1, row.created_at),
    )


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)  # does not depend on the database
def test_onboarding_to_sub_merchant_with_rejection_and_verification(
    backend: str, client: TestClient, container: Container, admin_key: str, sandbox: SandboxControl
) -> None:
    assert container.merchants is not None
    container.merchants.onboarding = {
        "wechat": WeChatOnboarding(sandbox.url),
        "alipay": AlipayOnboarding(sandbox.url),
    }
    onboarding.configure(container.merchants)
    admin = _admin(admin_key)
    mid, owner = apply_with_documents(client, container, admin, name="Tea House")
    r = call(client, "POST", f"/v1/merchants/{mid}/onboarding", admin, {"provider": "wechat"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "merchant_not_active"  # not approved yet
    call(client, "POST", f"/v1/merchants/{mid}/submit", owner)
    approve_all_documents(client, admin, mid)
    assert call(client, "POST", f"/v1/merchants/{mid}/approve", admin, {}).json()["status"] == "active"
    with container.db.transaction() as conn:
        accounts.set_account(
            conn,
            container.deps,
            mid,
            "wechat",
            {
                "appid": "wx1",
                "mch_id": f"m{uuid.uuid4().hex[:10]}",
                "api_key": "k" * 32,
                "base_url": sandbox.url,
            },
        )
    licence = next(
        d
        for d in call(client, "GET", f"/v1/merchants/{mid}/documents", admin).json()["data"]
        if d["kind"] == "business_licence"
    )["public_value"]
    r = sandbox.http.post(
        "/sandbox/onboarding/config",
        json={"review_delay_s": 60, "sign_delay_s": 30, "reject_licences": [licence]},
    )
    assert r.status_code == 200

    for provider in ("wechat", "alipay"):
        r = call(client, "POST", f"/v1/merchants/{mid}/onboarding", admin, {"provider": provider})
        assert r.status_code == 202 and r.json()["status"] == "submitted", r.text
    poll(container, mid)  # submits both, then reads the state
    apps = {
        a["provider"]: a for a in call(client, "GET", f"/v1/merchants/{mid}/onboarding", owner).json()["data"]
    }
    assert (
        apps["wechat"]["raw_state"] == "APPLYMENT_STATE_AUDITING" and apps["wechat"]["status"] == "auditing"
    )
    assert apps["alipay"]["raw_state"] == "031" and apps["wechat"]["business_code"].startswith("TL")

    sandbox.advance(61)
    poll(container, mid)
    apps = {
        a["provider"]: a for a in call(client, "GET", f"/v1/merchants/{mid}/onboarding", owner).json()["data"]
    }
    # the licence was marked for rejection: both reject it, with the field and the reason
    assert (
        apps["wechat"]["status"] == "rejected" and apps["wechat"]["raw_state"] == "APPLYMENT_STATE_REJECTED"
    )
    assert apps["wechat"]["reasons"][0]["field"] == "license_number"
    assert apps["alipay"]["status"] == "rejected" and apps["alipay"]["raw_state"] == "-1"
    with container.db.read() as conn:
        kinds = [e.kind for e in conn.execute(select(exceptions).where(exceptions.c.merchant_id == mid))]
    assert kinds.count("onboarding_rejected") == 2

    # corrected at the provider's registry: resubmitted under the same business codes
    sandbox.http.post("/sandbox/onboarding/config", json={"reject_licences": []})
    codes = {p: a["business_code"] for p, a in apps.items()}
    for provider in ("wechat", "alipay"):
        r = call(client, "POST", f"/v1/merchants/{mid}/onboarding", admin, {"provider": provider})
        assert r.status_code == 202 and r.json()["business_code"] == codes[provider]
    poll(container, mid)
    sandbox.advance(61)
    poll(container, mid)
    apps = {
        a["provider"]: a for a in call(client, "GET", f"/v1/merchants/{mid}/onboarding", owner).json()["data"]
    }
    assert apps["wechat"]["status"] == "to_be_confirmed" and apps["wechat"]["sign_url"]
    assert apps["wechat"]["sub_merchant_id"] is None  # never complete without the id
    # the super-admin verifies the account (as via sign_url); then signing, then finished
    for provider in ("wechat", "alipay"):
        assert (
            sandbox.http.post(f"/sandbox/onboarding/{provider}/{codes[provider]}/verify").status_code == 200
        )
    poll(container, mid)
    apps = {
        a["provider"]: a for a in call(client, "GET", f"/v1/merchants/{mid}/onboarding", owner).json()["data"]
    }
    assert apps["wechat"]["status"] == "to_be_signed" and apps["wechat"]["sub_merchant_id"]
    sandbox.advance(31)
    poll(container, mid)
    apps = {
        a["provider"]: a for a in call(client, "GET", f"/v1/merchants/{mid}/onboarding", owner).json()["data"]
    }
    assert {a["status"] for a in apps.values()} == {"finished"}
    assert apps["alipay"]["sub_merchant_id"].startswith("2088")
    with container.db.read() as conn:
        config = json.loads(
            conn.execute(
                select(provider_accounts.c.config).where(
                    provider_accounts.c.merchant_id == mid, provider_accounts.c.provider == "wechat"
                )
            ).scalar_one()
        )
        pending = conn.execute(
            select(jobs).where(
                jobs.c.merchant_id == mid, jobs.c.kind == "onboarding_poll", jobs.c.state == "pending"
            )
        ).first()
    assert config["sub_mch_id"] == apps["wechat"]["sub_merchant_id"]
    assert pending is None  # polled to completion


def test_sandbox_refuses_a_second_open_application_and_bad_fields(sandbox: SandboxControl) -> None:
    code = f"T{uuid.uuid4().hex}"
    body = {
        "business_code": code,
        "contact_info": {"a": 1},
        "subject_info": {"business_license_info": {"license_number": "x", "merchant_name": "y"}},
        "business_info": {"merchant_shortname": "y"},
        "settlement_info": {"qualification_type": "5814"},
        "bank_account_info": {"account_number": "1"},
    }
    assert sandbox.http.post("/v3/applyment4sub/applyment/", json=body).status_code == 200
    r = sandbox.http.post("/v3/applyment4sub/applyment/", json=body)
    assert r.status_code == 400 and r.json()["code"] == "PROCESSING"
    r = sandbox.http.post("/v3/applyment4sub/applyment/", json={"business_code": "bad-code!"})
    assert r.status_code == 400 and r.json()["code"] == "PARAM_ERROR"
    r = sandbox.http.post("/alipay/zft/create", json={"external_id": "x", "out_biz_no": "x"})
    assert r.status_code == 400 and r.json()["code"] == "INVALID_PARAMETER"
    assert isinstance(
        httpx.get(f"{sandbox.url}/alipay/zft/order", params={"external_id": "nope"}).json(), dict
    )
