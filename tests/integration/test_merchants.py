"""The merchants area through the API on SQLite and PostgreSQL: application to active (four-eyes, per-
document reasons), bad documents write nothing, the blacklist and its override, suspension at the till,
limits (single, daily, 50 concurrent attempts never over), re-review and expiry on an injected clock."""

from __future__ import annotations

import random
import threading
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from tests.support.api import new_order, post
from tests.support.world import Tenant, make_admin_key
from tillit.access import keys
from tillit.adapters.db import migrate
from tillit.adapters.db.schema import (
    exceptions,
    jobs,
    limit_usage,
    merchant_documents,
    merchant_events,
    payments,
)
from tillit.api.app import create_app
from tillit.bootstrap import Container, build
from tillit.config import Settings
from tillit.domain.clock import ManualClock
from tillit.domain.merchants import id_check_digit, mask, uscc_check_character
from tillit.domain.provider import Outcome, PayResult
from tillit.kernel import jobs as job_queue
from tillit.kernel.context import Actor
from tillit.merchants import review
from tillit.payments import accounts
from tillit.payments import engine as pay_engine

LICENCE = "91440300708461136T"
PERSON = "11010519491231002X"
ACCOUNT = "6222021234567890128"
WECHAT_CODE = "134567890123456789"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def fresh_id_number() -> str:
    """A valid ID number of its own (tests share one database and its blacklist)."""
    birth = f"{random.randint(1950, 2000)}0{random.randint(1, 9)}1{random.randint(0, 9)}"
    body = f"110105{birth}{random.randint(100, 999)}"
    return body + id_check_digit(body)


def fresh_credit_code() -> str:
    body = f"914403007{random.randint(10000000, 99999999)}"
    return body + uscc_check_character(body)


