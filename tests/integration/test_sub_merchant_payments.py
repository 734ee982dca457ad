"""Payments name the sub-merchant that 进件 issued (WeChat service-provider ``sub_mch_id``, Alipay 直付通
``sub_merchant.merchant_id``), end to end: Tillit's API -> payment engine -> production adapters -> the
sandbox over real HTTP, on both databases. The sandbox refuses an unknown or non-active sub-merchant with
the provider's own code (a definite failure: nothing is debited, nothing left to recover), records which
sub-merchant each trade belongs to, and prints it in the WeChat trade bill's 特约商户号 column.

The sub-merchants are issued by the sandbox's own 进件 emulation (submitted here over HTTP, as the
onboarding adapters do in test_merchant_onboarding.py) and put into the account by the same hook the
onboarding poll calls (``payments.accounts.record_sub_merchant``)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tests.support.sandbox import Accounts, SandboxControl, running_sandbox
from tests.support.sandbox import provider_accounts as account_settings
from tests.support.world import Tenant, make_tenant
from tillit.adapters.db.schema import jobs
from tillit.adapters.providers.wechat import WeChatAccount, WeChatPayProvider
from tillit.bootstrap import Container
from tillit.domain.provider import RefundState
from tillit.payments import accounts


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Accounts, SandboxControl]]:
    """A sandbox of its own per test: its service-provider account belongs to one tenant."""
    accounts_ = Accounts.fresh()
    with running_sandbox(tmp_path / "sandbox", accounts_) as sbx:
        yield accounts_, sbx


def issue_sub_merchants(sbx: SandboxControl, name: str) -> dict[str, tuple[str, str]]:
    """Take one WeChat and one Alipay application through the sandbox's review, account verification
    and signing; returns {provider: (business code, sub-merchant id)}."""
    code = f"T{uuid.uuid4().hex[:20]}"
    wechat = {
        "business_code": code,
        "contact_info": {"contact_name": "张三"},
        "subject_info": {
            "business_license_info": {"license_number": "91440300708461136T", "merchant_name": name}
        },
        "business_info": {"merchant_shortname": name},
        "settlement_info": {"qualification_type": "5814"},
        "bank_account_info": {"account_number": "6222020000000000"},
    }
    assert sbx.http.post("/v3/applyment4sub/applyment/", json=wechat).status_code == 200
    alipay = {
        "external_id": code,
        "name": name,
        "cert_no": "91440300708461136T",
        "legal_cert_no": "x",
        "mcc": "5814",
    }
    assert sbx.http.post("/alipay/zft/create", json=alipay).status_code == 200
    sbx.http.post(
        "/sandbox/onboarding/config", json={"review_delay_s": 60, "sign_delay_s": 30, "reject_licences": []}
    )
    sbx.advance(61)
    for provider in ("wechat", "alipay"):
        assert sbx.http.post(f"/sandbox/onboarding/{provider}/{code}/verify").status_code == 200
    sbx.advance(31)
    apps = [a for a in sbx.http.get("/sandbox/onboarding").json()["applications"] if a["code"] == code]
    assert {a["phase"] for a in apps} == {"finished"}
    return {a["provider"]: (code, a["sub_merchant_id"]) for a in apps}


def connect(c: Container, tenant: Tenant, ids: Accounts, sbx: SandboxControl, subs: dict[str, str]) -> None:
    with c.db.transaction() as conn:
        for provider, settings in account_settings(ids, sbx.url).items():
            accounts.set_account(conn, c.deps, tenant.merchant_id, provider, settings)
            if provider in subs:
                accounts.record_sub_merchant(conn, c.deps, tenant.merchant_id, provider, subs[provider])


def pay(client: TestClient, tenant: Tenant, code: str, sku: str = "LATTE") -> dict[str, Any]:
    def post(path: str, body: object) -> Any:
        return client.post(path, json=body, headers={**tenant.auth(), "Idempotency-Key": uuid.uuid4().hex})

    order = post("/v1/orders", {"lines": [{"sku": sku, "quantity": 1}]}).json()
    r = post("/v1/payments", {"order_id": order["id"], "payment_code": code})
    assert r.status_code in (201, 402, 409, 422), r.text
    return dict(r.json())


def sandbox_trade(sbx: SandboxControl, provider: str, out_trade_no_hint: str) -> dict[str, Any]:
    trades = sbx.http.get("/sandbox/trades", params={"provider": provider}).json()["trades"]
    return next(t for t in trades if t["trade_no"] == out_trade_no_hint)


def test_payments_refunds_and_bills_name_the_active_sub_merchant(
    container: Container, client: TestClient, world: tuple[Accounts, SandboxControl]
) -> None:
    ids, sandbox = world
    subs = issue_sub_merchants(sandbox, "茶馆一号")
    tenant = make_tenant(container, f"Sub {uuid.uuid4().hex[:8]}")
    connect(container, tenant, ids, sandbox, {p: s for p, (_, s) in subs.items()})
    for provider in ("wechat", "alipay"):
        wallet = sandbox.wallet(provider)
        paid = pay(client, tenant, sandbox.code(wallet))
        assert paid["status"] == "captured", paid
        trade = sandbox_trade(sandbox, provider, paid["provider_ref"])
        assert trade["sub_merchant_id"] == subs[provider][1]  # the sandbox booked it to the sub-merchant
        r = client.post(
            "/v1/refunds",
            json={"payment_id": paid["id"], "amount": 800, "reason": "sub-merchant refund"},
            headers={**tenant.auth("merchant"), "Idempotency-Key": uuid.uuid4().hex},
        )
        assert r.status_code in (201, 202), r.text
        assert sandbox.net_debited(wallet) == 2800 - 800  # the refund found the sub-merchant's trade
    # The WeChat trade bill (fetched by the production adapter with the sub_mch_id) carries it per row.
    sandbox.advance(86_400 + 2 * 3600)
    account = WeChatAccount(
        appid=ids.appid,
        mch_id=ids.mch_id,
        api_key=account_settings(ids, sandbox.url)["wechat"]["api_key"],
        base_url=sandbox.url,
        sub_mch_id=subs["wechat"][1],
    )
    clock_day = date.fromisoformat(sandbox.http.get("/sandbox/clock").json()["now"][:10])
    with WeChatPayProvider(account) as provider:
        bill = provider.download_bill(date.fromordinal(clock_day.toordinal() - 1))
    assert bill is not None
    lines = bill.decode("utf-8").splitlines()
    column = lines[0].split(",").index("特约商户号")
    details = [line.split(",") for line in lines[1:-2]]
    assert details and {row[column] for row in details} == {"`" + subs["wechat"][1]}
    # The sandbox plants another payee on a trade's bill row (跳码 as the merchant would find it).
    wechat_trade = sandbox.http.get("/sandbox/trades", params={"provider": "wechat"}).json()["trades"][0]
    r = sandbox.http.post(
        f"/sandbox/trades/{wechat_trade['trade_no']}/bill", json={"sub_mch_id": "1900000999"}
    )
    assert r.status_code == 200 and r.json()["bill"]["sub_mch_id"] == "1900000999"
    with WeChatPayProvider(account) as provider:
        planted = provider.download_bill(date.fromordinal(clock_day.toordinal() - 1))
    assert planted is not None and "`1900000999," in planted.decode("utf-8")


def test_unknown_or_frozen_sub_merchant_is_a_definite_failure(
    container: Container, client: TestClient, world: tuple[Accounts, SandboxControl]
) -> None:
    ids, sandbox = world
    subs = issue_sub_merchants(sandbox, "茶馆二号")
    tenant = make_tenant(container, f"Frozen {uuid.uuid4().hex[:8]}")
    # WeChat: a sub-merchant the provider froze; Alipay: an smid no 进件 ever issued
    code, wechat_sub = subs["wechat"]
    assert (
        sandbox.http.post(f"/sandbox/onboarding/wechat/{code}/freeze", json={"frozen": True}).status_code
        == 200
    )
    connect(container, tenant, ids, sandbox, {"wechat": wechat_sub, "alipay": "2088000000000001"})
    expected = {"wechat": "NOAUTH", "alipay": "ACQ.SECONDARY_MERCHANT_ID_INVALID"}
    for provider in ("wechat", "alipay"):
        wallet = sandbox.wallet(provider)
        failed = pay(client, tenant, sandbox.code(wallet))
        assert failed["status"] == "failed" and failed["failure_code"] == expected[provider], failed
        assert failed["message"]["reason"] == "merchant_account"
        assert failed["message"]["zh-CN"] and failed["message"]["en"]
        assert sandbox.net_debited(wallet) == 0
    with container.db.read() as conn:
        left = conn.execute(
            select(jobs.c.kind).where(jobs.c.merchant_id == tenant.merchant_id, jobs.c.state == "pending")
        ).all()
    assert not [k for (k,) in left if k in ("recover_payment", "reverse_payment")]  # nothing to resolve
    # released by the provider: the same shop takes WeChat payments again
    sandbox.http.post(f"/sandbox/onboarding/wechat/{code}/freeze", json={"frozen": False})
    assert pay(client, tenant, sandbox.code(sandbox.wallet("wechat")))["status"] == "captured"


def test_refund_query_of_another_sub_merchants_refund_is_not_found(
    container: Container, client: TestClient, world: tuple[Accounts, SandboxControl]
) -> None:
    """As the payment query does (ORDERNOTEXIST), the WeChat refund query answers REFUNDNOTEXIST for a
    refund of another sub-merchant's trade, whichever reference names it; its own sub-merchant sees it."""
    ids, sandbox = world
    subs = issue_sub_merchants(sandbox, "茶馆三号")
    other = issue_sub_merchants(sandbox, "茶馆四号")["wechat"][1]
    tenant = make_tenant(container, f"Refunds {uuid.uuid4().hex[:8]}")
    connect(container, tenant, ids, sandbox, {"wechat": subs["wechat"][1]})
    paid = pay(client, tenant, sandbox.code(sandbox.wallet("wechat")))
    assert paid["status"] == "captured", paid
    r = client.post(
        "/v1/refunds",
        json={"payment_id": paid["id"], "amount": 500, "reason": "sub-merchant refund query"},
        headers={**tenant.auth("merchant"), "Idempotency-Key": uuid.uuid4().hex},
    )
    assert r.status_code in (201, 202), r.text
    refund_id = r.json()["id"]

    def account(sub: str | None) -> WeChatAccount:
        return WeChatAccount(
            appid=ids.appid,
            mch_id=ids.mch_id,
            api_key=account_settings(ids, sandbox.url)["wechat"]["api_key"],
            base_url=sandbox.url,
            sub_mch_id=sub,
        )

    with WeChatPayProvider(account(subs["wechat"][1])) as own:
        mine = own.refund_query(out_trade_no=paid["id"], out_refund_no=refund_id)
    assert mine.state is RefundState.SUCCESS, mine
    for sub in (other, None):  # another sub-merchant, and the service provider's own account
        with WeChatPayProvider(account(sub)) as provider:
            theirs = provider.refund_query(out_trade_no=paid["id"], out_refund_no=refund_id)
        assert (theirs.state, theirs.code) == (RefundState.NOT_FOUND, "REFUNDNOTEXIST"), theirs
    # by the other references too (a raw call: the adapter asks by out_refund_no)
    trade = sandbox_trade(sandbox, "wechat", paid["provider_ref"])
    refund_no = mine.provider_ref
    for reference in (
        {"out_trade_no": paid["id"]},
        {"transaction_id": trade["trade_no"]},
        *([{"refund_id": refund_no}] if refund_no else []),
    ):
        for sub, expected in ((other, "FAIL"), (subs["wechat"][1], "SUCCESS")):
            with WeChatPayProvider(account(sub)) as provider:
                answer = provider._verified(provider._post("/pay/refundquery", reference))
            assert answer.error is None and answer.fields["result_code"] == expected, (reference, answer)
            if expected == "FAIL":
                assert answer.fields["err_code"] == "REFUNDNOTEXIST"
