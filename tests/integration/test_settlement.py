"""Fees, 跳码 and settlement through the API on SQLite and PostgreSQL (docs/settlement.md): contracts,
planted fee and 跳码 bills with their evidence, leakage and ledger fee postings; settlement days that
end settled, short, late, missing and duplicate from WeChat fund-flow, Alipay account and bank
statements; the day explained with its lines, the CSV statement, and the daily job's exceptions."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, insert, select

from tests.integration.test_reconciliation import connect_accounts, plant_locals, upload
from tests.support import pg, recon
from tests.support.api import new_order
from tests.support.statements import Line, alipay_account, bank_csv, wechat_fundflow
from tests.support.world import Tenant
from tillit.adapters.db import migrate
from tillit.adapters.db.schema import exceptions, fee_findings, ledger_postings, payments, refunds
from tillit.adapters.db.schema import jobs as jobs_table
from tillit.bootstrap import Container, build
from tillit.config import Settings
from tillit.domain.clock import ManualClock
from tillit.kernel import jobs
from tillit.settlement import daily
from tillit.settlement.statements import CHINA

TODAY = datetime(2026, 12, 3, 12, 0, tzinfo=CHINA)  # every planted day is past its cycle and grace


@pytest.fixture(scope="module")
def urls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """This module's own databases: planted payments skip the order bookkeeping on purpose."""
    found: dict[str, str] = {}
    yield found
    if "postgresql" in found:
        pg.drop_database(found["postgresql"])


@pytest.fixture
def container(
    backend: str, urls: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Container]:
    if backend not in urls:
        urls[backend] = (
            pg.create_database("tillit_settle")
            if backend == "postgresql"
            else f"sqlite:///{tmp_path_factory.mktemp('settle') / 'settle.sqlite'}"
        )
        urls[backend + "-home"] = str(tmp_path_factory.mktemp("settle-home"))
    c = build(
        Settings(home=Path(urls[backend + "-home"]), database_url=urls[backend]), clock=ManualClock(TODAY)
    )
    migrate.upgrade(c.db)
    yield c
    c.db.dispose()


def admin(admin_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {admin_key}", "Idempotency-Key": uuid.uuid4().hex}


def sign(client: TestClient, admin_key: str, merchant_id: str, provider: str, **terms: Any) -> dict[str, Any]:
    body = {
        "merchant_id": merchant_id,
        "provider": provider,
        "rate_ppm": 3800,
        "effective_from": "2026-01-01",
    }
    r = client.post("/v1/fee-contracts", json=body | terms, headers=admin(admin_key))
    assert r.status_code == 201, r.text
    return dict(r.json())


# --------------------------------------------------------------------------- fees and 跳码


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)  # pure bookkeeping: one database is enough
def test_contracts_are_signed_superseded_and_audited(
    client: TestClient, tenant: Tenant, other_tenant: Tenant, admin_key: str
) -> None:
    first = sign(client, admin_key, tenant.merchant_id, "wechat", merchant_no="10000100", mcc="5812")
    second = sign(client, admin_key, tenant.merchant_id, "wechat", rate_ppm=2000, effective_from="2026-06-01")
    mine = client.get("/v1/fee-contracts", headers=tenant.auth("merchant")).json()["data"]
    assert [(c["id"], c["effective_to"]) for c in mine] == [(first["id"], "2026-06-01"), (second["id"], None)]
    assert (
        mine[0]["ended_by"].startswith("admin:") and mine[0]["end_reason"] == "superseded by a new contract"
    )
    # Overlap, bad terms, another merchant's contract and a merchant key: refused, nothing written.
    r = client.post(
        "/v1/fee-contracts",
        json={
            "merchant_id": tenant.merchant_id,
            "provider": "wechat",
            "rate_ppm": 1,
            "effective_from": "2026-03-01",
        },
        headers=admin(admin_key),
    )
    assert r.status_code == 409 and r.json()["error"]["code"] == "contract_overlap"
    r = client.post(
        "/v1/fee-contracts",
        json={
            "merchant_id": tenant.merchant_id,
            "provider": "wechat",
            "rate_ppm": 100_001,
            "effective_from": "2026-09-01",
        },
        headers=admin(admin_key),
    )
    assert r.status_code == 422
    assert (
        client.get(f"/v1/fee-contracts/{first['id']}", headers=other_tenant.auth("merchant")).status_code
        == 404
    )
    r = client.post(
        f"/v1/fee-contracts/{second['id']}/end",
        json={"end_day": "2026-12-31", "reason": "renegotiated"},
        headers=admin(admin_key),
    )
    assert r.status_code == 200 and r.json()["effective_to"] == "2026-12-31"
    assert len(client.get("/v1/fee-contracts", headers=tenant.auth("merchant")).json()["data"]) == 2


