"""Statements fetched from the providers, not only uploaded: ``POST /v1/settlement/fetch`` and the daily
settlement job download the WeChat fund-flow bill (``downloadfundflow``, HMAC-SHA256, gzip) and the Alipay
account statement (``signcustomer`` URL, ZIP) from the sandbox through the production adapters, import
them, store nothing twice on a re-fetch, and treat a statement not generated yet as "try again later"
(the job comes back in an hour), on SQLite and PostgreSQL."""

from __future__ import annotations

import gzip
import hashlib
import uuid
from collections.abc import Iterator
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from tests.support.sandbox import START, Accounts, SandboxControl, running_sandbox
from tests.support.sandbox import provider_accounts as account_settings
from tests.support.world import Tenant, make_admin_key, make_tenant
from tillit.adapters.db import migrate
from tillit.adapters.db.schema import jobs as jobs_table
from tillit.adapters.db.schema import settlement_statements, statement_lines
from tillit.adapters.providers.wechat import WeChatPayProvider
from tillit.api.app import create_app
from tillit.bootstrap import Container, build
from tillit.config import Settings
from tillit.domain.clock import ManualClock
from tillit.kernel import jobs
from tillit.payments import accounts
from tillit.settlement import daily
from tillit.settlement import fetch as settlement_fetch

DAY = START.date()  # the sandbox's trade day (China time)


@pytest.fixture
def shop(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, sqlite_home: Path
) -> Iterator[tuple[Container, ManualClock, SandboxControl, Tenant, TestClient]]:
    clock = ManualClock(START.astimezone(UTC))
    url = (
        request.getfixturevalue("pg_url")
        if backend == "postgresql"
        else f"sqlite:///{sqlite_home / 'tillit.sqlite'}"
    )
    c = build(Settings(home=sqlite_home, database_url=url, provider_timeout_s=3.0), clock=clock)
    migrate.upgrade(c.db)
    ids = Accounts.fresh()
    with running_sandbox(tmp_path / "sandbox", ids) as sbx:
        tenant = make_tenant(c, f"Fetch {uuid.uuid4().hex[:8]}")
        with c.db.transaction() as conn:
            for provider, settings in account_settings(ids, sbx.url).items():
                accounts.set_account(conn, c.deps, tenant.merchant_id, provider, settings)
        with TestClient(create_app(c), raise_server_exceptions=False) as client:
            yield c, clock, sbx, tenant, client
    c.db.dispose()


def advance(clock: ManualClock, sbx: SandboxControl, seconds: float) -> None:
    clock.advance(seconds)
    sbx.advance(seconds)