def _admin(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def call(
    client: TestClient, method: str, path: str, auth: dict[str, str], body: Any = None, **kw: Any
) -> Any:
    headers = {**auth, "Idempotency-Key": uuid.uuid4().hex, **kw.pop("headers", {})}
    return client.request(method, path, headers=headers, json=body, **kw)


def apply_with_documents(
    client: TestClient,
    c: Container,
    admin: dict[str, str],
    *,
    name: str = "Noodle Bar",
    licence: str | None = None,
    person: str | None = None,
) -> tuple[str, dict[str, str]]:
    """An application with every required document, made by its merchant key; (merchant id, its auth)."""
    r = call(
        client, "POST", "/v1/merchant-applications", admin, {"name": name, "contact_phone": "13800138000"}
    )
    assert r.status_code == 201, r.text
    mid = r.json()["merchant_id"]
    assert r.json()["status"] == "applied"
    with c.db.transaction() as conn:
        _, secret = keys.create_key(conn, c.deps, role="merchant", name="owner", merchant_id=mid)
    owner = {"Authorization": f"Bearer {secret}"}
    docs = [
        {
            "kind": "business_licence",
            "number": licence or fresh_credit_code(),
            "holder_name": name,
            "expires_on": "2030-01-01",
        },
        {
            "kind": "legal_rep_id",
            "number": person or fresh_id_number(),
            "holder_name": "张三",
            "expires_on": "2035-06-30",
        },
        {"kind": "bank_account", "number": ACCOUNT, "holder_name": name, "bank_name": "招商银行"},
        {"kind": "category", "number": "5814"},
    ]
    for doc in docs:
        r = call(client, "POST", f"/v1/merchants/{mid}/documents", owner, doc)
        assert r.status_code == 201, r.text
    r = call(
        client,
        "POST",
        "/v1/merchant-documents/files",
        owner,
        params={"merchant_id": mid, "kind": "store_photo"},
        content=PNG,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert r.status_code == 201, r.text
    return mid, owner


def approve_all_documents(client: TestClient, admin: dict[str, str], mid: str) -> None:
    for doc in call(client, "GET", f"/v1/merchants/{mid}/documents", admin).json()["data"]:
        r = call(
            client,
            "POST",
            f"/v1/merchants/{mid}/documents/{doc['id']}/review",
            admin,
            {"decision": "approve"},
        )
        assert r.status_code == 200, r.text


def test_application_to_active_with_four_eyes_and_reasons(
    client: TestClient, container: Container, admin_key: str
) -> None:
    admin = _admin(admin_key)
    person = fresh_id_number()
    mid, owner = apply_with_documents(client, container, admin, person=person)
    # personal numbers are kept masked (and hashed), never in clear, never returned
    docs = call(client, "GET", f"/v1/merchants/{mid}/documents", owner).json()["data"]
    assert {d["number_masked"] for d in docs if d["kind"] == "legal_rep_id"} == {mask(person)}
    assert person not in str(docs) and ACCOUNT not in str(docs)
    with container.db.read() as conn:
        stored = " ".join(
            str(v)
            for r in conn.execute(select(merchant_documents).where(merchant_documents.c.merchant_id == mid))
            for v in r
        )
    assert person not in stored and ACCOUNT not in stored
    photo = next(d for d in docs if d["kind"] == "store_photo")
    assert photo["file_type"] == "image/png"
    got = client.get(f"/v1/merchants/{mid}/documents/{photo['id']}/file", headers=owner)
    assert got.status_code == 200 and got.content == PNG

    r = call(client, "POST", f"/v1/merchants/{mid}/submit", owner)
    assert r.status_code == 200 and r.json()["status"] == "under_review"
    assert mid in [p["merchant_id"] for p in call(client, "GET", "/v1/review-queue", admin).json()["data"]]

    # reject one document with its reason: the application goes back to the merchant
    licence = next(d for d in docs if d["kind"] == "business_licence")
    r = call(
        client, "POST", f"/v1/merchants/{mid}/documents/{licence['id']}/review", admin, {"decision": "reject"}
    )
    assert r.status_code == 422 and r.json()["error"]["code"] == "reject_reason_required"
    r = call(
        client,
        "POST",
        f"/v1/merchants/{mid}/documents/{licence['id']}/review",
        admin,
        {"decision": "reject", "reason": "照片模糊 / photo unreadable"},
    )
    assert r.status_code == 200 and r.json()["reject_reason"].startswith("照片模糊")
    r = call(client, "POST", f"/v1/merchants/{mid}/reject", admin, {"reason": "licence photo unreadable"})
    assert r.status_code == 200 and r.json()["status"] == "rejected"
    # resubmitting needs the rejected document replaced
    assert (
        call(client, "POST", f"/v1/merchants/{mid}/submit", owner).json()["error"]["code"]
        == "documents_rejected"
    )
    doc = {
        "kind": "business_licence",
        "number": LICENCE,
        "holder_name": "Noodle Bar",
        "expires_on": "2030-01-01",
    }
    assert call(client, "POST", f"/v1/merchants/{mid}/documents", owner, doc).status_code == 201
    assert call(client, "POST", f"/v1/merchants/{mid}/submit", owner).json()["status"] == "under_review"

    r = call(client, "POST", f"/v1/merchants/{mid}/approve", admin, {})
    assert r.status_code == 409 and r.json()["error"]["code"] == "documents_not_approved"
    approve_all_documents(client, admin, mid)
    r = call(client, "POST", f"/v1/merchants/{mid}/approve", admin, {"reason": "all documents verified"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "active" and r.json()["next_review_on"] is not None
    events = call(client, "GET", f"/v1/merchants/{mid}/events", owner).json()["data"]
    assert [e["to_status"] for e in events] == [
        "applied",
        "under_review",
        "rejected",
        "under_review",
        "active",
    ]
    assert all(e["actor"] and e["at"] for e in events)
    assert call(client, "GET", f"/v1/merchants/{mid}", owner).json()["status"] == "active"


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)  # does not depend on the database
def test_four_eyes_refuses_the_submitter(
    backend: str, client: TestClient, container: Container, admin_key: str
) -> None:
    admin = _admin(admin_key)
    mid, _owner = apply_with_documents(client, container, admin)
    assert (
        call(client, "POST", f"/v1/merchants/{mid}/submit", admin).status_code == 200
    )  # the operator submits
    approve_all_documents(client, admin, mid)
    r = call(client, "POST", f"/v1/merchants/{mid}/approve", admin, {})
    assert r.status_code == 403 and r.json()["error"]["code"] == "four_eyes_required"
    other = _admin(make_admin_key(container))
    assert call(client, "POST", f"/v1/merchants/{mid}/approve", other, {}).json()["status"] == "active"


BAD_DOCUMENTS: list[tuple[dict[str, Any], str]] = [
    (
        {"kind": "business_licence", "number": "91440300708461136A", "expires_on": "2030-01-01"},
        "credit_code_invalid",
    ),
    (
        {"kind": "business_licence", "number": "9144030070846113OT", "expires_on": "2030-01-01"},
        "credit_code_invalid",
    ),
    (
        {"kind": "legal_rep_id", "number": "110105194912310021", "expires_on": "2030-01-01"},
        "id_number_invalid",
    ),
    ({"kind": "legal_rep_id", "number": PERSON}, "expiry_required"),
    ({"kind": "bank_account", "number": "12-ab"}, "bank_account_invalid"),
    ({"kind": "category", "number": "58"}, "mcc_invalid"),
    ({"kind": "store_photo"}, "file_required"),
    ({"kind": "legal_rep_id", "number": PERSON, "expires_on": "2030-02-30"}, "invalid_date"),
    ({"kind": "passport", "number": "x"}, "validation_error"),
]


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)  # does not depend on the database
def test_bad_documents_answer_the_error_shape_and_write_nothing(
    backend: str, client: TestClient, container: Container, tenant: Tenant
) -> None:
    for doc, code in BAD_DOCUMENTS:
        before = _counts(container)
        r = call(
            client, "POST", f"/v1/merchants/{tenant.merchant_id}/documents", tenant.auth("merchant"), doc
        )
        assert r.status_code == 422, r.text
        assert r.json()["error"]["code"] == code and r.json()["error"]["message"], doc
        if doc.get("kind") == "legal_rep_id":
            assert str(doc["number"]) not in r.text  # an ID number is never echoed
        assert _counts(container) == before


def _counts(c: Container) -> tuple[int, int]:
    with c.db.read() as conn:
        docs = conn.execute(select(func.count()).select_from(merchant_documents)).scalar_one()
        events = conn.execute(select(func.count()).select_from(merchant_events)).scalar_one()
    return int(docs), int(events)


def _files(c: Container) -> int:
    root = Path(c.settings.home) / "files"
    return sum(1 for p in root.rglob("*") if p.is_file()) if root.exists() else 0


BAD_UPLOADS = [
    (b"GIF89a" + b"\x00" * 100, "file_type_unsupported"),
    (b"MZ\x90\x00" + b"\x00" * 100, "file_type_unsupported"),  # an executable named photo.jpg
    (b"", "file_empty"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * (5 * 1024 * 1024), "file_too_large"),
]


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)  # does not depend on the database
def test_bad_uploads_write_nothing(
    backend: str, client: TestClient, container: Container, tenant: Tenant
) -> None:
    for content, code in BAD_UPLOADS:
        before, files = _counts(container), _files(container)
        r = call(
            client,
            "POST",
            "/v1/merchant-documents/files",
            tenant.auth("merchant"),
            params={"merchant_id": tenant.merchant_id, "kind": "store_photo"},
            content=content,
            headers={"Content-Type": "application/octet-stream"},
        )
        assert r.status_code == 422 and r.json()["error"]["code"] == code, r.text
        assert _counts(container) == before and _files(container) == files
    # beyond the route's own body limit the middleware answers 413 in the same error shape
    r = call(
        client,
        "POST",
        "/v1/merchant-documents/files",
        tenant.auth("merchant"),
        params={"merchant_id": tenant.merchant_id, "kind": "store_photo"},
        content=b"\x89PNG" + b"\x00" * (6 * 1024 * 1024),
        headers={"Content-Type": "application/octet-stream"},
    )
    assert r.status_code == 413 and "error" in r.json()


def _provider_ready(c: Container, tenant: Tenant) -> None:
    """A WeChat account for the tenant; nothing here reaches it (refusals come before the call)."""
    with c.db.transaction() as conn:
        accounts.set_account(
            conn,
            c.deps,
            tenant.merchant_id,
            "wechat",
            {
                "appid": "wx1",
                "mch_id": f"m{uuid.uuid4().hex[:10]}",
                "api_key": "k" * 32,
                "base_url": "http://127.0.0.1:9",
            },
        )


def test_blacklist_flags_an_application_and_suspends_an_active_merchant(
    client: TestClient, container: Container, admin_key: str, tenant: Tenant
) -> None:
    admin = _admin(admin_key)
    code = fresh_credit_code()
    mid, owner = apply_with_documents(client, container, admin, name="Flagged Shop", licence=code)
    r = call(
        client,
        "POST",
        "/v1/blacklist",
        admin,
        {"kind": "credit_code", "value": code, "source": "CPCA", "reason": "fraud ring"},
    )
    assert r.status_code == 201, r.text
    entry = r.json()
    assert entry["suspended_merchants"] == []  # the application is not active: flagged, not suspended
    profile = call(client, "GET", f"/v1/merchants/{mid}/profile", admin).json()
    assert [h["kind"] for h in profile["blacklist_hits"]] == ["credit_code"]
    call(client, "POST", f"/v1/merchants/{mid}/submit", owner)
    approve_all_documents(client, admin, mid)
    r = call(client, "POST", f"/v1/merchants/{mid}/approve", admin, {})
    assert r.status_code == 409 and r.json()["error"]["code"] == "blacklist_override_required"
    assert r.json()["error"]["details"]["hits"][0]["entry_id"] == entry["id"]
    r = call(
        client, "POST", f"/v1/merchants/{mid}/approve", admin, {"override_reason": "CPCA entry is a namesake"}
    )
    assert r.status_code == 200 and r.json()["status"] == "active"
    assert (
        "namesake" in call(client, "GET", f"/v1/merchants/{mid}/events", admin).json()["data"][-1]["reason"]
    )

    # a new entry matching an active merchant (by the legal person's ID hash) suspends it
    _provider_ready(container, tenant)
    r = call(
        client,
        "POST",
        f"/v1/merchants/{tenant.merchant_id}/documents",
        tenant.auth("merchant"),
        {"kind": "legal_rep_id", "number": (rogue := fresh_id_number()), "expires_on": "2031-01-01"},
    )
    assert r.status_code == 201
    r = call(
        client,
        "POST",
        "/v1/blacklist",
        admin,
        {"kind": "id_number", "value": rogue, "source": "bank", "reason": "card fraud"},
    )
    assert r.status_code == 201 and tenant.merchant_id in r.json()["suspended_merchants"]
    assert r.json()["shown"] == mask(rogue)
    with container.db.read() as conn:
        kinds = [
            e.kind
            for e in conn.execute(select(exceptions).where(exceptions.c.merchant_id == tenant.merchant_id))
        ]
    assert "merchant_blacklisted" in kinds
    assert (
        call(client, "GET", f"/v1/merchants/{tenant.merchant_id}/profile", admin).json()["status"]
        == "suspended"
    )

    # at the till: no provider payment, a clear message; cash per the merchant's setting
    order = new_order(client, tenant)
    r = post(client, "/v1/payments", {"order_id": order["id"], "payment_code": WECHAT_CODE}, tenant)
    assert r.status_code == 409 and r.json()["error"]["code"] == "merchant_suspended"
    assert set(r.json()["error"]["details"]["cashier_message"]) == {"reason", "en", "zh-CN"}
    with container.db.read() as conn:
        assert conn.execute(select(payments).where(payments.c.order_id == order["id"])).first() is None
    assert (
        post(
            client, "/v1/payments", {"order_id": order["id"], "method": "cash", "amount": 100}, tenant
        ).status_code
        == 201
    )
    r = client.patch(
        f"/v1/merchants/{tenant.merchant_id}/settings", json={"cash_when_suspended": False}, headers=admin
    )
    assert r.status_code == 200 and r.json()["cash_when_suspended"] is False
    r = post(client, "/v1/payments", {"order_id": order["id"], "method": "cash", "amount": 100}, tenant)
    assert r.status_code == 409 and r.json()["error"]["code"] == "cash_not_allowed"
    r = call(
        client, "POST", f"/v1/merchants/{tenant.merchant_id}/resume", admin, {"reason": "match was wrong"}
    )
    assert r.status_code == 200 and r.json()["status"] == "active"


def test_limits_single_and_daily_are_refused_before_the_provider(
    client: TestClient, container: Container, admin_key: str, tenant: Tenant
) -> None:
    admin = _admin(admin_key)
    _provider_ready(container, tenant)
    r = call(
        client,
        "PUT",
        f"/v1/merchants/{tenant.merchant_id}/limits",
        admin,
        {
            "scope": "merchant",
            "method": "wechat",
            "single_max": 5000,
            "daily_max": 100_000,
            "reason": "tier C",
        },
    )
    assert r.status_code == 200, r.text
    r = call(
        client,
        "PUT",
        f"/v1/merchants/{tenant.merchant_id}/limits",
        admin,
        {"scope": tenant.terminal_id, "method": "wechat", "daily_max": 6000, "reason": "new till"},
    )
    assert r.status_code == 200, r.text
    order = new_order(client, tenant)  # 2 x 2800 + 1500 - 500 = 6600
    r = post(client, "/v1/payments", {"order_id": order["id"], "payment_code": WECHAT_CODE}, tenant)
    assert r.status_code == 409
    err = r.json()["error"]
    assert err["code"] == "limit_exceeded"
    assert err["details"]["limit"] == {"scope": "merchant", "method": "wechat", "kind": "single", "max": 5000}
    assert err["details"]["remaining"] == 5000
    assert "split" in err["details"]["cashier_message"]["en"]
    # split: 4000 passes the merchant's limits and uses the terminal's day, 2600 then passes neither
    with container.db.transaction() as conn:
        prepared = pay_engine.prepare_provider_payment(
            container.db,
            conn,
            container.deps,
            container.engine,
            _cashier(tenant),  # type: ignore[arg-type]
            {"order_id": order["id"], "payment_code": WECHAT_CODE, "amount": 4000},
        )
        assert len(prepared) == 3
    r = post(
        client, "/v1/payments", {"order_id": order["id"], "payment_code": WECHAT_CODE, "amount": 2600}, tenant
    )
    assert r.status_code == 409  # the first attempt is still in flight
    limits_now = call(
        client, "GET", f"/v1/merchants/{tenant.merchant_id}/limits", tenant.auth("merchant")
    ).json()
    by_scope = {row["scope"]: row for row in limits_now["data"]}
    assert by_scope["merchant"]["daily_used"] == 4000 and by_scope[tenant.terminal_id]["daily_used"] == 4000
    changes = call(client, "GET", f"/v1/merchants/{tenant.merchant_id}/limits/changes", admin).json()["data"]
    assert [c["reason"] for c in changes] == ["new till", "tier C"] and changes[0]["before"] is None
    assert {t["name"] for t in call(client, "GET", "/v1/limit-tiers", admin).json()["data"]} == {
        "B",
        "C",
        "D",
    }


def _cashier(tenant: Tenant) -> Actor:
    return Actor(
        key_id="test",
        role="terminal",
        merchant_id=tenant.merchant_id,
        terminal_id=tenant.terminal_id,
        store_id=tenant.store_id,
    )


def test_fifty_concurrent_payments_at_a_daily_limit_never_pass_it(
    client: TestClient, container: Container, admin_key: str, tenant: Tenant
) -> None:
    """50 attempts of 1 300 fen race for a 13 000 fen day: exactly 10 are reserved; a definite failure
    gives its share back once."""
    _provider_ready(container, tenant)
    call(
        client,
        "PUT",
        f"/v1/merchants/{tenant.merchant_id}/limits",
        _admin(admin_key),
        {"scope": "merchant", "method": "wechat", "daily_max": 13_000, "reason": "race"},
    )
    orders = [
        new_order(client, tenant, [{"sku": "CROIS", "quantity": 1, "discount": 200}]) for _ in range(50)
    ]
    actor = _cashier(tenant)
    results: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(50)

    def attempt(order_id: str) -> None:
        start.wait()
        try:
            with container.db.transaction() as conn:
                pay_engine.prepare_provider_payment(
                    container.db,
                    conn,
                    container.deps,
                    container.engine,
                    actor,  # type: ignore[arg-type]
                    {"order_id": order_id, "payment_code": WECHAT_CODE},
                )
            outcome = "reserved"
        except Exception as exc:  # the refusals are DomainErrors with a code
            outcome = getattr(exc, "code", repr(exc))
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=attempt, args=(o["id"],)) for o in orders]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(set(results)) == ["limit_exceeded", "reserved"], results
    assert results.count("reserved") == 10
    with container.db.read() as conn:
        used = conn.execute(
            select(limit_usage.c.used).where(limit_usage.c.merchant_id == tenant.merchant_id)
        ).scalar_one()
        pending = conn.execute(
            select(payments).where(
                payments.c.merchant_id == tenant.merchant_id, payments.c.status == "pending"
            )
        ).fetchall()
    assert used == 13_000 and sum(p.amount for p in pending) == 13_000
    # one definite failure frees its 1 300, once, even if told twice
    failed = PayResult(outcome=Outcome.FAILED, code="NOTENOUGH", message="余额不足")
    for _ in range(2):
        with container.db.transaction() as conn:
            pay_engine.apply_pay_result(
                container.db,
                conn,
                container.deps,
                pending[0].id,
                failed,
                "test",
                merchant_id=tenant.merchant_id,
            )
    with container.db.read() as conn:
        used = conn.execute(
            select(limit_usage.c.used).where(limit_usage.c.merchant_id == tenant.merchant_id)
        ).scalar_one()
    assert used == 13_000 - 1300


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)  # does not depend on the database
def test_rereview_and_expiry_on_an_injected_clock(
    backend: str, request: pytest.FixtureRequest, sqlite_home: Path
) -> None:
    clock = ManualClock(datetime(2026, 12, 3, 2, 0, tzinfo=UTC))
    c = build(
        Settings(home=sqlite_home, database_url=f"sqlite:///{sqlite_home / 'tillit.sqlite'}"), clock=clock
    )
    migrate.upgrade(c.db)
    try:
        with TestClient(create_app(c), raise_server_exceptions=False) as client:
            admin = _admin(make_admin_key(c))
            mid, owner = apply_with_documents(client, c, admin, name="Expiring Shop")
            # the licence expires in 60 days: notice at 30 days before, suspension on the day
            expires = date(2026, 12, 3) + timedelta(days=60)
            r = call(
                client,
                "POST",
                f"/v1/merchants/{mid}/documents",
                owner,
                {
                    "kind": "business_licence",
                    "number": LICENCE,
                    "holder_name": "x",
                    "expires_on": expires.isoformat(),
                },
            )
            assert r.status_code == 201
            call(client, "POST", f"/v1/merchants/{mid}/submit", owner)
            approve_all_documents(client, admin, mid)
            r = call(client, "POST", f"/v1/merchants/{mid}/approve", admin, {})
            assert r.json()["status"] == "active", r.text

            def due_job() -> job_queue.Job:
                with c.db.read() as conn:
                    row = conn.execute(
                        select(jobs).where(
                            jobs.c.merchant_id == mid,
                            jobs.c.kind == review.JOB_KIND,
                            jobs.c.state == "pending",
                        )
                    ).one()
                return job_queue.Job(row.id, row.kind, row.merchant_id, None, None, None, 1, row.created_at)

            def kinds() -> list[str]:
                with c.db.read() as conn:
                    return sorted(
                        e.kind
                        for e in conn.execute(select(exceptions).where(exceptions.c.merchant_id == mid))
                    )

            job = due_job()
            notice = datetime.combine(expires - timedelta(days=30), datetime.min.time())
            assert abs((job_due(c, job.id) - notice.replace(tzinfo=UTC)).total_seconds()) <= 8 * 3600
            _move_to(clock, job_due(c, job.id) + timedelta(seconds=1))
            review.run_review(c.db, c.deps, None, job)
            assert kinds() == ["merchant_review_due"]
            assert call(client, "GET", f"/v1/merchants/{mid}/profile", admin).json()["status"] == "active"
            job = due_job()  # rescheduled for the expiry day
            _move_to(clock, job_due(c, job.id) + timedelta(seconds=1))
            review.run_review(c.db, c.deps, None, job)
            assert kinds() == ["merchant_document_expired", "merchant_review_due"]
            profile = call(client, "GET", f"/v1/merchants/{mid}/profile", admin).json()
            assert profile["status"] == "suspended" and "business_licence" in profile["status_reason"]
            # the periodic re-review is next: due a year after approval
            job = due_job()
            assert job_due(c, job.id).date() >= date(2027, 12, 2)
    finally:
        c.db.dispose()


def job_due(c: Container, job_id: str) -> datetime:
    with c.db.read() as conn:
        value = conn.execute(select(jobs.c.due_at).where(jobs.c.id == job_id)).scalar_one()
    assert isinstance(value, datetime)
    return value


def _move_to(clock: ManualClock, moment: datetime) -> None:
    clock.advance((moment - clock.now()).total_seconds())