@pytest.mark.parametrize("provider", ["wechat", "alipay"])
def test_planted_fee_and_code_jump_bills(
    container: Container,
    client: TestClient,
    tenant: Tenant,
    other_tenant: Tenant,
    admin_key: str,
    provider: str,
) -> None:
    # Contract 0.38 %: only the planted 0.60 % row is a fee mismatch; the ledger books the billed fees.
    corpus = recon.build(provider, matched=12, accounts=recon.fresh_accounts())
    connect_accounts(container, tenant, corpus)
    plant_locals(container, client, tenant, corpus)
    sign(client, admin_key, tenant.merchant_id, provider)
    assert upload(client, tenant, provider, corpus.bill_bytes()).status_code == 201
    found = client.get("/v1/fees/findings", headers=tenant.auth("merchant")).json()["data"]
    assert [(f["finding_class"], f["amount"]) for f in found] == [("fee_mismatch", recon.FEE_PLANT_AMOUNT)]
    assert (
        found[0]["leakage_e5"] == (recon.FEE_PLANT_AMOUNT * 6000 - recon.FEE_PLANT_AMOUNT * 3800) // 1000
        or found[0]["leakage_e5"] > 0
    )
    with container.db.read() as conn:
        booked = conn.execute(
            select(
                func.count(func.distinct(ledger_postings.c.txn_id)), func.sum(ledger_postings.c.amount)
            ).where(
                ledger_postings.c.merchant_id == tenant.merchant_id,
                ledger_postings.c.kind == "fee",
                ledger_postings.c.account == f"expense:fees:{provider}",
            )
        ).one()
    assert booked[0] > 10 and booked[1] > 0

    # 跳码: the contract registers another merchant number and rate; every row is evidence of its own class.
    corpus = recon.build(provider, matched=5, accounts=recon.fresh_accounts())
    connect_accounts(container, other_tenant, corpus)
    sign(client, admin_key, other_tenant.merchant_id, provider, rate_ppm=2000, merchant_no="102440358121234")
    assert upload(client, other_tenant, provider, corpus.bill_bytes()).status_code == 201
    jumps = client.get(
        "/v1/fees/findings", params={"class": "code_jump"}, headers=other_tenant.auth("merchant")
    ).json()["data"]
    assert len(jumps) >= 5
    fields = {e["field"] for e in jumps[0]["evidence"]}
    assert "merchant_no" in fields and (provider == "alipay" or "rate_ppm" in fields)
    evidence = {e["field"]: e for e in jumps[0]["evidence"]}
    assert evidence["merchant_no"]["contracted"] == "102440358121234"
    leak = client.get(
        "/v1/fees/leakage", params={"since": "2026-11-01"}, headers=other_tenant.auth("merchant")
    ).json()
    assert [(m["month"], m["code_jump"] >= 5) for m in leak["data"]] == [("2026-11", True)]
    assert leak["data"][0]["leakage_fen"] > 0  # billed 0.38 % against a signed 0.20 %
    # Each merchant sees only its own findings.
    theirs = client.get("/v1/fees/findings", headers=tenant.auth("merchant")).json()["data"]
    assert not {f["id"] for f in theirs} & {f["id"] for f in jumps}
    with container.db.read() as conn:
        assert conn.execute(select(func.count()).select_from(fee_findings)).scalar_one() >= len(jumps) + 1


# --------------------------------------------------------------------------- settlement


def at(day: date, hh: int = 9, mm: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hh, mm, tzinfo=CHINA)


D = [date(2026, 11, 16) + timedelta(days=i) for i in range(5)]  # settled, short, late, missing, duplicate


def plant_days(c: Container, client: TestClient, tenant: Tenant, provider: str) -> dict[str, Any]:
    """Two payments on each planted day (and one refund on the first), on one open order."""
    order = new_order(client, tenant)
    ids: dict[str, Any] = {"pay": {}, "refund": None}
    with c.db.transaction() as conn:
        for i, day in enumerate(D):
            for j, amount in enumerate((3999, 10_000)):
                pid = uuid.uuid4().hex
                ids["pay"][(i, j)] = (pid, amount)
                conn.execute(
                    insert(payments).values(
                        id=pid, merchant_id=tenant.merchant_id, order_id=order["id"], method=provider,
                        provider=provider, amount=amount, currency="CNY", status="captured",
                        created_at=at(day, 10 + j), updated_at=at(day, 10 + j),
                    )
                )  # fmt: skip
        rid = uuid.uuid4().hex
        ids["refund"] = rid
        conn.execute(
            insert(refunds).values(
                id=rid, merchant_id=tenant.merchant_id, order_id=order["id"],
                payment_id=ids["pay"][(0, 1)][0], amount=2000, currency="CNY", status="succeeded",
                created_at=at(D[0], 15), updated_at=at(D[0], 15),
            )
        )  # fmt: skip
    return ids