def fetch(client: TestClient, tenant: Tenant, body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    r = client.post("/v1/settlement/fetch", json=body, headers=tenant.auth("merchant"))
    assert r.status_code == 200, r.text
    return {g["provider"]: g for g in r.json()["data"]}


def test_fetch_imports_both_statements_once_and_waits_for_ungenerated_ones(
    shop: tuple[Container, ManualClock, SandboxControl, Tenant, TestClient],
) -> None:
    c, clock, sbx, tenant, client = shop
    for provider in ("wechat", "alipay"):
        headers = {**tenant.auth(), "Idempotency-Key": uuid.uuid4().hex}
        order = client.post("/v1/orders", json={"lines": [{"sku": "LATTE", "quantity": 1}]}, headers=headers)
        headers["Idempotency-Key"] = uuid.uuid4().hex
        paid = client.post(
            "/v1/payments",
            json={"order_id": order.json()["id"], "payment_code": sbx.code(sbx.wallet(provider))},
            headers=headers,
        )
        assert paid.json()["status"] == "captured", paid.text

    # the same morning: nothing generated yet, for either provider; not an error
    got = fetch(client, tenant, {"day": DAY.isoformat()})
    assert {p: g["outcome"] for p, g in got.items()} == {"wechat": "not_ready", "alipay": "not_ready"}
    assert got["wechat"]["code"] == "BILL_CREATING"

    # D+2 11:00. The sandbox settles T+1: D's trades are income in the statements of D+1. D's own
    # WeChat fund flow has no movement (NO_BILL_EXIST); Alipay's account statement of D is an empty file.
    advance(clock, sbx, 50 * 3600)
    got = fetch(client, tenant, {"day": DAY.isoformat()})
    assert {p: g["outcome"] for p, g in got.items()} == {"wechat": "no_movement", "alipay": "imported"}, got
    assert got["alipay"]["new_lines"] == 0
    next_day = (DAY + timedelta(days=1)).isoformat()
    got = fetch(client, tenant, {"day": next_day})
    assert {p: g["outcome"] for p, g in got.items()} == {"wechat": "imported", "alipay": "imported"}, got
    assert got["wechat"]["source"] == "wechat_fundflow" and got["alipay"]["source"] == "alipay_account"
    assert got["wechat"]["new_lines"] >= 1 and got["alipay"]["new_lines"] >= 1
    with c.db.read() as conn:
        count = conn.execute(
            select(func.count()).where(statement_lines.c.merchant_id == tenant.merchant_id)
        ).scalar_one()
    assert count >= 2
    for day in (DAY.isoformat(), next_day):
        again = fetch(client, tenant, {"day": day})
        assert {g["outcome"] for g in again.values()} <= {"already", "no_movement"}, again  # idempotent
    with c.db.read() as conn:
        assert (
            conn.execute(
                select(func.count()).where(statement_lines.c.merchant_id == tenant.merchant_id)
            ).scalar_one()
            == count
        )
    # the imported lines explain the day
    r = client.get(f"/v1/settlement/days/wechat/{DAY.isoformat()}", headers=tenant.auth("merchant"))
    if r.status_code == 200:
        assert r.json()["lines"], r.json()


def test_daily_job_fetches_and_comes_back_while_a_statement_is_not_generated(
    shop: tuple[Container, ManualClock, SandboxControl, Tenant, TestClient],
) -> None:
    c, clock, sbx, tenant, client = shop
    assert c.engine is not None
    headers = {**tenant.auth(), "Idempotency-Key": uuid.uuid4().hex}
    order = client.post("/v1/orders", json={"lines": [{"sku": "LATTE", "quantity": 1}]}, headers=headers)
    headers["Idempotency-Key"] = uuid.uuid4().hex
    code = sbx.code(sbx.wallet("wechat"))
    assert (
        client.post(
            "/v1/payments", json={"order_id": order.json()["id"], "payment_code": code}, headers=headers
        ).json()["status"]
        == "captured"
    )

    def run_job() -> Any:
        with c.db.read() as conn:
            row = conn.execute(
                select(jobs_table).where(
                    jobs_table.c.merchant_id == tenant.merchant_id,
                    jobs_table.c.kind == daily.KIND,
                    jobs_table.c.state == "pending",
                )
            ).one()
        job = jobs.Job(row.id, row.kind, row.merchant_id, None, None, None, 1, row.created_at)
        daily.run_daily(c.db, c.deps, c.engine, job)
        with c.db.read() as conn:
            return conn.execute(select(jobs_table).where(jobs_table.c.id == row.id)).one()

    advance(clock, sbx, 50 * 3600)  # D+2 11:00: the fund flow of D+1 holds D's trade
    first = run_job()
    assert first.state == "done", first.last_error
    with c.db.read() as conn:
        fetched = conn.execute(
            select(func.count()).where(
                statement_lines.c.merchant_id == tenant.merchant_id, statement_lines.c.provider == "wechat"
            )
        ).scalar_one()
    assert fetched >= 1  # the job fetched WeChat's fund flow of D without anyone uploading it

    advance(clock, sbx, 21 * 3600)  # D+3 08:00: D+2's statements do not exist yet
    second = run_job()
    assert second.state == "pending" and "not_ready" in (second.last_error or "")
    assert second.due_at.replace(tzinfo=UTC) == (clock.now() + timedelta(hours=1)).replace(tzinfo=UTC) or (
        abs((second.due_at.replace(tzinfo=UTC) - clock.now()).total_seconds() - 3600) < 1
    )


def test_fetch_is_tenant_scoped_and_validated(
    shop: tuple[Container, ManualClock, SandboxControl, Tenant, TestClient],
) -> None:
    c, _clock, _sbx, tenant, client = shop
    other = make_tenant(c, f"Other {uuid.uuid4().hex[:8]}")
    r = client.post(
        "/v1/settlement/fetch",
        json={"day": DAY.isoformat(), "merchant_id": other.merchant_id},
        headers=tenant.auth("merchant"),
    )
    assert r.status_code == 404 and r.json()["error"]["code"] == "merchant_not_found"
    r = client.post("/v1/settlement/fetch", json={"day": "2026-13-01"}, headers=tenant.auth("merchant"))
    assert r.status_code == 422 and "error" in r.json()
    admin = {"Authorization": f"Bearer {make_admin_key(c)}"}
    r = client.post("/v1/settlement/fetch", json={"day": DAY.isoformat()}, headers=admin)
    assert r.status_code in (400, 422) and "error" in r.json()  # an operator names the merchant


class _Directory:
    """The production directory's WeChat adapter of the shop, talking to the sandbox either directly
    or through a transport that changes one amount in the fund-flow file on the way (the ``Digest``
    header stays the sandbox's)."""

    def __init__(self, c: Container, merchant_id: str, *, tamper: bool) -> None:
        assert c.engine is not None
        with c.db.read() as conn:
            real = c.engine.providers.get(conn, merchant_id, "wechat")
        assert isinstance(real, WeChatPayProvider)
        upstream = httpx.Client()

        def handler(request: httpx.Request) -> httpx.Response:
            answer = upstream.send(
                httpx.Request(request.method, request.url, headers=request.headers, content=request.content)
            )
            body = answer.content
            if tamper and body.startswith(b"\x1f\x8b"):
                text = gzip.decompress(body)
                assert b"`28.00" in text or b"`27.89" in text, text[:400]
                text = text.replace(b"`27.89", b"`28.89", 1).replace(b"`28.00", b"`29.00", 1)
                body = gzip.compress(text, mtime=0)
            headers = {k: v for k, v in answer.headers.items() if k.lower() != "content-length"}
            return httpx.Response(answer.status_code, headers=headers, content=body)

        self.adapter = WeChatPayProvider(
            real.account, client=httpx.Client(transport=httpx.MockTransport(handler))
        )

    def get(self, conn: object, merchant_id: str, provider: str) -> object:
        return self.adapter


def test_a_fund_flow_file_whose_sha1_differs_from_the_digest_is_refused_and_nothing_is_written(
    shop: tuple[Container, ManualClock, SandboxControl, Tenant, TestClient],
) -> None:
    c, clock, sbx, tenant, client = shop
    headers = {**tenant.auth(), "Idempotency-Key": uuid.uuid4().hex}
    order = client.post("/v1/orders", json={"lines": [{"sku": "LATTE", "quantity": 1}]}, headers=headers)
    headers["Idempotency-Key"] = uuid.uuid4().hex
    paid = client.post(
        "/v1/payments",
        json={"order_id": order.json()["id"], "payment_code": sbx.code(sbx.wallet("wechat"))},
        headers=headers,
    )
    assert paid.json()["status"] == "captured", paid.text
    advance(clock, sbx, 50 * 3600)
    day = DAY + timedelta(days=1)  # T+1: the day the income line is booked

    # The sandbox publishes the SHA-1 of the uncompressed file, as WeChat does; the adapter hands it on.
    honest = _Directory(c, tenant.merchant_id, tamper=False).adapter.download_statement(day)
    assert honest is not None and honest.hash_type == "SHA1"
    assert honest.hash_value == hashlib.sha1(honest.data).hexdigest()

    def stored() -> tuple[int, int]:
        with c.db.read() as conn:
            lines = conn.execute(
                select(func.count()).where(statement_lines.c.merchant_id == tenant.merchant_id)
            ).scalar_one()
            files = conn.execute(
                select(func.count()).where(settlement_statements.c.merchant_id == tenant.merchant_id)
            ).scalar_one()
        return int(lines), int(files)

    before = stored()
    got = settlement_fetch.fetch_day(
        c.db, c.deps, _Directory(c, tenant.merchant_id, tamper=True),
        merchant_id=tenant.merchant_id, provider="wechat", day=day, actor="test",
    )  # fmt: skip
    assert (got.outcome, got.code) == ("failed", "statement_digest_mismatch")
    assert stored() == before  # nothing written

    # An upload with the provider's hash_value is checked the same way (a tampered copy: 422) ...
    tampered = honest.data.replace(b"`27.89", b"`28.89", 1).replace(b"`28.00", b"`29.00", 1)
    assert tampered != honest.data
    path = "/v1/settlement/statements?source=wechat_fundflow&hash_type=SHA1&hash_value="
    r = client.post(path + honest.hash_value, content=tampered, headers=tenant.auth("merchant"))
    assert r.status_code == 422 and r.json()["error"]["code"] == "statement_digest_mismatch", r.text
    assert r.json()["error"]["details"]["expected"] == honest.hash_value
    assert stored() == before
    # ... and the real file, and the fetch through the honest adapter, are imported.
    r = client.post(path + honest.hash_value, content=honest.data, headers=tenant.auth("merchant"))
    assert r.status_code == 201, r.text
    got = settlement_fetch.fetch_day(
        c.db, c.deps, _Directory(c, tenant.merchant_id, tamper=False),
        merchant_id=tenant.merchant_id, provider="wechat", day=day, actor="test",
    )  # fmt: skip
    assert got.outcome in ("imported", "already"), got
    assert stored()[0] > before[0]
