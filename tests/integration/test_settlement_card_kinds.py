"""The card kind a payment was paid with, end to end through the sandbox on SQLite and PostgreSQL: the
sandbox's wallets pay from a funding source (WeChat ``bank_type``, Alipay ``fund_bill_list``
``fund_channel`` / ``fund_type``) and answer with it as the real providers do; Tillit's adapters read
it from the pay and query answers, the payment records it (``payments.card_kind``), and settlement's
expected fee per merchant-day applies the contract of that card kind (else the ``any`` one)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tests.integration.test_sub_merchant_payments import connect, pay
from tests.support.sandbox import Accounts, SandboxControl, running_sandbox
from tests.support.sandbox import provider_accounts as account_settings
from tests.support.world import make_tenant
from tillit.adapters.db.schema import payments
from tillit.adapters.providers.alipay import AlipayAccount, AlipayProvider
from tillit.adapters.providers.wechat import WeChatAccount, WeChatPayProvider
from tillit.bootstrap import Container
from tillit.domain.fees import alipay_card_kind, fee_fen, wechat_card_kind
from tillit.settlement.service import china_day

LATTE = 2800


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Accounts, SandboxControl]]:
    accounts_ = Accounts.fresh()
    with running_sandbox(tmp_path / "sandbox", accounts_) as sbx:
        yield accounts_, sbx


def admin(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", "Idempotency-Key": uuid.uuid4().hex}


def sign(client: TestClient, key: str, merchant_id: str, provider: str, **terms: Any) -> None:
    body = {"merchant_id": merchant_id, "provider": provider, "rate_ppm": 3800}
    body["effective_from"] = "2026-01-01"
    r = client.post("/v1/fee-contracts", json=body | terms, headers=admin(key))
    assert r.status_code == 201, r.text


def test_card_kind_from_the_paid_answer_sets_the_expected_settlement_fee(
    container: Container, client: TestClient, admin_key: str, world: tuple[Accounts, SandboxControl]
) -> None:
    ids, sandbox = world
    tenant = make_tenant(container, f"Cards {uuid.uuid4().hex[:8]}")
    connect(container, tenant, ids, sandbox, {})
    sign(client, admin_key, tenant.merchant_id, "wechat")
    sign(client, admin_key, tenant.merchant_id, "wechat", card_kind="credit", rate_ppm=6000)
    sign(client, admin_key, tenant.merchant_id, "alipay")
    sign(client, admin_key, tenant.merchant_id, "alipay", card_kind="debit", rate_ppm=2000, cap_fen=5)

    funding = {
        ("wechat", "ICBC_CREDIT"): "credit",
        ("wechat", ""): None,  # OTHERS: the any contract
        ("alipay", "BANKCARD:DEBIT_CARD"): "debit",
        ("alipay", ""): "balance",  # ALIPAYACCOUNT, no balance contract: the any contract
    }
    paid: dict[tuple[str, str], dict[str, Any]] = {}
    for provider, source in funding:
        wallet = sandbox.wallet(provider, funding=source) if source else sandbox.wallet(provider)
        result = pay(client, tenant, sandbox.code(wallet))
        assert result["status"] == "captured", result
        paid[provider, source] = result

    # What the sandbox answered (as the real providers do) ...
    trades = {t["trade_no"]: t for t in sandbox.http.get("/sandbox/trades").json()["trades"]}
    assert {t["trade_no"] for t in trades.values()} >= {p["provider_ref"] for p in paid.values()}
    # ... and what the production adapters read from the query answer.
    settings = account_settings(ids, sandbox.url)
    wechat_account = WeChatAccount(
        appid=ids.appid, mch_id=ids.mch_id, api_key=settings["wechat"]["api_key"], base_url=sandbox.url
    )
    with WeChatPayProvider(wechat_account) as wechat:
        assert wechat.query(paid["wechat", "ICBC_CREDIT"]["id"]).card_kind == "credit"
        assert wechat.query(paid["wechat", ""]["id"]).card_kind is None
    alipay_settings = {k: v for k, v in settings["alipay"].items() if k in AlipayAccount.__dataclass_fields__}
    with AlipayProvider(AlipayAccount(**alipay_settings)) as alipay:
        assert alipay.query(paid["alipay", "BANKCARD:DEBIT_CARD"]["id"]).card_kind == "debit"
        assert alipay.query(paid["alipay", ""]["id"]).card_kind == "balance"

    # The payments recorded the kind the pay answer named.
    with container.db.read() as conn:
        rows = {
            r.id: r
            for r in conn.execute(
                select(payments.c.id, payments.c.card_kind, payments.c.created_at).where(
                    payments.c.merchant_id == tenant.merchant_id
                )
            )
        }
    assert {key: rows[p["id"]].card_kind for key, p in paid.items()} == funding
    days = {china_day(r.created_at) for r in rows.values()}

    r = client.post(
        "/v1/settlement/runs",
        json={"merchant_id": tenant.merchant_id, "since": str(min(days)), "until": str(max(days))},
        headers=admin(admin_key),
    )
    assert r.status_code == 200, r.text
    fees: dict[str, int] = {}
    for day in r.json()["data"]:
        fees[day["provider"]] = fees.get(day["provider"], 0) + day["fees"]
    assert fees == {
        "wechat": fee_fen(LATTE, 6000) + fee_fen(LATTE, 3800),  # credit contract, any contract
        "alipay": fee_fen(LATTE, 2000, 5) + fee_fen(LATTE, 3800),  # debit contract (capped), any
    }


def test_card_kind_rules() -> None:
    assert [wechat_card_kind(b) for b in ("CMB_DEBIT", "ICBC_CREDIT", "CFT", "LQT", "OTHERS", None)] == [
        "debit",
        "credit",
        "balance",
        "balance",
        None,
        None,
    ]
    card = [{"fund_channel": "BANKCARD", "fund_type": "CREDIT_CARD", "amount": "10.00"}]
    assert alipay_card_kind(card) == "credit"
    assert alipay_card_kind([*card, {"fund_channel": "COUPON", "amount": "1.00"}]) == "credit"  # a coupon
    assert alipay_card_kind([*card, {"fund_channel": "ALIPAYACCOUNT", "amount": "1.00"}]) is None  # split
    assert alipay_card_kind(json.loads('[{"fundChannel": "PCREDIT", "amount": "1.00"}]')) == "credit"
    assert alipay_card_kind([{"fund_channel": "BANKCARD", "fund_type": "MIXED_CARD"}]) is None
    assert alipay_card_kind("not a list") is None