def fee(amount: int) -> int:
    return (2 * amount * 3800 + 1_000_000) // 2_000_000


def provider_lines(ids: dict[str, Any], provider: str) -> list[Line]:
    """The statement the provider would book, with the planted faults: day 1 short by 1 yuan, day 2
    booked two days after its cycle, day 3 never credited, day 4's second payment credited twice."""
    lines: list[Line] = []
    for i, day in enumerate(D):
        booked = at(day + timedelta(days=3 if i == 2 else 1))
        for j in (0, 1):
            pid, amount = ids["pay"][(i, j)]
            if i == 3:
                continue
            net = amount - fee(amount) - (100 if (i, j) == (1, 0) else 0)
            copies = 2 if (i, j) == (4, 1) else 1
            for k in range(copies):
                key = f"{i}{j}{k}{uuid.uuid4().hex[:8]}"
                if provider == "wechat":
                    note = f"结算总金额 {amount / 100:.2f} 元;含手续费 {fee(amount) / 100:.2f} 元"
                    lines.append(Line(booked, key, "交易", net, pid, note))
                else:  # Alipay: gross income and a separate fee expense
                    lines.append(Line(booked, key + "a", "在线支付", net + fee(amount), pid))
                    lines.append(Line(booked, key + "b", "手续费", -fee(amount), pid))
    refund_net = 2000 - fee(2000)
    if provider == "wechat":
        lines.append(Line(at(D[0], 15), "R" + uuid.uuid4().hex[:8], "退款", -refund_net, ids["refund"]))
    else:
        pay = ids["pay"][(0, 1)][0]
        lines.append(Line(at(D[0], 15), "R" + uuid.uuid4().hex[:8], "交易退款", -2000, pay))
        lines.append(Line(at(D[0], 15), "F" + uuid.uuid4().hex[:8], "手续费", fee(2000), pay))
    return lines


def run_and_read(client: TestClient, tenant: Tenant, provider: str) -> dict[str, dict[str, Any]]:
    r = client.post(
        "/v1/settlement/runs",
        json={"since": "2026-11-16", "until": "2026-11-20"},
        headers=tenant.auth("merchant"),
    )
    assert r.status_code == 200, r.text
    return {d["trade_day"]: d for d in r.json()["data"] if d["provider"] == provider}


@pytest.mark.parametrize("provider", ["wechat", "alipay"])
def test_settlement_from_the_providers_statements(
    container: Container, client: TestClient, tenant: Tenant, admin_key: str, provider: str
) -> None:
    sign(client, admin_key, tenant.merchant_id, provider)
    ids = plant_days(container, client, tenant, provider)
    lines = provider_lines(ids, provider)
    data = wechat_fundflow(lines) if provider == "wechat" else alipay_account(lines)
    source = "wechat_fundflow" if provider == "wechat" else "alipay_account"
    r = client.post(
        "/v1/settlement/statements", params={"source": source}, content=data, headers=tenant.auth("merchant")
    )
    assert r.status_code == 201, r.text
    again = client.post(
        "/v1/settlement/statements", params={"source": source}, content=data, headers=tenant.auth("merchant")
    )
    assert again.status_code == 200 and again.json()["id"] == r.json()["id"]
    days = run_and_read(client, tenant, provider)
    assert [days[d.isoformat()]["status"] for d in D] == ["settled", "short", "late", "missing", "duplicate"]
    first = days[D[0].isoformat()]
    assert first["expected"] == 3999 + 10_000 - fee(3999) - fee(10_000) - 2000 + fee(2000)
    assert first["received"] == first["expected"] and first["age_days"] == 0
    assert days[D[1].isoformat()]["difference"] == -100
    assert days[D[2].isoformat()]["age_days"] == 2  # arrived two days after its due day
    missing = days[D[3].isoformat()]
    assert missing["received"] == 0 and missing["age_days"] == (TODAY.date() - D[3]).days - 1
    assert {e["payment_id"] for e in missing["evidence"]["uncredited"]} == {
        ids["pay"][(3, 0)][0],
        ids["pay"][(3, 1)][0],
    }
    assert "restricted" in missing["next_action"]
    dup = days[D[4].isoformat()]
    assert [e["payment_id"] for e in dup["evidence"]["credited_twice"]] == [ids["pay"][(4, 1)][0]]
    # The "not credited" day explained, with its statement lines; another merchant's day is not found.
    r = client.get(f"/v1/settlement/days/{provider}/{D[3].isoformat()}", headers=tenant.auth("merchant"))
    assert r.status_code == 200 and r.json()["status"] == "missing" and isinstance(r.json()["lines"], list)
    # The statement CSV: one row per day, amounts in fen.
    r = client.get("/v1/settlement/statement.csv", headers=tenant.auth("merchant"))
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert r.headers["content-type"].startswith("text/csv")
    assert {(row["trade_day"], row["status"]) for row in rows} >= {(D[3].isoformat(), "missing")}


