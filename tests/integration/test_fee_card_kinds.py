"""Planted bills against card-kind contracts and the registered payee, on SQLite and PostgreSQL.

* Card kinds: a WeChat row whose 付款银行 names a credit card is checked against the credit contract
  (another rate: 跳码 evidence on the rate, the credit contract named); a debit row over the debit
  contract's cap is billed the uncapped fee (a fee mismatch, expected = the cap); a row the bill says
  nothing about (OTHERS) is checked against the ``any`` contract.
* 跳码 by payee: a WeChat row whose 特约商户号 is not the sub-merchant 进件 issued to this merchant, and
  an Alipay row whose 门店名称 is not the contract's registered name, are ``code_jump`` findings with the
  field as evidence; rows naming the right sub-merchant / store are not findings.

The bills are the sandbox's own bill writer (tests/support/recon.py) with the per-trade plants that
``POST /sandbox/trades/{trade_no}/bill`` sets (extra ``bill_bank_type`` / ``bill_sub_mch_id`` /
``bill_store_name``)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient

from tests.integration.test_reconciliation import connect_accounts, upload
from tests.support import recon
from tests.support.world import Tenant
from tillit.bootstrap import Container
from tillit.payments import accounts

SUB = "1900000123"


def admin(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", "Idempotency-Key": __import__("uuid").uuid4().hex}


def sign(client: TestClient, key: str, merchant_id: str, provider: str, **terms: Any) -> dict[str, Any]:
    body = {
        "merchant_id": merchant_id,
        "provider": provider,
        "rate_ppm": 3800,
        "effective_from": "2026-01-01",
    }
    r = client.post("/v1/fee-contracts", json=body | terms, headers=admin(key))
    assert r.status_code == 201, r.text
    return dict(r.json())


def findings(client: TestClient, tenant: Tenant) -> dict[str, dict[str, Any]]:
    data = client.get("/v1/fees/findings", headers=tenant.auth("merchant")).json()["data"]
    return {f["out_trade_no"]: f for f in data}


def add_trade(corpus: recon.Corpus, amount: int, hour: int, **extra: str) -> str:
    trade = recon._trade(corpus.provider, 900 + len(corpus.trades), amount, recon.china(recon.DAY, hour, 30))
    trade.extra.update(extra)
    corpus.trades.append(trade)
    return trade.out_trade_no


def test_card_kind_contracts_and_sub_merchant_jumps_on_a_wechat_bill(
    container: Container, client: TestClient, tenant: Tenant, admin_key: str
) -> None:
    corpus = recon.build("wechat", matched=4, accounts=recon.fresh_accounts())
    connect_accounts(container, tenant, corpus)
    with container.db.transaction() as conn:
        accounts.record_sub_merchant(conn, container.deps, tenant.merchant_id, "wechat", SUB)
    for t in corpus.trades + corpus.duplicated:
        t.extra["sub_mch_id"] = SUB  # every trade was paid to this merchant's sub-merchant ...
    credit = add_trade(corpus, 10_000, 19, sub_mch_id=SUB, bill_bank_type="CMB_CREDIT")
    debit = add_trade(corpus, 500_000, 20, sub_mch_id=SUB, bill_bank_type="ICBC_DEBIT")  # 5 000 yuan
    small_debit = add_trade(corpus, 10_000, 20, sub_mch_id=SUB, bill_bank_type="ICBC_DEBIT")
    other = add_trade(corpus, 2_000, 21, sub_mch_id=SUB, bill_sub_mch_id="1900000999")  # ... but this one
    any_contract = sign(client, admin_key, tenant.merchant_id, "wechat")
    credit_contract = sign(client, admin_key, tenant.merchant_id, "wechat", card_kind="credit", rate_ppm=6000)
    sign(client, admin_key, tenant.merchant_id, "wechat", card_kind="debit", cap_fen=1300)  # 13 yuan cap

    assert upload(client, tenant, "wechat", corpus.bill_bytes()).status_code == 201
    found = findings(client, tenant)
    # credit row: billed at the account's 0.38 %, signed 0.60 % for credit cards
    assert found[credit]["contract_id"] == credit_contract["id"]
    assert {e["field"]: e["contracted"] for e in found[credit]["evidence"]}["rate_ppm"] == "6000"
    # debit row over the cap: billed 19 yuan (0.38 % of 5 000), the debit contract caps it at 13
    assert found[debit]["finding_class"] == "fee_mismatch"
    assert found[debit]["expected_fee_e5"] == 1300 * 1000 and found[debit]["billed_fee_e5"] == 1_900_000
    assert small_debit not in found  # under the cap: the debit contract's rate, no finding
    # 跳码: another sub-merchant than the one 进件 issued
    assert found[other]["finding_class"] == "code_jump" and found[other]["contract_id"] == any_contract["id"]
    assert found[other]["evidence"] == [{"field": "sub_merchant", "contracted": SUB, "billed": "1900000999"}]
    # nothing else but the corpus's own planted 0.60 % row
    rest = {k for k in found if k not in (credit, debit, other)}
    assert len(rest) == 1 and found[rest.pop()]["amount"] == recon.FEE_PLANT_AMOUNT


def test_store_name_jump_on_an_alipay_bill(
    container: Container, client: TestClient, tenant: Tenant, admin_key: str
) -> None:
    corpus = recon.build("alipay", matched=4, accounts=recon.fresh_accounts())
    connect_accounts(container, tenant, corpus)
    elsewhere = add_trade(corpus, 3_000, 21, store_id="S001", bill_store_name="隔壁便利店")
    sign(client, admin_key, tenant.merchant_id, "alipay", merchant_name="一号店")
    assert upload(client, tenant, "alipay", corpus.bill_bytes()).status_code == 201
    found = findings(client, tenant)
    assert found[elsewhere]["finding_class"] == "code_jump"
    assert found[elsewhere]["evidence"] == [
        {"field": "merchant_name", "contracted": "一号店", "billed": "隔壁便利店"}
    ]
    jumps = [f for f in found.values() if f["finding_class"] == "code_jump"]
    assert len(jumps) == 1  # the rows paid at 一号店 are not 跳码
    leak = client.get(
        "/v1/fees/leakage",
        params={"since": (recon.DAY - timedelta(days=30)).isoformat()},
        headers=tenant.auth("merchant"),
    ).json()["data"]
    assert leak and leak[0]["code_jump"] == 1
