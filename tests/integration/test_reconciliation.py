"""Reconciliation through the API and the services on SQLite and PostgreSQL: the planted corpus in both
provider formats, idempotent re-import, safe actions through the engine, exceptions, audited
resolution, export, the report page, and what the next day's bill settles."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, insert, select

from tests.support import pg, recon
from tests.support.api import new_order
from tests.support.world import Tenant
from tillit.adapters.db import migrate
from tillit.adapters.db.schema import exceptions, jobs, payments, recon_discrepancies, refunds
from tillit.bootstrap import Container, build
from tillit.config import Settings
from tillit.payments import accounts as provider_accounts
from tillit.payments.engine import LatePaymentOutcome

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture(scope="module")
def recon_urls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Databases of this module's own: the planted payments skip the order bookkeeping on purpose, so
    they must not meet the whole-database checks other tests run on the shared one."""
    urls: dict[str, str] = {}
    yield urls
    if "postgresql" in urls:
        pg.drop_database(urls["postgresql"])


@pytest.fixture
def container(
    backend: str, recon_urls: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Container]:
    if backend not in recon_urls:
        recon_urls[backend] = (
            pg.create_database("tillit_recon")
            if backend == "postgresql"
            else f"sqlite:///{tmp_path_factory.mktemp('recon') / 'recon.sqlite'}"
        )
    # One home per database: the keyring that sealed the provider secrets stored in it must stay with it.
    home_key = f"{backend}-home"
    if home_key not in recon_urls:
        recon_urls[home_key] = str(tmp_path_factory.mktemp("recon-home"))
    home = Path(recon_urls[home_key])
    c = build(Settings(home=home, database_url=recon_urls[backend]))
    migrate.upgrade(c.db)
    yield c
    c.db.dispose()


def connect_accounts(c: Container, tenant: Tenant, corpus: recon.Corpus, **rules: Any) -> None:
    with c.db.transaction() as conn:
        provider_accounts.set_account(
            conn,
            c.deps,
            tenant.merchant_id,
            "wechat",
            {
                "appid": corpus.wechat.appid,
                "mch_id": corpus.wechat.mch_id,
                "api_key": "k" * 32,
                "base_url": "http://127.0.0.1:9",
                "fee_rate_ppm": recon.RATE_PPM,
                **rules,
            },
        )
        provider_accounts.set_account(
            conn,
            c.deps,
            tenant.merchant_id,
            "alipay",
            {
                "app_id": corpus.alipay.app_id,
                "app_private_key_pem": "x",
                "alipay_public_key_pem": "x",
                "gateway_url": "http://127.0.0.1:9/gateway.do",
                "seller_id": corpus.alipay.pid,
                "fee_rate_ppm": recon.RATE_PPM,
                **rules,
            },
        )


def plant_locals(c: Container, client: TestClient, tenant: Tenant, corpus: recon.Corpus) -> str:
    """The corpus's local payments and refunds, on one open order of the tenant."""
    order = new_order(client, tenant)
    with c.db.transaction() as conn:
        for p in corpus.local_payments:
            conn.execute(
                insert(payments).values(
                    id=p.id,
                    merchant_id=tenant.merchant_id,
                    order_id=order["id"],
                    method=corpus.provider,
                    provider=corpus.provider,
                    amount=p.amount,
                    currency="CNY",
                    status=p.status,
                    provider_ref=p.provider_ref,
                    created_at=p.created.astimezone(recon.UTC),
                    updated_at=p.created.astimezone(recon.UTC),
                )
            )
        for r in corpus.local_refunds:
            conn.execute(
                insert(refunds).values(
                    id=r.id,
                    merchant_id=tenant.merchant_id,
                    order_id=order["id"],
                    payment_id=r.payment_id,
                    amount=r.amount,
                    currency="CNY",
                    status=r.status,
                    created_at=r.created.astimezone(recon.UTC),
                    updated_at=r.created.astimezone(recon.UTC),
                )
            )
    return str(order["id"])