def test_settlement_from_a_bank_statement_and_the_daily_job(
    container: Container, client: TestClient, tenant: Tenant, admin_key: str
) -> None:
    sign(client, admin_key, tenant.merchant_id, "wechat")
    ids = plant_days(container, client, tenant, "wechat")
    net = {i: sum(a - fee(a) for (k, _j), (_p, a) in ids["pay"].items() if k == i) for i in range(5)}
    net[0] -= 2000 - fee(2000)
    rows = [
        (
            (D[0] + timedelta(days=1)).isoformat(),
            net[0],
            "财付通支付科技有限公司",
            "B0",
            f"结算 {D[0]:%Y%m%d}",
        ),
        (
            (D[1] + timedelta(days=1)).isoformat(),
            net[1] - 1,
            "财付通支付科技有限公司",
            "B1",
            f"结算 {D[1]:%Y%m%d}",
        ),
        (
            (D[2] + timedelta(days=4)).isoformat(),
            net[2],
            "财付通支付科技有限公司",
            "B2",
            f"结算 {D[2]:%Y%m%d}",
        ),
        (
            (D[4] + timedelta(days=1)).isoformat(),
            net[4],
            "财付通支付科技有限公司",
            "B4",
            f"结算 {D[4]:%Y%m%d}",
        ),
        (
            (D[4] + timedelta(days=1)).isoformat(),
            net[4],
            "财付通支付科技有限公司",
            "B5",
            f"结算 {D[4]:%Y%m%d}",
        ),
        ("2026-11-18", 123, "=HYPERLINK(1)", "B6", "not a provider"),
    ]
    r = client.post(
        "/v1/settlement/statements",
        params={"source": "bank"},
        content=bank_csv(rows),
        headers=tenant.auth("merchant"),
    )
    assert r.status_code == 201 and r.json()["new_lines"] == 5, r.text
    days = run_and_read(client, tenant, "wechat")
    assert [days[d.isoformat()]["status"] for d in D] == ["settled", "short", "late", "missing", "duplicate"]
    assert {days[d.isoformat()]["received_source"] for d in (D[0], D[1])} == {"bank"}
    # The resolver's daily job: same outcome, and an exception per short / missing / duplicate day.
    with container.db.transaction() as conn:
        job_id = daily.ensure_scheduled(conn, container.deps, tenant.merchant_id)
        row = conn.execute(select(jobs_table).where(jobs_table.c.id == job_id)).one()
    assert row.kind == daily.KIND and row.due_at > TODAY  # the next 11:00 China time
    job = jobs.Job(row.id, row.kind, row.merchant_id, None, None, None, 0, row.created_at)
    daily.run_daily(container.db, container.deps, container.engine, job)
    with container.db.read() as conn:
        kinds = sorted(
            r[0]
            for r in conn.execute(
                select(exceptions.c.kind).where(
                    exceptions.c.merchant_id == tenant.merchant_id, exceptions.c.status == "open"
                )
            )
        )
    assert kinds == ["settlement_duplicate", "settlement_missing", "settlement_short"]
    # Bad input: an unreadable statement and a window too long are refused, nothing written.
    r = client.post(
        "/v1/settlement/statements", params={"source": "bank"}, content=b"x", headers=tenant.auth("merchant")
    )
    assert r.status_code == 422 and r.json()["error"]["code"] == "statement_header"
    r = client.post(
        "/v1/settlement/runs",
        json={"since": "2026-01-01", "until": "2026-12-01"},
        headers=tenant.auth("merchant"),
    )
    assert r.status_code == 422 and r.json()["error"]["code"] == "settlement_window_invalid"