def upload(client: TestClient, tenant: Tenant, provider: str, data: bytes, **params: Any) -> Any:
    return client.post(
        "/v1/reconciliation/bills",
        params={"provider": provider, **params},
        content=data,
        headers={**tenant.auth("merchant"), "Content-Type": "application/octet-stream"},
    )


def counts(c: Container, merchant_id: str) -> tuple[int, int, int]:
    with c.db.read() as conn:
        discs = conn.execute(
            select(func.count())
            .select_from(recon_discrepancies)
            .where(recon_discrepancies.c.merchant_id == merchant_id)
        ).scalar_one()
        excs = conn.execute(
            select(func.count()).select_from(exceptions).where(exceptions.c.merchant_id == merchant_id)
        ).scalar_one()
        job_count = conn.execute(
            select(func.count()).select_from(jobs).where(jobs.c.merchant_id == merchant_id)
        ).scalar_one()
    return int(discs), int(excs), int(job_count)


@pytest.mark.parametrize("provider", ["wechat", "alipay"])
def test_planted_corpus_through_the_api(
    container: Container, client: TestClient, tenant: Tenant, provider: str
) -> None:
    corpus = recon.build(provider, matched=30, accounts=recon.fresh_accounts())
    connect_accounts(container, tenant, corpus)
    plant_locals(container, client, tenant, corpus)
    data = corpus.bill_bytes()
    r = upload(client, tenant, provider, data)
    assert r.status_code == 201, r.text
    body = r.json()
    run = body["run"]
    assert body["bill_date"] == "2026-11-20" and body["rows"] == run["lines"]
    assert run["counts"] == {
        "missing_at_provider": 2,
        "missing_locally": 2,
        "amount_mismatch": 2,
        "status_mismatch": 2,
        "fee_mismatch": 1,
        "duplicate": 1,
        "timing": 2,
    }
    listed = client.get(f"/v1/reconciliation/runs/{run['id']}/discrepancies", headers=tenant.auth("merchant"))
    assert listed.status_code == 200
    found = listed.json()["data"]
    assert {recon.key(d) for d in found} == corpus.planted
    by_reason = {d["reason"]: d for d in found}
    # Safe actions: the in-flight attempt is queried (and attached) by the engine and stays open until
    # the engine tells the outcome; timing across days is informational and settled at once. The
    # unrecognised payment waits for the merchant's rule.
    assert (
        by_reason["in_flight_paid"]["status"] == "open"
        and by_reason["in_flight_paid"]["action"] == "attach"
        and by_reason["in_flight_paid"]["exception_id"] is None
    )
    assert by_reason["billed_other_day"]["status"] == "resolved"
    assert (
        by_reason["expected_next_bill"]["status"] == "open"
        and by_reason["expected_next_bill"]["exception_id"] is None
    )
    orphan = by_reason["unknown_payment"]
    assert orphan["action"] == "refund_after_wait" and orphan["exception_id"]
    with container.db.read() as conn:
        resolve = conn.execute(
            select(jobs).where(jobs.c.payment_id == by_reason["in_flight_paid"]["payment_id"])
        ).one()
        assert resolve.kind == "resolve_payment" and resolve.state == "pending"
        refund_job = conn.execute(select(jobs).where(jobs.c.exception_id == orphan["exception_id"])).one()
        assert refund_job.kind == "refund_unattached" and refund_job.payment_id is None
        due = refund_job.due_at if refund_job.due_at.tzinfo else refund_job.due_at.replace(tzinfo=recon.UTC)
        assert due >= recon.china(recon.DAY, 13, 0) + timedelta(hours=24)  # the waiting rule (or now)
        exc = conn.execute(select(exceptions).where(exceptions.c.id == orphan["exception_id"])).one()
        assert (
            exc.kind == "bill_unrecognised_payment"
            and json.loads(exc.details)["out_trade_no"] == orphan["out_trade_no"]
        )
    # The engine's outcome, through the handler the composition root registered (issue #9, defect 17).
    assert container.engine is not None
    attach = by_reason["in_flight_paid"]
    told = LatePaymentOutcome(tenant.merchant_id, attach["payment_id"], "captured", "query: SUCCESS")
    with container.db.transaction() as conn:
        for handler in container.engine.on_late_payment_outcome:
            handler(conn, told)
    now = client.get(
        f"/v1/reconciliation/discrepancies/{attach['id']}", headers=tenant.auth("merchant")
    ).json()
    assert now["status"] == "resolved" and now["resolved_by"] == "system:reconciliation"
    assert "captured" in now["resolution"]
    kinds = {e["kind"] for e in client.get("/v1/exceptions", headers=tenant.auth("merchant")).json()["data"]}
    assert kinds == {
        "bill_missing_at_provider",
        "bill_unrecognised_payment",
        "bill_unknown_refund",
        "bill_amount_mismatch",
        "bill_status_mismatch",
        "bill_fee_mismatch",
        "bill_duplicate",
    }
    # Re-importing the same bill changes nothing.
    before = counts(container, tenant.merchant_id)
    again = upload(client, tenant, provider, data)
    assert again.status_code == 200 and again.json()["run"]["id"] == run["id"]
    assert counts(container, tenant.merchant_id) == before


def test_resolve_is_audited_and_closes_the_exception(
    container: Container, client: TestClient, tenant: Tenant
) -> None:
    corpus = recon.build("wechat", matched=5, accounts=recon.fresh_accounts())
    connect_accounts(container, tenant, corpus)
    plant_locals(container, client, tenant, corpus)
    run = upload(client, tenant, "wechat", corpus.bill_bytes()).json()["run"]
    found = client.get(
        f"/v1/reconciliation/runs/{run['id']}/discrepancies",
        params={"class": "amount_mismatch"},
        headers=tenant.auth("merchant"),
    ).json()["data"]
    target = found[0]
    path = f"/v1/reconciliation/discrepancies/{target['id']}/resolve"
    r = client.post(
        path, json={"resolution": "customer paid the difference"}, headers=tenant.auth("merchant")
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "resolved" and r.json()["resolved_by"].startswith("merchant:")
    assert r.json()["resolution"] == "customer paid the difference"
    exc = client.get(f"/v1/exceptions/{target['exception_id']}", headers=tenant.auth("merchant")).json()
    assert exc["status"] == "resolved" and exc["resolution"] == "customer paid the difference"
    again = client.post(path, json={"resolution": "twice"}, headers=tenant.auth("merchant"))
    assert again.status_code == 409 and again.json()["error"]["code"] == "discrepancy_resolved"
    assert client.post(path, json={"resolution": "no"}, headers=tenant.auth()).status_code == 403
    # The other way round: resolving the exception resolves its discrepancy.
    fee = client.get(
        "/v1/reconciliation/discrepancies", params={"class": "fee_mismatch"}, headers=tenant.auth("merchant")
    ).json()["data"][0]
    r = client.post(
        f"/v1/exceptions/{fee['exception_id']}/resolve",
        json={"resolution": "acquirer fixed the MCC"},
        headers=tenant.auth("merchant"),
    )
    assert r.status_code == 200
    now = client.get(f"/v1/reconciliation/discrepancies/{fee['id']}", headers=tenant.auth("merchant")).json()
    assert now["status"] == "resolved" and now["resolution"] == "acquirer fixed the MCC"


def test_export_and_report(container: Container, client: TestClient, tenant: Tenant) -> None:
    corpus = recon.build("alipay", matched=5, accounts=recon.fresh_accounts())
    connect_accounts(container, tenant, corpus)
    plant_locals(container, client, tenant, corpus)
    run = upload(client, tenant, "alipay", corpus.bill_bytes()).json()["run"]
    auth = tenant.auth("merchant")
    as_csv = client.get(f"/v1/reconciliation/runs/{run['id']}/export", headers=auth)
    assert as_csv.status_code == 200 and as_csv.headers["content-type"].startswith("text/csv")
    lines = as_csv.text.strip().split("\n")
    assert lines[0].startswith("id,run_id,class,reason,status") and len(lines) == 1 + len(corpus.planted)
    as_json = client.get(
        f"/v1/reconciliation/runs/{run['id']}/export", params={"format": "json"}, headers=auth
    )
    doc = as_json.json()
    assert set(doc) == {"bill", "run", "summary", "discrepancies"}
    assert doc["summary"]["by_class"]["fee_mismatch"] == {"count": 1, "amount": recon.FEE_PLANT_AMOUNT}
    page = client.get("/v1/reconciliation/report", headers=auth)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.text.count("<svg") == 2 and "Amounts by class" in page.text and run["id"] in page.text
    runs = client.get("/v1/reconciliation/runs", headers=auth).json()["data"]
    assert [r["id"] for r in runs] == [run["id"]]
    bill = client.get(f"/v1/reconciliation/bills/{run['bill_id']}", headers=auth).json()
    assert bill["run"]["id"] == run["id"] and bill["format"] == "alipay"


def test_bad_files_are_rejected_with_file_line_and_reason(client: TestClient, tenant: Tenant) -> None:
    text = (DATA / "wechat_all_20261120.csv").read_bytes().replace(b"`369.76,", b"`369.70,")
    r = upload(client, tenant, "wechat", text, filename="wx.csv")
    assert r.status_code == 422
    err = r.json()["error"]
    assert (
        err["code"] == "bill_totals_mismatch"
        and err["details"]["file"] == "wx.csv"
        and err["details"]["line"] == 17
    )
    r = upload(client, tenant, "alipay", b"PK\x03\x04 not really")
    assert r.status_code == 422 and r.json()["error"]["code"] == "bill_unreadable"
    r = upload(client, tenant, "wechat", b"x", format="csv", mapping="{nope")
    assert r.status_code == 422 and r.json()["error"]["code"] == "bill_mapping_invalid"
    assert upload(client, tenant, "wechat", b"", format="visa").status_code == 422


def test_uploads_have_their_own_body_limit(container: Container, client: TestClient, tenant: Tenant) -> None:
    corpus = recon.build("wechat", matched=400, accounts=recon.fresh_accounts())
    data = corpus.bill_bytes()
    assert len(data) > container.settings.max_body_bytes  # over the JSON limit, under the upload one
    r = upload(client, tenant, "wechat", data)
    assert r.status_code == 201, r.text


def test_account_mismatch_is_refused(container: Container, client: TestClient, tenant: Tenant) -> None:
    corpus = recon.build("wechat", matched=2, accounts=recon.fresh_accounts())
    connect_accounts(container, tenant, corpus)
    r = upload(client, tenant, "wechat", (DATA / "wechat_all_20261120.csv").read_bytes())
    assert r.status_code == 409 and r.json()["error"]["code"] == "bill_account_mismatch"


def test_next_days_bill_settles_the_wait(container: Container, client: TestClient, tenant: Tenant) -> None:
    """A payment made here at 23:59:58 is expected in the next bill: found there, the wait is resolved;
    another that is in neither bill becomes missing_at_provider."""
    wx, ali = recon.fresh_accounts()
    day1, day2 = recon.DAY, recon.DAY + timedelta(days=1)
    first = recon.Corpus("wechat", wx, ali, day1)
    first.trades.append(recon._trade("wechat", 1, 1000, recon.china(day1, 12, 0)))
    late, never = recon.uid(), recon.uid()
    first.local_payments += [
        recon.LocalPayment(first.trades[0].out_trade_no, 1000, "captured", first.trades[0].created, None),
        recon.LocalPayment(late, 2000, "captured", recon.china(day1, 23, 59, 58), None),
        recon.LocalPayment(never, 3000, "captured", recon.china(day1, 23, 59, 59), None),
    ]
    connect_accounts(container, tenant, first)
    plant_locals(container, client, tenant, first)
    run1 = upload(client, tenant, "wechat", first.bill_bytes()).json()["run"]
    assert run1["counts"]["timing"] == 2 and run1["open"] == 2
    second = recon.Corpus("wechat", wx, ali, day2)
    second.trades.append(recon._trade("wechat", 2, 2000, recon.china(day2, 0, 0, 3), out_trade_no=late))
    run2 = upload(client, tenant, "wechat", second.bill_bytes()).json()["run"]
    assert run2["counts"]["missing_at_provider"] == 1 and run2["counts"]["timing"] == 1
    old = client.get(
        f"/v1/reconciliation/runs/{run1['id']}/discrepancies", headers=tenant.auth("merchant")
    ).json()
    states = {d["out_trade_no"]: (d["status"], d["resolution"]) for d in old["data"]}
    assert states[late][0] == "resolved" and "found in the bill of 2026-11-21" in states[late][1]
    assert states[never][0] == "resolved" and "not in the bill of 2026-11-21" in states[never][1]
    new = client.get(
        f"/v1/reconciliation/runs/{run2['id']}/discrepancies", headers=tenant.auth("merchant")
    ).json()
    assert {(d["class"], d["out_trade_no"], d["status"]) for d in new["data"]} == {
        ("missing_at_provider", never, "open"),
        ("timing", late, "resolved"),
    }


def test_merchants_see_only_their_own(
    container: Container, client: TestClient, tenant: Tenant, other_tenant: Tenant, admin_key: str
) -> None:
    data = (DATA / "alipay_trade_20261120.csv.zip").read_bytes()
    theirs = upload(client, other_tenant, "alipay", data).json()
    mine = upload(client, tenant, "alipay", data).json()
    assert theirs["run"]["id"] != mine["run"]["id"]
    listed = client.get("/v1/reconciliation/runs", headers=tenant.auth("merchant")).json()["data"]
    assert {r["id"] for r in listed} == {mine["run"]["id"]}
    admin = {"Authorization": f"Bearer {admin_key}"}
    seen = client.get("/v1/reconciliation/runs", params={"limit": 200}, headers=admin).json()["data"]
    assert {mine["run"]["id"], theirs["run"]["id"]} <= {r["id"] for r in seen}
    assert (
        client.get(
            f"/v1/reconciliation/runs/{theirs['run']['id']}", headers=tenant.auth("merchant")
        ).status_code
        == 404
    )
    assert uuid.UUID(mine["id"])


def test_engine_outcome_against_the_bill_becomes_an_exception(
    container: Container, client: TestClient, tenant: Tenant
) -> None:
    """Issue #9, defect 17: an attach the engine could not confirm (the provider now says not paid) is an
    exception on the discrepancy, not a silent "resolved"."""
    corpus = recon.build("wechat", matched=3, accounts=recon.fresh_accounts())
    connect_accounts(container, tenant, corpus)
    plant_locals(container, client, tenant, corpus)
    r = upload(client, tenant, "wechat", corpus.bill_bytes())
    assert r.status_code == 201, r.text
    found = client.get(
        f"/v1/reconciliation/runs/{r.json()['run']['id']}/discrepancies", headers=tenant.auth("merchant")
    ).json()["data"]
    attach = next(d for d in found if d["reason"] == "in_flight_paid")
    assert attach["status"] == "open" and r.json()["summary"]["open"] >= 1
    assert container.engine is not None
    told = LatePaymentOutcome(tenant.merchant_id, attach["payment_id"], "not_paid", "query: CLOSED")
    with container.db.transaction() as conn:
        for handler in container.engine.on_late_payment_outcome:
            handler(conn, told)
    now = client.get(
        f"/v1/reconciliation/discrepancies/{attach['id']}", headers=tenant.auth("merchant")
    ).json()
    assert now["status"] == "open" and now["action"] == "manager" and now["exception_id"]
    exc = client.get(f"/v1/exceptions/{now['exception_id']}", headers=tenant.auth("merchant")).json()
    assert exc["kind"] == "bill_status_mismatch" and exc["status"] == "open"
